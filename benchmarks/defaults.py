"""What a user gets without flags, before and after the defaults were revised, against the random forest.

No search: the previous ``DEFAULT_CONFIG`` values and the current ones each train on the training and
validation subjects for ``--epochs`` epochs and are scored once on the test subjects, with the
protocol of ``benchmarks/baselines.py`` (UCI-HAR official split, HAPT by subject); the forest is fitted
on the same windows.

    python benchmarks/defaults.py --data hapt               # the default schedule (DEFAULT_CONFIG's max_epochs)
    python benchmarks/defaults.py --data hapt --epochs 10   # a shorter one
    python benchmarks/defaults.py --data hapt --seed 1                       # another split and initialisation
    python benchmarks/defaults.py --data hapt --set augment_rotation_deg=15  # a change to the current defaults
    python benchmarks/defaults.py --no-previous --set weight_average_epochs=1  # only the current (changed) ones

With ``--no-previous`` the previous defaults are not trained and their figures print as ``nan``.

Last lines, one per data set:
``defaults: data=hapt previous_macro_f1=… current_macro_f1=… baseline_macro_f1=… previous_acc=…
current_acc=… baseline_acc=… epochs=… seed=… members=… minutes=…`` (one line).
"""

from __future__ import annotations

import argparse
import math
import time

from baselines import DATA_SETTINGS, final_model_and_baseline

from tcnvae.final_model import MEMBERS

from tcnvae.tuning.cli import parse_assignments
from tcnvae.tuning.config import DEFAULT_CONFIG, validate_config

# DEFAULT_CONFIG before the revision: a small model, Adam at a constant 1e-3, no augmentation, the
# VAE's own loss weights.
PREVIOUS_DEFAULTS = {
    "hidden_dims": [32, 32], "kernel_size": 3, "latent_dim": 16, "head_hidden": 32,
    "optimizer": "adam", "lr": 1e-3, "lr_schedule": "constant", "weight_decay": 0.0, "label_smoothing": 0.0,
    "beta": 1.0, "lambda_act": 1.0,
    "augment_noise_std": 0.0, "augment_scale_std": 0.0, "augment_time_warp": 0.0,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", choices=sorted(DATA_SETTINGS), default=["uci_har", "hapt"])
    parser.add_argument("--epochs", type=int, default=DEFAULT_CONFIG["max_epochs"],
                        help="of every model (default: %(default)s, the trial default a user gets)")
    parser.add_argument("--seed", type=int, default=0, help="of the split, the initialisation and the forest")
    parser.add_argument("--previous", action=argparse.BooleanOptionalAction, default=True,
                        help="also train the previous defaults (--no-previous: only the current ones and the forest)")
    parser.add_argument("--members", type=int, default=MEMBERS,
                        help=f"seeds each final model averages (default: {MEMBERS}, as searches/final_model.py)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="a trial setting on top of the current defaults (repeatable)")
    args = parser.parse_args()
    if args.epochs < 1 or args.members < 1:
        parser.error("--epochs and --members must be at least 1")
    try:  # every setting checked before the first model trains
        current_settings = {**parse_assignments(args.overrides, "--set"), "seed": args.seed}
        for name in args.data:
            validate_config({**DATA_SETTINGS[name], **current_settings})
    except ValueError as error:
        parser.error(str(error))
    lines = []
    for name in args.data:
        started = time.perf_counter()
        previous = (final_model_and_baseline({**DATA_SETTINGS[name], **PREVIOUS_DEFAULTS, "seed": args.seed,
                                              "max_epochs": args.epochs}, args.epochs, args.members)[0]
                    if args.previous else {"accuracy": math.nan, "macro_f1": math.nan})
        current, baseline = final_model_and_baseline({**DATA_SETTINGS[name], **current_settings,
                                                      "max_epochs": args.epochs}, args.epochs, args.members)
        lines.append(f"defaults: data={name} previous_macro_f1={previous['macro_f1']:.4f} "
                     f"current_macro_f1={current['macro_f1']:.4f} baseline_macro_f1={baseline['macro_f1']:.4f} "
                     f"previous_acc={previous['accuracy']:.4f} current_acc={current['accuracy']:.4f} "
                     f"baseline_acc={baseline['accuracy']:.4f} epochs={args.epochs} seed={args.seed} members={args.members} "
                     f"minutes={(time.perf_counter() - started) / 60:.1f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
