"""The learning-rate range test (Smith, 2017): train with the learning rate rising exponentially.

Each batch trains at a higher rate than the one before, from --lr-min to --lr-max over --epochs
epochs (one by default). The loss first barely moves, then falls fast, then blows up. The suggested
range runs from the rate where the smoothed loss falls fastest (steepest descent) to a tenth of the
rate at its minimum (the minimum itself is already at the edge of divergence). Narrow a search with it:

    python searches/lr_range.py
    python searches/lr_range.py --data uci_har --data-path uci_har=../shared/data/uci_har_windows.npz
    python searches/loss_weights.py --lr-range LOW HIGH      # what the first command printed

One plain training run in this process, without Ray: a range test is a single short run, and a Tune
trial around it would only add start-up time. The loss terms are those of the first step of training
(α = 0, β at its schedule's start), as the test is about the start of training. The curve goes to
TensorBoard — step i trained at lr = lr_min·(lr_max/lr_min)^(i/(steps-1)), so the step axis is a log-lr
axis, and the tag lr_range/lr gives each step's rate — and to lr_range.csv.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from tcnvae.tuning import cli
from tcnvae.tuning.report import write_csv
from tcnvae.tuning.trial import build_model, build_trainer, seed_everything

# The test sets the rate itself, batch by batch: no learning-rate schedule on top. Everything else:
# tcnvae.tuning.config.DEFAULT_CONFIG, changed with --set KEY=VALUE.
RECIPE_DEFAULTS = {"lr_schedule": "constant"}
# The sweep, unless its flags say otherwise: from LR_MIN to LR_MAX over EPOCHS epochs; the loss smoothed
# with weight SMOOTHING on the past, and the sweep ended once it exceeds DIVERGENCE times its minimum.
LR_MIN = 1e-5
LR_MAX = 1.0
EPOCHS = 1
SMOOTHING = 0.8
DIVERGENCE = 4.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.run_parser(__doc__)
    parser.add_argument("--lr-min", type=float, default=LR_MIN, help=f"rate of the first batch (default: {LR_MIN:g})")
    parser.add_argument("--lr-max", type=float, default=LR_MAX, help=f"rate of the last batch (default: {LR_MAX:g})")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"epochs the sweep spans (default: {EPOCHS})")
    parser.add_argument("--smoothing", type=float, default=SMOOTHING,
                        help=f"weight of the past in the loss's moving average (default: {SMOOTHING:g})")
    parser.add_argument("--divergence", type=float, default=DIVERGENCE,
                        help="stop once the smoothed loss exceeds this multiple of its minimum "
                             f"(default: {DIVERGENCE:g})")
    return parser.parse_args(argv)


def batches(loader: Any, epochs: int) -> Iterator[Any]:
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        yield from loader


def suggest_range(rates: np.ndarray, smoothed: np.ndarray) -> dict[str, float]:
    """Steepest descent of the smoothed loss (per decade of lr) up to a tenth of its minimum's rate.

    The first tenth of the sweep is left out of the steepest-descent search: the moving average is
    still settling there, and its first wobbles look steep.
    """
    minimum = int(np.argmin(smoothed))
    slopes = np.gradient(smoothed, np.log10(rates))
    start = min(len(rates) // 10, minimum)
    steepest = start + int(np.argmin(slopes[start: minimum + 1]))
    high = rates[minimum] / 10
    low = rates[steepest] if rates[steepest] < high else high / 10
    return {"steepest_lr": float(rates[steepest]), "min_loss_lr": float(rates[minimum]),
            "min_loss": float(smoothed[minimum]), "low": float(low), "high": float(high)}


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    if not 0 < args.lr_min < args.lr_max:
        raise ValueError(f"--lr-min {args.lr_min} --lr-max {args.lr_max}: expected 0 < lr-min < lr-max")
    if args.epochs < 1 or not 0 <= args.smoothing < 1 or args.divergence <= 1:
        raise ValueError(f"--epochs {args.epochs} --smoothing {args.smoothing} --divergence {args.divergence}: "
                         "expected epochs >= 1, smoothing in [0, 1), divergence > 1")
    config = cli.base_config(args, RECIPE_DEFAULTS)
    if config["lr_schedule"] != "constant":
        raise ValueError(f"lr_schedule={config['lr_schedule']!r}: the range test needs 'constant'")
    experiment = cli.experiment_path(args, "lr_range")

    seed_everything(config["seed"])
    config, data = cli.prepare_data(config)
    device = torch.device("cuda" if config["use_gpu"] else "cpu")
    trainer = build_trainer(config, build_model(config, data), device)
    loader = data.train_loader()
    steps = args.epochs * len(loader)
    if steps < 3:
        raise ValueError(f"{steps} training batches are too few for a range test; lower batch_size or add --epochs")
    rates = args.lr_min * (args.lr_max / args.lr_min) ** (np.arange(steps) / (steps - 1))

    writer = SummaryWriter(str(experiment))
    rows: list[dict[str, float]] = []
    average = 0.0
    for step, (batch, lr) in enumerate(zip(batches(loader, args.epochs), rates)):
        trainer.set_learning_rate(float(lr))
        loss = trainer.train_epoch([batch], 0)  # one step: the loss of this batch before the update
        if trainer.last_train_metrics["skipped_steps"]:
            print(f"the loss became non-finite at lr = {lr:.3g}; the sweep ends there")
            break
        average = args.smoothing * average + (1 - args.smoothing) * loss
        smoothed = average / (1 - args.smoothing ** (step + 1))  # bias-corrected moving average
        rows.append({"step": step, "lr": float(lr), "loss": loss, "smoothed_loss": smoothed})
        for tag, value in (("lr_range/loss", loss), ("lr_range/smoothed_loss", smoothed), ("lr_range/lr", lr)):
            writer.add_scalar(tag, value, step)
        if smoothed > args.divergence * min(row["smoothed_loss"] for row in rows):
            break
    if len(rows) < 3:
        raise RuntimeError(f"the loss diverged within {len(rows)} steps; lower --lr-min")

    suggestion = suggest_range(np.array([row["lr"] for row in rows]), np.array([row["smoothed_loss"] for row in rows]))
    summary = (f"Steepest descent at lr = {suggestion['steepest_lr']:.2e}; minimum smoothed loss "
               f"{suggestion['min_loss']:.4g} at lr = {suggestion['min_loss_lr']:.2e} ({len(rows)} of {steps} steps).\n"
               f"Suggested lr range: {suggestion['low']:.2e} .. {suggestion['high']:.2e}")
    if suggestion["high"] < args.lr_min:
        summary += ("\nThe loss stopped falling within a decade of --lr-min, "
                    "so the range lies below the sweep: lower --lr-min.")
    writer.add_text("lr_range/suggestion", summary)
    writer.close()
    write_csv(rows, experiment / "lr_range.csv")
    print(summary)
    print(f"Next: python searches/loss_weights.py --lr-range {suggestion['low']:.2e} {suggestion['high']:.2e}")
    print(f"Curve: {experiment / 'lr_range.csv'}")
    print(f"TensorBoard: tensorboard --logdir {experiment}")
    return suggestion


if __name__ == "__main__":
    cli.run_command(main)
