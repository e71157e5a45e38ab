"""From a `DataConfig` to loaders: what a training run calls to get its data.

``prepare(config)`` loads every dataset through the source registry, harmonises them to one rate,
channel set and window length (gravity-aligned and with magnitude channels if asked:
:mod:`tcnvae.data.orientation`), pools them, splits by subject, fits the standardiser on the training
side only (with ``normalise_by="dataset"``, after standardising each dataset by its own statistics:
:mod:`tcnvae.data.normalise`) and returns a :class:`PreparedData` that makes loaders and a plain-dict
``metadata()`` to save with runs and checkpoints (so a checkpoint knows its activity order, domains, channels and
normalisation).

Pre-windowed data (UCI-HAR, an arrays file of (N, T, C) windows) keeps its own duration: with
``window_seconds=None`` (the default) the windows of every dataset are cut to the pre-windowed
data's duration (2.56 s without any pre-windowed dataset), logged. Windows are resampled to
``sample_rate`` (logged), never cropped unless ``crop_windows=True`` asks for it: a pre-windowed set
longer than an explicit ``window_seconds`` is otherwise an error that says how much would be lost.

Domain labels index *all* domains of the pooled data (sorted names), not only those in training, so
a held-out domain (``split="lodo:<name>"``) keeps a valid label and shows up by name in per-domain
metrics; the model's domain head simply never sees it during training, unless ``target_labelled_people=K``
makes K of its people labelled training data (the test is then its other people). With
``split="unlabelled:<name>"`` the domain head does see it: the target's training-side windows join
training without their labels (``PreparedData.unlabelled``), for unsupervised domain adaptation.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields, replace
from os import PathLike
from typing import Any

import numpy as np

from tcnvae.data.augment import Augmentation
from tcnvae.data.checks import check_activities, check_sources, check_split, people_view
from tcnvae.data.harmonise import CHANNEL_SETS, channel_set_names, window_recordings, window_windowset
from tcnvae.data.loaders import LOADER_SETTINGS, WindowLoader
from tcnvae.data.normalise import NORMALISE_BY, Standardiser, by_dataset, fit_by_dataset
from tcnvae.data.orientation import check_orientation_settings, orient
from tcnvae.data.recordings import Recording
from tcnvae.data.sources import arrays, available_sources, load_source
from tcnvae.data.splits import (
    SubjectFold,
    leave_one_domain_out,
    split_by_subject,
    uci_har_official,
    unlabelled_target_split,
    with_subject_groups,
)
from tcnvae.data.taxonomy import check_name, label_space
from tcnvae.data.unlabelled import UnlabelledWindows, join, unlabelled_stretches
from tcnvae.data.windows import WindowSet, concat
from tcnvae.settings import FLAG, Check, Setting, choice, declared, defaults, number, problems

logger = logging.getLogger(__name__)

SPLIT_FORMS = ("subject", "loso:<subject>", "lodo:<domain>", "unlabelled:<domain>", "uci_har_official")
DEFAULT_WINDOW_SECONDS = 2.56  # without pre-windowed data and without window_seconds


_FRACTION = number(0, 1, high_open=True)
_POSITIVE = number(0, low_open=True)
_COUNT = number(0, integer=True)


def _mapping_of(kind: str, test: Any = lambda _: True) -> Check:
    return Check(lambda v: isinstance(v, dict) and all(test(item) for item in v.values()), f"a dict of {kind}")


AUGMENTATION: dict[str, Setting] = {
    # On by default: new people hold and move differently. Rotation is off: it helped HAPT by subject and
    # hurt UCI-HAR official (docs/results.md, "Rotation and weight averaging"); "auto" rotates by 15°
    # where the channels hold xyz triples.
    "noise_std": Setting(0.05, None, "Gaussian noise, in units of each channel's training std"),
    "scale_std": Setting(0.1, None, "spread of a per-window, per-channel gain around 1"),
    "rotation_deg": Setting(0.0, None, "largest angle of each window's random rotation, 'auto', or 'sphere' "
                            "(orientations uniform over all, every xyz triple alike)"),
    "time_warp": Setting(0.1, None, "largest relative change of playback speed within a window"),
}
"""The training augmentation's settings (trial config keys ``augment_<name>``), checked by
:class:`~tcnvae.data.augment.Augmentation`."""


@dataclass
class DataConfig:
    """Everything that decides which windows a run trains and is evaluated on. Each field is declared
    once, with its default, check and help (:func:`~tcnvae.settings.declared`); the trial config's data
    keys are these (tcnvae.tuning.config)."""

    datasets: list[str] = Setting(["synthetic"], None, "the sources to pool, by registered name").field()
    paths: dict[str, str | list[str]] = Setting({}, _mapping_of("dataset name -> file or folder"),
                                                "each dataset's file or folder (arrays: a list of files, each its "
                                                "own dataset); absent: the source's cache").field()
    source_options: dict[str, dict[str, Any]] = Setting(
        {}, _mapping_of("dataset name -> options", lambda options: isinstance(options, dict)),
        "each dataset's options of its load(), e.g. synthetic subjects_per_domain").field()
    cache_dir: str | None = Setting(None, Check(lambda v: v is None or isinstance(v, (str, PathLike)),
                                                "None or a folder"), "where sources keep downloads").field()
    download: bool = Setting(False, FLAG, "download a source's data when it is not there").field()
    channel_set: str | list[str] = Setting("acc_gyro", None, "a named channel set (harmonise.CHANNEL_SETS) or a "
                                           "list of channel names").field()
    sample_rate: float = Setting(50.0, _POSITIVE, "the common sample rate in Hz").field()
    window_seconds: float | None = Setting(None, number(0, low_open=True, optional=True),
                                           f"window duration; None: pre-windowed data's own, else "
                                           f"{DEFAULT_WINDOW_SECONDS} s").field()
    crop_windows: bool = Setting(False, FLAG, "centre-crop pre-windowed data longer than window_seconds "
                                 "(else an error)").field()
    step_seconds: float = Setting(1.28, _POSITIVE, "step between windows cut from recordings").field()
    min_purity: float = Setting(0.8, number(0, 1, low_open=True), "share of a window its activity must "
                                "cover").field()
    domain_by: str = Setting("dataset", None, "what a domain is: dataset, subject_group, or another "
                             "window attribute").field()
    split: str = Setting("subject", None, f"how people are split: one of {', '.join(SPLIT_FORMS)}").field()
    target_test_fraction: float = Setting(0.5, number(0, 1, low_open=True, high_open=True),
                                          "split='unlabelled:<domain>': share of the target's subjects tested "
                                          "on").field()
    transductive: bool = Setting(False, FLAG, "split='unlabelled:<domain>': every target window is unlabelled "
                                 "and test data (one target person will do)").field()
    target_labelled_people: int = Setting(0, _COUNT, "split='lodo:<domain>': how many of the target's people "
                                          "(drawn by seed) are labelled training data; the test is its other "
                                          "people").field()
    same_people: dict[str, str] = Setting({}, _mapping_of("dataset name -> dataset name", lambda v: isinstance(v, str)),
                                          "dataset -> the dataset whose people it recorded, under the same subject "
                                          "ids: they are split as one set of people (tcnvae.data.checks)").field()
    subject_groups: dict[str, list[str]] = Setting(
        {}, _mapping_of("group name -> list of subject ids", lambda members: isinstance(members, list)),
        "group -> subject ids, for domain_by='subject_group' (splits.with_subject_groups)").field()
    unlabelled_stretches: bool = Setting(False, FLAG, "recordings' unlabelled stretches of training-side "
                                         "people join training, unlabelled").field()
    # With 3 validation people one odd person decides the winner: a fifth of each dataset's people.
    val_fraction: float = Setting(0.2, _FRACTION, "share of each dataset's subjects that validates").field()
    val_folds: int = Setting(0, _COUNT, "0: validation is val_fraction's draw; K >= 2: fold val_fold of K "
                             "folds of people (splits.SubjectFold)").field()
    val_fold: int = Setting(0, _COUNT, "which of the val_folds folds validates").field()
    test_fraction: float = Setting(0.2, _FRACTION, "share of each dataset's subjects held out for the test, "
                                   "with split='subject'").field()
    seed: int = Setting(0, _COUNT, "seed of the split, the loaders' shuffling and the model's "
                        "initialisation").field()
    batch_size: int = LOADER_SETTINGS["batch_size"].field()
    sampling: str = LOADER_SETTINGS["sampling"].field()
    augmentation: Augmentation = field(default_factory=lambda: Augmentation(**defaults(AUGMENTATION)))
    activities: list[str] | None = Setting(None, None, "keep only these activities (None: all the datasets "
                                           "have)").field()
    # Orientation and dataset robustness (docs/cross_dataset.md); off until leave-one-dataset-out figures say.
    gravity_align: bool = Setting(False, FLAG, "rotate each window so its mean acceleration points along +z "
                                  "(device orientation removed, but the heading; tcnvae.data.orientation)").field()
    magnitude_channels: bool = Setting(False, FLAG, "add each xyz triple's norm as a channel (acc_mag, gyro_mag): "
                                       "orientation-invariant").field()
    normalise_by: str = Setting("pooled", choice(NORMALISE_BY), "pooled: one standardisation from the training "
                                "windows; dataset: each dataset by its own training-side windows' statistics (a "
                                "dataset without any, a held-out target, by its own windows, label-free)").field()
    activities_present: list[str] | None = Setting(None, None, "the activities the test data (a deployment) "
                                                   "holds: other activities' probabilities are masked out when "
                                                   "scoring and in predict (None: every activity)").field()

    def validate(self) -> DataConfig:
        """Raise a ValueError naming every setting that fails its declared check, else the first broken
        rule between settings; return self so calls can chain."""
        if isinstance(self.augmentation, dict):
            self.augmentation = Augmentation.from_dict(self.augmentation)
        bad = problems(data_settings(), {item.name: getattr(self, item.name) for item in fields(self)})
        if bad:
            raise ValueError("; ".join(bad))
        if not self.datasets:
            raise ValueError("datasets is empty; name at least one source, e.g. ['synthetic']")
        known = available_sources()
        unknown = [name for name in self.datasets if name not in known]
        if unknown:
            raise ValueError(f"unknown datasets {unknown}; known sources: {', '.join(known)}")
        if len(set(self.datasets)) != len(self.datasets):
            raise ValueError(f"datasets {self.datasets} name a dataset twice")
        for option, mapping in (("paths", self.paths), ("source_options", self.source_options)):
            stray = sorted(set(mapping) - set(self.datasets))
            if stray:
                raise ValueError(f"{option} has entries for {stray}, which are not in datasets")
        for name, path in self.paths.items():
            if isinstance(path, list) and name != arrays.NAME:
                raise ValueError(f"paths: {name} is one dataset, of one file or folder, got {len(path)} paths "
                                 f"{path}; only {arrays.NAME} takes several files (each its own dataset)")
            if isinstance(path, list) and (not path or len(set(map(str, path))) != len(path)):
                raise ValueError(f"paths: {name} lists {path}: expected one or more files, each once")
        if isinstance(self.channel_set, str) and self.channel_set not in CHANNEL_SETS:
            raise ValueError(
                f"unknown channel_set {self.channel_set!r}; known: {', '.join(CHANNEL_SETS)}"
            )
        self.augmentation.for_channels(channel_set_names(self.channel_set))  # a rotation needs xyz triples
        if self.window_seconds is not None and self.window_length < 2:
            raise ValueError(
                f"window_seconds {self.window_seconds} at {self.sample_rate} Hz is under 2 samples"
            )
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"val_fraction + test_fraction must be below 1, got "
                f"{self.val_fraction} + {self.test_fraction}"
            )
        if self.val_folds or self.val_fold:
            if not (self.val_folds >= 2 and self.val_fold < self.val_folds):
                raise ValueError(f"val_folds={self.val_folds!r}, val_fold={self.val_fold!r}: expected val_folds 0 "
                                 "(validation by val_fraction) or an integer >= 2 with 0 <= val_fold < val_folds")
        kind, colon, target = self.split.partition(":")
        plain = kind in ("subject", "uci_har_official") and not colon
        targeted = kind in ("loso", "lodo", "unlabelled") and bool(target)
        if not (plain or targeted):
            raise ValueError(f"unknown split {self.split!r}; use one of {', '.join(SPLIT_FORMS)}")
        if kind == "uci_har_official" and "uci_har" not in self.datasets:
            raise ValueError("split 'uci_har_official' needs 'uci_har' in datasets")
        if self.transductive and kind != "unlabelled":
            raise ValueError(f"transductive=True needs split 'unlabelled:<domain>' (adapt='unlabelled' with a "
                             f"target_domain), got split {self.split!r}: only an unlabelled target is adapted on")
        if self.target_labelled_people and kind != "lodo":
            raise ValueError(f"target_labelled_people={self.target_labelled_people} needs split 'lodo:<domain>' (the "
                             f"held-out target, some of whose people are labelled), got split {self.split!r}: set "
                             "split=lodo:NAME (or target_domain=NAME), or target_labelled_people=0")
        if self.activities is not None:
            if not self.activities:
                raise ValueError("activities is an empty list; use None to keep every activity")
            for name in self.activities:
                check_name(name)
        if self.activities_present is not None:
            if not isinstance(self.activities_present, list) or not self.activities_present:
                raise ValueError(f"activities_present={self.activities_present!r}: expected None or a non-empty "
                                 "list of activity names (the ones the test data holds)")
            for name in self.activities_present:
                check_name(name)
        check_orientation_settings(channel_set_names(self.channel_set), gravity_align=self.gravity_align,
                                   magnitude_channels=self.magnitude_channels)
        return self

    @property
    def window_length(self) -> int:
        """Samples per window (once ``window_seconds`` is known: :func:`prepare` resolves it)."""
        if self.window_seconds is None:
            raise ValueError("window_seconds is not resolved yet (None: it comes from the data)")
        return int(round(self.window_seconds * self.sample_rate))

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (JSON- and Ray-Tune-friendly)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DataConfig:
        names = {item.name for item in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown data options {unknown}; known: {sorted(names)}")
        values = dict(values)
        if "augmentation" in values and not isinstance(values["augmentation"], Augmentation):
            values["augmentation"] = Augmentation.from_dict(values["augmentation"])
        return cls(**values)


def data_settings() -> dict[str, Setting]:
    """Each declared field of :class:`DataConfig` (all but ``augmentation``: :data:`AUGMENTATION`)."""
    return {item.name: declared(item) for item in fields(DataConfig) if declared(item) is not None}


def restrict_activities(ws: WindowSet, names: list[str]) -> WindowSet:
    """Only the windows of activities ``names``, re-indexed into that (canonical) label space."""
    target = label_space(names)
    keep = np.isin(np.asarray(ws.activity_names)[ws.activity], target) if len(ws) else np.zeros(0, bool)
    remap = np.array([target.index(a) if a in target else -1 for a in ws.activity_names], dtype=np.int64)
    kept = ws.subset(keep)
    return replace(kept, activity=remap[kept.activity] if len(kept) else kept.activity, activity_names=target)


Loaded = WindowSet | list[Recording]


def _load_datasets(config: DataConfig) -> dict[str, Loaded]:
    """Every configured source's data, by name; several arrays files (a list in ``paths``) each by its own
    dataset's name (:func:`tcnvae.data.sources.arrays.load_files`)."""
    loaded: dict[str, Loaded] = {}
    files: dict[str, Loaded] = {}
    for name in config.datasets:
        path, options = config.paths.get(name), config.source_options.get(name, {})
        if name == arrays.NAME and isinstance(path, list) and len(path) > 1:
            files = arrays.load_files(path, **options)
            continue
        path = path[0] if isinstance(path, list) else path
        data = load_source(name, path=path, cache_dir=config.cache_dir, download=config.download, **options)
        if not isinstance(data, WindowSet) and (not data or not all(isinstance(r, Recording) for r in data)):
            raise ValueError(f"source {name!r} returned no recordings (got {type(data).__name__})")
        loaded[name] = data
    others = {dataset: name for name, data in loaded.items() for dataset in _dataset_names(data)}
    for key, data in files.items():
        clash = sorted(set(_dataset_names(data)) & set(others))
        if clash:
            raise ValueError(f"arrays file {key} holds datasets {clash}, as {others[clash[0]]} does: their people "
                             "would merge; rename the file, or save it with its own name, np.savez(..., "
                             "datasets='NAME')")
    return {**loaded, **files}


