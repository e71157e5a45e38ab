"""What every recipe's search space goes through: batch sizes fitted to the data, PBT kept in its bounds,
a grid of a space's corners.

The spaces themselves (which keys, which ranges, which distributions) are the recipes': each
``searches/*.py`` writes its own as a plain dict of ``tune.*`` distributions at its top.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray import tune
from ray.tune.search.sample import Categorical, Float, Integer

MIN_STEPS_PER_EPOCH = 8
"""Fewest optimiser steps an epoch may give a trial: with 1–2 steps an epoch (batch 64 on 34 windows)
no trial learns, and the search ranks noise."""


def two_level_grid(space: Mapping[str, Any]) -> dict[str, Any]:
    """A two-level factorial design of ``space``: each range's low and high end (each choice list's first
    and last), every combination (2⁶ = 64 trials over six keys).

    The classic screening design: it shows which knobs matter at all, at the fewest trials a full grid
    allows; run it with ASHA so most corners are dropped after their first epochs.
    """
    grid = {}
    for key, domain in space.items():
        if isinstance(domain, Categorical):
            ends = [domain.categories[0], domain.categories[-1]]
        elif isinstance(domain, (Float, Integer)):
            ends = [domain.lower, domain.upper]
        else:
            raise ValueError(f"search space key {key!r}: no low and high end in {domain!r}")
        grid[key] = tune.grid_search(ends)
    return grid


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
