"""A soak: hundreds of one-epoch trials of a tiny model on tiny synthetic data in ONE search, through the
platform's own pieces (tcnvae.tuning.cli's flags, config, data check, Ray start and Tuner; the
trainable of make_trainable; summarise_search's leaderboard), checking what breaks only at scale:

- every trial is in leaderboard.csv exactly once;
- no placement group is left behind (``ray.util.placement_group_table()``) and no trial actor is
  left running among the Ray workers this driver started; idle workers Ray keeps for reuse are
  counted apart (Ray keeps up to one per CPU);
- the driver's memory stays flat: its RSS is sampled through the search and the median of the first
  quarter of the samples is printed beside that of the last quarter; its open files are counted too;
- nothing piles up in a trial process, which Tune reuses trial after trial: its open files and threads
  (a TensorBoard writer left open holds both) in the first and the last quarter of the search;
- the per-trial overhead: the wall time of the search per trial and slot (seconds × concurrent
  trials / trials) minus the time a trial spends in its own function (Tune's ``time_total_s``: data,
  model, the epoch, the checkpoint). Ray's scalability benchmarks aim at < 20 % over the minimal time
  for 1-second trials; ``overhead_ratio`` is that comparison (wall time / minimal time).

    python benchmarks/many_trials.py [--num-samples 300] [--max-concurrent 2] [--search random|optuna]
                                     [--checkpoints-kept 2]

Any flag of a search works (``--set`` changes the data or the model: a longer trial, e.g.
``--set 'source_options={"synthetic": {"num_domains": 2, "subjects_per_domain": 4, "seconds_per_activity": 60}}'``).
Without ``--storage-path`` the experiment goes to a temporary folder, removed at the end. Last line:

    many_trials: trials=N seconds=S per_trial_overhead=… driver_rss_mb_start=… driver_rss_mb_end=…
    leaked_placement_groups=… leaked_processes=…
"""

from __future__ import annotations

import argparse
import csv
import math
import runpy
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import ray
from ray import tune
from ray.tune.schedulers import FIFOScheduler

from tcnvae.data.pipeline import PreparedData
from tcnvae.tuning import cli, cluster, search
from tcnvae.tuning.metrics import OBJECTIVES
from tcnvae.tuning.report import summarise_search

# One epoch of a model of a few hundred weights on 2 domains × 4 subjects × 10 s per activity: a trial
# trains for a fraction of a second, so what the soak measures is the platform, not the training.
RECIPE_DEFAULTS = {
    "max_epochs": 1, "hidden_dims": [8], "latent_dim": 4, "head_hidden": 16, "decoder_channels": 8,
    "source_options": {"synthetic": {"num_domains": 2, "subjects_per_domain": 4, "seconds_per_activity": 10}},
}
NUM_SAMPLES = 300
MAX_CONCURRENT = 2  # the two cores of the machine this was written on
SAMPLE_SECONDS = 0.5
SETTLE_SECONDS = 30
"""How long Tune may take, after ``fit`` returns, to stop its last actors and remove their placement groups."""


@dataclass
class Soak:
    """What one soak found; ``leaked_*`` are 0 and ``duplicates`` and ``missing`` empty when all is well."""

    trials: int
    seconds: float
    per_trial_overhead: float
    overhead_ratio: float
    in_trial_seconds: float
    slot_seconds_first_quarter: float
    slot_seconds_last_quarter: float
    experiment_state_mb: float
    summary_seconds: float
    driver_rss_mb_start: float
    driver_rss_mb_end: float
    driver_open_files_start: int
    driver_open_files_end: int
    trial_open_files_start: float
    trial_open_files_end: float
    trial_threads_start: float
    trial_threads_end: float
    leaked_placement_groups: int
    leaked_processes: int
    idle_workers: int
    duplicates: list[str]
    missing: list[str]

    def line(self) -> str:
        return (f"many_trials: trials={self.trials} seconds={self.seconds:.1f} "
                f"per_trial_overhead={self.per_trial_overhead:.2f}s "
                f"driver_rss_mb_start={self.driver_rss_mb_start:.0f} driver_rss_mb_end={self.driver_rss_mb_end:.0f} "
                f"leaked_placement_groups={self.leaked_placement_groups} leaked_processes={self.leaked_processes}")


