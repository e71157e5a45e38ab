"""Train the final model: a search's best config on training + validation subjects, tested once, exported.

    python searches/final_model.py results/loss_weights-20261130-200000     # writes .../final/
    python searches/final_model.py --config best_config.json --epochs 8 --output my_model
    python -m tcnvae.predict results/loss_weights-20261130-200000/final recording.npz --output predicted.csv

The model trains the config's whole schedule (max_epochs), unless --epochs says otherwise: a number,
or "best" for the epoch at which the winner peaked on validation (tcnvae.final_model says why the
whole schedule is the default). The output folder holds the
weights, the model card model.json, the test confusion matrix as an image and model.pt2, an exported
program that runs with torch alone (tcnvae.final_model explains each). It is written whole, then renamed
into place; an existing model folder is replaced only with --force.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from tcnvae.final_model import (BEST_EPOCH, MEMBERS, card_text, check_model_folder, final_data, read_search_choice,
                                train_final_model, write_final_model)
from tcnvae.tuning.cli import parse_assignments


def epochs_value(text: str) -> int | str:
    """--epochs: a positive integer or "best"."""
    if text == BEST_EPOCH:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of epochs or {BEST_EPOCH!r}, got {text!r}") from None


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results_dir", nargs="?", type=Path, help="a search's results folder (holds best_config.json)")
    parser.add_argument("--config", type=Path, default=None, help="a best_config.json, in place of RESULTS_DIR")
    parser.add_argument("--epochs", type=epochs_value, default=None,
                        help=f"epochs to train, or {BEST_EPOCH!r}: the winner's best epoch on validation "
                             "(default: the config's max_epochs)")
    parser.add_argument("--members", type=int, default=MEMBERS,
                        help="train the config from this many seeds and average their probabilities "
                             f"(default: {MEMBERS})")
    parser.add_argument("--output", type=Path, default=None,
                        help="model folder (default: final/ beside best_config.json)")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing model folder (the old one stays until the new one is complete)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="change a setting, e.g. --set data_paths='{\"arrays\": \"moved.npz\"}' (repeatable)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu or cuda (default: cuda when available)")
    return parser, parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    parser, args = parse_args(argv)
    # Everything a user can get wrong (paths, settings, data) fails here, as "error: ...", before training.
    try:
        if args.members < 1:
            raise ValueError(f"--members must be at least 1, got {args.members}")
        choice = read_search_choice(args.results_dir, args.config, args.epochs,
                                    parse_assignments(args.overrides, "--set"))
        output = check_model_folder(args.output or choice.source.parent / "final", args.force)
        data = final_data(choice.config)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    print(f"final model: {choice.config['datasets']} on {len(data.train)} windows of "
          f"{len(set(data.train.subject.tolist()))} subjects for {choice.epochs} epochs"
          + (f", {args.members} members" if args.members > 1 else ""))
    model = train_final_model(choice.config, data, choice.epochs, torch.device(args.device), args.members)
    card = write_final_model(output, model, data, choice, replace=args.force)
    print(card_text(card))
    print(f"model folder: {output}  (predict: python -m tcnvae.predict {output} RECORDING --output predicted.csv)")
    return output


if __name__ == "__main__":
    main(sys.argv[1:])
