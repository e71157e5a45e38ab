"""What a search leaves behind: a leaderboard of every trial, the best config, the Pareto front.

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
(:mod:`tcnvae.tuning.scoring`); its figures are printed under their own heading and written to the
best trial's leaderboard row as ``test/... (never used for choosing)`` columns.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ray.tune import ExperimentAnalysis, ResultGrid

from tcnvae.baselines import compare_with_search, leaderboard_columns
from tcnvae.checkpoints import atomic_write, write_json
from tcnvae.tuning.scoring import HeldOutScore, near_chance_warning, score_best_trial
from tcnvae.tuning.importance import report_importance
from tcnvae.tuning.tensorboard import write_search_end

logger = logging.getLogger(__name__)

SUMMARY_METRICS = ("val/accuracy", "val/macro_f1", "val/worst_domain_accuracy", "val/loss")
"""Final metrics listed for every trial besides the objectives."""
TEST_METRICS = ("accuracy", "macro_f1", "worst_domain_accuracy")
TEST_RECORD_KEY = "test_never_used_for_choosing"
"""The key of best_config.json holding the test score: a record, not a trial setting."""


def trial_settings(best_config: Mapping[str, Any]) -> dict[str, Any]:
    """A best_config.json's trial settings, without the test record (what ``--config`` applies)."""
    return {key: value for key, value in best_config.items() if key != TEST_RECORD_KEY}


def leaderboard_test_column(metric: str) -> str:
    return f"test/{metric} (never used for choosing)"


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
    (:mod:`tcnvae.tuning.cross_validation`) and scores its own choice, so the test is scored once.
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
    print_test(test, not_scored)
    if test is not None:
        _warn_if_near_chance(best, test)
    # TensorBoard's end-of-search view: sessions ended with their status, leaderboard and importance as Text.
    importance = report_importance(experiment, rows, hyperparameters, metrics[0])
    write_search_end(experiment, rows, best, hyperparameters, metrics, importance)
    print(f"\nLeaderboard ({len(rows)} trials): {experiment / 'leaderboard.csv'}")
    print(f"Best config: {experiment / 'best_config.json'}")
    print(f"Results folder: {experiment}")
    print(f"TensorBoard: tensorboard --logdir {experiment}")
    return best


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
    for key in hyperparameters:
        if best[key] is not None:  # conditional spaces: parameters of policies this trial did not draw
            print(f"  {key} = {_format(best[key])}")
    for key in dict.fromkeys([*metrics, *SUMMARY_METRICS]):
        print(f"  {key}: {_format(best[key])}")


def print_test(test: HeldOutScore | None, not_scored: str | None) -> None:
    heading = "Test split (scored once, after selection; never used for choosing)"
    if test is None:
        print(f"\n{heading}: not scored: {not_scored}")
        return
    metrics = test.metrics
    print(f"\n{heading}: split {test.split!r}, {len(test.subjects)} subjects, {metrics['windows']} windows")
    print(f"  checkpoint: epoch {test.epoch} (chosen on validation: "
          + ", ".join(f"{key} {value:.4g}" for key, value in test.selection.items() if key in SUMMARY_METRICS) + ")")
    for name in TEST_METRICS:
        print(f"  test/{name}: {_format(metrics[name])}")
    print("  test F1 per activity: " + ", ".join(f"{name} {value:.3f}" for name, value in
                                                metrics["per_activity_f1"].items()))


def _warn_if_near_chance(best: Mapping[str, Any], test: HeldOutScore) -> None:
    warning = near_chance_warning(test.selection.get("val/accuracy", math.nan), test.data, best["result"].config,
                                  best["epochs"], best["status"] == "stopped early", test.metrics)
    if warning:
        print(f"\n{'!' * 80}\nWARNING: {warning}\n{'!' * 80}")
