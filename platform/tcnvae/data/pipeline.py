"""From a `DataConfig` to loaders: what a training run calls to get its data.

``prepare(config)`` loads every dataset through the source registry, harmonises them to one rate,
channel set and window length, pools them, splits by subject, fits the standardiser on the training
side only and returns a :class:`PreparedData` that makes loaders and a plain-dict ``metadata()`` to
save with runs and checkpoints (so a checkpoint knows its activity order, domains, channels and
normalisation).

Pre-windowed data (UCI-HAR, an arrays file of (N, T, C) windows) keeps its own duration: with
``window_seconds=None`` (the default) the windows of every dataset are cut to the pre-windowed
data's duration (2.56 s without any pre-windowed dataset), logged. Windows are resampled to
``sample_rate`` (logged), never cropped unless ``crop_windows=True`` asks for it: a pre-windowed set
longer than an explicit ``window_seconds`` is otherwise an error that says how much would be lost.

Domain labels index *all* domains of the pooled data (sorted names), not only those in training, so
a held-out domain (``split="lodo:<name>"``) keeps a valid label and shows up by name in per-domain
metrics; the model's domain head simply never sees it during training. With
``split="unlabelled:<name>"`` the domain head does see it: the target's training-side windows join
training without their labels (``PreparedData.unlabelled``), for unsupervised domain adaptation.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from tcnvae.data.augment import Augmentation
from tcnvae.data.harmonise import CHANNEL_SETS, channel_set_names, window_recordings, window_windowset
from tcnvae.data.loaders import SAMPLING_MODES, WindowLoader
from tcnvae.data.normalise import Standardiser
from tcnvae.data.recordings import Recording
from tcnvae.data.sources import available_sources, load_source
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

logger = logging.getLogger(__name__)

SPLIT_FORMS = ("subject", "loso:<subject>", "lodo:<domain>", "unlabelled:<domain>", "uci_har_official")
DEFAULT_WINDOW_SECONDS = 2.56  # without pre-windowed data and without window_seconds


@dataclass
class DataConfig:
    """Everything that decides which windows a run trains and is evaluated on."""

    datasets: list[str] = field(default_factory=lambda: ["synthetic"])
    paths: dict[str, str] = field(default_factory=dict)  # dataset -> file or folder
    source_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # dataset -> load() options
    cache_dir: str | None = None
    download: bool = False
    channel_set: str | list[str] = "acc_gyro"
    sample_rate: float = 50.0
    window_seconds: float | None = None  # None: pre-windowed data's own duration, else DEFAULT_WINDOW_SECONDS
    crop_windows: bool = False  # centre-crop pre-windowed data longer than window_seconds (else an error)
    step_seconds: float = 1.28
    min_purity: float = 0.8
    domain_by: str = "dataset"
    split: str = "subject"  # one of SPLIT_FORMS
    target_test_fraction: float = 0.5  # split="unlabelled:<domain>": share of the target's subjects tested on
    transductive: bool = False  # split="unlabelled:<domain>": every target window is unlabelled and test data
    subject_groups: dict[str, list[str]] = field(default_factory=dict)  # group -> subjects; see with_subject_groups
    unlabelled_stretches: bool = False  # recordings' unlabelled stretches of training-side people join, unlabelled
    val_fraction: float = 0.15  # of subjects, per dataset
    # 0: validation is val_fraction's draw; K >= 2: fold val_fold of K folds of people (tcnvae.data.splits.SubjectFold)
    val_folds: int = 0
    val_fold: int = 0
    test_fraction: float = 0.2  # of subjects, per dataset; only for split="subject"
    seed: int = 0  # of the split and of the training loader's shuffling
    batch_size: int = 64
    sampling: str = "uniform"
    augmentation: Augmentation = field(default_factory=Augmentation)
    activities: list[str] | None = None  # keep only these (None: all the datasets have)

    def validate(self) -> DataConfig:
        """Raise a ValueError naming the first bad setting; return self so calls can chain."""
        if isinstance(self.augmentation, dict):
            self.augmentation = Augmentation.from_dict(self.augmentation)
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
        if isinstance(self.channel_set, str) and self.channel_set not in CHANNEL_SETS:
            raise ValueError(
                f"unknown channel_set {self.channel_set!r}; known: {', '.join(CHANNEL_SETS)}"
            )
        self.augmentation.for_channels(channel_set_names(self.channel_set))  # a rotation needs xyz triples
        for name in ("sample_rate", "window_seconds", "step_seconds"):
            value = getattr(self, name)
            if not (value is None and name == "window_seconds") and not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.window_seconds is not None and self.window_length < 2:
            raise ValueError(
                f"window_seconds {self.window_seconds} at {self.sample_rate} Hz is under 2 samples"
            )
        if not 0 < self.min_purity <= 1:
            raise ValueError(f"min_purity must lie in (0, 1], got {self.min_purity}")
        for name in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self, name)}")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"val_fraction + test_fraction must be below 1, got "
                f"{self.val_fraction} + {self.test_fraction}"
            )
        if self.val_folds or self.val_fold:
            folds_ok = isinstance(self.val_folds, int) and self.val_folds >= 2
            if not (folds_ok and isinstance(self.val_fold, int) and 0 <= self.val_fold < self.val_folds):
                raise ValueError(f"val_folds={self.val_folds!r}, val_fold={self.val_fold!r}: expected val_folds 0 "
                                 "(validation by val_fraction) or an integer >= 2 with 0 <= val_fold < val_folds")
        kind, colon, target = self.split.partition(":")
        plain = kind in ("subject", "uci_har_official") and not colon
        targeted = kind in ("loso", "lodo", "unlabelled") and bool(target)
        if not (plain or targeted):
            raise ValueError(f"unknown split {self.split!r}; use one of {', '.join(SPLIT_FORMS)}")
        if kind == "uci_har_official" and "uci_har" not in self.datasets:
            raise ValueError("split 'uci_har_official' needs 'uci_har' in datasets")
        if not 0 < self.target_test_fraction < 1:
            raise ValueError(f"target_test_fraction must lie in (0, 1), got {self.target_test_fraction}")
        if self.transductive not in (True, False):
            raise ValueError(f"transductive must be True or False, got {self.transductive!r}")
        if self.transductive and kind != "unlabelled":
            raise ValueError(f"transductive=True needs split 'unlabelled:<domain>' (adapt='unlabelled' with a "
                             f"target_domain), got split {self.split!r}: only an unlabelled target is adapted on")
        if not isinstance(self.subject_groups, dict) or not all(
            isinstance(members, list) for members in self.subject_groups.values()
        ):
            raise ValueError(f"subject_groups must map group names to lists of subject ids, got {self.subject_groups!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.sampling not in SAMPLING_MODES:
            raise ValueError(f"unknown sampling {self.sampling!r}; use one of {', '.join(SAMPLING_MODES)}")
        if self.activities is not None:
            if not self.activities:
                raise ValueError("activities is an empty list; use None to keep every activity")
            for name in self.activities:
                check_name(name)
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


def restrict_activities(ws: WindowSet, names: list[str]) -> WindowSet:
    """Only the windows of activities ``names``, re-indexed into that (canonical) label space."""
    target = label_space(names)
    keep = np.isin(np.asarray(ws.activity_names)[ws.activity], target) if len(ws) else np.zeros(0, bool)
    remap = np.array([target.index(a) if a in target else -1 for a in ws.activity_names], dtype=np.int64)
    kept = ws.subset(keep)
    return replace(kept, activity=remap[kept.activity] if len(kept) else kept.activity, activity_names=target)


Loaded = WindowSet | list[Recording]


def _load_dataset(config: DataConfig, name: str) -> Loaded:
    loaded = load_source(
        name,
        path=config.paths.get(name),
        cache_dir=config.cache_dir,
        download=config.download,
        **config.source_options.get(name, {}),
    )
    if not isinstance(loaded, WindowSet) and (not loaded or not all(isinstance(r, Recording) for r in loaded)):
        raise ValueError(f"source {name!r} returned no recordings (got {type(loaded).__name__})")
    return loaded


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


def _build(config: DataConfig) -> tuple[DataConfig, WindowSet]:
    """The config with ``window_seconds`` resolved, and the pooled windows."""
    config.validate()
    loaded = {name: _load_dataset(config, name) for name in config.datasets}
    config = resolve_window_seconds(config, loaded)
    windows = concat([_harmonise(config, name, data) for name, data in loaded.items()])
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
    """Index arrays {"train", "val", "test"} for ``config.split`` (see :mod:`tcnvae.data.splits`)."""
    kind, _, target = config.split.partition(":")
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
                                val_fold=fold)


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
    for name in config.datasets:
        loaded = load_source(name, path=config.paths.get(name), cache_dir=config.cache_dir,
                             download=config.download, **config.source_options.get(name, {}))
        if isinstance(loaded, WindowSet):
            continue  # pre-windowed data has no stretches between its windows
        step = max(1, int(round(config.step_seconds * config.sample_rate)))
        parts.append(unlabelled_stretches(loaded, config.window_length, step, config.sample_rate,
                                          config.channel_set, min_share=config.min_purity))
    if not parts:
        raise ValueError(f"unlabelled_stretches: none of {config.datasets} gives continuous recordings "
                         "(pre-windowed sources such as uci_har have no stretches); use e.g. hapt")
    return join(parts)


def prepare(config: DataConfig | None = None) -> PreparedData:
    """Load, harmonise, split by subject and standardise (statistics from the training side only)."""
    config, windows = _build((config or DataConfig()).validate())
    split = split_windows(windows, config)
    if len(split["train"]) == 0:
        raise ValueError(f"split {config.split!r} leaves no training windows")
    train = windows.subset(split["train"])
    missing = [a for a, n in train.class_counts().items() if n == 0]
    if missing:
        logger.warning("activities %s have no training windows under split %r", missing, config.split)
    unlabelled = _unlabelled_windows(config, windows, split)
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
    )
    logger.info(
        "prepared %s: %d train, %d val, %d test windows; %d activities, %d domains by %s",
        ", ".join(config.datasets), len(prepared.train), len(prepared.val), len(prepared.test),
        prepared.num_activities, prepared.num_domains, config.domain_by,
    )
    return prepared
