"""Search the cross-dataset settings for a held-out target dataset, chosen without the target's test labels.

The target is a dataset (a domain) left out of training: `--set split=lodo:NAME` (optionally with
`--set target_labelled_people=K`: K of its people, drawn by seed, train with their labels and the test is its
other people), or `--target-domain NAME --adapt unlabelled` (its training-side people train without labels).
Each trial draws, over SPACE below: rotation augmentation (none, ±15°, the full sphere), λ_dom, the α ramp of
the gradient reversal, batch sampling (uniform, or datasets balanced in each batch), magnitude channels,
per-dataset normalisation, gravity alignment and a curriculum (none, or single_to_cross: one dataset first,
then all). A key given by --set or --config is fixed and not searched.

    python searches/cross_dataset.py                       # synthetic data, target synthetic_d: minutes on a CPU
    python searches/cross_dataset.py --data sample --set split=lodo:wisdm2019_phone   # the embedded sample
    python searches/cross_dataset.py --data hapt hugadb wisdm2019_phone --data-path hapt=... \\
        --set split=lodo:wisdm2019_phone --set target_labelled_people=2 --set sample_rate=20
    python searches/cross_dataset.py --target-domain synthetic_d --adapt unlabelled --metric dev
    python searches/cross_dataset.py --name NAME --resume  # continue an interrupted search

Selection never reads the target's test labels. --metric (default source_risk):

- ``source_risk``: minus the cross-entropy on the validation people of the *source* datasets;
- ``accuracy`` / ``worst_domain_accuracy``: the source datasets' validation people, pooled / the worst dataset;
- ``dev``: Deep Embedded Validation, the source validation loss weighted by how target-like each window is
  (needs --adapt unlabelled: the target's windows, never its labels).

Refused: ``target_accuracy``, which labels a slice of the target's test people to choose on, and
--target-domain without --adapt unlabelled (it reports that slice's accuracy every epoch). With K labelled
target people the K train; validation stays on the sources' people (the K are too few to split further).

At the end: the best config, its validation metrics and, scored once, the target's test figures; then
leaderboard.csv and best_config.json in the experiment folder.
"""

from __future__ import annotations

import argparse

from ray import tune
from ray.tune.schedulers import FIFOScheduler

from tcnvae.data.sources import sample
from tcnvae.tuning import cli, search
from tcnvae.tuning.config import ADAPT_DEFAULTS, LABEL_FREE_OBJECTIVES, data_config
from tcnvae.tuning.metrics import OBJECTIVES
from tcnvae.tuning.report import summarise_search

# This search's starting point, on top of tcnvae.tuning.config.DEFAULT_CONFIG; change with --set KEY=VALUE.
# source_risk: no label of the target (docs/domain_adaptation.md). On the default synthetic data the target
# is its wrist sensor (DEFAULT_TARGET), a body position and rate none of the sources has.
# TRANSFER_DEFAULTS: what a held-out dataset is trained with unless searched (benchmarks/cross_dataset.py's
# TCN-VAE too): each raised the held-out macro-F1 of all four visible targets, averaged over three seeds
# (docs/results.md, "Cross-dataset": the comparison and its command). Magnitudes add rotation invariance
# and keep the posture cue the raw axes carry, which full-sphere rotation erases; balanced batches keep a
# large dataset from deciding what an activity looks like. With --adapt unlabelled the batches stay half
# source, half target (ADAPT_DEFAULTS).
TRANSFER_DEFAULTS = {"magnitude_channels": True, "sampling": "domain_balanced"}
RECIPE_DEFAULTS = {"max_epochs": 10, "objective": "source_risk", **TRANSFER_DEFAULTS}
DEFAULT_TARGET = "lodo:synthetic_d"
NUM_SAMPLES = 16  # trials, unless --num-samples says otherwise

# Each a setting the cross-dataset literature (docs/cross_dataset.md) reports as helping or hurting transfer
# between body positions and devices; which helps depends on the datasets, so all are searched together.
# Full-sphere rotation erases the posture cue (sitting and standing differ by orientation): it competes
# with ±15° and none. λ_dom up to the DANN range (Ganin et al. use λ = 1); the α ramp in epochs until the
# reversed gradient is full: both over the ranges of loss_weights.py's ADAPTATION_SPACE.
SPACE = {
    "augment_rotation_deg": tune.choice([0.0, 15.0, "sphere"]),
    "lambda_dom": tune.loguniform(0.01, 1.0),
    "alpha_ramp_epochs": tune.uniform(1.0, 20.0),
    "sampling": tune.choice(["uniform", "domain_balanced"]),
    "magnitude_channels": tune.choice([False, True]),
    "normalise_by": tune.choice(["pooled", "dataset"]),
    "gravity_align": tune.choice([False, True]),
    "curriculum": tune.choice(["none", "single_to_cross"]),
}
# With --adapt unlabelled, batches may also be half source, half target (its default).
ADAPTATION_SAMPLING = tune.choice(["uniform", "domain_balanced", "target_balanced"])

