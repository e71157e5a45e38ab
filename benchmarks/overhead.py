"""What running trials through Ray Tune costs, against bare TCNVAETrainer loops doing the same epochs.

    python benchmarks/overhead.py [--epochs 20] [--cpus-per-trial 1] [--repeats 2] [--checkpoint-interval K]
                                  [--search-trials 8] [--search-epochs 3] [--search-data hapt]

1. One trial: the same epochs of the same model on the same (synthetic) data, once as a Tune trial
   (per epoch: a report, TensorBoard, a checkpoint every ``checkpoint_interval`` epochs) and once as a
   bare loop in this process with the same number of CPU threads. The Tune time is the wall time of
   ``Tuner.fit`` for one trial: scheduling, the trial's process, its data and model set-up, training,
   checkpoints and TensorBoard. Each run is repeated, alternating, and the fastest of each counts (a
   busy machine only ever slows a run down). Both use the same seed, so they compute the same model;
   the final accuracies are printed to show it, with a breakdown of where the difference goes.
2. A search: ``--search-trials`` configurations (learning rates) on real data from ../shared/data
   (``$TCNVAE_SHARED_DATA``), two at a time, as a Tune search the way the recipes run one (the driver
   prepares the data once and trials read it from Ray's object store; trial processes are reused)
   against the same configurations as bare loops in two processes (each loop prepares its data, as a
   script run by hand would). The search's time includes the driver's data preparation.

Ray's start-up is measured apart and not counted: it is paid once per search, not per trial. Last lines:

    overhead: tune=Xs bare=Ys ratio=R
    search_overhead: trials=N tune=Xs bare=Ys ratio=R
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import ray
import torch
from ray import tune

from tcnvae.data.pipeline import prepare
from tcnvae.tuning import data_config, make_trainable, tune_logger_callbacks, validate_config
from tcnvae.tuning.cli import prepare_data
from tcnvae.tuning.metrics import VAL_ACCURACY
from tcnvae.tuning.trial import build_model, build_trainer, seed_everything

SHARED_DATA = Path(os.environ.get("TCNVAE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
DATA_FILES = {"hapt": "hapt_raw.npz", "uci_har": "uci_har_windows.npz"}
SEARCH_CONCURRENCY = 2  # trials at a time: the development machine's two cores


@dataclass
class BareRun:
    seconds: float
    setup_seconds: float  # data preparation and model set-up
    epoch_seconds: float  # median
    accuracy: float  # final validation accuracy


@dataclass
class TuneRun:
    seconds: float  # Tuner.fit
    trainable_seconds: float  # inside the trainable (Tune's time_total_s)
    first_epoch_seconds: float  # the first report's time: the trial's set-up and its first epoch
    epoch_seconds: float  # median
    accuracy: float


def bare_loop(config: dict, threads: int = 1) -> BareRun:
    """A plain trainer loop: data preparation, model set-up and the epochs, nothing else."""
    torch.set_num_threads(threads)
    started = time.perf_counter()
    data = prepare(data_config(config))
    seed_everything(config["seed"])
    trainer = build_trainer(config, build_model(config, data), torch.device("cpu"))
    train_loader, val_loader = data.train_loader(), data.val_loader()
    setup_seconds = time.perf_counter() - started
    accuracy = 0.0
    epoch_seconds = []
    for epoch in range(config["max_epochs"]):
        epoch_started = time.perf_counter()
        trainer.train_epoch(train_loader, epoch)
        accuracy = trainer.validate(val_loader)[1]
        epoch_seconds.append(time.perf_counter() - epoch_started)
    return BareRun(time.perf_counter() - started, setup_seconds, statistics.median(epoch_seconds), accuracy)


def tune_trial(config: dict, cpus: float, storage: str) -> TuneRun:
    tuner = tune.Tuner(
        make_trainable(cpus_per_trial=cpus),
        param_space=config,
        tune_config=tune.TuneConfig(num_samples=1),
        run_config=tune.RunConfig(storage_path=storage, callbacks=tune_logger_callbacks(), verbose=0),
    )
    started = time.perf_counter()
    result = tuner.fit()[0]
    seconds = time.perf_counter() - started
    if result.error is not None:
        raise RuntimeError(f"the Tune trial failed: {result.error}")
    epochs = result.metrics_dataframe["time_this_iter_s"]
    return TuneRun(seconds, result.metrics["time_total_s"], float(epochs.iloc[0]), statistics.median(epochs),
                   result.metrics[VAL_ACCURACY])


def trial_overhead(args: argparse.Namespace, storage: str) -> None:
    config = validate_config({"max_epochs": args.epochs, **({"checkpoint_interval": args.checkpoint_interval}
                                                            if args.checkpoint_interval else {})})
    bare_runs, tune_runs = [], []
    for _ in range(args.repeats):
        bare_runs.append(bare_loop(config, args.cpus_per_trial))
        bare = bare_runs[-1]
        print(f"bare TCNVAETrainer loop: {args.epochs} epochs in {bare.seconds:.1f}s, set-up {bare.setup_seconds:.2f}s, "
              f"median epoch {bare.epoch_seconds:.2f}s (final val/accuracy {bare.accuracy:.4f})", flush=True)
        tune_runs.append(tune_trial(config, args.cpus_per_trial, storage))
        run = tune_runs[-1]
        print(f"Tune trial: {args.epochs} epochs in {run.seconds:.1f}s, {run.trainable_seconds:.1f}s of it inside "
              f"the trainable, first report after {run.first_epoch_seconds:.2f}s, median epoch "
              f"{run.epoch_seconds:.2f}s (final val/accuracy {run.accuracy:.4f})", flush=True)
    bare = min(bare_runs, key=lambda run: run.seconds)
    run = min(tune_runs, key=lambda run: run.seconds)
    # Where the difference goes: outside the trainable (Tune's scheduling, the trial's process start,
    # imports), the trial's set-up beyond the bare loop's, and each epoch's extra (report, TensorBoard,
    # checkpoints).
    outside = run.seconds - run.trainable_seconds
    setup = run.first_epoch_seconds - run.epoch_seconds - bare.setup_seconds
    per_epoch = run.epoch_seconds - bare.epoch_seconds
    print(f"breakdown: outside_trainable={outside:.1f}s extra_setup={setup:.1f}s "
          f"extra_per_epoch={per_epoch:.3f}s (x{args.epochs}={per_epoch * args.epochs:.1f}s)")
    print(f"overhead: tune={run.seconds:.1f}s bare={bare.seconds:.1f}s ratio={run.seconds / bare.seconds:.3f}")


def search_configs(args: argparse.Namespace) -> tuple[dict, list[float]]:
    """The search's base config on the real data and its learning rates (one trial each)."""
    path = SHARED_DATA / DATA_FILES[args.search_data]
    if not path.is_file():
        raise SystemExit(f"error: {path} not found: set TCNVAE_SHARED_DATA to the folder holding {path.name}")
    base = validate_config({"datasets": [args.search_data], "data_paths": {args.search_data: str(path)},
                            "max_epochs": args.search_epochs})
    lrs = [round(1e-3 * 1.25 ** index, 6) for index in range(args.search_trials)]
    return base, lrs


