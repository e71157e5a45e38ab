"""Choose among a search's best trials by cross-validation over people (``--cross-validate N``).

A search ranks its trials on one group of validation people (``val_fraction`` of those outside the test
side: 4 of UCI-HAR's 21 training people, 6 of HAPT's 24). On real data that group and the test people
disagreed by more than the configs differed (docs/results.md, "Against the random forest").
Cross-validation looks at everyone: the ``N`` best trials that ran their whole schedule are each run
again ``folds`` times from scratch, each run validating on another fold of the people outside the test side
(:class:`~tcnvae.data.splits.SubjectFold`: every one of them validates exactly once), and the config
with the best mean over the folds of its last-epoch objective wins — the last epoch, because the final
model (:mod:`tcnvae.final_model`) trains the whole schedule. Ties keep the search's order.

The fold runs are Ray tasks with the trials' resources, in parallel, after the search: ``N × folds``
whole runs, which cost more than a search that ASHA prunes (docs/results.md, "Smaller measurements").
The test side is untouched: only the winner's kept checkpoint from the search is scored on it, once, after the choice.

Files, written atomically into the experiment folder: ``cross_validation.csv`` (one row per candidate:
its search rank and value, each fold's value, the mean and standard deviation, the winner's test
columns) and ``best_config.json`` (the winner's config and test record, what ``final_model.py`` reads).
When the winner is not the search's own best trial, the search's choice stays in
``best_config_single_split.json``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch

from tcnvae.checkpoints import atomic_write, write_json
from tcnvae.data.pipeline import PreparedData
from tcnvae.tuning.progress import format_duration
from tcnvae.tuning.loop import Worker, run_trial
from tcnvae.tuning.results import (TEST_METRICS, TEST_RECORD_KEY, leaderboard_test_column, print_test, rank,
                                   score_test_split, trial_rows, write_csv)

FOLDS = 4
"""Folds of people unless told otherwise: each fold run trains on three quarters of the people outside
the test side (UCI-HAR: 5–6 validate in each fold, against 4 in the search)."""
SINGLE_SPLIT_FILE = "best_config_single_split.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The recipe flags: ``--cross-validate N`` and ``--folds K``."""
    group = parser.add_argument_group("choosing the winner")
    group.add_argument("--cross-validate", type=int, default=0, metavar="N",
                       help="run the N best trials again over --folds folds of people and choose by their mean "
                            "(tcnvae.tuning.cross_validation; default: 0, choose on the one validation split)")
    group.add_argument("--folds", type=int, default=FOLDS, metavar="K",
                       help=f"folds of people for --cross-validate (default: {FOLDS})")


def check_cross_validation(candidates: int, folds: int, config: Mapping[str, Any], data: PreparedData,
                           objectives: Sequence[str]) -> None:
    """Refuse, before Ray starts, a cross-validation that cannot run: fewer than 1 candidate or 2 folds,
    several objectives (no single ranking), multi-worker trials, or a dataset with fewer people outside
    the test side than folds."""
    if candidates < 0 or folds < 2:
        raise ValueError(f"--cross-validate {candidates} --folds {folds}: expected at least 1 candidate "
                         "(0: off) and at least 2 folds")
    if not candidates:
        return
    if len(objectives) > 1:
        raise ValueError("--cross-validate ranks by one objective; it cannot follow a search with --objectives")
    if config["workers_per_trial"] != 1:
        raise ValueError(f"--cross-validate runs each fold on one worker; drop --workers-per-trial "
                         f"{config['workers_per_trial']}")
    datasets = np.concatenate([data.train.dataset, data.val.dataset])
    subjects = np.concatenate([data.train.subject, data.val.subject])
    for dataset in sorted(set(datasets.tolist())):
        people = len(set(subjects[datasets == dataset].tolist()))
        if people < folds:
            raise ValueError(f"--folds {folds}: dataset {dataset} has {people} people outside the test side; "
                             f"use --folds {people} or fewer")


def fold_score(config: dict[str, Any], metric: str) -> float:
    """Run ``config`` (a fold's) to its end in this process; its last epoch's ``metric``."""
    last: dict[str, float] = {}
    device = torch.device("cuda" if config["use_gpu"] else "cpu")
    run_trial(config, lambda metrics, checkpoint: last.update(metrics), worker=Worker(device=device))
    return float(last.get(metric, math.nan))


