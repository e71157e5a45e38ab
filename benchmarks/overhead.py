"""What running a trial through Ray Tune costs: the same epochs of the same model on the same data,
once as a Tune trial (per epoch: checkpoint, TensorBoard, report) and once as a bare TCNVAETrainer
loop in this process, with the same number of CPU threads.

    python benchmarks/overhead.py [--epochs 20] [--cpus-per-trial 1] [--repeats 2]

Ray's start-up is measured apart and not counted: it is paid once per search, not per trial. The Tune
time is the wall time of ``Tuner.fit`` for one trial: scheduling, the trial's process, its data and
model set-up, training, checkpoints and TensorBoard. Each run is repeated, alternating, and the fastest
of each counts (a busy machine only ever slows a run down). Both runs use the same seed, so they
compute the same model; the final accuracies are printed to show it. Last line:

    overhead: tune=Xs bare=Ys ratio=R
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import ray
import torch
from ray import tune

from tcnvae.data.pipeline import prepare
from tcnvae.tuning import data_config, make_trainable, tune_logger_callbacks, validate_config
from tcnvae.tuning.loop import build_model, build_trainer, seed_everything


def bare_loop(config: dict) -> tuple[float, float, float]:
    """Seconds, median seconds per epoch and final validation accuracy of a plain trainer loop
    (data preparation included)."""
    started = time.perf_counter()
    seed_everything(config["seed"])
    data = prepare(data_config(config))
    trainer = build_trainer(config, build_model(config, data), torch.device("cpu"))
    train_loader, val_loader = data.train_loader(), data.val_loader()
    accuracy = 0.0
    epoch_seconds = []
    for epoch in range(config["max_epochs"]):
        epoch_started = time.perf_counter()
        trainer.train_epoch(train_loader, epoch)
        accuracy = trainer.validate(val_loader)[1]
        epoch_seconds.append(time.perf_counter() - epoch_started)
    return time.perf_counter() - started, statistics.median(epoch_seconds), accuracy


def tune_trial(config: dict, cpus: float, storage: str) -> tuple[float, float, float, float]:
    """Seconds of ``Tuner.fit``, seconds inside the trainable, median seconds per epoch (training,
    checkpoint, TensorBoard, report) and the final validation accuracy."""
    tuner = tune.Tuner(
        make_trainable(cpus_per_trial=cpus),
        param_space=config,
        tune_config=tune.TuneConfig(num_samples=1),
        run_config=tune.RunConfig(storage_path=storage, callbacks=tune_logger_callbacks(),
                                  verbose=0),
    )
    started = time.perf_counter()
    result = tuner.fit()[0]
    seconds = time.perf_counter() - started
    if result.error is not None:
        raise RuntimeError(f"the Tune trial failed: {result.error}")
    epoch_seconds = statistics.median(result.metrics_dataframe["time_this_iter_s"])
    return seconds, result.metrics["time_total_s"], epoch_seconds, result.metrics["val/accuracy"]


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20, help="epochs of both runs (default: 20)")
    parser.add_argument("--cpus-per-trial", type=int, default=1, help="CPU threads of both runs (default: 1)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs of each, alternating; the fastest counts, as the least disturbed (default: 2)")
    args = parser.parse_args(argv)
    config = validate_config({"max_epochs": args.epochs})
    torch.set_num_threads(args.cpus_per_trial)  # what Ray gives a trial with this many CPUs

    started = time.perf_counter()
    ray.init(num_cpus=max(2, args.cpus_per_trial), include_dashboard=False, logging_level="WARNING")
    print(f"Ray start-up: {time.perf_counter() - started:.1f}s (not counted)")
    bare_runs, tune_runs = [], []
    with tempfile.TemporaryDirectory() as storage:
        for _ in range(args.repeats):
            bare_runs.append(bare_loop(config))
            print(f"bare TCNVAETrainer loop: {args.epochs} epochs in {bare_runs[-1][0]:.1f}s, median epoch "
                  f"{bare_runs[-1][1]:.2f}s (final val/accuracy {bare_runs[-1][2]:.4f})")
            tune_runs.append(tune_trial(config, args.cpus_per_trial, storage))
            print(f"Tune trial: {args.epochs} epochs in {tune_runs[-1][0]:.1f}s, {tune_runs[-1][1]:.1f}s of it inside "
                  f"the trainable, median epoch {tune_runs[-1][2]:.2f}s (final val/accuracy {tune_runs[-1][3]:.4f})")
    ray.shutdown()
    bare_seconds = min(run[0] for run in bare_runs)
    tune_seconds = min(run[0] for run in tune_runs)
    ratio = tune_seconds / bare_seconds
    print(f"overhead: tune={tune_seconds:.1f}s bare={bare_seconds:.1f}s ratio={ratio:.3f}")
    return ratio

if __name__ == "__main__":
    main(sys.argv[1:])