# ASHA: no trial is stopped before GRACE_FRACTION of --max-epochs (at least 1): the α ramp and the
# curriculum's switch to all datasets come mid-run, and a trial ranked before them is ranked on another
# objective. At each rung 1/REDUCTION_FACTOR of the trials go on.
GRACE_FRACTION = 0.5
REDUCTION_FACTOR = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.search_parser(__doc__)
    parser.add_argument("--search", choices=["optuna", "random"], default="optuna",
                        help="optuna: TPE, learns from finished trials; random: independent draws (default: optuna)")
    parser.add_argument("--scheduler", choices=["asha", "fifo"], default="asha",
                        help="asha: stops trials that trail the others; fifo: runs every trial to the end "
                             "(default: asha)")
    return parser.parse_args(argv)


def recipe_defaults(args: argparse.Namespace) -> dict:
    """RECIPE_DEFAULTS (less what adaptation sets: ADAPT_DEFAULTS), with DEFAULT_TARGET held out when the search runs on the default synthetic data and
    names no target of its own, and the embedded sample's rate and window (sample.SETTINGS) on it alone."""
    fixed = cli.fixed_settings(args)
    datasets = args.data or fixed.get("datasets", ["synthetic"])
    named = args.target_domain or fixed.get("split", "subject") != "subject" or fixed.get("target_domain")
    adapting = args.adapt == "unlabelled" or fixed.get("adapt") == "unlabelled"
    return {**{key: value for key, value in RECIPE_DEFAULTS.items() if not (adapting and key in ADAPT_DEFAULTS)},
            **({"split": DEFAULT_TARGET} if datasets == ["synthetic"] and not named else {}),
            **(sample.SETTINGS if datasets == ["sample"] else {})}


def check_metric(args: argparse.Namespace) -> None:
    """Refuse, before anything else, a selection metric that reads the target's test labels."""
    objective = args.metric or cli.fixed_settings(args).get("objective", RECIPE_DEFAULTS["objective"])
    if objective not in LABEL_FREE_OBJECTIVES:
        raise ValueError(f"--metric {objective} reads the labels of the held-out target's test people; choose one "
                         f"of {', '.join(LABEL_FREE_OBJECTIVES)} (source_risk, the default, or dev with --adapt "
                         "unlabelled)")


def check_target(config: dict) -> str:
    """The held-out target's name; refuses a search that holds no dataset out, or that would report the
    accuracy of a labelled slice of the target's test people."""
    if config["target_domain"] and config["adapt"] != "unlabelled":
        raise ValueError(f"--target-domain {config['target_domain']} without --adapt unlabelled labels a slice of "
                         "the target's test people and reports its accuracy every epoch; hold the target out with "
                         f"--set split=lodo:{config['target_domain']} instead")
    kind, _, target = data_config(config).split.partition(":")
    if kind not in ("lodo", "unlabelled"):
        raise ValueError(f"split {config['split']!r} holds no dataset out: name the target with --set "
                         "split=lodo:NAME (labelled people: --set target_labelled_people=K), or --target-domain "
                         "NAME --adapt unlabelled")
    return target


def main(argv: list[str] | None = None) -> tune.ResultGrid:
    args = parse_args(argv)

    # Everything is checked before Ray starts: the selection first, then the data and every end of the space.
    check_metric(args)
    config = cli.base_config(args, recipe_defaults(args))
    target = check_target(config)
    config, data = cli.prepare_data(config)
    print(f"Target: {target} ({len(set(data.test.subject.tolist()))} people tested on), never chosen on; "
          f"selection: {config['objective']} on {', '.join(sorted(set(data.val.dataset.tolist())))}")
    space = dict(SPACE)
    if config["adapt"] == "unlabelled":
        space["sampling"] = ADAPTATION_SAMPLING
    space = cli.search_space(args, config, space, len(data.train))
    metric = OBJECTIVES[config["objective"]]
    grace_period = max(1, round(GRACE_FRACTION * config["max_epochs"]))
    scheduler = (search.asha(metric, config["max_epochs"], grace_period, REDUCTION_FACTOR)
                 if args.scheduler == "asha" else FIFOScheduler())
    searcher = search.OptunaTPE([metric]) if args.search == "optuna" else search.RandomSearch()
    experiment = cli.experiment_path(args, "cross_dataset")

    results = search.run_search(
        args, experiment, config, param_space={**config, **space}, searcher=searcher, scheduler=scheduler,
        num_samples=args.num_samples or NUM_SAMPLES, checkpoints=search.keep_best_checkpoints(metric), data=data)
    summarise_search(results, experiment, list(space), [metric])
    return results


if __name__ == "__main__":
    cli.run_command(main)
