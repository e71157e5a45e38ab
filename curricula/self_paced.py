"""`self_paced`: progressive difficulty — the easiest windows first, widening to all of them.

After ``warmup_epochs`` on every window (so "easy" is judged by a model that has learnt something),
each epoch trains on the easiest fraction of each activity's windows, by the current model's
per-window loss (reconstruction + β·KL + λ_act·cross-entropy, evaluated deterministically at the
start of the epoch; tcnvae.curriculum.apply). The fraction starts at ``start_fraction`` and grows
linearly to all windows over ``ramp_epochs`` epochs. Per activity, so no activity drops out early.

Stateless: the fraction follows from the epoch and the window ranking from the model weights, both
of which a checkpoint restores.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray import tune

from tcnvae.curriculum import CurriculumPolicy, Stage, check_int, check_number


class SelfPaced(CurriculumPolicy):
    name = "self_paced"

    def __init__(self, warmup_epochs: int = 1, start_fraction: float = 0.5, ramp_epochs: int = 4):
        self.warmup_epochs = check_int("warmup_epochs", warmup_epochs, 0)
        self.start_fraction = check_number("start_fraction", start_fraction, 0.0, 1.0, low_open=True)
        self.ramp_epochs = check_int("ramp_epochs", ramp_epochs, 1)

    @classmethod
    def search_space(cls) -> dict[str, Any]:
        return {
            "warmup_epochs": tune.randint(0, 3),
            "start_fraction": tune.uniform(0.2, 0.9),
            "ramp_epochs": tune.randint(1, 8),
        }

    def stage(self, epoch: int, metrics: Mapping[str, float] | None) -> Stage:
        if epoch < self.warmup_epochs:
            return Stage("warmup")
        progress = (epoch - self.warmup_epochs) / self.ramp_epochs
        fraction = self.start_fraction + (1 - self.start_fraction) * progress
        if fraction >= 1:
            return Stage("all")
        return Stage("easiest", window_fraction=fraction)
