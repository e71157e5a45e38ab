"""A conditional search space for Optuna: loss weights, a choice of curriculum, that curriculum's parameters.

A flat space over every policy's parameters would give each trial the parameters of policies it does
not run (which the trial config rejects, and which would be noise to the sampler). Optuna's
define-by-run interface asks for a policy first and then only for that policy's parameters, and TPE
models each parameter on the trials that drew it. Parameters are keyed
``curriculum.<policy>.<parameter>``, so two policies' parameters of the same name (``ramp_epochs``)
are separate dimensions.

The space is a module-level class rather than a closure in a recipe: Ray pickles the searcher with
the plain ``pickle`` module for ``--resume``, which finds classes by their importable name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from ray.tune.search.optuna import OptunaSearch

from tcnvae.curriculum import curriculum_class, curriculum_search_space
from tcnvae.tuning.config import CURRICULUM_PREFIX


def policy_space(spec: str) -> dict[str, Any]:
    """The Tune space of the curriculum ``spec``'s parameters under their trial-config keys,
    ``curriculum.<policy>.<parameter>`` (a composition's space is keyed by policy already)."""
    space = curriculum_search_space(spec)
    if "+" not in spec:
        cls = curriculum_class(spec)
        space = {f"{cls.name or cls.__name__}.{key}": domain for key, domain in space.items()}
    return {CURRICULUM_PREFIX + key: domain for key, domain in space.items()}


def suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """Ask ``trial`` for ``name`` from ``distribution`` through the public ``suggest_*`` calls (what
    Ray's define-by-run wrapper records as the trial's config)."""
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step,
                                 log=distribution.log)
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step,
                                   log=distribution.log)
    raise ValueError(f"search space {name!r}: no Optuna suggestion for {distribution!r}")


@dataclass
class CurriculumSpace:
    """``OptunaSearch(space=...)``: each trial draws ``base`` (the loss weights), then a curriculum
    among ``curricula``, then that curriculum's parameters; ``fixed`` settings per curriculum (an
    encoder path) are added as they are."""

    base: dict[str, BaseDistribution]
    curricula: dict[str, dict[str, BaseDistribution]]
    fixed: dict[str, dict[str, Any]]

    @classmethod
    def from_tune(cls, base: Mapping[str, Any], specs: Sequence[str],
                  fixed: Mapping[str, Mapping[str, Any]] | None = None) -> CurriculumSpace:
        """From a Tune space for the base keys and curriculum specs (their spaces: :func:`policy_space`)."""
        if not specs:
            raise ValueError("a curriculum search needs at least one curriculum to choose from")
        fixed = fixed or {}
        return cls(base=OptunaSearch.convert_search_space(dict(base)),
                   curricula={spec: OptunaSearch.convert_search_space(policy_space(spec)) for spec in specs},
                   fixed={spec: dict(fixed.get(spec, {})) for spec in specs})

    def hyperparameters(self) -> list[str]:
        """Every key a trial may draw, base keys first: the leaderboard's columns."""
        parameters = [key for space in self.curricula.values() for key in space]
        return [*self.base, "curriculum", *dict.fromkeys(parameters)]

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        for name, distribution in self.base.items():
            suggest(trial, name, distribution)
        spec = trial.suggest_categorical("curriculum", list(self.curricula))
        for name, distribution in self.curricula[spec].items():
            suggest(trial, name, distribution)
        return dict(self.fixed[spec])
