"""What a multi-worker trial costs: the same epochs as one Tune trial of two DDP workers (Ray Train) and
as one Tune trial of one worker, same config and seed, one after the other.

    python benchmarks/distributed_trial.py [--epochs 5] [--data synthetic|uci_har]

A multi-worker trial should start its worker group once, however many epochs it runs: the count comes
from the start-up records its workers leave in the trial folder (``worker_starts/``; a group start is
a rank-0 record). Seconds per epoch are the trial's wall time inside Tune (``time_total_s``: data preparation,
the worker group's start, training, checkpoints, TensorBoard) over its epochs, so they include what a
start costs; the median epoch is printed too. Each worker of the two-worker trial gets one CPU, the
one-worker trial one CPU, and ``batch_size`` is per worker, so the two-worker trial trains on twice the
windows per step and takes half the steps. ``--data uci_har`` reads the real UCI-HAR windows from
``$TCNVAE_SHARED_DATA`` (default ``../shared/data``). Last line:

    distributed_trial: workers=2 epochs=E worker_group_starts=S seconds_per_epoch=X one_worker_seconds_per_epoch=Y
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import ray
from ray import tune

from tcnvae.tuning import make_trainable, tune_logger_callbacks, validate_config
from tcnvae.tuning.trainables import worker_group_starts

SHARED_DATA = Path(os.environ.get("TCNVAE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def tune_trial(config: dict, workers: int, storage: str) -> tuple[float, float, int]:
    """Seconds inside the trainable, median seconds per epoch, and worker-group starts of one trial."""
    tuner = tune.Tuner(
        make_trainable(cpus_per_trial=workers, workers_per_trial=workers),
        param_space=config,
        run_config=tune.RunConfig(name=f"workers_{workers}", storage_path=storage,
                                  callbacks=tune_logger_callbacks(), verbose=0),
    )
    result = tuner.fit()[0]
    if result.error is not None:
        raise RuntimeError(f"the {workers}-worker trial failed: {result.error}")
    return (result.metrics["time_total_s"], statistics.median(result.metrics_dataframe["time_this_iter_s"]),
            len(worker_group_starts(result.path)))


def main(argv: list[str] | None = None) -> tuple[float, float, int]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5, help="epochs of both trials (default: 5)")
    parser.add_argument("--data", choices=("synthetic", "uci_har"), default="synthetic",
                        help="the default synthetic data, or the real UCI-HAR windows (default: synthetic)")
    args = parser.parse_args(argv)
    config = {"max_epochs": args.epochs, "datasets": [args.data]}
    if args.data == "uci_har":
        path = SHARED_DATA / "uci_har_windows.npz"
        if not path.is_file():
            parser.error(f"--data uci_har: {path} not found; set TCNVAE_SHARED_DATA to the folder holding it")
        config["data_paths"] = {"uci_har": str(path)}
    try:
        config = validate_config(config)
    except ValueError as error:
        parser.error(str(error))

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    print(f"Ray start-up: {time.perf_counter() - started:.1f}s (not counted)")
    with tempfile.TemporaryDirectory() as storage:
        seconds, epoch, starts = tune_trial(config, 2, storage)
        print(f"2-worker trial: {args.epochs} epochs in {seconds:.1f}s inside the trainable, median epoch "
              f"{epoch:.2f}s, {starts} worker-group start(s)")
        one_seconds, one_epoch, _ = tune_trial(config, 1, storage)
        print(f"1-worker trial: {args.epochs} epochs in {one_seconds:.1f}s inside the trainable, median epoch "
              f"{one_epoch:.2f}s")
    ray.shutdown()
    per_epoch, one_per_epoch = seconds / args.epochs, one_seconds / args.epochs
    print(f"distributed_trial: workers=2 epochs={args.epochs} worker_group_starts={starts} "
          f"seconds_per_epoch={per_epoch:.2f} one_worker_seconds_per_epoch={one_per_epoch:.2f}")
    return per_epoch, one_per_epoch, starts


if __name__ == "__main__":
    main(sys.argv[1:])
