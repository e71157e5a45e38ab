"""β annealing: the shape of the KL weight over training, separate from its size.

The trainer applies ``β_applied = beta × schedule(progress)``, where ``progress`` is training time in
epochs (fractional within an epoch, so annealing is smooth per batch) and every schedule maps into
[0, 1]. β is what a search tunes as "how much KL"; the schedule is "how it arrives".

Schedules declare themselves as curriculum policies do: registered by name
(:func:`register_beta_schedule`), their constructor arguments are their parameters (checked by the
constructor), and :meth:`BetaSchedule.search_bounds` gives the ranges a search moves them in. A flat
trial config picks one with ``beta_schedule="cyclical"`` and sets each parameter as
``beta_<parameter>`` (:func:`config_defaults`, :func:`from_config`), so a new schedule needs no edit
anywhere else.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from tcnvae.settings import Check, number

CONFIG_PREFIX = "beta_"
"""A schedule parameter's flat config key is this prefix and the parameter's name: ``beta_warmup_epochs``."""


class BetaSchedule(ABC):
    """A multiplier of β over training. Subclass it, implement ``__call__``, keep each constructor
    argument as an attribute of the same name, check the arguments in the constructor, and register
    the class with :func:`register_beta_schedule`."""

    name: ClassVar[str] = ""

    @abstractmethod
    def __call__(self, progress: float) -> float:
        """Multiplier of β in [0, 1] at ``progress`` epochs into training."""

    @classmethod
    def search_bounds(cls) -> dict[str, tuple[float, float]]:
        """``[low, high]`` of each parameter a search may move (in epochs of a run of about a dozen)."""
        return {}

    def params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in parameters(type(self))}

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.params()}

    def __eq__(self, other: object) -> bool:  # a schedule is its name and parameters
        return isinstance(other, BetaSchedule) and self.to_config() == other.to_config()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"


def parameters(cls: type[BetaSchedule]) -> dict[str, Any]:
    """A schedule class's parameters and their defaults: its constructor's named arguments."""
    signature = inspect.signature(cls.__init__).parameters
    return {name: p.default for name, p in signature.items()
            if name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _checked(name: str, value: float, check: Check) -> float:
    if not check(value):
        raise ValueError(f"{name} must be {check.expected}, got {value!r}")
    return float(value)


_POSITIVE = number(0, low_open=True)


BETA_SCHEDULES: dict[str, type[BetaSchedule]] = {}
"""Registered schedule classes by name."""


def register_beta_schedule(cls: type[BetaSchedule]) -> type[BetaSchedule]:
    """Make ``cls`` available as ``cls.name`` in configs (``beta_schedule=<name>``, ``beta_<parameter>``
    keys); usable as a class decorator. Refused: an unnamed or abstract class, a taken name, and a
    parameter that another schedule's has with another default (they share one config key)."""
    if not (inspect.isclass(cls) and issubclass(cls, BetaSchedule)) or inspect.isabstract(cls) or not cls.name:
        raise ValueError(f"{cls!r} is not a concrete, named subclass of BetaSchedule")
    registered = BETA_SCHEDULES.get(cls.name)
    if registered is not None and registered is not cls:
        raise ValueError(f"beta schedule name {cls.name!r} is taken by {registered.__module__}.{registered.__qualname__}")
    shared = config_defaults()
    for name, default in parameters(cls).items():
        key = CONFIG_PREFIX + name
        if default is inspect.Parameter.empty:
            raise ValueError(f"beta schedule {cls.name!r}: parameter {name!r} needs a default (its config "
                             f"key {key!r} has one)")
        if key in shared and shared[key] != default:
            raise ValueError(f"beta schedule {cls.name!r}: parameter {name!r} defaults to {default!r}, but "
                             f"another schedule's {name!r} defaults to {shared[key]!r}, and they share the config "
                             f"key {key!r}; rename the parameter or use the same default")
    BETA_SCHEDULES[cls.name] = cls
    return cls


def schedule_class(name: str) -> type[BetaSchedule]:
    """The registered schedule class ``name``; an unknown name gets a ValueError listing the known ones."""
    if name not in BETA_SCHEDULES:
        raise ValueError(f"unknown beta schedule {name!r}; known: {', '.join(BETA_SCHEDULES)}")
    return BETA_SCHEDULES[name]


def make_beta_schedule(name: str, **params: Any) -> BetaSchedule:
    """Build a registered schedule by name; unknown names and parameters get a clear error."""
    cls = schedule_class(name)
    try:
        return cls(**params)
    except TypeError as error:
        raise ValueError(f"bad parameters for beta schedule {name!r}: {error}") from None