def _dataset_names(data: Loaded) -> set[str]:
    return set(data.dataset.tolist()) if isinstance(data, WindowSet) else {r.dataset for r in data}


def _duration(windows: WindowSet) -> float:
    return windows.window_length / windows.sample_rate


def resolve_window_seconds(config: DataConfig, loaded: dict[str, Loaded]) -> DataConfig:
    """``config`` with ``window_seconds`` set by the pre-windowed rule (module docstring)."""
    durations = {name: _duration(data) for name, data in loaded.items() if isinstance(data, WindowSet)}
    if config.window_seconds is not None:
        return config
    if len({round(d, 6) for d in durations.values()}) > 1:
        spans = ", ".join(f"{name} {seconds:g} s" for name, seconds in durations.items())
        raise ValueError(
            f"pre-windowed datasets differ in duration ({spans}): set window_seconds to one length, "
            "and crop_windows=true to centre-crop the longer windows to it"
        )
    if not durations:
        return replace(config, window_seconds=DEFAULT_WINDOW_SECONDS)
    seconds = next(iter(durations.values()))
    logger.info("window_seconds not set: every window spans %g s, the duration of pre-windowed %s",
                seconds, ", ".join(durations))
    return replace(config, window_seconds=seconds)


def _harmonise_windows(config: DataConfig, name: str, windows: WindowSet) -> WindowSet:
    """Pre-windowed data at the common rate and length: resampled (logged), cropped only when asked."""
    seconds = _duration(windows)
    if seconds > config.window_seconds + 0.5 / windows.sample_rate:
        kept = config.window_seconds / seconds
        if not config.crop_windows:
            raise ValueError(
                f"{name}'s windows span {seconds:g} s ({windows.window_length} samples at {windows.sample_rate:g} Hz) "
                f"but window_seconds is {config.window_seconds:g}: fitting them would crop {1 - kept:.0%} of each "
                "window. Leave window_seconds unset (null) so windows keep their own duration, or set "
                "crop_windows=true to centre-crop them"
            )
        logger.warning("crop_windows: %s's %g s windows centre-cropped to %g s (%.0f%% of each kept)",
                       name, seconds, config.window_seconds, 100 * kept)
    if windows.sample_rate != config.sample_rate:
        logger.info("%s: pre-windowed at %g Hz, resampled to sample_rate %g Hz (set sample_rate=%g to keep its rate)",
                    name, windows.sample_rate, config.sample_rate, windows.sample_rate)
    return window_windowset(windows, config.sample_rate, config.window_length, config.channel_set)


