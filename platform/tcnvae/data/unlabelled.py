"""`UnlabelledWindows`: windows a run trains on without labels, and the recordings' unlabelled stretches.

Two kinds of window reach training without a label: an adaptation target's training-side windows, whose
labels exist but must not be used, and the stretches of continuous recordings that nobody labelled
(HAPT's recordings are about a third unlabelled). Both are held here *without* an activity column, so no
code path can read a label that is not to be used; the loader gives them activity -1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tcnvae.data.harmonise import resample, select_channels
from tcnvae.data.recordings import UNLABELLED, Recording
from tcnvae.data.windows import WindowSet


@dataclass
class UnlabelledWindows:
    """Signals (N, T, C) with the columns a domain grouping reads: dataset, subject and attributes."""

    signals: np.ndarray
    dataset: np.ndarray
    subject: np.ndarray
    attributes: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_windowset(cls, ws: WindowSet) -> UnlabelledWindows:
        """``ws`` with its activity labels dropped."""
        return cls(ws.signals, ws.dataset, ws.subject, dict(ws.attributes))

    def __len__(self) -> int:
        return len(self.signals)

    def subset(self, index: np.ndarray) -> UnlabelledWindows:
        return UnlabelledWindows(self.signals[index], self.dataset[index], self.subject[index],
                                 {key: column[index] for key, column in self.attributes.items()})

    def grouping(self, by: str) -> np.ndarray:
        """The per-window column named ``by``, as :meth:`WindowSet.grouping`."""
        columns = {"dataset": self.dataset, "subject": self.subject, **self.attributes}
        if by not in columns:
            raise ValueError(f"unknown domain grouping {by!r} for the unlabelled windows; they have: "
                             f"{', '.join(columns)}")
        return columns[by]

    def domain_ids(self, by: str, names: list[str]) -> np.ndarray:
        """Indices into ``names`` of each window's ``by`` grouping (-1 for a name not in ``names``)."""
        lookup = {name: i for i, name in enumerate(names)}
        return np.array([lookup.get(value, -1) for value in self.grouping(by)], dtype=np.int64)

    def with_signals(self, signals: np.ndarray) -> UnlabelledWindows:
        return UnlabelledWindows(signals, self.dataset, self.subject, self.attributes)


def join(parts: Sequence[UnlabelledWindows]) -> UnlabelledWindows:
    """The windows of every part, with the attributes all parts have."""
    keys = set.intersection(*(set(part.attributes) for part in parts))
    return UnlabelledWindows(np.concatenate([part.signals for part in parts]),
                             np.concatenate([part.dataset for part in parts]),
                             np.concatenate([part.subject for part in parts]),
                             {key: np.concatenate([part.attributes[key] for part in parts]) for key in keys})


def unlabelled_stretches(recordings: Sequence[Recording], window: int, step: int, sample_rate: float,
                         channel_set: str | Sequence[str], min_share: float = 0.8) -> UnlabelledWindows:
    """Windows of ``window`` samples every ``step`` at ``sample_rate`` Hz in which at least ``min_share``
    of the samples are unlabelled: the complement of ``window_recordings``'s labelled windows."""
    signals, dataset, subject = [], [], []
    attribute_keys = set.intersection(*(set(r.attributes) for r in recordings)) if recordings else set()
    attributes: dict[str, list[np.ndarray]] = {key: [] for key in attribute_keys}
    for recording in recordings:
        prepared = resample(select_channels(recording, channel_set), sample_rate)
        if len(prepared) < window:
            continue
        starts = np.arange(0, len(prepared) - window + 1, step)
        unlabelled = np.concatenate([[0], np.cumsum(prepared.labels == UNLABELLED)])
        keep = starts[(unlabelled[starts + window] - unlabelled[starts]) >= min_share * window - 1e-9]
        signals.append(prepared.signal[keep[:, None] + np.arange(window)[None, :]])
        dataset.append(np.full(len(keep), prepared.dataset))
        subject.append(np.full(len(keep), prepared.subject))
        for key in attribute_keys:
            attributes[key].append(np.full(len(keep), prepared.attributes[key]))
    if not signals:
        raise ValueError("no recording is as long as one window; there are no unlabelled stretches to use")
    return UnlabelledWindows(np.concatenate(signals).astype(np.float32), np.concatenate(dataset).astype(str),
                             np.concatenate(subject).astype(str),
                             {key: np.concatenate(values).astype(str) for key, values in attributes.items()})