def cross_validate(results: Any, experiment: str | Path, metric: str, *, candidates: int, folds: int = FOLDS,
                   cpus_per_trial: float = 1, gpus_per_trial: float = 0, max_failures: int = 2) -> dict[str, Any]:
    """Cross-validate the ``candidates`` best completed trials of a search's ``results`` (a Tune
    ``ResultGrid``) over ``folds`` folds of people (see the module docstring); returns the winner's row.

    Ray must be running (the search started it). A fold run that fails for a node's loss is retried up to
    ``max_failures`` times; one that raises is not (it would fail again) and fails the cross-validation.
    """
    experiment = Path(experiment)
    ranked = rank(trial_rows(results, [], [metric]), [metric])
    search_choice = ranked[0]["trial"]
    # Trials that ran the whole schedule: their values are of the same epoch (one ASHA stopped early is
    # ranked on an earlier one, and was stopped for trailing the others there).
    chosen = [row for row in ranked if row["status"] == "completed"][:candidates]
    if not chosen:
        raise RuntimeError(f"no trial of {experiment} ran its whole schedule; nothing to cross-validate")
    if len(chosen) < candidates:
        print(f"Only {len(chosen)} trials ran their whole schedule; cross-validating those.")
    print(f"\nCross-validating the {len(chosen)} best trials over {folds} folds of people "
          f"({len(chosen) * folds} runs of {chosen[0]['result'].config['max_epochs']} epochs):", flush=True)
    task = ray.remote(fold_score).options(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial,
                                          max_retries=max_failures, retry_exceptions=False)
    runs = {task.remote({**row["result"].config, "val_folds": folds, "val_fold": fold}, metric): (position, fold)
            for position, row in enumerate(chosen) for fold in range(folds)}
    values = np.full((len(chosen), folds), math.nan)
    started, pending = time.monotonic(), list(runs)
    while pending:  # each fold as it ends, so a long cross-validation shows its progress
        (done,), pending = ray.wait(pending, num_returns=1)
        position, fold = runs[done]
        values[position, fold] = ray.get(done)
        print(f"  {len(runs) - len(pending)}/{len(runs)} [{format_duration(time.monotonic() - started)}] "
              f"{chosen[position]['trial']}, fold {fold}: {metric} {values[position, fold]:.4f}", flush=True)
    table = []
    for row, scores in zip(chosen, values):
        table.append({"trial": row["trial"], "search rank": row["rank"], f"search {metric}": row[metric],
                      **{f"fold {fold} {metric}": value for fold, value in enumerate(scores)},
                      f"mean {metric}": float(np.mean(scores)), f"std {metric}": float(np.std(scores)),
                      "result": row["result"], "path": row["path"]})
        print(f"  {row['trial']}: {metric} {np.mean(scores):.4f} ± {np.std(scores):.4f} over the folds "
              f"(search: {row[metric]:.4f})", flush=True)
    winner = max(table, key=lambda entry: (entry[f"mean {metric}"], -entry["search rank"]))
    print(f"Chosen by cross-validation: {winner['trial']}"
          + (" (the search's own choice)" if winner["trial"] == search_choice else
             f" (rank {winner['search rank']} in the search; its choice was {search_choice})"))

    test, not_scored = score_test_split(winner, metric)
    if test is not None:
        winner.update({leaderboard_test_column(name): test.metrics[name] for name in TEST_METRICS})
    best_config = experiment / "best_config.json"
    if winner["trial"] != search_choice and best_config.is_file():
        single_split = best_config.read_bytes()
        atomic_write(experiment / SINGLE_SPLIT_FILE, lambda stream: stream.write(single_split))
    record = {TEST_RECORD_KEY: test.record()} if test is not None else {}
    write_json({**winner["result"].config, **record}, best_config)
    write_csv(table, experiment / "cross_validation.csv")
    print_test(test, not_scored)
    print(f"Cross-validation: {experiment / 'cross_validation.csv'}; best config: {best_config}")
    return winner