def _harmonise(config: DataConfig, name: str, loaded: Loaded) -> WindowSet:
    if isinstance(loaded, WindowSet):
        return _harmonise_windows(config, name, loaded)
    return window_recordings(
        loaded,
        config.window_seconds,
        config.step_seconds,
        config.sample_rate,
        config.channel_set,
        min_purity=config.min_purity,
    )


def build_windows(config: DataConfig) -> WindowSet:
    """Every configured dataset, harmonised and pooled, restricted to ``config.activities``."""
    return _build(config)[1]


def _oriented(config: DataConfig, windows: WindowSet) -> WindowSet:
    """``windows`` gravity-aligned and with magnitude channels as the config asks (tcnvae.data.orientation)."""
    signals, names = orient(windows.signals, windows.channel_names, gravity_align=config.gravity_align,
                            magnitude_channels=config.magnitude_channels)
    return replace(windows, signals=signals, channel_names=names)


def _build(config: DataConfig) -> tuple[DataConfig, WindowSet]:
    """The config with ``window_seconds`` resolved, and the pooled windows."""
    config.validate()
    loaded = _load_datasets(config)
    check_sources(config, loaded)  # units, rates, labels, shared people: before anything is resampled
    config = resolve_window_seconds(config, loaded)
    windows = _oriented(config, concat([_harmonise(config, name, data) for name, data in loaded.items()]))
    if config.subject_groups:
        windows = with_subject_groups(windows, config.subject_groups)
    counts = windows.class_counts()
    if config.activities is not None:
        empty = [a for a in label_space(config.activities) if counts.get(a, 0) == 0]
        if empty:
            raise ValueError(
                f"activities {empty} have no windows in datasets {config.datasets} "
                f"(present: {[a for a, n in counts.items() if n]})"
            )
        return config, restrict_activities(windows, config.activities)
    empty = [a for a, n in counts.items() if n == 0]
    if empty:
        logger.info("activities %s have no windows after windowing; left out of the label space", empty)
        return config, restrict_activities(windows, [a for a, n in counts.items() if n])
    return config, windows