def bare_search(base: dict, lrs: list[float]) -> float:
    """Seconds to run every config as a bare loop, two processes at a time (started inside the timing,
    as Tune starts its trial processes inside ``fit``)."""
    started = time.perf_counter()
    with ProcessPoolExecutor(SEARCH_CONCURRENCY, mp_context=get_context("spawn")) as pool:
        runs = list(pool.map(bare_loop, [{**base, "lr": lr} for lr in lrs]))
    seconds = time.perf_counter() - started
    print(f"bare loops: {len(runs)} in {seconds:.1f}s, {SEARCH_CONCURRENCY} at a time; median epoch "
          f"{statistics.median(run.epoch_seconds for run in runs):.2f}s", flush=True)
    return seconds


def tune_search(base: dict, lrs: list[float], storage: str) -> float:
    """Seconds of a search as the recipes run one: data prepared once in the driver, handed to the
    trials through the object store, trial processes reused, TensorBoard and artifacts synced."""
    started = time.perf_counter()
    config, data = prepare_data(base)
    tuner = tune.Tuner(
        make_trainable(cpus_per_trial=1, data=data),
        param_space={**config, "lr": tune.grid_search(lrs)},
        tune_config=tune.TuneConfig(max_concurrent_trials=SEARCH_CONCURRENCY, reuse_actors=True),
        run_config=tune.RunConfig(name="search", storage_path=storage, callbacks=tune_logger_callbacks(),
                                  sync_config=tune.SyncConfig(sync_artifacts=True), verbose=0),
    )
    results = tuner.fit()
    seconds = time.perf_counter() - started
    errors = [result.error for result in results if result.error is not None]
    if errors:
        raise RuntimeError(f"{len(errors)} search trials failed, the first: {errors[0]}")
    print(f"Tune search: {len(results)} trials in {seconds:.1f}s, {SEARCH_CONCURRENCY} at a time; median epoch "
          f"{statistics.median(statistics.median(r.metrics_dataframe['time_this_iter_s']) for r in results):.2f}s",
          flush=True)
    return seconds


def search_overhead(args: argparse.Namespace, storage: str) -> None:
    base, lrs = search_configs(args)
    bare = bare_search(base, lrs)
    tuned = tune_search(base, lrs, storage)
    print(f"search_overhead: trials={len(lrs)} tune={tuned:.1f}s bare={bare:.1f}s ratio={tuned / bare:.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the one-trial runs (default: 20)")
    parser.add_argument("--cpus-per-trial", type=int, default=1, help="CPU threads of the one-trial runs (default: 1)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="one-trial runs of each, alternating; the fastest counts, as the least disturbed (default: 2)")
    parser.add_argument("--checkpoint-interval", type=int, default=None,
                        help="the Tune trial's checkpoint_interval (default: the config's default)")
    parser.add_argument("--search-trials", type=int, default=8, help="trials of the search (default: 8; 0 skips it)")
    parser.add_argument("--search-epochs", type=int, default=3, help="epochs of each search trial (default: 3)")
    parser.add_argument("--search-data", choices=sorted(DATA_FILES), default="hapt",
                        help="the search's real data set (default: hapt, the smaller)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    ray.init(num_cpus=max(SEARCH_CONCURRENCY, args.cpus_per_trial), include_dashboard=False, logging_level="WARNING")
    print(f"Ray start-up: {time.perf_counter() - started:.1f}s (not counted)", flush=True)
    with tempfile.TemporaryDirectory() as storage:
        if args.repeats > 0:
            trial_overhead(args, storage)
        if args.search_trials > 0:
            search_overhead(args, storage)
    ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
