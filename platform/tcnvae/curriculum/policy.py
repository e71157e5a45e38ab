"""The curriculum interface: a policy maps (epoch, latest validation metrics) to a :class:`Stage`.

Like Optuna's samplers, a policy is a small object behind one abstract class, so a search can treat
"which curriculum, with which settings" as just more hyperparameters: policies are made by name
(:func:`~tcnvae.curriculum.registry.make_curriculum`), their constructor arguments are their
parameters, and :meth:`CurriculumPolicy.search_space` says how Tune may sample them.

Protocol, per run: ``setup(context, model)`` once, when the model is built (before a checkpoint is
restored into it, so a restore overrides anything setup loaded); then at the start of every epoch
``stage(epoch, metrics)``, with the flat metrics of the epoch before (None before the first). The
metric keys are those the trial loop reports: ``"val/accuracy"``, ``"val/domain/<name>"``, ...

State: whatever a policy learns while running (the epoch it switched at, the best accuracy so far)
lives in ``state_dict()`` as plain data, and nothing else does, so a policy rebuilt from its
parameters and given that state continues in the same stage: that is how resumed trials and PBT
clones (which take a donor's state with their own, perturbed, parameters) keep their place.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from tcnvae.curriculum.groups import parameter_groups
from tcnvae.curriculum.stage import Stage, merge_stages
from tcnvae.data.loaders import WindowLoader
from tcnvae.model import TCNVAE


@dataclass(frozen=True)
class CurriculumContext:
    """What a policy may know about the run it schedules, fixed for the run."""

    domains: tuple[str, ...]  # training domains that have windows, in the loader's order
    windows_per_domain: Mapping[str, int]
    parameter_groups: tuple[str, ...]  # output side first (tcnvae.curriculum.groups)
    max_epochs: int

    @classmethod
    def of(cls, model: TCNVAE, loader: WindowLoader, max_epochs: int) -> CurriculumContext:
        """The context of training ``model`` on ``loader``'s windows for ``max_epochs`` epochs."""
        ids, counts = np.unique(loader.domain[loader.domain >= 0], return_counts=True)
        windows = {loader.domain_names[i]: int(n) for i, n in zip(ids, counts)}
        return cls(domains=tuple(windows), windows_per_domain=windows,
                   parameter_groups=tuple(parameter_groups(model)), max_epochs=int(max_epochs))


def constructor_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """A policy class's parameters: its constructor's named arguments."""
    return {name: p for name, p in inspect.signature(cls.__init__).parameters.items()
            if name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


class CurriculumPolicy(ABC):
    """Decides each epoch's :class:`Stage`. Subclass it, implement :meth:`stage`, and keep each
    constructor argument as an attribute of the same name (or override :meth:`params`)."""

    name: ClassVar[str] = ""  # registry name; a class loaded from a file goes by its class name
    context: CurriculumContext | None = None

    @property
    def policy_name(self) -> str:
        return type(self).name or type(self).__name__

    def setup(self, context: CurriculumContext, model: TCNVAE) -> None:
        """Called once per run with its context and freshly built model; raise ValueError for a
        context the policy cannot work with (a start domain that is not a training domain, say)."""
        self.context = context

    def require_context(self) -> CurriculumContext:
        if self.context is None:
            raise RuntimeError(f"curriculum {self.policy_name!r}: call setup(context, model) before stage()")
        return self.context

    @abstractmethod
    def stage(self, epoch: int, metrics: Mapping[str, float] | None) -> Stage:
        """The stage of epoch ``epoch`` (from 0), given the metrics of the epoch before (or None)."""

    @classmethod
    def search_space(cls) -> dict[str, Any]:
        """Tune sampling functions over this policy's tunable constructor arguments."""
        return {}

    def params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in constructor_parameters(type(self))}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            raise ValueError(f"curriculum {self.policy_name!r} keeps no state, but was given {dict(state)}")


class Compose(CurriculumPolicy):
    """Several policies at once; each epoch's stage is their stages merged (see
    :func:`~tcnvae.curriculum.stage.merge_stages`). Parameters and state are keyed by policy name."""

    def __init__(self, *policies: CurriculumPolicy):
        if len(policies) < 2:
            raise ValueError(f"Compose needs at least two policies, got {len(policies)}")
        names = [policy.policy_name for policy in policies]
        if len(set(names)) != len(names):
            raise ValueError(f"Compose got the same policy twice: {names}")
        self.policies = policies

    @property
    def policy_name(self) -> str:
        return "+".join(policy.policy_name for policy in self.policies)

    def setup(self, context: CurriculumContext, model: TCNVAE) -> None:
        super().setup(context, model)
        for policy in self.policies:
            policy.setup(context, model)

    def stage(self, epoch: int, metrics: Mapping[str, float] | None) -> Stage:
        return merge_stages([policy.stage(epoch, metrics) for policy in self.policies])

    def search_space(self) -> dict[str, Any]:  # type: ignore[override]  # the composition's, not a class's
        return prefixed((policy.policy_name, policy.search_space()) for policy in self.policies)

    def params(self) -> dict[str, Any]:
        return prefixed((policy.policy_name, policy.params()) for policy in self.policies)

    def state_dict(self) -> dict[str, Any]:
        return {policy.policy_name: policy.state_dict() for policy in self.policies}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        names = [policy.policy_name for policy in self.policies]
        if state and sorted(state) != sorted(names):
            raise ValueError(f"curriculum state is for policies {sorted(state)}, not {names}")
        for policy in self.policies:
            policy.load_state_dict(state.get(policy.policy_name, {}))


def prefixed(named: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """``{"<policy>.<key>": value}``: how a composition's parameters and search space are keyed."""
    return {f"{name}.{key}": value for name, values in named for key, value in values.items()}


# -- helpers for policies: parameter checks and ramps ------------------------------------------------

def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (Tune samples NumPy integers), else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_number(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> float:
    """``value`` as a float in [low, high] (or (low, high] with ``low_open``), else a ValueError naming it."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
          and math.isfinite(value) and (value > low if low_open else value >= low) and value <= high)
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be a number in {bracket}{low}, {high}], got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return str(value)


def linear_ramp(epoch: int, start: int, length: int) -> float:
    """0 before ``start``, then rising in ``length`` + 1 equal steps to 1 at ``start + length``.

    ``length`` counts the intermediate epochs, so 0 is a switch at ``start``.
    """
    if epoch < start:
        return 0.0
    return min(1.0, (epoch - start + 1) / (length + 1))


def require_metric(metrics: Mapping[str, float], key: str, policy: str) -> float:
    if key not in metrics:
        raise ValueError(f"curriculum {policy!r} needs the metric {key!r}; the metrics have {sorted(metrics)}")
    return float(metrics[key])