def split_windows(windows: WindowSet, config: DataConfig) -> dict[str, np.ndarray]:
    """Index arrays {"train", "val", "test"} for ``config.split`` (see :mod:`tcnvae.data.splits`); datasets of
    the same people are split as one set of people (:mod:`tcnvae.data.checks`)."""
    people, target = people_view(windows, config)
    split = _split_people(people, config, target)
    if config.split == "uci_har_official":  # UCI-HAR's own test windows: a pooled HAPT's of those people go unused
        split["test"] = split["test"][windows.dataset[split["test"]] == "uci_har"]
    check_split(people, split, config)
    return split


def _split_people(windows: WindowSet, config: DataConfig, target: str) -> dict[str, np.ndarray]:
    kind = config.split.partition(":")[0]
    fold = SubjectFold(config.val_fold, config.val_folds) if config.val_folds else None
    if kind == "subject":
        return split_by_subject(windows, config.val_fraction, config.test_fraction, config.seed, val_fold=fold)
    if kind == "uci_har_official":
        return uci_har_official(windows, config.val_fraction, config.seed, val_fold=fold)
    if kind == "unlabelled":
        return unlabelled_target_split(windows, target, by=config.domain_by, val_fraction=config.val_fraction,
                                       target_test_fraction=config.target_test_fraction, seed=config.seed,
                                       val_fold=fold, transductive=config.transductive)
    by = "subject" if kind == "loso" else config.domain_by
    return leave_one_domain_out(windows, target, by=by, val_fraction=config.val_fraction, seed=config.seed,
                                val_fold=fold, labelled_people=config.target_labelled_people)


