"""Model selection beyond one validation split: without target labels (source risk, Deep Embedded
Validation), and by cross-validation over people (``--cross-validate N``).

Without target labels
---------------------
With an unlabelled target, no target label may choose a trial or an epoch. Two criteria remain:

- **Source risk**: the activity cross-entropy on held-out *source* subjects. Assumes the target looks
  like the source; blind to the shift adaptation is meant to close.
- **Deep Embedded Validation** (DEV; You, Wang, Long and Jordan, "Towards Accurate Model Selection in
  Deep Unsupervised Domain Adaptation", ICML 2019): the same per-window validation loss, each window
  weighted by the density ratio p_target(f)/p_validation(f) of its features f, estimated by a domain
  classifier of validation versus target features; a control variate (the weights themselves, whose
  mean is 1 in expectation) cuts the variance of the weighted mean. Assumes covariate shift in feature
  space (p(y|f) is shared by the domains) and that the validation windows' features cover the target's;
  where they barely overlap the weights explode and the estimate is noisy.

  The ratio is taken against the *validation* windows, the ones it weighs, not against the training
  windows as in the paper: the encoder has fitted its training people, whose features are therefore
  unlike any unseen person's (held-out source or target), and a classifier of training versus target
  features called the held-out validation windows target-like, with mean weights of 5 to 60 instead
  of 1, which also broke the control variate. Each validation window's weight comes from a classifier
  fitted without it (cross-fitting, :data:`DEV_FOLDS` folds), so the weights are not fitted to themselves.

Both are risks (lower is better); the trial reports minus each as a score, as every objective is
maximised. Features are the encoder's μ, which the heads read.

Cross-validation over people
----------------------------
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
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from tcnvae.checkpoints import atomic_write, write_json
from tcnvae.data.loaders import UNLABELLED
from tcnvae.data.pipeline import PreparedData
from tcnvae.model import TCNVAE
from tcnvae.tuning.metrics import DEV_SCORE, DEV_WEIGHT_MEAN, SOURCE_SCORE, TEST_METRICS, leaderboard_test_column
from tcnvae.tuning.report import (TEST_RECORD_KEY, format_duration, print_test, rank, score_test_split, trial_rows,
                                  write_csv)
from tcnvae.tuning.trial import Worker, run_trial

MAX_WINDOWS = 2000
"""Target windows embedded for DEV's domain classifier: enough for a linear classifier on a small
latent, few enough that each epoch's selection stays a small fraction of its training."""

DEV_FOLDS = 5
"""Cross-fitting folds of DEV's domain classifier."""

_PROBABILITY_FLOOR = 1e-3  # keeps a confidently-source window's weight finite


@torch.no_grad()
def embed(model: TCNVAE, loader: Any, device: torch.device | str) -> dict[str, np.ndarray]:
    """Features (μ), per-window activity cross-entropy (NaN for unlabelled windows) and labels of
    every window of ``loader``, in eval mode."""
    was_training = model.training
    model.eval()
    features, losses, labels = [], [], []
    try:
        for data, activity, _ in loader:
            data, activity = data.to(device).float(), activity.to(device).long()
            mu, _ = model.encode(data)
            logits = model.activity_classifier(mu)
            loss = nn.functional.cross_entropy(logits, activity.clamp(min=0), reduction="none")
            features.append(mu.float().cpu())
            losses.append(torch.where(activity == UNLABELLED, torch.nan, loss).float().cpu())
            labels.append(activity.cpu())
    finally:
        model.train(was_training)
    return {"features": torch.cat(features).numpy(), "loss": torch.cat(losses).numpy(),
            "activity": torch.cat(labels).numpy()}


def source_risk(validation_losses: np.ndarray) -> float:
    """Mean activity cross-entropy on held-out source windows."""
    return float(np.mean(validation_losses))


