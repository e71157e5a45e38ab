"""`WindowSet`: the one in-memory form every data source produces.

A window set is a stack of fixed-length windows, each carrying its signal, its activity (an index
into ``activity_names``), its dataset and its subject, plus optional per-window attributes (placement,
device, ...). The *domain* the adversarial head learns to ignore is chosen at training time from any of
these groupings (:meth:`WindowSet.domain_ids`), so "domain = dataset" and "domain = subject" are the
same code path.

Subjects are strings prefixed by their dataset (``"uci_har:7"``), so subject 7 of two datasets are
two different people and subject-disjoint splits stay honest across datasets; datasets declared to
hold the same people (HAPT and UCI-HAR) are split as one (:mod:`tcnvae.data.checks`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from tcnvae.data.taxonomy import label_space

DOMAIN_GROUPINGS_BUILTIN = ("dataset", "subject")


@dataclass
class WindowSet:
    signals: np.ndarray  # (N, T, C) float32
    activity: np.ndarray  # (N,) int64, index into activity_names
    activity_names: list[str]
    dataset: np.ndarray  # (N,) str
    subject: np.ndarray  # (N,) str, globally unique ("dataset:id")
    channel_names: list[str]
    sample_rate: float
    attributes: dict[str, np.ndarray] = field(default_factory=dict)  # (N,) str each

    def __post_init__(self) -> None:
        self.signals = np.asarray(self.signals, dtype=np.float32)
        self.activity = np.asarray(self.activity, dtype=np.int64)
        self.dataset = np.asarray(self.dataset).astype(str)
        self.subject = np.asarray(self.subject).astype(str)
        self.activity_names = list(self.activity_names)
        self.channel_names = list(self.channel_names)
        if self.signals.ndim != 3:
            raise ValueError(
                f"signals must be (windows, time, channels), got shape {self.signals.shape}"
            )
        n, _, channels = self.signals.shape
        if channels != len(self.channel_names):
            raise ValueError(
                f"signals have {channels} channels but {len(self.channel_names)} channel names "
                f"were given ({self.channel_names})"
            )
        if self.activity_names != label_space(self.activity_names):
            raise ValueError(
                f"activity_names {self.activity_names} must be known activities in canonical order"
            )
        columns = {"activity": self.activity, "dataset": self.dataset, "subject": self.subject}
        columns.update({f"attribute {k!r}": np.asarray(v) for k, v in self.attributes.items()})
        for name, column in columns.items():
            if column.shape != (n,):
                raise ValueError(f"{name} has shape {column.shape}, expected ({n},) to match signals")
        self.attributes = {k: np.asarray(v).astype(str) for k, v in self.attributes.items()}
        if n and (self.activity.min() < 0 or self.activity.max() >= len(self.activity_names)):
            raise ValueError(
                f"activity indices must lie in [0, {len(self.activity_names)}), "
                f"got [{self.activity.min()}, {self.activity.max()}]"
            )
        if n and not np.isfinite(self.signals).all():
            bad = np.flatnonzero(~np.isfinite(self.signals).all(axis=(1, 2)))
            raise ValueError(
                f"{len(bad)} windows contain NaN or infinite values (first at window {bad[0]}); "
                "clean or drop them before building a WindowSet"
            )

    def __len__(self) -> int:
        return len(self.activity)

    @property
    def window_length(self) -> int:
        return self.signals.shape[1]

    @property
    def num_channels(self) -> int:
        return self.signals.shape[2]

    def subset(self, index: np.ndarray) -> WindowSet:
        """The windows at ``index`` (integer indices or a boolean mask), same label space."""
        return replace(
            self,
            signals=self.signals[index],
            activity=self.activity[index],
            dataset=self.dataset[index],
            subject=self.subject[index],
            attributes={k: v[index] for k, v in self.attributes.items()},
        )

    def with_label_space(self, activity_names: list[str]) -> WindowSet:
        """Re-index activities into a (larger) label space, e.g. the union of several datasets."""
        target = label_space(activity_names)
        missing = sorted(set(self.activity_names) - set(target))
        if missing:
            raise ValueError(f"label space {target} lacks activities present in the data: {missing}")
        remap = np.array([target.index(a) for a in self.activity_names], dtype=np.int64)
        return replace(self, activity=remap[self.activity] if len(self) else self.activity, activity_names=target)

    def grouping(self, by: str) -> np.ndarray:
        """The per-window string column named ``by``: dataset, subject, or an attribute."""
        if by == "dataset":
            return self.dataset
        if by == "subject":
            return self.subject
        if by in self.attributes:
            return self.attributes[by]
        raise ValueError(
            f"unknown domain grouping {by!r}; this data has: "
            f"{', '.join(list(DOMAIN_GROUPINGS_BUILTIN) + sorted(self.attributes))}"
        )

    def domain_ids(self, by: str = "dataset", names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
        """Integer domain labels for grouping ``by`` and the domain names they index.

        Pass ``names`` (e.g. the training side's domain names) to index a validation set the same way;
        windows of a domain not in ``names`` get -1.
        """
        column = self.grouping(by)
        if names is None:
            names = sorted(np.unique(column).tolist())
        lookup = {name: i for i, name in enumerate(names)}
        ids = np.array([lookup.get(v, -1) for v in column], dtype=np.int64)
        return ids, list(names)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.activity, minlength=len(self.activity_names))
        return dict(zip(self.activity_names, counts.tolist()))


def concat(sets: list[WindowSet]) -> WindowSet:
    """Stack window sets of equal window length, channels and rate; labels move to their union."""
    if not sets:
        raise ValueError("concat needs at least one WindowSet")
    first = sets[0]
    for other in sets[1:]:
        if other.channel_names != first.channel_names:
            raise ValueError(
                f"channel mismatch: {other.channel_names} vs {first.channel_names}; "
                "harmonise the channels first"
            )
        if other.window_length != first.window_length or other.sample_rate != first.sample_rate:
            raise ValueError(
                f"window mismatch: {other.window_length} samples at {other.sample_rate} Hz vs "
                f"{first.window_length} at {first.sample_rate} Hz; window all sources alike"
            )
    names = label_space(a for s in sets for a in s.activity_names)
    relabelled = [s.with_label_space(names) for s in sets]
    attribute_keys = set.intersection(*(set(s.attributes) for s in sets))
    return WindowSet(
        signals=np.concatenate([s.signals for s in relabelled]),
        activity=np.concatenate([s.activity for s in relabelled]),
        activity_names=names,
        dataset=np.concatenate([s.dataset for s in relabelled]),
        subject=np.concatenate([s.subject for s in relabelled]),
        channel_names=first.channel_names,
        sample_rate=first.sample_rate,
        attributes={k: np.concatenate([s.attributes[k] for s in relabelled]) for k in attribute_keys},
    )