@dataclass
class PreparedData:
    """Standardised train/val/test windows of one run, and the loaders over them."""

    config: DataConfig
    train: WindowSet
    val: WindowSet
    test: WindowSet
    standardiser: Standardiser
    domain_names: list[str]
    unlabelled: UnlabelledWindows | None = None  # trained on without labels (split "unlabelled:", stretches)
    # normalise_by="dataset": each dataset's own standardisation, applied before ``standardiser``.
    dataset_standardisers: dict[str, Standardiser] | None = None

    @property
    def activity_names(self) -> list[str]:
        return self.train.activity_names

    @property
    def channel_names(self) -> list[str]:
        return self.train.channel_names

    @property
    def window_length(self) -> int:
        return self.train.window_length

    @property
    def num_activities(self) -> int:
        return len(self.activity_names)

    @property
    def num_domains(self) -> int:
        return len(self.domain_names)

    def loader(self, windows: WindowSet, *, augmented: bool = False, unlabelled: UnlabelledWindows | None = None,
               **options: Any) -> WindowLoader:
        """A loader over ``windows`` with this run's domain labelling; ``options`` go to WindowLoader.

        ``unlabelled`` windows join with activity label -1 (see ``WindowLoader.from_windowset``).

        ``augmented`` applies the configured augmentation (in physical units, around this run's
        standardisation) unless ``options`` give their own ``augment``.
        """
        options.setdefault("batch_size", self.config.batch_size)
        options.setdefault("seed", self.config.seed)
        if augmented and self.config.augmentation.active:
            options.setdefault(
                "augment",
                self.config.augmentation.build(
                    self.channel_names, self.standardiser.mean, self.standardiser.std
                ),
            )
        return WindowLoader.from_windowset(
            windows, domain_by=self.config.domain_by, domain_names=self.domain_names, unlabelled=unlabelled, **options
        )

    def train_loader(self, **options: Any) -> WindowLoader:
        """Shuffled, with the configured sampling and augmentation; the unlabelled windows join (label -1)."""
        options.setdefault("shuffle", True)
        options.setdefault("sampling", self.config.sampling)
        return self.loader(self.train, augmented=True, unlabelled=self.unlabelled, **options)

    def val_loader(self, **options: Any) -> WindowLoader:
        """In order, every window once, no augmentation: deterministic evaluation."""
        return self.loader(self.val, **options)

    def test_loader(self, **options: Any) -> WindowLoader:
        return self.loader(self.test, **options)

    def metadata(self) -> dict[str, Any]:
        """Plain-dict description of the data to store with runs and checkpoints."""
        sides = {"train": self.train, "val": self.val, "test": self.test}
        return {
            "activity_names": self.activity_names,
            "activity_index": {name: i for i, name in enumerate(self.activity_names)},
            "domain_by": self.config.domain_by,
            "domain_names": self.domain_names,
            "channel_names": self.channel_names,
            "sample_rate": self.train.sample_rate,
            "window_length": self.window_length,
            "standardiser": self.standardiser.state_dict(),
            "dataset_standardisers": None if self.dataset_standardisers is None else {
                name: standardiser.state_dict() for name, standardiser in self.dataset_standardisers.items()},
            "config": self.config.to_dict(),
            "splits": {
                side: {
                    "windows": len(ws),
                    "subjects": sorted(set(ws.subject.tolist())),
                    "class_counts": ws.class_counts(),
                }
                for side, ws in sides.items()
            },
            # Its labels are not to be used, so not even their counts are recorded.
            "unlabelled": None if self.unlabelled is None else {
                "windows": len(self.unlabelled), "subjects": sorted(set(self.unlabelled.subject.tolist()))},
        }