def importance_weights(validation_features: np.ndarray, target_features: np.ndarray, seed: int = 0,
                       folds: int = DEV_FOLDS) -> np.ndarray:
    """Density ratio p_target/p_validation at each validation feature, from a logistic-regression domain
    classifier of validation versus target features, cross-fitted: ``w = (n_validation / n_target) ·
    P(target|f) / P(validation|f)`` (the prior ratio undone), P from the folds that leave the window out."""
    if len(validation_features) < folds or len(target_features) < folds:
        raise ValueError(f"importance weights need at least {folds} validation and {folds} target windows "
                         f"(one per fold), got {len(validation_features)} and {len(target_features)}")
    features = np.concatenate([validation_features, target_features])
    is_target = np.concatenate([np.zeros(len(validation_features)), np.ones(len(target_features))])
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
    p_target = cross_val_predict(classifier, features, is_target, method="predict_proba",
                                 cv=StratifiedKFold(folds, shuffle=True, random_state=seed))[:, 1]
    p_target = np.clip(p_target[:len(validation_features)], _PROBABILITY_FLOOR, 1 - _PROBABILITY_FLOOR)
    return len(validation_features) / len(target_features) * p_target / (1 - p_target)


def dev_risk(weights: np.ndarray, validation_losses: np.ndarray) -> float:
    """DEV's risk: the weighted mean loss with the control variate η = -Cov(w·l, w) / Var(w)."""
    weights, losses = np.asarray(weights, dtype=np.float64), np.asarray(validation_losses, dtype=np.float64)
    if weights.shape != losses.shape or weights.size < 2:
        raise ValueError(f"need one weight per validation loss and at least two of each, got {weights.shape} and "
                         f"{losses.shape}")
    weighted = weights * losses
    variance = np.var(weights, ddof=1)
    if variance == 0:  # all windows equally target-like: the plain mean is already unbiased
        return float(weighted.mean())
    eta = -np.cov(weighted, weights, ddof=1)[0, 1] / variance
    return float(weighted.mean() + eta * weights.mean() - eta)


def subsample(count: int, seed: int, limit: int = MAX_WINDOWS) -> np.ndarray:
    """At most ``limit`` indices of ``count`` windows, seeded (the same windows every epoch)."""
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng([seed, 13]).choice(count, size=limit, replace=False))


class LabelFreeSelection:
    """The label-free selection scores of a trial, computed each epoch from its prepared data.

    ``metrics(model, device)`` gives ``select/source_score`` (minus the source risk) and, when the
    data has unlabelled target windows, ``select/dev_score`` (minus the DEV risk) and the mean DEV
    weight. Target labels are never read: the target side enters only as features.
    """

    def __init__(self, data: Any, seed: int, pin_memory: bool = False):
        self.seed = seed
        self.validation = data.val_loader(pin_memory=pin_memory)
        self.target = None
        kind, _, target_name = data.config.split.partition(":")
        if kind == "unlabelled":
            # The target's unlabelled windows (not the source people's unlabelled stretches).
            target = data.unlabelled.subset(data.unlabelled.grouping(data.config.domain_by) == target_name)
            target = target.subset(subsample(len(target), seed))
            self.target = data.loader(data.train.subset(np.zeros(0, dtype=np.int64)), unlabelled=target,
                                      pin_memory=pin_memory)

    def metrics(self, model: TCNVAE, device: torch.device | str) -> dict[str, float]:
        validation = embed(model, self.validation, device)
        scores = {SOURCE_SCORE: -source_risk(validation["loss"])}
        if self.target is not None:
            weights = importance_weights(validation["features"], embed(model, self.target, device)["features"],
                                         self.seed)
            scores[DEV_SCORE] = -dev_risk(weights, validation["loss"])
            scores[DEV_WEIGHT_MEAN] = float(weights.mean())
        return scores


FOLDS = 4
"""Folds of people unless told otherwise: each fold run trains on three quarters of the people outside
the test side (UCI-HAR: 5–6 validate in each fold, against 4 in the search)."""
SINGLE_SPLIT_FILE = "best_config_single_split.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The recipe flags: ``--cross-validate N`` and ``--folds K``."""
    group = parser.add_argument_group("choosing the winner")
    group.add_argument("--cross-validate", type=int, default=0, metavar="N",
                       help="run the N best trials again over --folds folds of people and choose by their mean "
                            "(tcnvae.tuning.selection; default: 0, choose on the one validation split)")
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
    ``ResultGrid``) over ``folds`` folds of people (module docstring, "Cross-validation over people");
    returns the winner's row.

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
