"""Putting a :class:`Stage` into effect on a trainer and its training loader.

Everything here is idempotent and recomputed from the stage each epoch: ``requires_grad``, the loss
multipliers and the loader's domain weights and window subset are not part of any checkpoint, so a
resumed run that applies the same stage ends up exactly where the uninterrupted run was. (The
learning-rate multipliers live in the optimizer's param groups, which checkpoints do hold.)
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import numpy as np
import torch

from tcnvae.curriculum.groups import parameter_groups, set_trainable
from tcnvae.curriculum.stage import Stage
from tcnvae.data.loaders import WindowLoader
from tcnvae.model import TCNVAE
from tcnvae.objective import LOSS_TERMS, Objective
from tcnvae.trainer import TCNVAETrainer

logger = logging.getLogger(__name__)


DIFFICULTY_TERMS = tuple(term for term in LOSS_TERMS if term != "domain")
"""The loss terms a window's difficulty sums: all but the adversarial one, which measures the
window's domain, not how hard it is."""


@torch.no_grad()
def per_window_losses(model: TCNVAE, loader: WindowLoader, objective: Objective | None = None,
                      batch_size: int = 512) -> dict[str, np.ndarray]:
    """Each of ``loader``'s windows' loss terms under the current model, in window order, as
    ``objective`` (default: the original one) computes them for training (:meth:`Objective.window_terms`).

    Deterministic: evaluation mode (no dropout, heads and decoder read μ), no augmentation, every
    window once. Returns each of :data:`DIFFICULTY_TERMS` ("recon": mean squared error, "kl": KL
    divergence, "activity": cross-entropy, 0 for an unlabelled window), each of shape (num_windows,).
    """
    objective = objective if objective is not None else Objective()
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    terms: dict[str, list[torch.Tensor]] = {term: [] for term in DIFFICULTY_TERMS}
    try:
        for start in range(0, loader.num_windows, batch_size):
            data = loader.signals[start:start + batch_size].to(device)
            labels = loader.activity_tensor[start:start + batch_size].to(device)
            domains = loader.domain_tensor[start:start + batch_size].to(device)
            window_terms = objective.window_terms(model(data), data, labels, domains)
            for term in DIFFICULTY_TERMS:
                terms[term].append(window_terms[term].cpu())
    finally:
        model.train(was_training)
    return {key: torch.cat(values).numpy() if values else np.zeros(0) for key, values in terms.items()}


def easiest_windows(difficulty: np.ndarray, activity: np.ndarray, fraction: float,
                    candidates: np.ndarray | None = None) -> np.ndarray:
    """Indices of the easiest ``fraction`` of each activity's windows (at least one per activity).

    Chosen per activity so no activity drops out: some activities are easier as a whole, and ranking
    all windows together would first train on those alone. Ties break by window index. How many
    windows are chosen depends only on the class counts, not on the losses, so every worker of a
    data-parallel trial draws the same number of batches.
    """
    candidates = np.arange(len(difficulty)) if candidates is None else np.asarray(candidates)
    chosen = []
    for label in np.unique(activity[candidates]):
        members = candidates[activity[candidates] == label]
        keep = max(1, math.ceil(fraction * len(members)))
        order = np.lexsort((members, difficulty[members]))
        chosen.append(members[order[:keep]])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def domains_in_batches(stage: Stage, loader: WindowLoader) -> list[str]:
    """The domains whose windows feed the batches under ``stage``."""
    if stage.domain_weights is not None:
        return [name for name, weight in stage.domain_weights.items() if weight > 0]
    ids = np.unique(loader.domain[loader.domain >= 0])
    return [loader.domain_names[i] for i in ids]


def effective_stage(stage: Stage, loader: WindowLoader) -> Stage:
    """``stage`` with the adversarial term off when fewer than two domains feed the batches: a domain
    classifier over one domain learns nothing, and its reversed gradient only adds noise."""
    if len(domains_in_batches(stage, loader)) > 1 or stage.loss_multiplier("domain") == 0:
        return stage
    return replace(stage, loss_multipliers={**stage.loss_multipliers, "domain": 0.0})


def _check_groups(stage: Stage, model: TCNVAE) -> None:
    known = parameter_groups(model)
    unknown = sorted((set(stage.trainable) | set(stage.lr_multipliers)) - set(known))
    if unknown:
        raise ValueError(f"stage {stage.name!r} names unknown parameter groups {unknown}; "
                         f"this model's groups are {', '.join(known)}")


def _window_subset(stage: Stage, trainer: TCNVAETrainer, loader: WindowLoader) -> np.ndarray | None:
    """The easiest windows for a self-paced stage, by the per-window training objective of this stage:
    the trainer's own loss formula (:meth:`Objective.total`, with the stage's loss multipliers) over
    :data:`DIFFICULTY_TERMS`."""
    if stage.window_fraction is None or stage.window_fraction >= 1:
        return None
    losses = per_window_losses(trainer.model, loader, trainer.objective)
    difficulty = trainer.objective.total(losses, trainer.applied_beta, stage.loss_multipliers)
    candidates = np.arange(loader.num_windows)
    if stage.domain_weights is not None:
        weighted = [loader.domain_names.index(name) for name in domains_in_batches(stage, loader)]
        candidates = candidates[np.isin(loader.domain, weighted)]
    return easiest_windows(difficulty, loader.activity, stage.window_fraction, candidates)


def apply_stage(stage: Stage, trainer: TCNVAETrainer, train_loader: WindowLoader) -> Stage:
    """Make the next training epoch follow ``stage``; returns the stage as applied (see
    :func:`effective_stage`).

    ``train_loader`` is the unsharded :class:`WindowLoader` (a data-parallel trial passes the loader
    its shards read from). Order: groups are checked before anything changes, so a bad stage leaves
    the run as it was.
    """
    _check_groups(stage, trainer.model)
    applied = effective_stage(stage, train_loader)
    train_loader.set_domain_weights(applied.domain_weights)
    set_trainable(trainer.model, dict(applied.trainable))
    trainer.set_lr_multipliers(applied.lr_multipliers)
    trainer.objective = replace(trainer.objective, loss_multipliers=applied.loss_multipliers)
    subset = _window_subset(applied, trainer, train_loader)
    train_loader.set_subset(subset)
    if subset is not None:
        logger.debug("stage %r trains on %d of %d windows", applied.name, len(subset), train_loader.num_windows)
    return applied
