"""β annealing: the shape of the KL weight over training, separate from its size.

The trainer applies ``β_applied = trainer.beta × schedule(progress)``, where ``progress`` is training
time in epochs (fractional within an epoch, so annealing is smooth per batch) and every schedule maps
into [0, 1]. β is what a search tunes as "how much KL"; the schedule is "how it arrives".
Schedules are registered by name so a flat search config can pick one (``beta_schedule="cyclical"``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any


class BetaSchedule(ABC):
    name: str = ""

    @abstractmethod
    def __call__(self, progress: float) -> float:
        """Multiplier of β in [0, 1] at ``progress`` epochs into training."""

    def params(self) -> dict[str, Any]:
        return {}

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.params()}


def _positive(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


class Constant(BetaSchedule):
    name = "constant"

    def __call__(self, progress: float) -> float:
        return 1.0


class LinearWarmup(BetaSchedule):
    """0 → 1 linearly over ``warmup_epochs`` (Bowman et al., 2016), then constant."""

    name = "linear"

    def __init__(self, warmup_epochs: float = 10.0):
        self.warmup_epochs = _positive("warmup_epochs", warmup_epochs)

    def __call__(self, progress: float) -> float:
        return min(1.0, max(0.0, progress / self.warmup_epochs))

    def params(self) -> dict[str, Any]:
        return {"warmup_epochs": self.warmup_epochs}


class Cyclical(BetaSchedule):
    """Repeated 0 → 1 ramps (Fu et al., 2019): each cycle ramps over ``ramp_fraction`` of it, then holds."""

    name = "cyclical"

    def __init__(self, cycle_epochs: float = 10.0, ramp_fraction: float = 0.5):
        self.cycle_epochs = _positive("cycle_epochs", cycle_epochs)
        if not 0.0 < ramp_fraction <= 1.0:
            raise ValueError(f"ramp_fraction must lie in (0, 1], got {ramp_fraction!r}")
        self.ramp_fraction = float(ramp_fraction)

    def __call__(self, progress: float) -> float:
        position = (max(progress, 0.0) % self.cycle_epochs) / self.cycle_epochs
        return min(1.0, position / self.ramp_fraction)

    def params(self) -> dict[str, Any]:
        return {"cycle_epochs": self.cycle_epochs, "ramp_fraction": self.ramp_fraction}


class Sigmoid(BetaSchedule):
    """A smooth step centred on ``center_epoch``; ``steepness`` is per epoch."""

    name = "sigmoid"

    def __init__(self, center_epoch: float = 5.0, steepness: float = 1.0):
        if not math.isfinite(center_epoch):
            raise ValueError(f"center_epoch must be finite, got {center_epoch!r}")
        self.center_epoch = float(center_epoch)
        self.steepness = _positive("steepness", steepness)

    def __call__(self, progress: float) -> float:
        exponent = -self.steepness * (progress - self.center_epoch)
        return 0.0 if exponent > 700 else 1.0 / (1.0 + math.exp(exponent))

    def params(self) -> dict[str, Any]:
        return {"center_epoch": self.center_epoch, "steepness": self.steepness}


BETA_SCHEDULES: dict[str, type[BetaSchedule]] = {
    cls.name: cls for cls in (Constant, LinearWarmup, Cyclical, Sigmoid)
}


def make_beta_schedule(name: str, **params: Any) -> BetaSchedule:
    """Build a registered schedule by name; unknown names and parameters get a clear error."""
    if name not in BETA_SCHEDULES:
        raise ValueError(f"unknown beta schedule {name!r}; known: {', '.join(BETA_SCHEDULES)}")
    try:
        return BETA_SCHEDULES[name](**params)
    except TypeError as error:
        raise ValueError(f"bad parameters for beta schedule {name!r}: {error}") from None
