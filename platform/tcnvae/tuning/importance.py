"""Which searched hyperparameters mattered: fANOVA importance over a finished search's trials.

Optuna's fANOVA evaluator (``optuna.importance.FanovaImportanceEvaluator``: a random forest fitted to
the trials' hyperparameters and objective values, whose variance is split among the hyperparameters)
is run on a study built from the leaderboard rows. For an Optuna search that study holds what the
real one does (Ray's ``OptunaSearch`` tells Optuna each trial's last reported value, the value the
leaderboard ranks by); random, grid and PBT searches have no study, and get the same analysis. For
PBT the hyperparameters are the values a trial *started* with, before any exploit moved them.

Only trials with a value count, and only hyperparameters every one of them has (a conditional
curriculum parameter is left out; the choice of curriculum stays). Trees split on order alone, so a
log-scale range needs no log transform. Importances sum to 1; on a dozen trials they are a rough
guide, which the printout says.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution

from tcnvae.checkpoints import write_json

MIN_TRIALS = 3
"""Fewer trials with a value than this and there is nothing to split variance over."""

IMPORTANCE_FILE = "importance.json"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values)


def _encoded(value: Any) -> Any:
    """A value Optuna accepts as a categorical choice: lists and dicts as JSON text."""
    return value if isinstance(value, (bool, int, float, str)) or value is None else json.dumps(value, sort_keys=True)


def _distribution(values: Sequence[Any]) -> BaseDistribution:
    if _numeric(values):
        return FloatDistribution(float(min(values)), float(max(values)))
    return CategoricalDistribution(sorted(set(values), key=repr))


def parameter_importance(rows: Sequence[Mapping[str, Any]], hyperparameters: Sequence[str], metric: str,
                         seed: int = 0) -> tuple[dict[str, float], str]:
    """fANOVA importance of ``hyperparameters`` for ``metric`` over the leaderboard ``rows``.

    Returns the importances (highest first, summing to 1; empty when they cannot be computed) and a
    sentence saying what they rest on, or why there are none.
    """
    scored = [row for row in rows if _finite(row.get(metric))]
    if len(scored) < MIN_TRIALS:
        return {}, f"no parameter importance: {len(scored)} trials reported {metric}, at least {MIN_TRIALS} needed"
    if len({row[metric] for row in scored}) == 1:
        return {}, f"no parameter importance: every trial scored the same {metric}"
    shared = [key for key in hyperparameters if all(row.get(key) is not None for row in scored)]
    values = {key: [_encoded(row[key]) for row in scored] for key in shared}
    varying = [key for key in shared if len(set(values[key])) > 1]
    if not varying:
        return {}, "no parameter importance: no hyperparameter took two values"
    distributions = {key: _distribution(values[key]) for key in varying}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created in memory" in the summary
    try:
        study = optuna.create_study(direction="maximize")
    finally:
        optuna.logging.set_verbosity(verbosity)
    for index, row in enumerate(scored):
        params = {key: float(values[key][index]) if _numeric(values[key]) else values[key][index] for key in varying}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=float(row[metric])))
    importance = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed), params=varying)
    left_out = [key for key in hyperparameters if key not in varying]
    basis = (f"fANOVA on the final {metric} of {len(scored)} trials"
             + (f"; left out (missing in some trials or constant): {', '.join(left_out)}" if left_out else ""))
    return {key: float(value) for key, value in importance.items()}, basis


def report_importance(experiment: str | Path, rows: Sequence[Mapping[str, Any]], hyperparameters: Sequence[str],
                      metric: str) -> dict[str, float]:
    """Compute :func:`parameter_importance`, print it, write ``importance.json`` into ``experiment``."""
    importance, basis = parameter_importance(rows, hyperparameters, metric)
    write_json({"metric": metric, "method": "optuna.importance.FanovaImportanceEvaluator(seed=0)",
                "basis": basis, "importance": importance}, Path(experiment) / IMPORTANCE_FILE)
    if not importance:
        print(f"\n{basis[0].upper()}{basis[1:]}.")
        return importance
    print(f"\nParameter importance for {metric} ({basis}; a rough guide on few trials):")
    for key, share in importance.items():
        print(f"  {key:<24} {share:5.3f} {'█' * max(1, round(share * 30))}")
    print(f"Importance: {Path(experiment) / IMPORTANCE_FILE}")
    return importance
