"""Cross-person domain adaptation on UCI-HAR: does training on an unlabelled target group of people help?

UCI-HAR's 30 people are cut into five groups by id (1–6, 7–12, 13–18, 19–24, 25–30). Scenario k takes
group k as the labelled source and group k+1 (cyclically) as the target: half of the target's people
(drawn by seed) give unlabelled windows for training, the other half are the test side, scored once by
macro-F1. The source's people are split again, so one of them validates (source risk, DEV). Methods:

- ``source_only``: the TCN-VAE trained on the source windows alone (λ_dom = 0), in batches of half the
  batch size, i.e. as many labelled windows per step as the adapting methods see;
- ``dann``: source windows plus the unlabelled target windows, half of every batch each
  (``target_balanced``), with the default trial config's weights (λ_dom 0.1, α ramp 10 epochs);
- ``searched``: ``--search-trials`` random draws of lr, β, λ_act, λ_dom and the α ramp (the ranges of
  ``searches/loss_weights.py`` with ``--adapt unlabelled``), each trained like ``dann``; the draw with
  the best Deep Embedded Validation score is kept. No target label chooses anything.

Every method trains ``--epochs`` epochs and is scored at its last epoch. Runs in-process (no Ray) with
the trial loop's own model and trainer builders, so a small CPU finishes a small budget.

    python benchmarks/cross_domain.py [--data ../shared/data/uci_har_windows.npz] [--epochs 10]
        [--search-trials 8] [--seeds 0 1] [--scenarios 5]

Prints a line per scenario and seed, then
``cross_domain: source_only=… dann=… searched=… scenarios=N`` (mean target macro-F1, ± the standard
deviation over seeds of the scenario mean).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tcnvae.data import DataConfig, prepare
from tcnvae.data.pipeline import PreparedData
from tcnvae.tuning import spaces
from tcnvae.tuning.config import validate_config
from tcnvae.tuning.loop import build_model, build_trainer, seed_everything
from tcnvae.tuning.selection import LabelFreeSelection

SHARED_DATA = Path(os.environ.get("TCNVAE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
GROUPS = [[f"uci_har:{subject}" for subject in range(first, first + 6)] for first in range(1, 31, 6)]
METHODS = ("source_only", "dann", "searched")


def scenario_data(path: Path, scenario: int, seed: int, batch_size: int) -> PreparedData:
    source, target = GROUPS[scenario], GROUPS[(scenario + 1) % len(GROUPS)]
    return prepare(DataConfig(datasets=["uci_har"], paths={"uci_har": str(path)}, channel_set="uci9",
                              subject_groups={"source": source, "target": target}, domain_by="subject_group",
                              split="unlabelled:target", val_fraction=0.2, target_test_fraction=0.5,
                              batch_size=batch_size, sampling="target_balanced", seed=seed))


def train(data: PreparedData, config: dict[str, Any], adapt: bool) -> tuple[float, dict[str, float]]:
    """Train ``config`` for its epochs; returns the target test macro-F1 and the label-free scores."""
    seed_everything(config["seed"])
    trainer = build_trainer(config, build_model(config, data), torch.device("cpu"))
    # Source-only batches are as large as the labelled half of an adapting batch: both methods then see
    # the same labelled windows per step, and source-only takes at least as many steps per epoch.
    loader = (data.train_loader() if adapt else
              data.loader(data.train, shuffle=True, augmented=True, batch_size=data.config.batch_size // 2))
    for epoch in range(config["max_epochs"]):
        trainer.train_epoch(loader, epoch)
    scores = LabelFreeSelection(data, config["seed"]).metrics(trainer.model, "cpu")
    trainer.validate(data.test_loader())  # the target's held-out people, scored once
    return trainer.last_val_metrics["macro_f1"], scores


def searched(data: PreparedData, base: dict[str, Any], trials: int) -> tuple[float, dict[str, Any]]:
    """The draw with the best DEV score (the label-free choice) and its target macro-F1."""
    space = {**spaces.loss_weight_space(), **spaces.adaptation_space()}
    space.pop("batch_size")  # the scenario's loaders fix it
    rng = np.random.default_rng(base["seed"])
    best: tuple[float, float, dict[str, Any]] | None = None
    for _ in range(trials):
        draw = {key: domain.sample(random_state=rng) for key, domain in space.items()}
        config = validate_config({**base, **draw})
        macro_f1, scores = train(data, config, adapt=True)
        if best is None or scores["select/dev_score"] > best[0]:
            best = (scores["select/dev_score"], macro_f1, draw)
    return best[1], best[2]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "uci_har_windows.npz")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of every run (default: 10)")
    parser.add_argument("--search-trials", type=int, default=8, help="random draws of the search (default: 8)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="(default: 0 1)")
    parser.add_argument("--scenarios", type=int, default=5, help=f"how many of the {len(GROUPS)} scenarios (default: 5)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    if not args.data.is_file():
        parser.error(f"{args.data} does not exist; pass --data or set TCNVAE_SHARED_DATA")
    if not 1 <= args.scenarios <= len(GROUPS) or args.epochs < 1 or args.search_trials < 1:
        parser.error(f"need 1 <= --scenarios <= {len(GROUPS)}, --epochs >= 1 and --search-trials >= 1")
    torch.set_num_threads(1)

    started = time.perf_counter()
    scores = {method: np.zeros((len(args.seeds), args.scenarios)) for method in METHODS}
    for s, seed in enumerate(args.seeds):
        for scenario in range(args.scenarios):
            data = scenario_data(args.data, scenario, seed, args.batch_size)
            base = validate_config({"max_epochs": args.epochs, "seed": seed, "mixed_precision": "off",
                                    "batch_size": args.batch_size})
            scores["source_only"][s, scenario], _ = train(data, {**base, "lambda_dom": 0.0}, adapt=False)
            scores["dann"][s, scenario], _ = train(data, base, adapt=True)
            scores["searched"][s, scenario], chosen = searched(data, base, args.search_trials)
            print(f"scenario {scenario} (source people {GROUPS[scenario][0]}.., target {len(data.unlabelled)} unlabelled "
                  f"/ {len(data.test)} test windows) seed {seed}: "
                  + " ".join(f"{method}={scores[method][s, scenario]:.4f}" for method in METHODS)
                  + f" | chosen by DEV: lambda_dom={chosen['lambda_dom']:.3f} "
                    f"alpha_ramp_epochs={chosen['alpha_ramp_epochs']:.1f} ({time.perf_counter() - started:.0f}s)",
                  flush=True)
    summary = {method: float(values.mean()) for method, values in scores.items()}
    spread = {method: float(values.mean(axis=1).std()) for method, values in scores.items()}
    print("cross_domain: " + " ".join(f"{method}={summary[method]:.4f}±{spread[method]:.4f}" for method in METHODS)
          + f" scenarios={args.scenarios} seeds={len(args.seeds)} epochs={args.epochs} "
            f"search_trials={args.search_trials} seconds={time.perf_counter() - started:.0f}")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