def _unlabelled_windows(config: DataConfig, windows: WindowSet,
                        split: dict[str, np.ndarray]) -> UnlabelledWindows | None:
    """The windows training uses without labels: an unlabelled target's training side (its labels
    dropped here) and, with ``unlabelled_stretches``, the unlabelled stretches of the recordings of people
    on the training side (never of validation or test people)."""
    parts = []
    if "unlabelled" in split:
        parts.append(UnlabelledWindows.from_windowset(windows.subset(split["unlabelled"])))
    if config.unlabelled_stretches:
        training_people = set(windows.subject[split["train"]].tolist())
        training_people |= set(windows.subject[split.get("unlabelled", np.zeros(0, dtype=np.int64))].tolist())
        stretches = _stretches(config)
        kept = stretches.subset(np.isin(stretches.subject, sorted(training_people)))
        if config.subject_groups:
            owner = {subject: group for group, members in config.subject_groups.items() for subject in members}
            kept.attributes["subject_group"] = np.array([owner[s] for s in kept.subject], dtype=str)
        logger.info("%d unlabelled stretch windows of %d training-side people join training",
                    len(kept), len(set(kept.subject.tolist())))
        parts.append(kept)
    return join(parts) if parts else None


def _stretches(config: DataConfig) -> UnlabelledWindows:
    """Unlabelled-stretch windows of every configured source that gives continuous recordings."""
    parts = []
    for loaded in _load_datasets(config).values():
        if isinstance(loaded, WindowSet):
            continue  # pre-windowed data has no stretches between its windows
        step = max(1, int(round(config.step_seconds * config.sample_rate)))
        parts.append(unlabelled_stretches(loaded, config.window_length, step, config.sample_rate,
                                          config.channel_set, min_share=config.min_purity))
    if not parts:
        raise ValueError(f"unlabelled_stretches: none of {config.datasets} gives continuous recordings "
                         "(pre-windowed sources such as uci_har have no stretches); use e.g. hapt")
    joined = join(parts)
    signals, _ = orient(joined.signals, channel_set_names(config.channel_set), gravity_align=config.gravity_align,
                        magnitude_channels=config.magnitude_channels)
    return joined.with_signals(signals)


