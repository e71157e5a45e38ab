"""The hyperparameter ranges the original documentation recommends, as plain Tune search spaces.

One place for the numbers, so every search (and the README) quotes the same ranges:
lr 5e-4–5e-3 (log scale; the documentation's 1e-4–1e-3 is below what the range test suggests),
batch size 32/64/128, dropout 0.1–0.5, and the loss weights' ranges as the objective declares them
(tcnvae.objective: β 0.1–1.0, λ_act 1–5, λ_dom 0.01–0.1 on a log scale); the β schedules' parameter
ranges are the schedules' own (:func:`beta_schedule_bounds`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray import tune
from ray.tune.search.sample import Categorical

from tcnvae import beta_schedules
from tcnvae.objective import searched_weights

# Raised from the original documentation's 1e-4–1e-3: with AdamW and cosine decay the range test
# (searches/lr_range.py) suggests 2e-3 and above, and 2e-3 is what trained the best hand-set models.
LR = (5e-4, 5e-3)
BATCH_SIZES = (32, 64, 128)
DROPOUT = (0.1, 0.5)
MIN_STEPS_PER_EPOCH = 8
"""Fewest optimiser steps an epoch may give a trial: with 1–2 steps an epoch (batch 64 on 34 windows)
no trial learns, and the search ranks noise."""


def loss_weight_space(lr: tuple[float, float] = LR) -> dict[str, Any]:
    """Sampled values for random search and Optuna: lr, and each loss weight over its declared range
    (lr and λ_dom on log scales: they span a decade)."""
    weights = {name: (tune.loguniform if setting.log_scale else tune.uniform)(*setting.search)
               for name, setting in searched_weights().items()}
    return {"lr": tune.loguniform(*lr), **weights, "batch_size": tune.choice(list(BATCH_SIZES)),
            "dropout": tune.uniform(*DROPOUT)}


def loss_weight_grid(lr: tuple[float, float] = LR) -> dict[str, Any]:
    """A two-level factorial design: each range's low and high end, every combination (2⁶ = 64 trials
    with the three loss weights).

    The classic screening design: it shows which knobs matter at all, at the fewest trials a full grid
    allows; run it with ASHA so most corners are dropped after their first epochs.
    """
    weights = {name: tune.grid_search(list(setting.search)) for name, setting in searched_weights().items()}
    return {"lr": tune.grid_search(list(lr)), **weights,
            "batch_size": tune.grid_search([BATCH_SIZES[0], BATCH_SIZES[-1]]),
            "dropout": tune.grid_search(list(DROPOUT))}


def loss_weight_bounds() -> dict[str, list[float]]:
    """``[low, high]`` of the loss weights, for PBT's clamped explorations and PB2's bandit."""
    return {name: list(setting.search) for name, setting in searched_weights().items()}


def beta_schedule_bounds(name: str) -> dict[str, list[float]]:
    """``[low, high]`` of β schedule ``name``'s searched parameters, by config key, as the schedule
    declares them (:meth:`tcnvae.beta_schedules.BetaSchedule.search_bounds`)."""
    return beta_schedules.search_bounds(name)


# Unsupervised adaptation (adapt="unlabelled"): the domain head is what adapts, so its weight reaches
# the DANN range (Ganin et al. use λ = 1) and the α ramp (epochs until the reversed gradient is full) is
# searched, with the weight of the target-entropy term up to half the smallest λ_act: at λ_ent ≈ λ_act
# the target's predictions collapsed onto few activities (target macro-F1 0.5–0.7), and no label-free
# score noticed.
ADAPT_LAMBDA_DOM = (0.01, 1.0)
ADAPT_ALPHA_RAMP_EPOCHS = (1.0, 20.0)
ADAPT_LAMBDA_ENT = (0.0, 0.5)


def adaptation_bounds() -> dict[str, list[float]]:
    """``[low, high]`` of λ_dom, the α ramp and λ_ent when adapting to unlabelled target windows."""
    return {"lambda_dom": list(ADAPT_LAMBDA_DOM), "alpha_ramp_epochs": list(ADAPT_ALPHA_RAMP_EPOCHS),
            "lambda_ent": list(ADAPT_LAMBDA_ENT)}


def adaptation_space() -> dict[str, Any]:
    """Sampled λ_dom (log scale), α ramp and λ_ent for unlabelled-target searches."""
    return {"lambda_dom": tune.loguniform(*ADAPT_LAMBDA_DOM),
            "alpha_ramp_epochs": tune.uniform(*ADAPT_ALPHA_RAMP_EPOCHS),
            "lambda_ent": tune.uniform(*ADAPT_LAMBDA_ENT)}


def clamp_to_bounds(config: dict[str, Any], bounds: dict[str, list[float]]) -> dict[str, Any]:
    """PBT's ``custom_explore_fn``: pull perturbed values back into their ``[low, high]`` bounds.

    PBT explores by multiplying by 0.8 or 1.2, which walks a value out of its range within a few
    exploits (a β above 1, a ramp fraction above 1 that the schedule rejects). Bind ``bounds`` with
    ``functools.partial`` so the function pickles with the experiment for ``--resume``.
    """
    for key, (low, high) in bounds.items():
        config[key] = min(max(config[key], low), high)
    return config


def largest_batch_size(train_windows: int) -> int:
    """The largest batch that still gives :data:`MIN_STEPS_PER_EPOCH` steps an epoch (at least 1)."""
    return max(1, train_windows // MIN_STEPS_PER_EPOCH)


def fit_batch_sizes(space: Mapping[str, Any], train_windows: int) -> tuple[dict[str, Any], str | None]:
    """``space`` with its ``batch_size`` choices (``tune.choice`` or a grid) capped by the training set's
    size, and a sentence saying so when they were; choices all above the cap give way to the powers of
    two just under it."""
    domain = space.get("batch_size")
    if isinstance(domain, Categorical):
        choices, build = list(domain.categories), tune.choice
    elif isinstance(domain, Mapping) and "grid_search" in domain:
        choices, build = list(domain["grid_search"]), tune.grid_search
    else:
        return dict(space), None
    limit = largest_batch_size(train_windows)
    kept = [size for size in choices if size <= limit]
    if kept == choices:
        return dict(space), None
    if not kept:
        top = 1 << (limit.bit_length() - 1)  # the largest power of two <= limit
        kept = sorted({max(1, top // 2), top})
    note = (f"batch_size choices {choices} capped at {limit}: {train_windows} training windows give each trial "
            f"at least {MIN_STEPS_PER_EPOCH} optimiser steps an epoch only up to that size; searching {kept}")
    return {**space, "batch_size": build(kept)}, note
