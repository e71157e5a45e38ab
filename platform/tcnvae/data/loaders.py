"""`WindowLoader`: batches of (data, activity_labels, domain_labels) from tensors held in memory.

A window set of a few thousand windows fits in memory many times over, so batches are gathered by
index from whole tensors (on the CPU, or directly on the GPU with ``device="cuda"``) instead of going
through a per-sample ``Dataset.__getitem__`` and a collate function; that keeps data loading a small
fraction of a training step.

Which windows make up the batches is controlled by a small set of knobs, which the curriculum code
turns between epochs:

- ``sampling``: "uniform" (each window once per epoch, shuffled or in order), "class_balanced"
  (every batch split evenly across the activities), "domain_balanced" (every batch split evenly
  across domains, so each batch carries every domain) or "target_balanced" (half of every batch
  labelled source windows, half unlabelled target windows, as domain-adversarial training wants; an
  epoch is one pass over the labelled windows);
- :meth:`WindowLoader.set_domain_weights`: the share of each domain in every batch (weight 0 leaves a
  domain out), for domain curricula;
- :meth:`WindowLoader.set_subset` and :meth:`WindowLoader.set_sample_weights`: which windows take part
  and how often they are drawn, for self-paced curricula.

Balanced or weighted batches are composed by quota: each batch gets ``share * batch_size`` windows of
every group (the fractional remainder drawn at random, so shares hold on average), and each group's
windows are drawn without replacement, cycling when a group is smaller than its demand (or with
replacement in proportion to sample weights, when those are set). An epoch has as many batches as the
participating windows fill. Everything random is seeded by (seed, epoch), so an epoch is reproducible.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch

from tcnvae.data.windows import WindowSet
from tcnvae.settings import Setting, choice, number, problems

if TYPE_CHECKING:
    from tcnvae.data.unlabelled import UnlabelledWindows

logger = logging.getLogger(__name__)

SAMPLING_MODES = ("uniform", "class_balanced", "domain_balanced", "target_balanced")
LOADER_SETTINGS: dict[str, Setting] = {
    "batch_size": Setting(64, number(1, integer=True), "windows per batch"),
    "sampling": Setting("uniform", choice(SAMPLING_MODES), "how training batches are drawn, see tcnvae.data.loaders; "
                        "target_balanced needs unlabelled target windows, as adapt='unlabelled' gives"),
}
"""The loader's settings in a trial config and :class:`~tcnvae.data.pipeline.DataConfig`: their one
declaration, and the loader's defaults."""
UNLABELLED = -1  # the activity label of a window whose label is not to be used (tcnvae.trainer.UNLABELLED)
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _as_tensor(values: np.ndarray | torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.to(device=device, dtype=dtype)
    return torch.from_numpy(np.ascontiguousarray(values)).to(device=device, dtype=dtype)


class WindowLoader:
    """Iterable over batches ``(data (B,T,C) float32, activity (B,) int64, domain (B,) int64)``.

    An activity label of -1 marks an unlabelled window (the trainer uses it for everything but the
    activity head)."""

    def __init__(
        self,
        signals: np.ndarray | torch.Tensor,
        activity: np.ndarray | torch.Tensor,
        domain: np.ndarray | torch.Tensor,
        *,
        domain_names: list[str] | None = None,
        batch_size: int = LOADER_SETTINGS["batch_size"].default,
        shuffle: bool = False,
        drop_last: bool = False,
        sampling: str = LOADER_SETTINGS["sampling"].default,
        seed: int = 0,
        augment: Augment | None = None,
        device: str | torch.device = "cpu",
        pin_memory: bool = False,
    ) -> None:
        bad = problems(LOADER_SETTINGS, {"batch_size": batch_size, "sampling": sampling})
        if bad:
            raise ValueError("; ".join(bad))
        self.device = torch.device(device)
        self.signals = _as_tensor(signals, torch.float32, self.device)
        self.activity = np.asarray(activity.cpu() if isinstance(activity, torch.Tensor) else activity)
        self.domain = np.asarray(domain.cpu() if isinstance(domain, torch.Tensor) else domain)
        count = len(self.signals)
        if self.signals.ndim != 3 or self.activity.shape != (count,) or self.domain.shape != (count,):
            raise ValueError(
                f"need signals (N, T, C) with activity and domain of shape (N,); got "
                f"{tuple(self.signals.shape)}, {self.activity.shape}, {self.domain.shape}"
            )
        self.activity_tensor = _as_tensor(self.activity, torch.int64, self.device)
        self.domain_tensor = _as_tensor(self.domain, torch.int64, self.device)
        num_domains = int(self.domain.max()) + 1 if count else 0
        self.domain_names = (
            list(domain_names) if domain_names is not None else [str(i) for i in range(num_domains)]
        )
        if num_domains > len(self.domain_names):
            raise ValueError(
                f"domain ids reach {num_domains - 1} but only {len(self.domain_names)} domain names given"
            )
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.sampling = sampling
        self.seed = seed
        self.augment = augment
        self.pin_memory = pin_memory and self.device.type == "cpu" and torch.cuda.is_available()
        if pin_memory and not self.pin_memory:
            logger.info("pin_memory ignored: batches are on %s and CUDA is %s", self.device,
                        "available" if torch.cuda.is_available() else "not available")
        self.epoch = 0
        self.subset: np.ndarray | None = None
        self.sample_weights: np.ndarray | None = None
        self.domain_weights: np.ndarray | None = None
        if sampling == "domain_balanced":
            self._check_domain_ids()
        if sampling == "target_balanced" and not (
            count and (self.activity == UNLABELLED).any() and (self.activity != UNLABELLED).any()
        ):
            raise ValueError("sampling 'target_balanced' needs both labelled and unlabelled (activity -1) windows; "
                             "use it with unlabelled target windows (adapt='unlabelled')")

    @classmethod
    def from_windowset(
        cls,
        ws: WindowSet,
        *,
        domain_by: str = "dataset",
        domain_names: list[str] | None = None,
        unlabelled: UnlabelledWindows | None = None,
        **options: object,
    ) -> WindowLoader:
        """A loader over ``ws`` with domains from grouping ``domain_by`` (indexed by ``domain_names``).

        ``unlabelled`` windows join after those of ``ws`` with activity label -1.
        """
        domain, names = ws.domain_ids(domain_by, domain_names)
        if unlabelled is None or len(unlabelled) == 0:
            return cls(ws.signals, ws.activity, domain, domain_names=names, **options)
        unlabelled_domain = unlabelled.domain_ids(domain_by, names)
        if (unlabelled_domain < 0).any():
            raise ValueError(f"unlabelled windows of a domain missing from domain_names {names}")
        return cls(np.concatenate([ws.signals, unlabelled.signals]),
                   np.concatenate([ws.activity, np.full(len(unlabelled), UNLABELLED, dtype=np.int64)]),
                   np.concatenate([domain, unlabelled_domain]), domain_names=names, **options)

    # -- curriculum hooks -------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (iterations count up from there on their own)."""
        self.epoch = int(epoch)

    def set_domain_weights(self, weights: Mapping[str, float] | None) -> None:
        """Share of each named domain in every batch; unnamed domains get 0. None restores the default."""
        if weights is None:
            self.domain_weights = None
            return
        unknown = sorted(set(weights) - set(self.domain_names))
        if unknown:
            raise ValueError(f"unknown domains {unknown}; this loader has {self.domain_names}")
        vector = np.array([float(weights.get(name, 0.0)) for name in self.domain_names])
        if not np.isfinite(vector).all() or (vector < 0).any() or vector.sum() <= 0:
            raise ValueError(f"domain weights must be finite, >= 0 and not all 0; got {dict(weights)}")
        self._check_domain_ids()
        self.domain_weights = vector / vector.sum()

    def set_subset(self, index: np.ndarray | None) -> None:
        """Only windows at ``index`` (indices or boolean mask) take part; None: all windows."""
        if index is None:
            self.subset = None
            return
        index = np.asarray(index)
        if index.dtype == bool:
            if index.shape != (self.num_windows,):
                raise ValueError(f"subset mask must have shape ({self.num_windows},), got {index.shape}")
            index = np.flatnonzero(index)
        if index.size and (index.min() < 0 or index.max() >= self.num_windows):
            raise ValueError(f"subset indices must lie in [0, {self.num_windows})")
        self.subset = np.unique(index.astype(np.int64))

    def set_sample_weights(self, weights: np.ndarray | None) -> None:
        """Per-window draw weights (>= 0; 0 excludes a window); None: every window once per epoch."""
        if weights is None:
            self.sample_weights = None
            return
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (self.num_windows,):
            raise ValueError(f"sample weights must have shape ({self.num_windows},), got {weights.shape}")
        if not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("sample weights must be finite, >= 0 and not all 0")
        self.sample_weights = weights

    # -- iteration ----------------------------------------------------------------------------------

    @property
    def num_windows(self) -> int:
        return len(self.signals)

    def _check_domain_ids(self) -> None:
        if self.num_windows and self.domain.min() < 0:
            raise ValueError("domain sampling needs every window to have a domain (found id -1)")

    def _active(self) -> np.ndarray:
        active = np.arange(self.num_windows) if self.subset is None else self.subset
        if self.sample_weights is not None:
            active = active[self.sample_weights[active] > 0]
        if self.domain_weights is not None:
            active = active[self.domain_weights[self.domain[active]] > 0]
        return active

    def _num_batches(self, active: np.ndarray) -> int:
        count = len(active)
        if self.sampling == "target_balanced":
            # An epoch is one pass over the labelled (source) windows, half of each batch, the target
            # cycling as in DANN: the labelled windows and steps of an epoch then do not depend on how
            # many target windows there are, and match training on the source alone at half the batch.
            count = 2 * int((self.activity[active] != UNLABELLED).sum())
        if self.drop_last:
            return count // self.batch_size
        return math.ceil(count / self.batch_size)

    def __len__(self) -> int:
        return self._num_batches(self._active())

    def _composed(self) -> bool:
        return (
            self.sampling != "uniform"
            or self.domain_weights is not None
            or self.sample_weights is not None
        )

    def _groups(self, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Group id of each active window and each group's share of a batch."""
        domain_shares = self.domain_weights
        if domain_shares is None and self.sampling == "domain_balanced":
            present = np.zeros(len(self.domain_names))
            present[np.unique(self.domain[active])] = 1
            domain_shares = present / present.sum()
        if self.sampling == "target_balanced":  # group 0: labelled (source), group 1: unlabelled (target)
            unlabelled = (self.activity[active] == UNLABELLED).astype(np.int64)
            present = np.bincount(unlabelled, minlength=2) > 0
            return unlabelled, present / present.sum()
        if self.sampling == "class_balanced":
            classes = self.activity[active]
            if domain_shares is None:
                groups, inverse = np.unique(classes, return_inverse=True)
                return inverse, np.full(len(groups), 1 / len(groups))
            pairs, inverse = np.unique(
                np.stack([classes, self.domain[active]], axis=1), axis=0, return_inverse=True
            )
            weight = domain_shares[pairs[:, 1]]
            class_ids, class_of_pair = np.unique(pairs[:, 0], return_inverse=True)
            class_total = np.bincount(class_of_pair, weights=weight)
            return inverse.reshape(-1), weight / class_total[class_of_pair] / len(class_ids)
        if domain_shares is not None:
            missing = [self.domain_names[d] for d in np.flatnonzero(domain_shares > 0)
                       if not (self.domain[active] == d).any()]
            if missing:
                raise ValueError(f"domains {missing} have weight but no windows to draw")
            groups, inverse = np.unique(self.domain[active], return_inverse=True)
            return inverse, domain_shares[groups]
        return np.zeros(len(active), dtype=np.int64), np.ones(1)

    def _plan(self, rng: np.random.Generator, active: np.ndarray, num_batches: int) -> np.ndarray:
        """(num_batches, batch_size) window indices composed by group quotas."""
        group, share = self._groups(active)
        if self.sampling == "domain_balanced" and self.batch_size < (share > 0).sum():
            raise ValueError(
                f"batch_size {self.batch_size} cannot carry all {(share > 0).sum()} domains"
            )
        exact = share * self.batch_size
        quota = np.tile(np.floor(exact + 1e-9).astype(np.int64), (num_batches, 1))
        remainder = self.batch_size - quota[0].sum()
        if remainder:
            fraction = np.clip(exact - quota[0], 0, None)
            quota += rng.multinomial(remainder, fraction / fraction.sum(), size=num_batches)
        plan = np.empty((num_batches, self.batch_size), dtype=np.int64)
        offset = np.cumsum(quota, axis=1) - quota
        for g in range(len(share)):
            members = active[group == g]
            total = int(quota[:, g].sum())
            if total == 0:
                continue
            draws = self._draw(rng, members, total)
            rows = np.repeat(np.arange(num_batches), quota[:, g])
            rank = np.arange(total) - np.repeat(np.cumsum(quota[:, g]) - quota[:, g], quota[:, g])
            plan[rows, offset[rows, g] + rank] = draws
        return plan

    def _draw(self, rng: np.random.Generator, members: np.ndarray, total: int) -> np.ndarray:
        if self.sample_weights is not None:
            weights = self.sample_weights[members]
            return rng.choice(members, size=total, p=weights / weights.sum())
        rounds = math.ceil(total / len(members))
        return np.concatenate([rng.permutation(members) for _ in range(rounds)])[:total]

    def batch_indices(self, epoch: int | None = None) -> list[np.ndarray]:
        """The window indices of every batch of ``epoch`` (default: the next one), without loading."""
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch])
        active = self._active()
        num_batches = self._num_batches(active)
        if num_batches == 0:
            return []
        if self._composed():
            return list(self._plan(rng, active, num_batches))
        order = rng.permutation(active) if self.shuffle else active
        return [order[i * self.batch_size : (i + 1) * self.batch_size] for i in range(num_batches)]

    def __iter__(self) -> Iterator[Batch]:
        epoch = self.epoch
        self.epoch += 1
        batches = self.batch_indices(epoch)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(int(np.random.default_rng([self.seed, epoch, 1]).integers(2**62)))
        for index in batches:
            index_tensor = torch.from_numpy(index).to(self.device)
            data = self.signals.index_select(0, index_tensor)
            if self.augment is not None:
                data = self.augment(data, generator)
            batch = (
                data,
                self.activity_tensor.index_select(0, index_tensor),
                self.domain_tensor.index_select(0, index_tensor),
            )
            if self.pin_memory:
                batch = tuple(t.pin_memory() for t in batch)
            yield batch
