"""Search the TCN-VAE's loss weights and optimiser settings: Optuna (TPE) proposes, ASHA stops early.

Searched, over the ranges of SPACE below: lr (5e-4–5e-3, log; the original documentation's 1e-4–1e-3
was below what lr_range.py suggests), β (0.1–1.0), λ_act (1–5), λ_dom (0.01–0.1, log), batch size
(32/64/128, capped so that every epoch has at least 8 optimiser steps on the data), dropout (0.1–0.5).
With --adapt unlabelled (random or Optuna search), ADAPTATION_SPACE widens λ_dom to 0.01–1 (log) and adds
the α ramp (1–20 epochs) and λ_ent (0–0.5). A key given by --set or --config is fixed and not searched.

    python searches/loss_weights.py                        # the embedded sample: 12 trials, minutes on a CPU
    python searches/loss_weights.py --data synthetic       # generated data, as the tests use
    python searches/loss_weights.py --metric worst_domain_accuracy
    python searches/loss_weights.py --objectives accuracy,worst_domain_accuracy   # Pareto front
    python searches/loss_weights.py --data uci_har hapt --num-samples 100 --max-epochs 50 \\
        --gpus-per-trial 0.25 --set hidden_dims=[64,64,128] --set latent_dim=64   # a GPU machine
    python searches/loss_weights.py --name NAME --resume   # continue an interrupted search
    python searches/loss_weights.py --cross-validate 3     # the 3 best rerun over 4 folds of people; best mean wins
    python searches/loss_weights.py --set domain_by=subject_group --target-domain target --adapt unlabelled \
        --metric dev --set 'subject_groups={"source": [...], "target": [...]}'   # adapt to unlabelled people

Data, unless --data says otherwise: the embedded sample (tcnvae.data.sources.sample), 45 real people
from HAPT (waist phone), WISDM 2019's pocket phone and its wrist watch, walking/stairs/sitting/standing
at 20 Hz in 5.12 s windows, shipped with the package. Domain = dataset (three), so λ_dom and the domain
head work across devices and body positions; the test people are never seen: split="subject" holds a
fifth of each dataset's people out (seed 0: hapt:6, :13, :14, wisdm2019_phone:1604, :1606, :1617,
wisdm2019_watch:1601, :1613, :1616), and a fifth of the rest validates.

At the end: the best config and its metrics are printed, and leaderboard.csv and best_config.json are
written to the experiment folder (with the Optuna study, optuna.db), with the `tensorboard --logdir`
command that compares the trials.
"""

from __future__ import annotations

import argparse

from ray import tune
from ray.tune.schedulers import FIFOScheduler

from tcnvae.data.sources import sample
from tcnvae.tuning import cli, search, selection
from tcnvae.tuning.metrics import OBJECTIVES
from tcnvae.tuning.report import summarise_search

# This search's starting point, on top of tcnvae.tuning.config.DEFAULT_CONFIG (whose small model
# keeps CPU trials short). Change any setting with --set KEY=VALUE, or here.
RECIPE_DEFAULTS = {"max_epochs": 10, "datasets": ["sample"]}
NUM_SAMPLES = 12  # trials, unless --num-samples says otherwise (a grid runs once)

# The original documentation's ranges, except lr: raised from its 1e-4–1e-3 because with AdamW and
# cosine decay the range test (searches/lr_range.py) suggests 2e-3 and above, and 2e-3 is what trained
# the best hand-set models (--lr-range replaces it). lr and λ_dom on log scales: they span a decade.
# --search grid takes each range's two ends (search.two_level_grid).
SPACE = {
    "lr": tune.loguniform(5e-4, 5e-3),
    "beta": tune.uniform(0.1, 1.0),
    "lambda_act": tune.uniform(1.0, 5.0),
    "lambda_dom": tune.loguniform(0.01, 0.1),
    "batch_size": tune.choice([32, 64, 128]),  # capped on small data (cli.search_space)
    "dropout": tune.uniform(0.1, 0.5),
}
# With --adapt unlabelled (random or Optuna search), on top of SPACE: the domain head is what adapts,
# so its weight reaches the DANN range (Ganin et al. use λ = 1) and the α ramp (epochs until the
# reversed gradient is full) is searched, with the weight of the target-entropy term up to half the
# smallest λ_act: at λ_ent ≈ λ_act the target's predictions collapsed onto few activities, and no
# label-free score noticed.
ADAPTATION_SPACE = {
    "lambda_dom": tune.loguniform(0.01, 1.0),
    "alpha_ramp_epochs": tune.uniform(1.0, 20.0),
    "lambda_ent": tune.uniform(0.0, 0.5),
}

# ASHA (--scheduler asha): no trial is stopped before --grace-period epochs, by default GRACE_FRACTION
# of --max-epochs (at least 1): a trial's first epochs say little about where it ends (the KL term and
# the domain term are still warming up), so stopping at epoch 1 ranks noise; a quarter of the run
# still leaves rungs to stop the clearly bad trials. At each rung 1/REDUCTION_FACTOR of the trials go on.
GRACE_FRACTION = 0.25
REDUCTION_FACTOR = 2


