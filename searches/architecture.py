"""Search the TCN-VAE's architecture: depth and width of the encoder, kernel size, latent size, and
whether the encoder's pooled features include each input channel's window mean.

Random search proposes, ASHA stops early. The loss weights and optimiser stay at their defaults (or
what --config / --set give, e.g. a loss_weights.py search's best_config.json), so the trials differ
in their architecture only. Searched:

- encoder blocks (``hidden_dims``): 2, 3 or 4 blocks of 32, 64 or 128 channels. Dilations double per
  block, so the receptive field is 1 + 2·(kernel − 1)·(2^blocks − 1) samples: 4 blocks of kernel 5
  see 121 of a 128-sample window, 2 blocks of kernel 3 only 13;
- ``kernel_size``: 3, 5, 7;
- ``latent_dim``: 16, 32, 64;
- ``input_means``: False, True (the channels' window means, on an accelerometer the gravity direction
  that tells sitting from standing, beside the blocks' pooled features).

    python searches/architecture.py                              # synthetic data, minutes on a CPU
    python searches/architecture.py --data hapt --data-path hapt=../shared/data/hapt_raw.npz --num-samples 16
    python searches/architecture.py --cross-validate 3          # choose among the 3 best over folds of people
    python searches/loss_weights.py --config results/<architecture experiment>/best_config.json   # then the weights

Random search, not Optuna: ``hidden_dims`` is a list, which Optuna's categorical parameters cannot
store. At the end: the best architecture and its metrics beside the random-forest baseline,
leaderboard.csv and best_config.json in the experiment folder.
"""

from __future__ import annotations

from ray import tune

from tcnvae.tuning import cli, search, selection
from tcnvae.tuning.metrics import OBJECTIVES
from tcnvae.tuning.report import summarise_search

RECIPE_DEFAULTS: dict = {}  # nothing on top of tcnvae.tuning.config.DEFAULT_CONFIG; change with --set
NUM_SAMPLES = 8  # trials, unless --num-samples says otherwise
# ASHA: no trial is stopped before GRACE_PERIOD epochs (a larger model needs a few to show what it can
# do); at each rung 1/REDUCTION_FACTOR of the trials go on.
GRACE_PERIOD = 2
REDUCTION_FACTOR = 2

BLOCKS = (2, 3, 4)
WIDTHS = (32, 64, 128)
SPACE = {
    "hidden_dims": tune.choice([[width] * blocks for blocks in BLOCKS for width in WIDTHS]),
    "kernel_size": tune.choice([3, 5, 7]),
    "latent_dim": tune.choice([16, 32, 64]),
    "input_means": tune.choice([False, True]),
}


def main(argv: list[str] | None = None) -> tune.ResultGrid:
    parser = cli.search_parser(__doc__)
    selection.add_arguments(parser)  # --cross-validate N: choose among the N best over folds of people
    args = parser.parse_args(argv)

    # Everything is checked before Ray starts, every architecture of the space included.
    config = cli.base_config(args, RECIPE_DEFAULTS)
    cli.validate_space(config, SPACE)
    config, data = cli.prepare_data(config)  # every data problem now, in seconds, not in every trial
    metric = OBJECTIVES[config["objective"]]
    selection.check_cross_validation(args.cross_validate, args.folds, config, data, [metric])
    scheduler = search.asha(metric, config["max_epochs"], GRACE_PERIOD, REDUCTION_FACTOR)
    experiment = cli.experiment_path(args, "architecture")

    results = search.run_search(
        args, experiment, config, param_space={**config, **SPACE}, searcher=search.RandomSearch(),
        scheduler=scheduler, num_samples=args.num_samples or NUM_SAMPLES,
        checkpoints=search.keep_best_checkpoints(metric),
        data=data)
    best = summarise_search(results, experiment, list(SPACE), [metric], score_test=not args.cross_validate)
    if best is not None and args.cross_validate:
        selection.cross_validate(results, experiment, metric, candidates=args.cross_validate,
                                        folds=args.folds, cpus_per_trial=args.cpus_per_trial,
                                        gpus_per_trial=args.gpus_per_trial, max_failures=args.max_failures)
    return results


if __name__ == "__main__":
    cli.run_command(main)
