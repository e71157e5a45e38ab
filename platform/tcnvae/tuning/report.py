"""What a search reports: its console while it runs, and at its end the leaderboard, the best config, the
test score of the chosen model and which hyperparameters mattered.

Results
-------
Trials are ranked by the objective's value at their *last* reported epoch — the value the searcher
and the scheduler judged them by, and the state their latest checkpoint holds. The best value over
epochs is listed beside it, for reading, not for ranking. All objectives are maximised.

Files, written atomically into the experiment folder:

- ``leaderboard.csv``: one row per trial (errored ones included), hyperparameters and metrics, best first,
  with the random-forest baseline's scores in ``baseline ...`` columns (:mod:`tcnvae.baselines`);
- ``baseline.json``: the baseline's validation and test scores;
- ``best_config.json``: the complete trial config of the best trial (feed it back with ``--config``),
  plus its test score under :data:`TEST_RECORD_KEY`, which ``--config`` ignores;
- ``pareto_front.csv``: with several objectives, the trials no other trial beats on every one of them.

After choosing, the best trial's best checkpoint is scored once on the test split
(below, "The test split"); its figures are printed under their own heading and written to the
best trial's leaderboard row as ``test/... (never used for choosing)`` columns.

The test split
--------------
Selection uses validation only: the search ranks trials on the validation objective, and the best
trial's checkpoint is the epoch with the best validation value among those Tune kept. Only then is
that one checkpoint scored on the test subjects, in the driver: the data is prepared from the trial's
own config (same split, same training-side standardisation), the weights are loaded, and the model
runs deterministically. Nothing downstream reads the test figures to choose anything.

With a target domain (``lodo:<target>``), the labelled slice of the target that selection used is left
out of the test windows, so the test is on target people the search never looked at.

Parameter importance
--------------------
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

The console
-----------
One compact progress line now and then, Tune's own tables only with ``--verbose``.

Tune's default console redraws a table of every trial and its sixty settings, and warns "Experiment
state snapshotting has been triggered multiple times..." each time a trial writes ``num_to_keep``
checkpoints between two saves of the experiment state (an 80-second search printed it 44 times).
That warning asks for nothing (keeping few checkpoints is this project's choice, and the forced
saves are what keeps ``--resume`` close to the driver's last state), so it is filtered out unless
``--verbose``, which also brings back Tune's tables. By default the search prints
:class:`SearchProgress` lines instead::

    search 1:05  trials: 3 done, 2 running, 7 pending (of 12)  best val/accuracy 0.8123 (trial 002)  ETA 2:40

Ray's and Tune's own messages are silenced where they are made, not filtered from the console
(:func:`quiet_console`, :func:`ray_init_options`): the trial processes' Ray loggers are raised to
warnings by a ``worker_process_setup_hook`` (:func:`quiet_worker_logging`; Ray Train logs "Checkpoint
successfully created at: ..." at every checkpoint), the driver's by ``ray.init(logging_level=...)``
(the dashboard's address, the token it generated, Tune's "Wrote the latest version...") and its token
notice's logger to errors (:data:`TOKEN_NOTICE_LOGGER`), Tune's
start-up table by its legacy console (``RAY_AIR_NEW_OUTPUT=0``) at verbosity 0, and each trial
error's traceback (``TUNE_PRINT_ALL_TRIAL_ERRORS=0``) becomes one line of :class:`SearchProgress`
naming the error and whether it is retried (the traceback stays in the trial's ``error.txt``). ``--verbose`` keeps all of Ray's and Tune's console.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from ray.tune import Callback, ExperimentAnalysis, ResultGrid

from tcnvae.baselines import NAME as BASELINE_NAME
from tcnvae.baselines import BaselineResult, compare_with_search, leaderboard_columns
from tcnvae.checkpoints import atomic_write, load_checkpoint, write_json
from tcnvae.data.pipeline import PreparedData, prepare
from tcnvae.data.windows import WindowSet
from tcnvae.evaluate import score, training_activities
from tcnvae.tuning.config import data_config
from tcnvae.tuning.metrics import (SUMMARY_METRICS, TEST_METRICS, VAL_ACCURACY, VAL_PREFIX, leaderboard_test_column,
                                   test_split_metric)
from tcnvae.tuning.tensorboard import write_search_end
from tcnvae.tuning.trainables import RecurringTrialError, cause, describe, recurs, trial_error
from tcnvae.tuning.trial import CHECKPOINT_FILE, build_model, target_slice_subjects

logger = logging.getLogger(__name__)

TEST_RECORD_KEY = "test_never_used_for_choosing"
"""The key of best_config.json holding the test score: a record, not a trial setting."""


def trial_settings(best_config: Mapping[str, Any]) -> dict[str, Any]:
    """A best_config.json's trial settings, without the test record (what ``--config`` applies)."""
    return {key: value for key, value in best_config.items() if key != TEST_RECORD_KEY}


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def trial_rows(results: ResultGrid, hyperparameters: Sequence[str], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """One leaderboard row per trial: status, epochs, the searched hyperparameters, final and best metrics.

    A trial that ended before its config's ``max_epochs`` without an error was stopped by the scheduler.
    """
    columns = list(dict.fromkeys([*metrics, *SUMMARY_METRICS]))
    primary = metrics[0]
    rows = []
    for result in results:
        final = result.metrics or {}
        epochs = int(final.get("training_iteration", 0))
        if result.error is not None:
            status = "error"
        else:
            status = "completed" if epochs >= result.config["max_epochs"] else "stopped early"
        row: dict[str, Any] = {"trial": Path(result.path).name, "status": status, "epochs": epochs}
        row.update({key: result.config.get(key) for key in hyperparameters})
        row.update({key: _number(final.get(key)) for key in columns})
        history = result.metrics_dataframe
        if history is not None and primary in history and history[primary].notna().any():
            best = history[primary].idxmax()
            row[f"best {primary}"] = float(history[primary][best])
            row["best epoch"] = int(history["training_iteration"][best])
        else:
            row[f"best {primary}"], row["best epoch"] = math.nan, None
        row["path"] = result.path
        row["result"] = result
        rows.append(row)
    return rows


def rank(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """Rows best first by the metrics in order (later ones break ties); trials without a value last."""
    def key(row: Mapping[str, Any]) -> tuple:
        values = [_number(row.get(metric)) for metric in metrics]
        return (any(math.isnan(v) for v in values), *(-v if not math.isnan(v) else 0.0 for v in values))

    return [{"rank": position, **row} for position, row in enumerate(sorted(rows, key=key), start=1)]


def pareto_front(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """The rows no other row matches or beats on every metric while beating on one (all maximised)."""
    scored = [(row, [_number(row.get(m)) for m in metrics]) for row in rows]
    scored = [(row, values) for row, values in scored if not any(math.isnan(v) for v in values)]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [dict(row) for row, values in scored
            if not any(dominates(other, values) for _, other in scored)]


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """Rows to CSV (columns in first-seen order; the ``result`` objects left out), atomically."""
    columns = list(dict.fromkeys(key for row in rows for key in row if key != "result"))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda stream: stream.write(buffer.getvalue().encode()))


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def unfinished_trials(experiment: str | Path) -> int:
    """Trials that the saved experiment state lists as neither finished nor failed: an interrupted search.

    The result grid ``Tuner.fit`` returns cannot tell: when a run ends, interrupted or not, Tune stops
    every trial still running and marks it terminated. The state it saved just before still says
    which trials were running or pending, and is what ``Tuner.restore`` resumes from.
    """
    trials = ExperimentAnalysis(str(experiment)).trials
    return sum(trial.status not in ("TERMINATED", "ERROR") for trial in trials)


def resume_hint(tune_experiment: str) -> str | None:
    """How to continue an interrupted search (:func:`unfinished_trials`); None when every trial ended.
    ``tune_experiment``: Tune's experiment folder or URI (``ResultGrid.experiment_path``)."""
    unfinished = unfinished_trials(tune_experiment)
    if not unfinished:
        return None
    storage, _, name = tune_experiment.rstrip("/").rpartition("/")
    return (f"{unfinished} trials are unfinished: the search was interrupted. Continue it "
            f"with the same command and --storage-path {storage} --name {name} --resume")


def summarise_search(results: ResultGrid, experiment: str | Path, hyperparameters: Sequence[str],
                     metrics: Sequence[str], score_test: bool = True) -> dict[str, Any] | None:
    """Write the leaderboard, best config (and Pareto front), print where everything is; return the best row.

    The row's ``result`` is the trial's Tune ``Result`` (config, checkpoint, metrics history).
    With several objectives the best config is the Pareto-front trial best on the first objective.
    An interrupted search (trials neither finished nor failed) is not summarised: it returns None
    after printing how to resume, since a "best" among half-run trials would mislead.

    ``score_test=False`` leaves the test split unscored: a later step chooses among the trials
    (:mod:`tcnvae.tuning.selection`) and scores its own choice, so the test is scored once.
    """
    experiment = Path(experiment)
    # Tune's own experiment folder: the same as ``experiment`` for a local storage path, a URI
    # (s3://...) when trials are stored remotely and only the search's own files are local.
    hint = resume_hint(results.experiment_path)
    if hint:
        print(f"\n{hint}")
        return None
    rows = rank(trial_rows(results, hyperparameters, metrics), metrics)
    if not rows:
        raise ValueError(f"the experiment at {experiment} has no trials to summarise")
    errors = sum(row["status"] == "error" for row in rows)
    if errors:
        logger.warning("%d of %d trials ended in an error; see their error.txt under %s", errors, len(rows), experiment)
    candidates = rows
    if len(metrics) > 1:
        candidates = rank(pareto_front(rows, metrics), metrics)
        write_csv(candidates, experiment / "pareto_front.csv")
    if not candidates or math.isnan(_number(candidates[0].get(metrics[0]))):
        write_csv(rows, experiment / "leaderboard.csv")  # what each trial did, for the error hunt
        raise RuntimeError(f"no trial of {experiment} reported {', '.join(metrics)}; see the trials' error.txt")
    best = candidates[0]
    test, not_scored = (score_test_split(best, metrics[0]) if score_test else
                        (None, "left to the cross-validation that follows, which scores its own choice"))
    if test is not None:
        for row in [*rows, *candidates]:
            if row["trial"] == best["trial"]:
                row.update({leaderboard_test_column(name): test.metrics[name] for name in TEST_METRICS})
    record = {TEST_RECORD_KEY: test.record()} if test is not None else {}
    write_json({**best["result"].config, **record}, experiment / "best_config.json")

    _print_best(best, hyperparameters, metrics)
    # Written before anything reads the data again: a data file moved or deleted while the search ran
    # must not cost the record of what was trained.
    write_csv(rows, experiment / "leaderboard.csv")
    # The classical baseline on the same data, printed beside the best trial and added to the leaderboard.
    baseline = None
    try:
        baseline = compare_with_search(best, experiment)
    except (OSError, ValueError) as error:
        logger.warning("baseline not fitted, leaderboard.csv written without its columns: %s", error)
    else:
        write_csv([{**row, **leaderboard_columns(baseline)} for row in rows], experiment / "leaderboard.csv")
    if len(metrics) > 1:
        print(f"\nPareto front on {', '.join(metrics)} ({len(candidates)} of {len(rows)} trials):")
        for row in candidates:
            print("  " + row["trial"] + ": " + ", ".join(f"{m}={_format(row[m])}" for m in metrics))
        print(f"Pareto front: {experiment / 'pareto_front.csv'}")
    print_test(test, not_scored, baseline)
    if test is not None:
        _warn_if_near_chance(best, test)
    # TensorBoard's end-of-search view: sessions ended with their status, leaderboard and importance as Text.
    importance = report_importance(experiment, rows, hyperparameters, metrics[0])
    write_search_end(experiment, rows, best, hyperparameters, metrics, importance)
    print(f"\nLeaderboard ({len(rows)} trials): {experiment / 'leaderboard.csv'}")
    print(f"Best config: {experiment / 'best_config.json'}")
    print(f"Results folder: {experiment}")
    print("\n" + "\n".join(next_steps(experiment)))  # the TensorBoard command among them
    return best


def next_steps(experiment: str | Path) -> list[str]:
    """The commands that follow a search: the final model from its best config, and the trials compared."""
    return ["Next:",
            f"  python searches/final_model.py {experiment}   # final model: best config on training + "
            "validation people, tested once",
            f"  tensorboard --logdir {experiment}   # compare the trials (HPARAMS tab: parallel coordinates)"]


def score_test_split(best: Mapping[str, Any], metric: str) -> tuple[HeldOutScore | None, str | None]:
    """The best trial's test score, or None and why it cannot be had: no checkpoint kept, no test
    windows, or data the driver cannot read (e.g. a cluster where only the workers can)."""
    try:
        return score_best_trial(best["result"], metric), None
    except (OSError, ValueError) as error:
        logger.warning("test split not scored: %s", error)
        return None, str(error)


def _print_best(best: Mapping[str, Any], hyperparameters: Sequence[str], metrics: Sequence[str]) -> None:
    print(f"\nBest trial {best['trial']} ({best['status']}, {best['epochs']} epochs), chosen on validation:")
    # Conditional spaces: parameters of policies this trial did not draw are None, and left out.
    print("  " + ", ".join(f"{key}={_format(best[key])}" for key in hyperparameters if best[key] is not None))
    print("  " + ", ".join(f"{key} {_format(best[key])}" for key in dict.fromkeys([*metrics, *SUMMARY_METRICS])))


def print_test(test: HeldOutScore | None, not_scored: str | None, baseline: BaselineResult | None = None) -> None:
    """The test split's figures; given the ``baseline`` fitted on the same data, the forest's per-activity F1
    beside the model's and :func:`verdict`'s line."""
    heading = "Test split (scored once, after selection; never used for choosing)"
    if test is None:
        print(f"\n{heading}: not scored: {not_scored}")
        return
    metrics = test.metrics
    print(f"\n{heading}: split {test.split!r}, {len(test.subjects)} subjects, {metrics['windows']} windows")
    print(f"  checkpoint: epoch {test.epoch} (chosen on validation: "
          + ", ".join(f"{key} {value:.4g}" for key, value in test.selection.items() if key in SUMMARY_METRICS) + ")")
    for name in TEST_METRICS:
        print(f"  {test_split_metric(name)}: {_format(metrics[name])}")
    print("  test F1 per activity: " + ", ".join(f"{name} {value:.3f}" for name, value in
                                                metrics["per_activity_f1"].items()))
    forest = baseline.test_per_activity_f1 if baseline is not None else {}
    if forest:
        print("  forest F1 per activity: " + ", ".join(f"{name} {forest[name]:.3f}" for name in
                                                      metrics["per_activity_f1"] if name in forest))
    weak = {name: value for name, value in metrics["per_activity_f1"].items() if value < WEAK_F1}
    if weak:
        print(f"  below {WEAK_F1} F1: " + ", ".join(
            f"{name} {value:.3f}" + (f" (forest {forest[name]:.3f})" if name in forest else "")
            for name, value in weak.items()))
    if metrics.get("unscored_activities"):
        print("  not scored (no training windows of these activities): " + ", ".join(
            f"{name} ({count} windows)" for name, count in metrics["unscored_activities"].items()))
    if baseline is not None:
        print(verdict(metrics, baseline.test, len(test.data.test)))


WEAK_F1 = 0.5
"""An activity the model scores below this F1 on the test people is flagged in the summary."""


def verdict(model: Mapping[str, Any], forest: Mapping[str, float], forest_windows: int) -> str:
    """One line: the model's test macro-F1 and accuracy beside the forest's on the same test people, the
    macro-F1 difference in points and who wins. ``forest_windows``: the windows the forest was scored on
    (the whole test side), named when the model scored fewer (a target slice or activities left out)."""
    if not (_finite(forest.get("macro_f1")) and _finite(model.get("macro_f1"))):
        return "  (no test windows for the forest: the model cannot be compared with it)"
    points = 100 * (model["macro_f1"] - forest["macro_f1"])
    outcome = (f"the model beats the forest by {points:.1f} macro-F1 points" if points > 0 else
               f"the forest is {-points:.1f} macro-F1 points ahead — the platform does not beat it here")
    scope = ("the same test people" if model["windows"] == forest_windows else
             f"the same test people; model on {model['windows']} of the forest's {forest_windows} windows")
    return (f"\nTest vs {BASELINE_NAME} ({scope}): macro-F1 {model['macro_f1']:.4f} vs {forest['macro_f1']:.4f}, "
            f"accuracy {model['accuracy']:.4f} vs {forest['accuracy']:.4f}: {outcome}")


def _warn_if_near_chance(best: Mapping[str, Any], test: HeldOutScore) -> None:
    warning = near_chance_warning(test.selection.get(VAL_ACCURACY, math.nan), test.data, best["result"].config,
                                  best["epochs"], best["status"] == "stopped early", test.metrics)
    if warning:
        print(f"\n{'!' * 80}\nWARNING: {warning}\n{'!' * 80}")


NEAR_CHANCE_MARGIN = 0.1
"""Validation accuracy within this many points of the majority-class rate counts as near chance."""
FEW_STEPS_PER_EPOCH = 20
FEW_WINDOWS_PER_ACTIVITY = 20
FEW_EPOCHS = 4
ONE_CLASS_SHARE = 0.8


@dataclass
class HeldOutScore:
    """The test-split metrics of one checkpoint, and what they were measured on."""

    metrics: dict[str, Any]  # tcnvae.evaluate.score's output
    epoch: int  # the checkpoint's epoch (chosen on validation)
    selection: dict[str, float]  # the checkpoint's validation metrics, what it was chosen by
    split: str
    subjects: list[str]
    data: PreparedData = field(repr=False)

    def record(self) -> dict[str, Any]:
        """JSON-ready, for best_config.json."""
        return {"note": "scored once on the test split after selection; never used for choosing",
                "epoch": self.epoch, "split": self.split, "subjects": self.subjects,
                "selected_on": self.selection, **self.metrics}


def scored_test_windows(data: PreparedData, config: Mapping[str, Any]) -> WindowSet:
    """The test side of ``data``, less the target domain's labelled slice when selection used one."""
    if not config["target_domain"]:
        return data.test
    labelled = target_slice_subjects(data, config["target_labelled_fraction"], config["seed"])
    return data.test.subset(~np.isin(data.test.subject, labelled))


def best_checkpoint(result: Any, metric: str) -> tuple[Any, dict[str, Any]] | None:
    """The kept checkpoint of a Tune ``Result`` with the highest ``metric``, and its reported metrics."""
    kept = [(checkpoint, metrics) for checkpoint, metrics in (result.best_checkpoints or [])
            if isinstance(metrics.get(metric), (int, float)) and not math.isnan(metrics[metric])]
    if not kept:
        return None
    return max(kept, key=lambda pair: pair[1][metric])


def load_trial_model(directory: str | Path) -> tuple[torch.nn.Module, PreparedData, dict[str, Any]]:
    """(model, prepared data, trial config) of a trial checkpoint directory, on the CPU.

    The data comes from the checkpoint's own config; its activity order and standardisation must match
    what the checkpoint was trained with, or the weights would be read against the wrong labels.
    """
    payload = load_checkpoint(Path(directory) / CHECKPOINT_FILE)
    config = payload["config"]  # the trial's validated config, as it trained
    data = prepare(data_config(config))
    trained_on = payload["trainer"]["metadata"]["data"]
    if trained_on["activity_names"] != data.activity_names:
        raise ValueError(f"the data prepared now has activities {data.activity_names}, the checkpoint was "
                         f"trained on {trained_on['activity_names']}: has the data changed since the search?")
    if not np.allclose(trained_on["standardiser"]["mean"], data.standardiser.mean):
        raise ValueError("the training windows prepared now differ from the search's (another standardisation): "
                         "has the data changed since the search?")
    model = build_model(config, data)
    model.load_state_dict(payload["trainer"]["model_state"])
    return model, data, config


def score_best_trial(result: Any, metric: str) -> HeldOutScore:
    """Score the best-on-``metric`` checkpoint of the trial behind Tune ``Result`` on its test split."""
    chosen = best_checkpoint(result, metric)
    if chosen is None:
        raise FileNotFoundError(f"trial {Path(result.path).name} kept no checkpoint with {metric}")
    checkpoint, reported = chosen
    with checkpoint.as_directory() as directory:
        model, data, config = load_trial_model(directory)
    windows = scored_test_windows(data, config)
    selection = {key: float(value) for key, value in reported.items()
                 if key.startswith(VAL_PREFIX) and isinstance(value, (int, float))}
    # A held-out dataset is scored on the activities the sources teach; the others are named, not scored.
    metrics = score(model, windows, config["domain_by"], data.domain_names,
                    scored_activities=training_activities(data.train), activities_present=data.config.activities_present)
    return HeldOutScore(metrics=metrics,
                     epoch=int(reported["training_iteration"]), selection=selection, split=data.config.split,
                     subjects=sorted(set(windows.subject.tolist())), data=data)


def near_chance_warning(accuracy: float, data: PreparedData, config: Mapping[str, Any], epochs: int,
                        stopped_early: bool, test: Mapping[str, Any] | None = None) -> str | None:
    """A warning with the likely causes when validation ``accuracy`` is near what always answering the
    most common validation activity scores; None when it is clearly above that."""
    counts = data.val.class_counts() if len(data.val) else data.train.class_counts()
    majority = max(counts, key=counts.get)
    chance = counts[majority] / max(sum(counts.values()), 1)
    chance = max(chance, 1 / max(len(counts), 1))
    if not accuracy < chance + NEAR_CHANCE_MARGIN:
        return None
    causes = []
    steps = math.ceil(len(data.train) / config["batch_size"])
    if steps < FEW_STEPS_PER_EPOCH:
        causes.append(f"only {steps} optimiser steps per epoch ({len(data.train)} training windows, batch_size "
                      f"{config['batch_size']}): lower batch_size (--set batch_size=8) or add data")
    if epochs <= FEW_EPOCHS or stopped_early:
        stop = " (stopped early by the scheduler)" if stopped_early else ""
        causes.append(f"the best trial trained {epochs} epochs{stop}: raise --max-epochs, or ASHA's "
                      f"--grace-period so trials are not judged before they learn")
    scarce = {name: n for name, n in data.train.class_counts().items() if n < FEW_WINDOWS_PER_ACTIVITY}
    if scarce:
        causes.append(f"few training windows for {scarce}: more data, or shorter --set step_seconds=...")
    if test is not None:
        predicted = np.asarray(test["confusion"]).sum(axis=0)
        top = int(predicted.argmax())
        if predicted.sum() and predicted[top] / predicted.sum() >= ONE_CLASS_SHARE:
            causes.append(f"the model answers {test['activities'][top]!r} for {predicted[top] / predicted.sum():.0%} "
                          "of test windows: it learned the class frequencies, not the signals")
    causes.append("labels or units that do not match the signals (acc in g, gyro in rad/s; see 'Your own data')")
    return (f"the best trial is near chance: validation accuracy {accuracy:.3f} against {chance:.3f} for always "
            f"answering {majority!r}. Likely causes:\n" + "\n".join(f"  - {cause}" for cause in causes))


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


PRINT_EVERY_SECONDS = 30.0
"""Longest gap between two progress lines while trials report (a trial's end always prints one)."""
SNAPSHOT_WARNING = "Experiment state snapshotting has been triggered multiple times"
SNAPSHOT_LOGGER = "ray.tune.execution.experiment_state"  # the Ray module that logs it


QUIET_CONSOLE_ENV = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_PRINT_ALL_TRIAL_ERRORS": "0"}
"""Tune's switches while a quiet search runs: its legacy console, which at verbosity 0 prints nothing (the
new one prints its configuration table at any verbosity), and no traceback of every trial error."""
TOKEN_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"
"""Ray's logger of "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to
opt out": a notice at every start of a local Ray, logged as a warning. Quiet searches keep the token
authentication and raise this logger to errors; ``RAY_AUTH_MODE=token`` set by the search would not do:
Ray reads it when it is imported."""
WORKER_SETUP_HOOK = "tcnvae.tuning.report.quiet_worker_logging"
"""Run by every Ray worker process of a quiet search as it starts (``runtime_env``'s ``worker_process_setup_hook``)."""


def console_verbosity(verbose: bool) -> int:
    """Tune's ``RunConfig(verbose=...)``: 1 (its trial tables) with ``--verbose``, else 0 (our lines only)."""
    return 1 if verbose else 0


def quiet_worker_logging() -> None:
    """In a trial's process: Ray's own loggers (Ray Train's "Checkpoint successfully created at: ..." at
    every checkpoint, among them) emit warnings and errors only, so only those reach the driver's console."""
    logging.getLogger("ray").setLevel(logging.WARNING)


def ray_init_options(verbose: bool) -> dict[str, Any]:
    """``ray.init`` keywords for the search's console: Ray's driver and worker logs at warnings without
    ``--verbose``, as Ray has them (the dashboard address included) with it."""
    if verbose:
        return {}
    return {"logging_level": logging.WARNING, "runtime_env": {"worker_process_setup_hook": WORKER_SETUP_HOOK}}


@contextmanager
def quiet_console(enabled: bool = True) -> Iterator[None]:
    """While a search starts and runs: Tune's console off (:data:`QUIET_CONSOLE_ENV`), its repeated snapshot
    warning dropped (module doc), Optuna's "A new study created" left out; everything as it was afterwards."""
    if not enabled:
        yield
        return
    saved_env = {key: os.environ.get(key) for key in QUIET_CONSOLE_ENV}
    os.environ.update(QUIET_CONSOLE_ENV)
    optuna_verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    token_logger = logging.getLogger(TOKEN_NOTICE_LOGGER)
    token_level = token_logger.level
    token_logger.setLevel(logging.ERROR)
    try:
        with quiet_snapshot_warnings():
            yield
    finally:
        token_logger.setLevel(token_level)
        optuna.logging.set_verbosity(optuna_verbosity)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _DropSnapshotWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(SNAPSHOT_WARNING)


@contextmanager
def quiet_snapshot_warnings() -> Iterator[None]:
    """Drop Tune's repeated snapshot warning (module doc) while the search runs; other warnings stay."""
    snapshot_logger = logging.getLogger(SNAPSHOT_LOGGER)
    dropper = _DropSnapshotWarnings()
    snapshot_logger.addFilter(dropper)
    try:
        yield
    finally:
        snapshot_logger.removeFilter(dropper)


def _index(trial: Any) -> str:
    return str(trial).split("_", 1)[0]


def format_duration(seconds: float) -> str:
    """``1:05``, ``1:02:03``: minutes and seconds, hours when there are any."""
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class SearchProgress(Callback):
    """Prints a progress line at the first result, then at most every :data:`PRINT_EVERY_SECONDS` while
    trials report, and at each trial's end: trials done/running/pending, the best so far, and an ETA.
    On a terminal it is one line, rewritten in place (a failed trial's line goes above it); into a pipe
    or a file, a line each time.

    Best so far: the highest ``metric`` at a trial's latest epoch, the value the leaderboard ranks by.
    ETA: the epochs still to run (every unfinished trial to its ``max_epochs``, trials not started yet
    included) at the rate epochs have come in since the first one (Ray's start-up left out), so it
    allows for the trials running side by side; a scheduler that stops trials early (ASHA) makes the
    search end sooner.
    Counted from the trials Tune hands every callback, so a resumed search counts the trials it
    finished before the interruption.
    """

    def __init__(self, metric: str, max_epochs: int, print_every_seconds: float = PRINT_EVERY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.metric = metric
        self.max_epochs = max_epochs
        self.print_every_seconds = print_every_seconds
        self.clock = clock
        self._total = 0
        self._started = clock()
        self._last_line = -math.inf
        self._first_result: float | None = None
        self._epochs = 0
        self._line_open = False

    def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info: Any) -> None:
        self._total = total_num_samples or num_samples or 0
        self._started = self.clock()
        self._last_line = -math.inf
        self._first_result = None
        self._epochs = 0
        self._line_open = False

    def on_trial_result(self, iteration: int, trials: Sequence[Any], trial: Any, result: dict, **info: Any) -> None:
        if self._first_result is None:
            self._first_result = self.clock()
        else:
            self._epochs += 1
        if self.clock() - self._last_line >= self.print_every_seconds:
            self._print(trials)

    # Tune calls these before it sets the trial's new status: the line counts it as ended already.
    def on_trial_complete(self, iteration: int, trials: Sequence[Any], trial: Any, **info: Any) -> None:
        self._print(trials, ended=trial, ended_as="TERMINATED")

    # One line per failure the user should know of: a trial's own error once (a recurring one is not
    # retried: the restarts Tune still makes refuse at once, and are not shown), a retried crash each time.
    def on_trial_error(self, iteration: int, trials: Sequence[Any], trial: Any, **info: Any) -> None:
        error = trial_error(trial)
        if not isinstance(cause(error), RecurringTrialError):
            self._say(f"trial {_index(trial)} failed: {describe(error) if error else 'see its error.txt'}")
        self._print(trials, ended=trial, ended_as="ERROR")

    def on_trial_recover(self, iteration: int, trials: Sequence[Any], trial: Any, **info: Any) -> None:
        error = trial_error(trial)
        if error is None:
            self._say(f"trial {_index(trial)} failed (see its error.txt); retried from its latest checkpoint")
        elif recurs(cause(error)):
            if not isinstance(cause(error), RecurringTrialError):
                self._say(f"trial {_index(trial)} failed: {describe(error)}; not retried: it would recur")
        else:
            self._say(f"trial {_index(trial)} failed: {describe(error)}; retried from its latest checkpoint")

    def line(self, trials: Sequence[Any], ended: Any = None, ended_as: str = "TERMINATED") -> str:
        """The progress line for Tune's ``trials`` now; ``ended``, if given, counts as ``ended_as``."""
        statuses = [ended_as if trial is ended else trial.status for trial in trials]
        done, errors = statuses.count("TERMINATED"), statuses.count("ERROR")
        running = statuses.count("RUNNING") + statuses.count("PAUSED")
        total = max(self._total, len(trials))
        counts = f"{done} done, " + (f"{errors} errored, " if errors else "") + \
            f"{running} running, {total - done - errors - running} pending (of {total})"
        parts = [f"search {format_duration(self.clock() - self._started)}", f"trials: {counts}"]
        scored = [(trial.last_result[self.metric], trial) for trial in trials
                  if isinstance((trial.last_result or {}).get(self.metric), (int, float))
                  and not math.isnan(trial.last_result[self.metric])]
        if scored:
            value, best = max(scored, key=lambda pair: pair[0])
            parts.append(f"best {self.metric} {value:.4f} (trial {_index(best)})")
        parts.append(f"ETA {self._eta(trials, statuses, total)}")
        return "  ".join(parts)

    def _eta(self, trials: Sequence[Any], statuses: Sequence[str], total: int) -> str:
        unfinished = [trial for trial, status in zip(trials, statuses) if status not in ("TERMINATED", "ERROR")]
        remaining = sum(max(0, trial.config.get("max_epochs", self.max_epochs)
                            - (trial.last_result or {}).get("training_iteration", 0)) for trial in unfinished)
        remaining += max(0, total - len(trials)) * self.max_epochs
        if remaining == 0:
            return "0:00"
        if self._first_result is None or self._epochs == 0:
            return "after the first epochs"
        return format_duration(remaining * (self.clock() - self._first_result) / self._epochs)

    def _print(self, trials: Sequence[Any], **ended: Any) -> None:
        self._last_line = self.clock()
        if sys.stdout.isatty():  # one line, rewritten in place; a log (a pipe, a file) gets each line
            sys.stdout.write(f"\r\x1b[2K{self.line(trials, **ended)}")
            sys.stdout.flush()
            self._line_open = True
        else:
            print(self.line(trials, **ended), flush=True)

    def _say(self, message: str) -> None:
        """A line of its own: below the progress line a terminal shows, which goes on under it."""
        self._end_line()
        print(message, flush=True)

    def _end_line(self) -> None:
        if self._line_open:
            sys.stdout.write("\n")
            self._line_open = False

    def on_experiment_end(self, trials: Sequence[Any], **info: Any) -> None:
        self._end_line()
