"""Per-channel standardisation fitted on training windows only.

The replaced system fitted its scaler on all data before splitting, so test statistics leaked into
training. A :class:`Standardiser` is fitted on the training side and then applied unchanged to
validation, test and inference data; its state is plain lists so it is saved with every run and
checkpoint and the same transform is applied when a model is reused.

``normalise_by="dataset"`` (a data setting; :data:`NORMALISE_BY`) standardises each pooled dataset by its
own statistics first (:func:`fit_by_dataset`, :func:`by_dataset`), as per-domain batch-normalisation
statistics do (AdaBN, docs/cross_dataset.md): a dataset's device, placement and units then no longer
shift its inputs as a whole. Each dataset's statistics come from its training-side windows only; a
dataset without any (a held-out target) is standardised by its own windows' statistics, read without
their labels: transductive, as a deployed model standardising a new user's recording by itself is.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np

from tcnvae.data.windows import WindowSet

logger = logging.getLogger(__name__)

STD_FLOOR = 1e-6
NORMALISE_BY = ("pooled", "dataset")
"""``normalise_by``: one standardisation fitted on the pooled training windows (today's), or each dataset
by its own statistics first (module docstring)."""
Data = TypeVar("Data", np.ndarray, WindowSet)


def _as_array(data: np.ndarray | WindowSet) -> np.ndarray:
    return data.signals if isinstance(data, WindowSet) else np.asarray(data)


class Standardiser:
    """Subtracts each channel's training mean and divides by its training standard deviation."""

    def __init__(
        self,
        mean: np.ndarray | list[float],
        std: np.ndarray | list[float],
        channel_names: list[str] | None = None,
    ) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        self.channel_names = None if channel_names is None else list(channel_names)
        if self.mean.shape != self.std.shape or self.mean.ndim != 1:
            raise ValueError(
                f"mean and std must be equal-length vectors, got {self.mean.shape} and {self.std.shape}"
            )
        if self.channel_names is not None and len(self.channel_names) != len(self.mean):
            raise ValueError(
                f"{len(self.channel_names)} channel names for {len(self.mean)} channel statistics"
            )
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all() and (self.std > 0).all()):
            raise ValueError(f"standardiser statistics must be finite with std > 0: {self.std}")

    @classmethod
    def fit(cls, data: np.ndarray | WindowSet) -> Standardiser:
        """Statistics of ``data``: windows (N, T, C), samples (M, C), or a WindowSet.

        A channel without variance (a dead axis) would be divided by zero; its std becomes 1 so it
        passes through centred, and the channel is named in a warning.
        """
        array = _as_array(data)
        names = data.channel_names if isinstance(data, WindowSet) else None
        if array.ndim not in (2, 3) or array.size == 0:
            raise ValueError(
                f"fit needs non-empty windows (N, T, C) or samples (M, C), got shape {array.shape}"
            )
        flat = array.reshape(-1, array.shape[-1]).astype(np.float64)
        if not np.isfinite(flat).all():
            raise ValueError("fit data contain NaN or infinite values")
        mean, std = flat.mean(axis=0), flat.std(axis=0)
        dead = np.flatnonzero(std < STD_FLOOR)
        if len(dead):
            labels = [names[i] if names else str(i) for i in dead]
            logger.warning("channels %s have no variance in the fit data; not scaling them", labels)
            std[dead] = 1.0
        return cls(mean, std, names)

    @property
    def num_channels(self) -> int:
        return len(self.mean)

    def _check(self, array: np.ndarray, channel_names: list[str] | None) -> None:
        if array.shape[-1] != self.num_channels:
            raise ValueError(
                f"data have {array.shape[-1]} channels, the standardiser was fitted on "
                f"{self.num_channels} ({self.channel_names or 'unnamed'})"
            )
        if channel_names is not None and self.channel_names is not None:
            if channel_names != self.channel_names:
                raise ValueError(
                    f"data channels {channel_names} differ from the fitted channels {self.channel_names}"
                )

    def transform(self, data: Data) -> Data:
        """Standardised copy of ``data``, of the same kind (array or WindowSet)."""
        array = _as_array(data)
        self._check(array, data.channel_names if isinstance(data, WindowSet) else None)
        scaled = ((array - self.mean) / self.std).astype(np.float32)
        if not isinstance(data, WindowSet):
            return scaled
        return replace(data, signals=scaled)

    def state_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "channel_names": self.channel_names,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Standardiser:
        missing = {"mean", "std"} - set(state)
        if missing:
            raise ValueError(f"standardiser state lacks {sorted(missing)}; got keys {sorted(state)}")
        return cls(state["mean"], state["std"], state.get("channel_names"))


def fit_by_dataset(signals: np.ndarray, dataset: np.ndarray, training: np.ndarray) -> dict[str, Standardiser]:
    """A :class:`Standardiser` per dataset of windows ``signals`` (N, T, C) whose datasets are ``dataset``,
    fitted on its windows marked ``training`` (a boolean mask: the training side, labelled or not); a
    dataset with no training window is fitted on all of its own windows, label-free (logged)."""
    fitted = {}
    for name in sorted(set(np.asarray(dataset).tolist())):
        own = np.asarray(dataset) == name
        fit_on = own & training
        if not fit_on.any():
            logger.warning("normalise_by=dataset: %s has no training-side windows; standardised by the statistics "
                           "of its own %d windows, without their labels (transductive)", name, int(own.sum()))
            fit_on = own
        fitted[name] = Standardiser.fit(signals[fit_on])
    return fitted


def by_dataset(signals: np.ndarray, dataset: np.ndarray, standardisers: dict[str, Standardiser]) -> np.ndarray:
    """Windows (N, T, C) each standardised by its dataset's standardiser (float32)."""
    out = np.empty(signals.shape, dtype=np.float32)
    for name in sorted(set(np.asarray(dataset).tolist())):
        own = np.asarray(dataset) == name
        out[own] = standardisers[name].transform(signals[own])
    return out
