"""The one writer of an optimizer's learning rates while a run goes on.

Rate of a param group = configured rate × the group's ``lr_multiplier`` (a curriculum's per-part
rate; 1 when absent) × the scheduler's progress. Three things change it mid-run: a new configured rate
(a PBT mutation, a replayed epoch: :func:`set_learning_rate`), a new multiplier (a curriculum stage:
:func:`set_lr_multipliers`) and the trainer's back-off after a non-finite loss. Each is a rescaling of
groups by a ratio, and a rescaling must move three numbers together: the group's current rate, its
``initial_lr`` and the scheduler's ``base_lrs`` entry. Then closed-form schedulers (computed from
``base_lrs``) and chainable ones (computed from the current rate) both carry on along their curve at
the new height, and a scheduler built later starts from the right base. :func:`rescale` is the only
code that does it; the trainer's ``set_learning_rate`` / ``set_lr_multipliers`` call these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import optim


def rescale(optimizer: optim.Optimizer, scheduler: Any, ratios: Sequence[float]) -> None:
    """Multiply each param group's rate by its ratio, keeping the scheduler's progress."""
    if len(ratios) != len(optimizer.param_groups):
        raise ValueError(f"{len(ratios)} ratios for {len(optimizer.param_groups)} param groups")
    base_lrs = getattr(scheduler, "base_lrs", None)
    for index, (group, ratio) in enumerate(zip(optimizer.param_groups, ratios)):
        if ratio == 1.0:
            continue
        group["lr"] *= ratio
        if "initial_lr" in group:
            group["initial_lr"] *= ratio
        if base_lrs is not None:
            base_lrs[index] *= ratio


def set_learning_rate(optimizer: optim.Optimizer, scheduler: Any, learning_rate: float) -> None:
    """Configure the run's rate: each group's base becomes ``learning_rate`` × its multiplier, at the
    scheduler's current progress (under cosine annealing the curve continues at the new height
    instead of restarting). A back-off after non-finite losses ends here: the new rate is the intent."""
    base_lrs = getattr(scheduler, "base_lrs", None)
    ratios = []
    for index, group in enumerate(optimizer.param_groups):
        base = base_lrs[index] if base_lrs is not None else group["lr"]
        ratios.append(learning_rate * group.get("lr_multiplier", 1.0) / base)
    rescale(optimizer, scheduler, ratios)


def set_lr_multipliers(optimizer: optim.Optimizer, scheduler: Any, multipliers: Mapping[str, float]) -> None:
    """Give each named param group its multiplier (1 when not named), keeping the scheduler's progress.

    Raises a ValueError when a multiplier other than 1 is asked of an optimizer whose groups carry no
    names (one not built by :func:`tcnvae.curriculum.grouped_optimizer`), or names a group it lacks.
    """
    names = [group.get("name") for group in optimizer.param_groups]
    unknown = sorted(set(multipliers) - set(names))
    needed = {name: value for name, value in multipliers.items() if value != 1.0}
    if unknown and needed:
        raise ValueError(
            f"learning-rate multipliers for {sorted(needed)} need an optimizer with one named param group "
            f"per parameter group; this one has groups {names}, lacking {unknown}. Build it with "
            "tcnvae.curriculum.grouped_optimizer(model, ...)"
        )
    ratios = []
    for group in optimizer.param_groups:
        old = float(group.get("lr_multiplier", 1.0))
        new = float(multipliers.get(group["name"], 1.0)) if group.get("name") is not None else old
        ratios.append(new / old)
        if group.get("name") is not None:
            group["lr_multiplier"] = new
    rescale(optimizer, scheduler, ratios)