def _normalised_by_dataset(windows: WindowSet, split: dict[str, np.ndarray], unlabelled: UnlabelledWindows | None
                           ) -> tuple[WindowSet, UnlabelledWindows | None, dict[str, Standardiser]]:
    """``windows`` and ``unlabelled`` each standardised by its dataset's statistics, fitted on the dataset's
    training-side windows (training and unlabelled) or, for a dataset without any, on all its own windows
    without labels (tcnvae.data.normalise.fit_by_dataset); and those standardisers."""
    parts = [windows] + ([unlabelled] if unlabelled is not None else [])
    training = np.zeros(sum(len(part) for part in parts), dtype=bool)
    training[split["train"]] = True
    training[len(windows):] = True  # the unlabelled windows are all training-side
    standardisers = fit_by_dataset(np.concatenate([part.signals for part in parts]),
                                   np.concatenate([part.dataset.astype(str) for part in parts]), training)
    windows = replace(windows, signals=by_dataset(windows.signals, windows.dataset.astype(str), standardisers))
    if unlabelled is not None:
        unlabelled = unlabelled.with_signals(by_dataset(unlabelled.signals, unlabelled.dataset.astype(str),
                                                        standardisers))
    return windows, unlabelled, standardisers


def prepare(config: DataConfig | None = None) -> PreparedData:
    """Load, harmonise, split by subject and standardise (statistics from the training side only)."""
    config, windows = _build((config or DataConfig()).validate())
    check_activities(windows, config)
    unknown = [name for name in config.activities_present or () if name not in windows.activity_names]
    if unknown:
        raise ValueError(f"activities_present names {unknown}, which {', '.join(config.datasets)} do not hold; "
                         f"their activities: {', '.join(windows.activity_names)}")
    split = split_windows(windows, config)
    if len(split["train"]) == 0:
        raise ValueError(f"split {config.split!r} leaves no training windows")
    train = windows.subset(split["train"])
    missing = [a for a, n in train.class_counts().items() if n == 0]
    if missing:
        logger.warning("activities %s have no training windows under split %r", missing, config.split)
    unlabelled = _unlabelled_windows(config, windows, split)
    dataset_standardisers = None
    if config.normalise_by == "dataset":
        windows, unlabelled, dataset_standardisers = _normalised_by_dataset(windows, split, unlabelled)
        train = windows.subset(split["train"])
    # Statistics from everything training sees: the unlabelled windows' signals included.
    standardiser = Standardiser.fit(
        train if unlabelled is None else np.concatenate([train.signals, unlabelled.signals]))
    _, domain_names = windows.domain_ids(config.domain_by)
    prepared = PreparedData(
        config=config,
        train=standardiser.transform(train),
        val=standardiser.transform(windows.subset(split["val"])),
        test=standardiser.transform(windows.subset(split["test"])),
        standardiser=standardiser,
        domain_names=domain_names,
        unlabelled=None if unlabelled is None else unlabelled.with_signals(standardiser.transform(unlabelled.signals)),
        dataset_standardisers=dataset_standardisers,
    )
    logger.info(
        "prepared %s: %d train, %d val, %d test windows; %d activities, %d domains by %s",
        ", ".join(config.datasets), len(prepared.train), len(prepared.val), len(prepared.test),
        prepared.num_activities, prepared.num_domains, config.domain_by,
    )
    return prepared