class ProcessSampler:
    """Every :data:`SAMPLE_SECONDS`, from a daemon thread, while in use: the driver's resident memory, and the
    open files and threads of each trial process (a Ray worker busy now that was not before ``workers_before``).

    With ``reuse_actors`` one process runs trial after trial, so a TensorBoard writer or a file a trial
    leaves open shows up as a count that climbs from its first samples to its last.
    """

    def __init__(self, workers_before: dict[int, str]) -> None:
        self.driver_rss_mb: list[float] = []
        self.trial_processes: dict[int, list[tuple[int, int]]] = {}  # pid -> (open files, threads) samples
        self._workers_before = workers_before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="process-sampler", daemon=True)

    def _run(self) -> None:
        driver = psutil.Process()
        while not self._stop.is_set():
            self.driver_rss_mb.append(driver.memory_info().rss / 2**20)
            for pid in busy_workers(self._workers_before):
                try:
                    process = psutil.Process(pid)
                    self.trial_processes.setdefault(pid, []).append((process.num_fds(), process.num_threads()))
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def driver_rss_quarters(self) -> tuple[float, float]:
        """Median RSS (MiB) of the driver over the first and over the last quarter of the samples."""
        return _quarter_medians(self.driver_rss_mb)

    def trial_process_quarters(self) -> tuple[float, float, float, float]:
        """Open files and threads of the longest-watched trial process: medians of its first and last quarter
        of samples (files first, files last, threads first, threads last); NaN when none was seen."""
        if not self.trial_processes:
            return math.nan, math.nan, math.nan, math.nan
        samples = max(self.trial_processes.values(), key=len)
        files_first, files_last = _quarter_medians([files for files, _ in samples])
        threads_first, threads_last = _quarter_medians([threads for _, threads in samples])
        return files_first, files_last, threads_first, threads_last


