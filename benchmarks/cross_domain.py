"""Cross-person domain adaptation on UCI-HAR: does training on an unlabelled target group of people help?

UCI-HAR's 30 people are cut into five groups by id (1–6, 7–12, 13–18, 19–24, 25–30). Scenario k takes
group k as the labelled source; ``--val-people`` of its people validate (source risk, DEV). The target:

- ``--targets groups`` (5 scenarios): group k+1 (cyclically). Half of its people (drawn by seed) give
  unlabelled windows for training, the other half are the test side: adaptation must carry over to
  people whose windows it never saw.
- ``--targets people`` (10 scenarios): one person, ``transductive``: their windows are the unlabelled
  training data and also the test side, the usual protocol of unsupervised domain adaptation (adapt on
  the recordings you want labelled). Scenarios 0–4 take the first person of group k+1 (7, 13, 19, 25,
  1), scenarios 5–9 the second (8, 14, 20, 26, 2). The seed changes initialisations only.

The test side is scored once, by macro-F1. Every run is the trial config of ``--target-domain target
--adapt unlabelled`` (tcnvae.tuning.config, with its ADAPT_DEFAULTS) on these people. Methods:

- ``source_only``: the TCN-VAE trained on the source windows alone (λ_dom = λ_ent = 0), in batches of
  half the batch size, i.e. the same labelled windows per step and steps per epoch as the adapting methods;
- ``dann``: source windows plus the unlabelled target windows, half of every batch each
  (``target_balanced``), with ``--adapt unlabelled``'s default weights;
- ``searched``: ``--search-trials`` draws of lr, β, λ_act, dropout and the adaptation weights (the
  ranges of ``searches/loss_weights.py --adapt unlabelled``), each trained like ``dann``; the first is
  the defaults, as in a Tune search (so ``dann`` itself), the others random. The draw with the best
  score of ``--adapt unlabelled``'s default metric is kept. No target label chooses anything.
  The target F1 of the draw each label-free score (DEV, source risk) would have kept is printed beside
  it, for analysis only.

Every method trains ``--epochs`` epochs and is scored at its last epoch. Runs in-process (no Ray) with
the trial loop's own model and trainer builders, so a small CPU finishes a small budget.

    python benchmarks/cross_domain.py [--data ../shared/data/uci_har_windows.npz] [--targets groups]
        [--epochs 10] [--search-trials 8] [--seeds 0 1] [--scenarios 5] [--val-people 1] [--jobs 1]

``--jobs`` runs that many seeds at once, each in its own process on one thread.

Prints a line per scenario and seed, then
``cross_domain: source_only=… dann=… searched=… scenarios=N`` (mean target macro-F1, ± the standard
deviation over seeds of the scenario mean) and the paired gains (adapting minus source-only, per seed,
mean ± standard deviation over seeds).
"""

from __future__ import annotations

import argparse
import os
import runpy
from concurrent.futures import ProcessPoolExecutor
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tcnvae.data import prepare
from tcnvae.data.pipeline import PreparedData
from tcnvae.tuning import search
from tcnvae.tuning.config import data_config, validate_config
from tcnvae.tuning.metrics import OBJECTIVES
from tcnvae.tuning.selection import LabelFreeSelection
from tcnvae.tuning.trial import build_model, build_trainer, seed_everything

