"""Does a curriculum help a model generalise to new people? `none` against the best shipped curriculum,
leave-one-subject-group-out on UCI-HAR, same budget, several seeds.

Task: UCI-HAR's 30 subjects form three groups by id (1-10, 11-20, 21-30), the domains of this run
(a ``subject_group`` attribute, ``domain_by="subject_group"``). Each fold holds one group out as the
target (``split="lodo:<group>"``): training sees the other two groups, validation is held-out subjects
of those two, and the model after the last epoch is scored once on every window of the target group.
A seed's target accuracy is the mean over the three folds.

Why not HAPT vs UCI-HAR: HAPT is the continuous re-release of the same 30 people's recordings, and
UCI-HAR's windows are cut from them, so "train on HAPT, test on UCI-HAR" tests on the people (and
signals) it trained on.

The small search: each candidate (single_to_cross, objective_ramp, self_paced, at their default
parameters) trains once on the first fold at a selection seed that is not an evaluation seed; the
candidate with the best *validation* accuracy (training groups' held-out subjects; the target is not
looked at) is compared with `none`. freeze_then_finetune is not a candidate: it needs a pretrained
encoder, and pretraining would not fit the same budget.

Same budget: every run trains the same epochs with the same settings (β = 0.1, λ_act = 2.5,
λ_dom = 0.1, AdamW with cosine annealing, the default small model); only the curriculum differs.

    python benchmarks/curriculum.py [--data ../shared/data/uci_har_windows.npz] [--epochs 8] [--seeds 3]

Last line: ``curriculum: none=MEAN±SD <policy>=MEAN±SD seeds=N epochs=E`` (target accuracy, mean and
sample standard deviation over seeds).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tcnvae.data import WindowSet, load_source, prepare
from tcnvae.data.sources import register_source
from tcnvae.trainer import TrainingHealthWarning
from tcnvae.tuning import CHECKPOINT_FILE, data_config, run_trial, validate_config
from tcnvae.tuning.metrics import VAL_ACCURACY
from tcnvae.tuning.trial import build_model, build_trainer, load_trial_checkpoint

SHARED_DATA = Path(os.environ.get("TCNVAE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SOURCE = "uci_har_subject_groups"
GROUP_SIZE = 10  # subjects 1-10, 11-20, 21-30
CANDIDATES = ("single_to_cross", "objective_ramp", "self_paced")
SELECTION_SEED = 100
BASE_CONFIG: dict[str, Any] = {
    "datasets": [SOURCE], "domain_by": "subject_group", "val_fraction": 0.15,
    "beta": 0.1, "lambda_act": 2.5, "lambda_dom": 0.1, "lr": 2e-3, "optimizer": "adamw", "weight_decay": 1e-4,
    "lr_schedule": "cosine", "label_smoothing": 0.1,
}


def subject_group(subject: str) -> str:
    """``"uci_har:17"`` → ``"subjects_11-20"``."""
    first = (int(subject.split(":")[1]) - 1) // GROUP_SIZE * GROUP_SIZE + 1
    return f"subjects_{first:02d}-{first + GROUP_SIZE - 1:02d}"


def register_grouped_uci_har(uci_har: Path) -> list[str]:
    """Make the UCI-HAR windows at ``uci_har`` loadable as :data:`SOURCE`, with a ``subject_group``
    attribute; returns the groups."""
    def load(path: Any = None, **options: Any) -> WindowSet:
        windows = load_source("uci_har", path=uci_har)
        groups = np.array([subject_group(subject) for subject in windows.subject])
        return replace(windows, attributes={**windows.attributes, "subject_group": groups})

    register_source(SOURCE, load, replace=True)
    return sorted(set(load().attributes["subject_group"].tolist()))


def trial_config(curriculum: str, target_group: str, seed: int, epochs: int) -> dict[str, Any]:
    return {**BASE_CONFIG, "curriculum": curriculum, "split": f"lodo:{target_group}", "seed": seed,
            "max_epochs": epochs}


def train_and_score(config: dict[str, Any]) -> tuple[float, float]:
    """(validation accuracy, target accuracy) of the model after the trial's last epoch."""
    final: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="curriculum-benchmark-") as kept:
        def keep_last(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
            final.update(metrics)
            shutil.copy(checkpoint_dir / CHECKPOINT_FILE, Path(kept) / CHECKPOINT_FILE)

        run_trial(config, keep_last)
        config = validate_config(config)
        data = prepare(data_config(config))
        trainer = build_trainer(config, build_model(config, data), torch.device("cpu"))
        load_trial_checkpoint(kept, trainer)
    with warnings.catch_warnings():  # a weak fold's accuracy is a result here, not a health problem
        warnings.simplefilter("ignore", TrainingHealthWarning)
        _, target_accuracy = trainer.validate(data.test_loader())
    return final[VAL_ACCURACY], target_accuracy


def logo_accuracy(curriculum: str, groups: list[str], seed: int, epochs: int) -> float:
    """Mean target accuracy over the folds, each group held out in turn; prints each run."""
    scores = []
    for group in groups:
        started = time.perf_counter()
        validation, target = train_and_score(trial_config(curriculum, group, seed, epochs))
        scores.append(target)
        print(f"  {curriculum:15s} target {group} seed {seed}: validation {validation:.4f}, target {target:.4f} "
              f"({time.perf_counter() - started:.0f}s)", flush=True)
    return statistics.mean(scores)


def select(candidates: tuple[str, ...], groups: list[str], epochs: int) -> str:
    """The candidate with the best validation accuracy on the first fold at the selection seed."""
    print(f"selection on held-out subjects of the training groups (target {groups[0]} unseen), "
          f"seed {SELECTION_SEED}:")
    validation = {}
    for curriculum in candidates:
        validation[curriculum], _ = train_and_score(trial_config(curriculum, groups[0], SELECTION_SEED, epochs))
        print(f"  {curriculum:15s} validation accuracy {validation[curriculum]:.4f}", flush=True)
    return max(candidates, key=lambda curriculum: validation[curriculum])


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f}±{statistics.stdev(values):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "uci_har_windows.npz",
                        help="uci_har_windows.npz or the extracted 'UCI HAR Dataset' folder")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    if not args.data.exists():
        parser.error(f"{args.data} does not exist; pass --data or set TCNVAE_SHARED_DATA")
    if args.epochs < 1 or args.seeds < 2:
        parser.error("--epochs must be >= 1 and --seeds >= 2 (a spread needs two seeds)")

    torch.set_num_threads(1)  # a shared 2-core machine; runs are sequential and deterministic per seed
    groups = register_grouped_uci_har(args.data)
    started = time.perf_counter()
    chosen = select(CANDIDATES, groups, args.epochs)
    print(f"selected: {chosen}")

    seeds = list(range(args.seeds))
    accuracy: dict[str, list[float]] = {"none": [], chosen: []}
    for seed in seeds:
        for curriculum, per_seed in accuracy.items():
            per_seed.append(logo_accuracy(curriculum, groups, seed, args.epochs))
    gains = [with_curriculum - without for with_curriculum, without in zip(accuracy[chosen], accuracy["none"])]
    print(f"leave-one-subject-group-out target accuracy per seed (mean of {len(groups)} folds):")
    for curriculum, values in accuracy.items():
        print(f"  {curriculum:15s} " + ", ".join(f"{value:.4f}" for value in values))
    print(f"paired gain of {chosen} over none: {spread(gains)} ({sum(g > 0 for g in gains)} of {len(gains)} seeds "
          f"better); {time.perf_counter() - started:.0f}s")
    print(f"curriculum: none={spread(accuracy['none'])} {chosen}={spread(accuracy[chosen])} "
          f"seeds={len(seeds)} epochs={args.epochs}")


if __name__ == "__main__":
    main()