def default_grace_period(max_epochs: int) -> int:
    """ASHA's grace period when --grace-period is not given: GRACE_FRACTION of ``max_epochs``, at least 1."""
    return max(1, round(GRACE_FRACTION * max_epochs))


def recipe_defaults(args: argparse.Namespace) -> dict:
    """RECIPE_DEFAULTS, with the embedded sample's rate and window (sample.SETTINGS) when the search runs on
    it alone: at its 20 Hz the default 2.56 s window would be shorter than the encoder's receptive field."""
    datasets = args.data or cli.fixed_settings(args).get("datasets", RECIPE_DEFAULTS["datasets"])
    return {**RECIPE_DEFAULTS, **(sample.SETTINGS if datasets == ["sample"] else {})}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.search_parser(__doc__)
    parser.add_argument("--search", choices=["optuna", "random", "grid"], default="optuna",
                        help="optuna: TPE, learns from finished trials; random: independent draws; "
                             "grid: each range's two ends, all 64 combinations (default: optuna)")
    parser.add_argument("--scheduler", choices=["asha", "fifo"], default="asha",
                        help="asha: stops trials that trail the others at the grace period and its multiples "
                             "by the reduction factor; fifo: runs every trial to the end (default: asha)")
    parser.add_argument("--grace-period", type=int, default=None,
                        help="ASHA: epochs before a trial may be stopped (default: a quarter of --max-epochs, "
                             "at least 1; one at or above --max-epochs runs every trial to the end)")
    parser.add_argument("--reduction-factor", type=float, default=REDUCTION_FACTOR,
                        help=f"ASHA: 1/reduction-factor of the trials at each rung go on (default: {REDUCTION_FACTOR})")
    parser.add_argument("--objectives", default=None, metavar="A,B",
                        help="several objectives (names as for --metric): Optuna's multi-objective TPE "
                             "searches their Pareto front; every trial runs to the end")
    lr = SPACE["lr"]
    parser.add_argument("--lr-range", nargs=2, type=float, default=[lr.lower, lr.upper], metavar=("LOW", "HIGH"),
                        help="learning-rate range, e.g. the one searches/lr_range.py suggests "
                             f"(default: {lr.lower:g} {lr.upper:g})")
    selection.add_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> tune.ResultGrid:
    args = parse_args(argv)
    low, high = args.lr_range
    if not 0 < low < high:
        raise ValueError(f"--lr-range {low} {high}: expected 0 < LOW < HIGH")
    objectives = args.objectives.split(",") if args.objectives else []
    unknown = [name for name in objectives if name not in OBJECTIVES]
    if unknown:
        raise ValueError(f"--objectives {args.objectives}: unknown {unknown}; known: {', '.join(OBJECTIVES)}")
    if len(objectives) > 1 and args.search != "optuna":
        raise ValueError(f"--objectives needs --search optuna (its multi-objective sampler), not {args.search}")
    if len(objectives) > 1 and args.scheduler == "asha":
        print("ASHA ranks trials on a single metric, so with several objectives every trial runs to the end (FIFO).")
        args.scheduler = "fifo"
    if objectives:
        args.metric = objectives[0]  # the trial config's objective: what best_config.json is chosen by

    # Everything is checked before Ray starts.
    config = cli.base_config(args, recipe_defaults(args))
    if "target_accuracy" in objectives and not config["target_domain"]:
        raise ValueError("--objectives target_accuracy needs --target-domain (the held-out domain it measures)")
    metrics = [OBJECTIVES[name] for name in objectives or [config["objective"]]]
    config, data = cli.prepare_data(config)
    selection.check_cross_validation(args.cross_validate, args.folds, config, data, metrics)
    space = {**SPACE, "lr": tune.loguniform(low, high)}
    if args.search == "grid":
        space = search.two_level_grid(space)
    elif config["adapt"] == "unlabelled":
        space.update(ADAPTATION_SPACE)  # adapting is the domain head's job: its weight and α ramp
    space = cli.search_space(args, config, space, len(data.train))
    grace_period = default_grace_period(config["max_epochs"]) if args.grace_period is None else args.grace_period
    scheduler = (search.asha(metrics[0], config["max_epochs"], grace_period, args.reduction_factor)
                 if args.scheduler == "asha" else FIFOScheduler())
    # Optuna's study lives in the experiment folder: inspect it with optuna.load_study or optuna-dashboard.
    searcher = search.OptunaTPE(metrics) if args.search == "optuna" else search.RandomSearch()
    experiment = cli.experiment_path(args, "loss_weights")

    results = search.run_search(
        args, experiment, config, param_space={**config, **space}, searcher=searcher, scheduler=scheduler,
        num_samples=args.num_samples or (1 if args.search == "grid" else NUM_SAMPLES),
        checkpoints=search.keep_best_checkpoints(metrics[0]),
        data=data)
    best = summarise_search(results, experiment, list(space), metrics, score_test=not args.cross_validate)
    if best is not None and args.cross_validate:  # choose again, over folds of people; scores its own choice
        selection.cross_validate(results, experiment, metrics[0], candidates=args.cross_validate,
                                        folds=args.folds, cpus_per_trial=args.cpus_per_trial,
                                        gpus_per_trial=args.gpus_per_trial, max_failures=args.max_failures)
    return results


if __name__ == "__main__":
    cli.run_command(main)
