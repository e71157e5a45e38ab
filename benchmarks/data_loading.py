"""How much of a training step is data loading? WindowLoader batches vs. a TCN-VAE training step.

On the default synthetic data (4 domains x 6 subjects x 8 activities), times a full pass of the
training loader for each sampling mode (and with augmentation), then TCN-VAE training steps on batches
already in memory, and reports the loader's time per batch as a fraction of a step.

    python benchmarks/data_loading.py [--device cpu|cuda] [--epochs 3] [--batch-size 64] [--steps 20]

Last line: ``data_loading: batch_ms=X step_ms=Y fraction=Z`` (default loader, uniform sampling).
"""

from __future__ import annotations

import argparse
import time

import torch

from tcnvae.data import Augmentation, DataConfig, WindowLoader, prepare
from tcnvae.model import TCNVAE
from tcnvae.trainer import TCNVAETrainer


def seconds_per_batch(loader: WindowLoader, epochs: int) -> float:
    for _ in loader:  # warm-up epoch: first-touch allocations, lazy initialisation
        pass
    batches = 0
    started = time.perf_counter()
    for _ in range(epochs):
        for _ in loader:
            batches += 1
        if loader.device.type == "cuda":
            torch.cuda.synchronize()
    return (time.perf_counter() - started) / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="training steps to time")
    args = parser.parse_args()

    augmentation = Augmentation(noise_std=0.05, scale_std=0.1, rotation_deg=15, time_warp=0.1)
    started = time.perf_counter()
    data = prepare(DataConfig(batch_size=args.batch_size, augmentation=augmentation))
    print(f"prepare(): {time.perf_counter() - started:.2f} s for {len(data.train)} train / "
          f"{len(data.val)} val / {len(data.test)} test windows of {data.window_length} x "
          f"{len(data.channel_names)}")

    variants = {
        "uniform": {"augment": None},
        "class_balanced": {"augment": None, "sampling": "class_balanced"},
        "domain_balanced": {"augment": None, "sampling": "domain_balanced"},
        "uniform+augmentation": {},
    }
    timings = {
        name: seconds_per_batch(data.train_loader(device=args.device, **options), args.epochs)
        for name, options in variants.items()
    }

    model = TCNVAE(input_dim=len(data.channel_names), num_activities=data.num_activities,
                   num_domains=data.num_domains)
    trainer = TCNVAETrainer(model, args.device)
    trainer.verbose = False
    batches = list(data.train_loader(device=args.device, augment=None))[: args.steps]
    trainer.train_epoch(batches[:2], epoch=0)  # warm-up (allocations, kernels)
    started = time.perf_counter()
    trainer.train_epoch(batches, epoch=1)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    step = (time.perf_counter() - started) / len(batches)

    print(f"device {args.device}, batch size {args.batch_size}, {len(data.train_loader())} batches "
          f"per epoch, {len(batches)} training steps timed")
    for name, seconds in timings.items():
        print(f"  loader {name:22s} {seconds * 1e3:8.3f} ms/batch  ({seconds / step:.1%} of a step)")
    print(f"  TCN-VAE training step   {step * 1e3:8.3f} ms/batch")
    batch = timings["uniform"]
    print(f"data_loading: batch_ms={batch * 1e3:.3f} step_ms={step * 1e3:.3f} fraction={batch / step:.4f}")


if __name__ == "__main__":
    main()
