"""Population-based training of the β schedule and the loss weights (PBT; PB2 with --scheduler pb2).

A population of trials trains side by side. Every --perturbation-interval epochs the bottom quarter
copies the checkpoint of the top quarter (exploit: the copy continues from the donor's epoch, not from
zero) and moves the copied hyperparameters (explore: PBT by ×0.8/×1.2 or a fresh draw, PB2 with a
Gaussian-process bandit), clamped to the ranges below. Moved: β (0.1–1.0), λ_act (1–5), λ_dom
(0.01–0.1; with --adapt unlabelled 0.01–1, and the α ramp 1–20 epochs and λ_ent 0–0.5 too: BOUNDS and
ADAPTATION_BOUNDS) and the parameters of the chosen β schedule, within the schedule's own ranges
(BetaSchedule.search_bounds) — so the population discovers *how β should change over training*. The
first population is the defaults and uniform draws within those ranges. A key given by --set or
--config is fixed and not moved. An interval at or beyond --max-epochs would never perturb: it is
lowered to half the run (said at the start).

At the end the winner's schedule — the hyperparameters it trained with at each epoch, across every
exploit — is written to <experiment>/replay.json, and `--replay FILE` trains one plain run (no Ray)
that follows it: a PBT discovery becomes a reproducible training recipe.

    python searches/beta_annealing.py                              # 4 trials × 12 epochs, minutes on a CPU
    python searches/beta_annealing.py --scheduler pb2 --beta-schedule cyclical
    python searches/beta_annealing.py --replay results/<experiment>/replay.json
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import torch
from ray import tune
from ray.tune.schedulers import PopulationBasedTraining
from ray.tune.schedulers.pb2 import PB2

from tcnvae import beta_schedules
from tcnvae.checkpoints import load_checkpoint
from tcnvae.tuning import cli, search
from tcnvae.tuning.metrics import OBJECTIVE_MODE, OBJECTIVES, SCHEDULE_BETA, VAL_ACCURACY
from tcnvae.tuning.report import summarise_search
from tcnvae.tuning.trial import CHECKPOINT_FILE, load_replay, run_trial, write_replay

# This search's starting point, on top of tcnvae.tuning.config.DEFAULT_CONFIG. Change with --set KEY=VALUE.
RECIPE_DEFAULTS = {"max_epochs": 12}
POPULATION = 4  # trials, unless --num-samples says otherwise
BETA_SCHEDULE = "linear"  # the β schedule whose parameters the population moves, unless --beta-schedule

# [low, high] of what the population moves (PB2's hyperparam_bounds; PBT's mutations draw uniformly
# within them), besides the β schedule's parameters: the loss weights over the ranges of
# searches/loss_weights.py.
BOUNDS = {
    "beta": [0.1, 1.0],
    "lambda_act": [1.0, 5.0],
    "lambda_dom": [0.01, 0.1],
}
# With --adapt unlabelled, as searches/loss_weights.py's ADAPTATION_SPACE (which says why): adapting is
# the domain head's job, so its weight reaches the DANN range and the α ramp and λ_ent move too.
ADAPTATION_BOUNDS = {
    "lambda_dom": [0.01, 1.0],
    "alpha_ramp_epochs": [1.0, 20.0],
    "lambda_ent": [0.0, 0.5],
}

# PBT/PB2: every PERTURBATION_INTERVAL epochs (unless --perturbation-interval) the bottom
# QUANTILE_FRACTION of the population copies the top QUANTILE_FRACTION. PBT copies a trial's latest
# checkpoint; keeping fewer than CHECKPOINTS_KEPT can delete it before the copy.
PERTURBATION_INTERVAL = 2
QUANTILE_FRACTION = 0.25
CHECKPOINTS_KEPT = 4


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.search_parser(__doc__)
    parser.add_argument("--scheduler", choices=["pbt", "pb2"], default="pbt",
                        help="pbt: random perturbations; pb2: a bandit picks them, better with small populations "
                             "(default: pbt)")
    # The β schedules registered now with parameters the population can move, within the schedules' own
    # ranges (BetaSchedule.search_bounds).
    movable = sorted(name for name in beta_schedules.BETA_SCHEDULES if beta_schedules.search_bounds(name))
    parser.add_argument("--beta-schedule", choices=movable, default=BETA_SCHEDULE,
                        help=f"the β schedule whose parameters the population moves (default: {BETA_SCHEDULE})")
    parser.add_argument("--perturbation-interval", type=int, default=PERTURBATION_INTERVAL,
                        help=f"epochs between exploit/explore steps (default: {PERTURBATION_INTERVAL})")
    parser.add_argument("--quantile-fraction", type=float, default=QUANTILE_FRACTION,
                        help="share of the population that copies (bottom) and is copied (top) "
                             f"(default: {QUANTILE_FRACTION})")
    parser.add_argument("--synch", action="store_true",
                        help="perturb the whole population together once every trial reaches the interval: "
                             "reproducible, but waits for the slowest trial")
    parser.add_argument("--replay", type=Path, default=None, metavar="FILE",
                        help="instead of searching, train one plain run following a replay.json")
    return parser.parse_args(argv)


def replay(args: argparse.Namespace) -> list[dict[str, float]]:
    """One plain training run (no Ray) that sets each epoch's hyperparameters from a replay file.

    With the trial's CPU thread count (Ray gives a trial one thread per CPU) the arithmetic is the
    trial's, so the metrics come out as the winner's, to the last digit.
    """
    torch.set_num_threads(max(1, int(args.cpus_per_trial)))
    config = load_replay(args.replay)
    log_dir = cli.experiment_path(args, f"replay-{args.replay.resolve().parent.name}")
    history: list[dict[str, float]] = []

    def report(metrics: dict[str, float], checkpoint: Path | None) -> None:
        history.append(metrics)
        print(f"epoch {metrics['epoch']:.0f}: β={metrics[SCHEDULE_BETA]:.3f} "
              f"{VAL_ACCURACY}={metrics[VAL_ACCURACY]:.4f}", flush=True)

    run_trial(config, report, log_dir=log_dir)
    print(f"TensorBoard: tensorboard --logdir {log_dir}")
    return history


def main(argv: list[str] | None = None) -> tune.ResultGrid | list[dict[str, float]]:
    args = parse_args(argv)
    if args.replay is not None:
        return replay(args)

    # Everything is checked before Ray starts.
    if not 0 < args.quantile_fraction <= 0.5:
        raise ValueError(f"--quantile-fraction {args.quantile_fraction}: expected a fraction in (0, 0.5]")
    config = cli.base_config(args, {**RECIPE_DEFAULTS, "beta_schedule": args.beta_schedule})
    interval = search.perturbation_interval(args.perturbation_interval, config["max_epochs"])
    config, data = cli.prepare_data(config)
    bounds = {**BOUNDS, **beta_schedules.search_bounds(args.beta_schedule)}
    if config["adapt"] == "unlabelled":
        bounds.update(ADAPTATION_BOUNDS)
    bounds = cli.search_space(args, config, bounds, len(data.train))
    metric = OBJECTIVES[config["objective"]]
    space = {key: tune.uniform(low, high) for key, (low, high) in bounds.items()}
    explore = functools.partial(search.clamp_to_bounds, bounds=bounds)
    if args.scheduler == "pb2":
        scheduler = PB2(time_attr="training_iteration", metric=metric, mode=OBJECTIVE_MODE,
                        perturbation_interval=interval, hyperparam_bounds=bounds,
                        quantile_fraction=args.quantile_fraction, custom_explore_fn=explore, synch=args.synch)
    else:
        scheduler = PopulationBasedTraining(time_attr="training_iteration", metric=metric, mode=OBJECTIVE_MODE,
                                            perturbation_interval=interval,
                                            hyperparam_mutations=space, quantile_fraction=args.quantile_fraction,
                                            custom_explore_fn=explore, synch=args.synch)
    experiment = cli.experiment_path(args, "beta_annealing")

    results = search.run_search(
        args, experiment, config, param_space={**config, **space}, scheduler=scheduler,
        # The first population: independent draws. PBT moves them from there.
        searcher=search.RandomSearch(),
        num_samples=args.num_samples or POPULATION,
        checkpoints=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
        # Ends a trial at its last epoch before PBT sees the result: an exploit there would
        # replace the finished trial with a copy of another and train nothing.
        stop={"training_iteration": config["max_epochs"]},
        data=data)
    best = summarise_search(results, experiment, list(bounds), [metric])
    if best is None:
        return results
    winner = best["result"]
    with winner.checkpoint.as_directory() as directory:
        history = load_checkpoint(Path(directory) / CHECKPOINT_FILE)["hyperparameter_history"]
    replay_file = write_replay(experiment / "replay.json", history, winner.config)
    print(f"Winner's schedule: {replay_file}")
    print(f"Replay it in one plain run: python searches/beta_annealing.py --replay {replay_file}")
    return results


if __name__ == "__main__":
    cli.run_command(main)