# -- the flat config: beta_schedule plus one beta_<parameter> key per registered parameter ---------------

def config_defaults() -> dict[str, Any]:
    """Every registered schedule's parameters as config keys, with their constructor defaults."""
    return {CONFIG_PREFIX + name: default for cls in BETA_SCHEDULES.values() for name, default in parameters(cls).items()}


def from_config(config: Mapping[str, Any]) -> BetaSchedule:
    """The schedule ``config["beta_schedule"]`` names, with its parameters from their config keys."""
    name = config["beta_schedule"]
    return make_beta_schedule(name, **{param: config[CONFIG_PREFIX + param] for param in parameters(schedule_class(name))})


def config_problems(config: Mapping[str, Any]) -> list[str]:
    """``key=value: problem`` for the schedule's name and each parameter key, each parameter checked by
    its own schedule's constructor (every schedule's, chosen or not, so a bad value never waits for
    a PBT switch to surface), then the chosen schedule with all its parameters together."""
    name = config["beta_schedule"]
    if not isinstance(name, str) or name not in BETA_SCHEDULES:
        return [f"beta_schedule={name!r}: expected one of {', '.join(BETA_SCHEDULES)}"]
    problems = []
    for cls in BETA_SCHEDULES.values():
        for param in parameters(cls):
            key = CONFIG_PREFIX + param
            try:
                cls(**{param: config[key]})
            except (TypeError, ValueError) as error:
                problems.append(f"{key}={config[key]!r}: beta schedule {cls.name!r}: {error}")
    if not problems:
        try:
            from_config(config)
        except ValueError as error:
            problems.append(f"beta_schedule={name!r}: {error}")
    return problems


def search_bounds(name: str) -> dict[str, list[float]]:
    """``[low, high]`` of schedule ``name``'s searched parameters, by config key (PBT's bounds)."""
    return {CONFIG_PREFIX + param: list(bounds) for param, bounds in schedule_class(name).search_bounds().items()}


# -- the shipped schedules ------------------------------------------------------------------------------

@register_beta_schedule
class Constant(BetaSchedule):
    name = "constant"

    def __call__(self, progress: float) -> float:
        return 1.0


@register_beta_schedule
class LinearWarmup(BetaSchedule):
    """0 → 1 linearly over ``warmup_epochs`` (Bowman et al., 2016), then constant."""

    name = "linear"

    def __init__(self, warmup_epochs: float = 10.0):
        self.warmup_epochs = _checked("warmup_epochs", warmup_epochs, _POSITIVE)

    def __call__(self, progress: float) -> float:
        return min(1.0, max(0.0, progress / self.warmup_epochs))

    @classmethod
    def search_bounds(cls) -> dict[str, tuple[float, float]]:
        return {"warmup_epochs": (1.0, 8.0)}


@register_beta_schedule
class Cyclical(BetaSchedule):
    """Repeated 0 → 1 ramps (Fu et al., 2019): each cycle ramps over ``ramp_fraction`` of it, then holds."""

    name = "cyclical"

    def __init__(self, cycle_epochs: float = 10.0, ramp_fraction: float = 0.5):
        self.cycle_epochs = _checked("cycle_epochs", cycle_epochs, _POSITIVE)
        self.ramp_fraction = _checked("ramp_fraction", ramp_fraction, number(0, 1, low_open=True))

    def __call__(self, progress: float) -> float:
        position = (max(progress, 0.0) % self.cycle_epochs) / self.cycle_epochs
        return min(1.0, position / self.ramp_fraction)

    @classmethod
    def search_bounds(cls) -> dict[str, tuple[float, float]]:
        return {"cycle_epochs": (2.0, 8.0), "ramp_fraction": (0.2, 1.0)}


@register_beta_schedule
class Sigmoid(BetaSchedule):
    """A smooth step centred on ``center_epoch``; ``steepness`` is per epoch."""

    name = "sigmoid"

    def __init__(self, center_epoch: float = 5.0, steepness: float = 1.0):
        self.center_epoch = _checked("center_epoch", center_epoch, number(expected="a finite number"))
        self.steepness = _checked("steepness", steepness, _POSITIVE)

    def __call__(self, progress: float) -> float:
        exponent = -self.steepness * (progress - self.center_epoch)
        return 0.0 if exponent > 700 else 1.0 / (1.0 + math.exp(exponent))

    @classmethod
    def search_bounds(cls) -> dict[str, tuple[float, float]]:
        return {"center_epoch": (0.0, 8.0), "steepness": (0.5, 4.0)}
