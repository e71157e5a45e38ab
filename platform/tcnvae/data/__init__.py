"""The data layer: sources → recordings → harmonised windows → subject-disjoint splits → loaders.

Most runs need only :class:`DataConfig` and :func:`prepare`; the pieces are exported for sources,
curricula and tests that work with one step at a time.
"""

from tcnvae.data.augment import Augmentation, BatchAugmenter
from tcnvae.data.harmonise import (
    CHANNEL_SETS,
    resample,
    select_channels,
    separate_gravity,
    window_recordings,
    window_windowset,
)
from tcnvae.data.loaders import SAMPLING_MODES, WindowLoader
from tcnvae.data.metrics import classification_report
from tcnvae.data.normalise import Standardiser
from tcnvae.data.pipeline import DataConfig, PreparedData, build_windows, prepare, restrict_activities
from tcnvae.data.recordings import ACC, BODY_ACC, GYRO, STANDARD_GRAVITY, UNLABELLED, Recording
from tcnvae.data.sources import available_sources, load_source, register_source
from tcnvae.data.splits import (
    leave_one_domain_out,
    leave_one_subject_out,
    split_by_subject,
    stratified_subject_split,
    uci_har_official,
)
from tcnvae.data.taxonomy import ACTIVITIES, check_activity, label_space, register_activity
from tcnvae.data.windows import WindowSet, concat

__all__ = [
    "ACC",
    "ACTIVITIES",
    "Augmentation",
    "BODY_ACC",
    "BatchAugmenter",
    "CHANNEL_SETS",
    "DataConfig",
    "GYRO",
    "PreparedData",
    "Recording",
    "SAMPLING_MODES",
    "STANDARD_GRAVITY",
    "Standardiser",
    "UNLABELLED",
    "WindowLoader",
    "WindowSet",
    "available_sources",
    "build_windows",
    "check_activity",
    "classification_report",
    "concat",
    "label_space",
    "leave_one_domain_out",
    "leave_one_subject_out",
    "load_source",
    "prepare",
    "register_activity",
    "register_source",
    "resample",
    "restrict_activities",
    "select_channels",
    "separate_gravity",
    "split_by_subject",
    "stratified_subject_split",
    "uci_har_official",
    "window_recordings",
    "window_windowset",
]