def _quarter_medians(samples: list[float]) -> tuple[float, float]:
    quarter = max(1, len(samples) // 4)
    return statistics.median(samples[:quarter]), statistics.median(samples[-quarter:])


def live_placement_groups() -> set[str]:
    return {group_id for group_id, group in ray.util.placement_group_table().items() if group["state"] != "REMOVED"}


def ray_workers() -> dict[int, str]:
    """Ray worker processes below this driver (pid → title: ``ray::IDLE`` or ``ray::<actor>.<method>``).

    Only a Ray this driver started has its workers below it; with ``--address`` none are seen."""
    workers = {}
    for process in psutil.Process().children(recursive=True):
        try:
            title = " ".join(process.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if title.startswith("ray::"):
            workers[process.pid] = title
    return workers


def busy_workers(before: dict[int, str]) -> dict[int, str]:
    """Workers not idle now that were not there (or were idle) before: actors the search left running."""
    return {pid: title for pid, title in ray_workers().items()
            if not title.startswith("ray::IDLE") and before.get(pid) != title}


def settle(leaks: Callable[[], object], seconds: float) -> None:
    """Wait up to ``seconds`` for ``leaks()`` to come back empty (Tune tears actors down asynchronously)."""
    deadline = time.monotonic() + seconds
    while leaks() and time.monotonic() < deadline:
        time.sleep(0.5)


def slot_seconds_by_quarter(timestamps: list[float], slots: int) -> tuple[float, float]:
    """Wall seconds per trial and slot between the first quarter of trial ends, and between the last quarter:
    equal when a trial costs the same at the end of the search as at its start (Ray's start-up and the
    first trials' process starts fall before the first end, so they are left out)."""
    ends = sorted(timestamps)
    quarter = max(1, len(ends) // 4)
    if len(ends) < 2 * quarter + 1:
        return math.nan, math.nan
    return ((ends[quarter] - ends[0]) * slots / quarter, (ends[-1] - ends[-quarter - 1]) * slots / quarter)


def experiment_state_mb(experiment: Path) -> float:
    """Size of Tune's experiment state (every trial's state, rewritten at each snapshot)."""
    states = list(experiment.glob("experiment_state-*.json"))
    return max((state.stat().st_size for state in states), default=0) / 2**20


def leaderboard_trials(experiment: Path) -> list[str]:
    with open(experiment / "leaderboard.csv", newline="") as stream:
        return [row["trial"] for row in csv.DictReader(stream)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.search_parser(__doc__)
    parser.add_argument("--search", choices=["random", "optuna"], default="random",
                        help="random: independent draws, no searcher state to speak of; optuna: TPE, as the "
                             "recipes search, whose cost grows with the trials it has seen (default: random)")
    parser.add_argument("--checkpoints-kept", type=int, default=2,
                        help="checkpoints Tune keeps per trial, best by the metric, as the recipes keep 2. Tune "
                             "rewrites its whole experiment state each time a trial has written that many since "
                             "the last save: with 1, after every one-epoch trial (default: 2)")
    parser.set_defaults(num_samples=NUM_SAMPLES, max_concurrent=MAX_CONCURRENT, storage_path=None, max_failures=0)
    args = parser.parse_args(argv)
    if args.checkpoints_kept < 1:
        raise ValueError(f"--checkpoints-kept {args.checkpoints_kept}: expected an integer >= 1")
    return args


def soak_search(args: argparse.Namespace, experiment: Path, config: dict[str, Any], data: PreparedData,
                space: dict[str, Any], metric: str) -> tune.ResultGrid:
    """The search itself, set up as the recipes set theirs up (tcnvae.tuning.search.run_search), run to its end."""
    searcher = search.OptunaTPE([metric]) if args.search == "optuna" else search.RandomSearch()
    return search.run_search(args, experiment, config, data=data, param_space={**config, **space}, searcher=searcher,
                             scheduler=FIFOScheduler(), num_samples=args.num_samples,
                             checkpoints=search.keep_best_checkpoints(metric, args.checkpoints_kept))


def soak(args: argparse.Namespace) -> Soak:
    """Run the soak search of ``args`` (:func:`parse_args`) and check it; Ray is started unless running."""
    config = cli.base_config(args, RECIPE_DEFAULTS)
    metric = OBJECTIVES[config["objective"]]
    config, data = cli.prepare_data(config)
    # The main search's space, as searches/loss_weights.py declares it.
    loss_weights = runpy.run_path(str(Path(__file__).resolve().parents[1] / "searches" / "loss_weights.py"))
    space = cli.search_space(args, config, loss_weights["SPACE"], len(data.train))
    experiment = cli.experiment_path(args, "many_trials")
    cluster.start_ray(args, config)  # before the search, so the leak checks see what was there before it

    groups_before, workers_before = live_placement_groups(), ray_workers()
    driver = psutil.Process()
    files_before = driver.num_fds()
    with ProcessSampler(workers_before) as sampler:
        started = time.perf_counter()
        results = soak_search(args, experiment, config, data, space, metric)
        seconds = time.perf_counter() - started
    summary_started = time.perf_counter()
    summarise_search(results, experiment, list(space), [metric])
    summary_seconds = time.perf_counter() - summary_started

    settle(lambda: (live_placement_groups() - groups_before) or busy_workers(workers_before), SETTLE_SECONDS)
    leaked_groups = live_placement_groups() - groups_before
    leaked_workers = busy_workers(workers_before)
    for pid, title in leaked_workers.items():
        print(f"still running after the search: pid {pid} {title}")
    idle = sum(title.startswith("ray::IDLE") for title in ray_workers().values())

    names = leaderboard_trials(experiment)
    expected = {Path(result.path).name for result in results}
    slots = min(args.max_concurrent or args.num_samples,
                int(ray.cluster_resources().get("CPU", 1) // args.cpus_per_trial))
    in_trial = [result.metrics.get("time_total_s", 0.0) for result in results if result.metrics]
    in_trial_mean = statistics.mean(in_trial) if in_trial else 0.0
    first_quarter, last_quarter = slot_seconds_by_quarter(
        [result.metrics["timestamp"] for result in results if result.metrics], slots)
    rss_start, rss_end = sampler.driver_rss_quarters()
    trial_files_start, trial_files_end, trial_threads_start, trial_threads_end = sampler.trial_process_quarters()
    return Soak(
        trials=len(names), seconds=seconds,
        per_trial_overhead=seconds * slots / len(results) - in_trial_mean,
        overhead_ratio=seconds / (sum(in_trial) / slots) if in_trial else float("inf"),
        in_trial_seconds=in_trial_mean, slot_seconds_first_quarter=first_quarter,
        slot_seconds_last_quarter=last_quarter, experiment_state_mb=experiment_state_mb(experiment),
        summary_seconds=summary_seconds,
        driver_rss_mb_start=rss_start, driver_rss_mb_end=rss_end,
        driver_open_files_start=files_before, driver_open_files_end=driver.num_fds(),
        trial_open_files_start=trial_files_start, trial_open_files_end=trial_files_end,
        trial_threads_start=trial_threads_start, trial_threads_end=trial_threads_end,
        leaked_placement_groups=len(leaked_groups), leaked_processes=len(leaked_workers), idle_workers=idle,
        duplicates=sorted(name for name, count in Counter(names).items() if count > 1),
        missing=sorted(expected - set(names)),
    )


def main(argv: list[str] | None = None) -> Soak:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="many-trials-") as scratch:
        if args.storage_path is None:
            args.storage_path = scratch
        found = soak(args)
    print(f"trials in the leaderboard: {found.trials} (duplicated: {found.duplicates or 'none'}, missing: "
          f"{found.missing or 'none'}); mean time inside a trial {found.in_trial_seconds:.2f}s; "
          f"summary {found.summary_seconds:.1f}s; driver open files {found.driver_open_files_start} -> "
          f"{found.driver_open_files_end}; idle Ray workers kept for reuse: {found.idle_workers}")
    print(f"a trial process (reused trial after trial), first quarter -> last quarter of the search: open files "
          f"{found.trial_open_files_start:.0f} -> {found.trial_open_files_end:.0f}, threads "
          f"{found.trial_threads_start:.0f} -> {found.trial_threads_end:.0f}")
    print(f"seconds per trial and slot, between the first quarter of trial ends: "
          f"{found.slot_seconds_first_quarter:.2f}, the last quarter: {found.slot_seconds_last_quarter:.2f}; "
          f"Tune's experiment state: {found.experiment_state_mb:.1f} MB")
    print(f"overhead_ratio={found.overhead_ratio:.2f} (wall time / minimal time at this concurrency; "
          "Ray's scalability benchmarks aim at < 1.20 for 1-second trials)")
    print(found.line())
    return found


if __name__ == "__main__":
    cli.run_command(main)