SHARED_DATA = Path(os.environ.get("TCNVAE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
GROUP_SIZE = 6
GROUPS = [[f"uci_har:{subject}" for subject in range(first, first + GROUP_SIZE)] for first in range(1, 31, GROUP_SIZE)]
# (source people, target people) of each scenario of each --targets protocol
SCENARIOS = {
    "groups": [(GROUPS[k], GROUPS[(k + 1) % len(GROUPS)]) for k in range(len(GROUPS))],
    "people": [(GROUPS[k % len(GROUPS)], [GROUPS[(k + 1) % len(GROUPS)][k // len(GROUPS)]])
               for k in range(2 * len(GROUPS))],
}
METHODS = ("source_only", "dann", "searched")
PICKED_BY = ("dev", "source_risk")  # the label-free scores whose picks are printed for analysis


def scenario_config(path: Path, targets: str, scenario: int, seed: int, epochs: int, batch_size: int,
                    val_people: int) -> dict[str, Any]:
    """The trial config of adapting scenario ``scenario`` of protocol ``targets``, with the adaptation
    defaults."""
    source, target = SCENARIOS[targets][scenario]
    return validate_config({
        "datasets": ["uci_har"], "data_paths": {"uci_har": str(path)}, "channel_set": "uci9",
        "subject_groups": {"source": source, "target": target},
        "domain_by": "subject_group", "target_domain": "target", "adapt": "unlabelled",
        "val_fraction": val_people / GROUP_SIZE, "target_test_fraction": 0.5, "transductive": targets == "people",
        "batch_size": batch_size, "max_epochs": epochs, "seed": seed, "mixed_precision": "off"})


def train(data: PreparedData, config: dict[str, Any], adapt: bool) -> tuple[float, dict[str, float]]:
    """Train ``config`` for its epochs; returns the target test macro-F1 and the label-free scores."""
    seed_everything(config["seed"])
    trainer = build_trainer(config, build_model(config, data), torch.device("cpu"))
    # Source-only batches are as large as the labelled half of an adapting batch: both methods then see
    # the same labelled windows per step and take the same steps per epoch (one pass over the source).
    loader = (data.train_loader() if adapt else
              data.loader(data.train, shuffle=True, augmented=True, batch_size=data.config.batch_size // 2))
    trainer.train_epochs(loader, config["max_epochs"])
    scores = LabelFreeSelection(data, config["seed"]).metrics(trainer.model, "cpu")
    trainer.validate(data.test_loader())  # the target's held-out people, scored once
    return trainer.last_val_metrics["macro_f1"], scores


def searched(data: PreparedData, base: dict[str, Any], trials: int,
             defaults: tuple[float, dict[str, float]]) -> dict[str, tuple[float, dict[str, Any]]]:
    """For the default metric and each of :data:`PICKED_BY`: the target macro-F1 and the draw of the
    draw that score keeps (the best score, never a target label). As a Tune search does, the first draw
    is the defaults (``search.defaults_trial``): ``dann``, whose result ``defaults`` is, not trained again."""
    # searches/loss_weights.py's space with --adapt unlabelled.
    loss_weights = runpy.run_path(str(Path(__file__).resolve().parents[1] / "searches" / "loss_weights.py"))
    space = {**loss_weights["SPACE"], **loss_weights["ADAPTATION_SPACE"]}
    space.pop("batch_size")  # the scenario's loaders fix it
    rng = np.random.default_rng(base["seed"])
    best: dict[str, tuple[float, float, dict[str, Any]]] = {}
    for trial in range(trials):
        if trial == 0:
            draw = search.defaults_trial(space, base)
            macro_f1, scores = defaults
        else:
            draw = {key: domain.sample(random_state=rng) for key, domain in space.items()}
            macro_f1, scores = train(data, validate_config({**base, **draw}), adapt=True)
        for objective in {base["objective"], *PICKED_BY}:
            score = scores[OBJECTIVES[objective]]
            if objective not in best or score > best[objective][0]:
                best[objective] = (score, macro_f1, draw)
    return {objective: (macro_f1, draw) for objective, (_, macro_f1, draw) in best.items()}


def run_seed(args: argparse.Namespace, seed: int) -> dict[str, np.ndarray]:
    """Every scenario of one seed: the target macro-F1 of each method and label-free pick, per scenario."""
    torch.set_num_threads(1)
    started = time.perf_counter()
    scores = {method: np.zeros(args.scenarios) for method in (*METHODS, *PICKED_BY)}
    for scenario in range(args.scenarios):
        base = scenario_config(args.data, args.targets, scenario, seed, args.epochs, args.batch_size,
                               args.val_people)
        data = prepare(data_config(base))
        scores["source_only"][scenario], _ = train(data, {**base, "lambda_dom": 0.0, "lambda_ent": 0.0}, adapt=False)
        dann = train(data, base, adapt=True)
        scores["dann"][scenario] = dann[0]
        picks = searched(data, base, args.search_trials, dann)
        scores["searched"][scenario], chosen = picks[base["objective"]]
        for objective in PICKED_BY:
            scores[objective][scenario] = picks[objective][0]
        source, target = SCENARIOS[args.targets][scenario]
        print(f"scenario {scenario} (source people {source[0]}.., target {target[0]}.., {len(data.unlabelled)} "
              f"unlabelled / {len(data.test)} test windows) seed {seed}: "
              + " ".join(f"{method}={scores[method][scenario]:.4f}" for method in METHODS)
              + f" | chosen by {base['objective']}: lambda_dom={chosen['lambda_dom']:.3f} "
                f"lambda_ent={chosen['lambda_ent']:.3f} alpha_ramp_epochs={chosen['alpha_ramp_epochs']:.1f}"
              + " | analysis only, target F1 of the pick by "
              + " ".join(f"{objective}={scores[objective][scenario]:.4f}" for objective in PICKED_BY)
              + f" ({time.perf_counter() - started:.0f}s)", flush=True)
    return scores


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "uci_har_windows.npz")
    parser.add_argument("--targets", choices=sorted(SCENARIOS), default="groups",
                        help="a group of people, tested on its unseen half, or one person, transductive (default: groups)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of every run (default: 10)")
    parser.add_argument("--search-trials", type=int, default=8, help="random draws of the search (default: 8)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="(default: 0 1)")
    parser.add_argument("--scenarios", type=int, help="how many of the protocol's scenarios (default: all)")
    parser.add_argument("--val-people", type=int, default=1,
                        help=f"source people held out to validate, of {GROUP_SIZE} (default: 1)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at once, one process each (default: 1)")
    args = parser.parse_args(argv)
    available = len(SCENARIOS[args.targets])
    args.scenarios = available if args.scenarios is None else args.scenarios
    if not args.data.is_file():
        parser.error(f"{args.data} does not exist; pass --data or set TCNVAE_SHARED_DATA")
    if not 1 <= args.scenarios <= available or args.epochs < 1 or args.search_trials < 1 or args.jobs < 1:
        parser.error(f"need 1 <= --scenarios <= {available} (--targets {args.targets}), --epochs >= 1, "
                     "--search-trials >= 1 and --jobs >= 1")
    if not 1 <= args.val_people <= GROUP_SIZE - 2:
        parser.error(f"--val-people must be 1..{GROUP_SIZE - 2}: the source group has {GROUP_SIZE} people to train on")

    started = time.perf_counter()
    if args.jobs == 1:
        per_seed = [run_seed(args, seed) for seed in args.seeds]
    else:
        with ProcessPoolExecutor(min(args.jobs, len(args.seeds))) as pool:
            per_seed = list(pool.map(run_seed, [args] * len(args.seeds), args.seeds))
    scores = {method: np.stack([seed_scores[method] for seed_scores in per_seed]) for method in per_seed[0]}
    summary = {method: float(values.mean()) for method, values in scores.items()}
    spread = {method: float(values.mean(axis=1).std()) for method, values in scores.items()}
    gains = {"dann-source_only": scores["dann"] - scores["source_only"],
             "searched-dann": scores["searched"] - scores["dann"]}
    print("cross_domain: " + " ".join(f"{method}={summary[method]:.4f}±{spread[method]:.4f}" for method in METHODS)
          + f" scenarios={args.scenarios} targets={args.targets} seeds={len(args.seeds)} epochs={args.epochs} "
            f"search_trials={args.search_trials} val_people={args.val_people} "
            f"seconds={time.perf_counter() - started:.0f}")
    print("cross_domain paired gains: "
          + " ".join(f"{name}={gain.mean():+.4f}±{gain.mean(axis=1).std():.4f}" for name, gain in gains.items())
          + " | analysis only, target F1 of the search's pick by "
          + " ".join(f"{objective}={summary[objective]:.4f}" for objective in PICKED_BY))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
