"""Search curricula together with the loss weights: Optuna (TPE) picks a policy and its parameters, ASHA stops early.

Each trial draws the loss weights and optimiser settings from SPACE below (the ranges of
searches/loss_weights.py: lr 5e-4–5e-3 log, β 0.1–1.0, λ_act 1–5, λ_dom 0.01–0.1 log, batch size
32/64/128 capped on small data, dropout 0.1–0.5), then one curriculum of --curricula (default: none,
single_to_cross, objective_ramp, self_paced; add your own with --curriculum FILE.py:Class), then that
curriculum's parameters from the policy's own search space (CurriculumPolicy.search_space). The space
is conditional: a trial has the parameters of the policy it drew and no others, and TPE models each
policy's parameters on the trials that used it. Trials name them curriculum.<policy>.<parameter>
(e.g. curriculum.single_to_cross.ramp_epochs), so two policies' parameters of the same name stay
apart; feed a trial's settings back with --config.

    python searches/curriculum.py                        # synthetic data: 12 trials, minutes on a CPU
    python searches/curriculum.py --curricula none,single_to_cross,single_to_cross+objective_ramp \\
        --metric worst_domain_accuracy
    python searches/pretrain.py --output encoder.pt      # then fine-tune from it:
    python searches/curriculum.py --curricula none,freeze_then_finetune --encoder-path encoder.pt
    python searches/curriculum.py --curriculum mypolicies.py:HeadsFirst   # your policy beside the shipped ones
    python searches/curriculum.py --name NAME --resume   # continue an interrupted search

ASHA compares trials at equal epochs, and a curriculum often trails the baseline until its last stage
(one domain, or no KL term, is not the final objective yet). So trials are not stopped before
--grace-period epochs (default 4: the shipped policies' default schedules are in their last or
next-to-last stage by then); raise it with policies that switch later. With --max-epochs at or below
the grace period every trial runs to the end (said at the start). Loss weights given by --set or
--config are fixed and not searched.

At the end: the best config and its metrics are printed (a curriculum parameter of a policy the best
trial did not draw shows as None), and leaderboard.csv, best_config.json and the Optuna study
(optuna.db) are written to the experiment folder, with the `tensorboard --logdir` command that
compares the trials (each trial's curriculum/* curves and a text entry at every stage change).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from optuna.distributions import CategoricalDistribution
from ray import tune

from tcnvae.curriculum import check_curriculum_spec
from tcnvae.tuning import cli, search
from tcnvae.tuning.config import CURRICULUM_PREFIX, DEFAULT_CONFIG, validate_config
from tcnvae.tuning.metrics import OBJECTIVES
from tcnvae.tuning.report import summarise_search
from tcnvae.tuning.search import CurriculumSpace, policy_space

# This search's starting point, on top of tcnvae.tuning.config.DEFAULT_CONFIG. Change with --set KEY=VALUE.
RECIPE_DEFAULTS = {"max_epochs": 10}
NUM_SAMPLES = 12  # trials, unless --num-samples says otherwise
CURRICULA = "none,single_to_cross,objective_ramp,self_paced"  # what trials choose from, unless --curricula
PRETRAINED_POLICY = "freeze_then_finetune"  # the shipped policy that reads --encoder-path

# What every trial draws before its curriculum: the loss weights and optimiser settings over the
# ranges of searches/loss_weights.py (its SPACE says why they are these), so that a curriculum is
# compared with the weights a plain search would try. Each policy's parameters come from the policy
# (CurriculumPolicy.search_space).
SPACE = {
    "lr": tune.loguniform(5e-4, 5e-3),
    "beta": tune.uniform(0.1, 1.0),
    "lambda_act": tune.uniform(1.0, 5.0),
    "lambda_dom": tune.loguniform(0.01, 0.1),
    "batch_size": tune.choice([32, 64, 128]),  # capped on small data (cli.search_space)
    "dropout": tune.uniform(0.1, 0.5),
}

# ASHA: no trial is stopped before --grace-period epochs (GRACE_PERIOD: the shipped policies' default
# schedules are in their last or next-to-last stage by then); at each rung 1/REDUCTION_FACTOR go on.
GRACE_PERIOD = 4
REDUCTION_FACTOR = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.search_parser(__doc__)
    parser.add_argument("--curricula", default=CURRICULA, metavar="A,B",
                        help="the curricula trials choose from: registered names, or several policies joined "
                             f"by '+' to run together (default: {CURRICULA})")
    parser.add_argument("--curriculum", action="append", default=[], metavar="FILE.py:Class",
                        help="a policy of your own (a CurriculumPolicy subclass) to choose from too (repeatable)")
    parser.add_argument("--encoder-path", type=Path, default=None,
                        help=f"pretrained encoder for {PRETRAINED_POLICY} (from searches/pretrain.py, with the "
                             "same model settings)")
    parser.add_argument("--grace-period", type=int, default=GRACE_PERIOD,
                        help="ASHA: epochs before a trial may be stopped; give curricula time to reach their "
                             f"last stage (default: {GRACE_PERIOD})")
    parser.add_argument("--reduction-factor", type=float, default=REDUCTION_FACTOR,
                        help=f"ASHA: 1/reduction-factor of the trials at each rung go on (default: {REDUCTION_FACTOR})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> tune.ResultGrid:
    args = parse_args(argv)
    # Everything is checked before Ray starts.
    config = cli.base_config(args, RECIPE_DEFAULTS)
    if config["curriculum"] != DEFAULT_CONFIG["curriculum"] or any(key.startswith(CURRICULUM_PREFIX) for key in config):
        raise ValueError("this search chooses each trial's curriculum and its parameters: name the curricula with "
                         "--curricula/--curriculum rather than --set curriculum...")
    specs = list(dict.fromkeys(check_curriculum_spec(spec.strip())
                               for spec in [*args.curricula.split(","), *args.curriculum] if spec.strip()))
    fixed = {}
    if args.encoder_path is not None:
        pretrained = [spec for spec in specs if PRETRAINED_POLICY in spec.split("+")]
        if not pretrained:
            raise ValueError(f"--encoder-path is for {PRETRAINED_POLICY}, which none of {specs} uses")
        # Absolute: trials run in their own directories.
        fixed = {spec: {f"{CURRICULUM_PREFIX}{PRETRAINED_POLICY}.encoder_path": str(args.encoder_path.resolve())}
                 for spec in pretrained}
    for spec in specs:
        cli.validate_space(validate_config({**config, "curriculum": spec, **fixed.get(spec, {})}), policy_space(spec))
    config, data = cli.prepare_data(config)
    loss_space = cli.search_space(args, config, SPACE, len(data.train),
                                  also_searched=[f"curriculum (one of {', '.join(specs)}) and its parameters"])
    space = CurriculumSpace.from_tune(loss_space, specs, fixed)
    metric = OBJECTIVES[config["objective"]]
    scheduler = search.asha(metric, config["max_epochs"], args.grace_period, args.reduction_factor)
    experiment = cli.experiment_path(args, "curriculum")

    results = search.run_search(
        args, experiment, config, param_space=dict(config), scheduler=scheduler,
        # Optuna asks for the curriculum first, then only its parameters: a define-by-run space.
        searcher=search.OptunaTPE([metric], space=space),
        num_samples=args.num_samples or NUM_SAMPLES,
        checkpoints=search.keep_best_checkpoints(metric),
        # What TensorBoard's HParams shows: the loss weights, the curriculum, every policy's parameters.
        searched={**space.base, "curriculum": CategoricalDistribution(specs),
                  **{key: domain for policy in space.curricula.values() for key, domain in policy.items()}},
        data=data)
    summarise_search(results, experiment, space.hyperparameters(), [metric])
    return results


if __name__ == "__main__":
    cli.run_command(main)
