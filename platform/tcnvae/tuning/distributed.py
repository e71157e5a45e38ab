"""Multi-worker trials: one Ray Train ``TorchTrainer`` run per trial, its epochs streamed to Tune.

:func:`distributed_trial` is the Tune function of a trial with ``workers_per_trial`` > 1. It starts
one Ray Train run (DDP; gloo on CPU, nccl on GPU) that trains every remaining epoch, so the worker
group starts once per trial, not once per epoch. Each epoch, every worker hands the loop's metrics to
``ray.train.report`` and rank 0 its checkpoint; a Ray Train callback (:class:`ForwardToTune`, running
in the Train controller) passes rank 0's metrics and checkpoint through a queue to the Tune function,
which reports them to Tune *while the run goes on*. Tune therefore sees what a single-worker trial
produces, a result and a checkpoint per epoch, as they happen:

- ASHA (or any stop) ends the trial at the result it decides on, and the trial's Train run with it:
  its workers and their placement group (:class:`EndsItsTrainRun`).
- PBT clones a trial from the checkpoint of the epoch it perturbs at; an exploited trial is stopped
  like an ASHA loser and restarts from that checkpoint with its new config, so its worker group
  starts again at most once per perturbation interval, and only when it is exploited.
- A crashed trial (``FailureConfig``) restarts from its last Tune checkpoint.

The run can get up to about three epochs ahead of Tune's decisions (each hand-over holds one: the
worker's report, the controller's callback, the queue), but only when its epochs are shorter than
Tune's handling of a result; with epochs of seconds it is ahead by the epoch it is computing.

The search's prepared data (``make_trainable(..., data=...)``) reaches the workers through Ray's
object store: the Tune function puts its copy there once per Train run and every worker reads it, so
no worker prepares the data again.

Every worker records its start-up in the trial folder (:data:`WORKER_STARTS_DIR`), which is how a
test or a benchmark counts worker-group starts (:func:`worker_group_starts`). Multi-worker trials
pass checkpoints and TensorBoard files through the trial directory, so all workers must see it: one
machine, or a cluster whose Tune storage is a shared file system.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch
from ray import tune
from ray.train.v2.api.callback import UserCallback
from ray.util.queue import Empty, Queue
from torch import nn

from tcnvae.checkpoints import write_json
from tcnvae.data.pipeline import PreparedData
from tcnvae.tuning.config import validate_config
from tcnvae.tuning.loop import Worker, run_trial

# What the Tune function of a multi-worker trial reserves for itself: it only launches the Train run
# and forwards results, so it takes a sliver of the trial's CPUs and the workers share the rest (Ray
# Train reserves theirs in its own placement group). The two together never exceed cpus_per_trial,
# so a trial that fits the cluster can always start its workers: a whole CPU for the driver would
# leave a 2-worker, 2-CPU trial on a 2-CPU machine waiting forever for its second worker.
DRIVER_CPUS = 0.01

WORKER_STARTS_DIR = "worker_starts"
"""In the trial folder: one JSON file per Train worker start-up (rank, world size, pid, host, time). One
file each, uniquely named, so the starts add up across every process a trial ran in: Tune copies the
folder of a trial in a reused process into the trial's folder, file by file."""

_POLL_SECONDS = 1.0  # how long the Tune function waits for the next epoch before checking on the run
_ABORT_SECONDS = 60.0  # how long ending a trial waits for its aborted Train run to end


class ForwardToTune(UserCallback):
    """Runs in the Ray Train controller: puts each epoch's rank-0 metrics and checkpoint on ``queue``
    for the Tune function, with the controller's handle, by which the trial can abort the run.

    Ray's ``TuneReportCallback`` forwards the metrics only (the checkpoint as a path among them); PBT
    and crash recovery need each result's checkpoint registered with Tune, which only the Tune
    function can do (``tune.report(..., checkpoint=...)``)."""

    def __init__(self, queue: Queue):
        self.queue = queue

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]],
                     checkpoint: ray.train.Checkpoint | None) -> None:
        # Blocks while the Tune function still holds the previous epoch (the queue holds one), which
        # keeps the run from getting far ahead of Tune's decisions.
        self.queue.put((ray.get_runtime_context().current_actor, metrics[0], checkpoint))


class TrainRun:
    """A trial's Ray Train run: ``fit()`` in a thread of the trial's process, and, once it has reported
    an epoch, the controller's handle, by which :meth:`abort` ends it."""

    def __init__(self, fit: Callable[[], Any]):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tcnvae-train-run")
        self.future = self._pool.submit(fit)
        self.controller: ray.actor.ActorHandle | None = None
        self.aborted = False
        self._lock = threading.Lock()

    def abort(self) -> None:
        """Stop the run's workers and remove their placement group, and wait for ``fit()`` to end.

        Before the first epoch's report the controller is unknown: the run then ends with the trial's
        process (the controller shares its fate), and Ray Train removes the orphaned placement group
        where its state API (the dashboard) is available."""
        with self._lock:
            if not self.aborted and not self.future.done() and self.controller is not None:
                self.aborted = True
                try:
                    ray.get(self.controller.abort.remote(), timeout=_ABORT_SECONDS)
                except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                    pass  # the controller exits as it aborts
                try:
                    self.future.exception(timeout=_ABORT_SECONDS)  # fit() raises that its controller is gone
                except FutureTimeout:
                    pass
            self._pool.shutdown(wait=False)


_current_run: TrainRun | None = None
"""The Train run of the trial this process runs (a Tune trial process runs one trial at a time)."""


class EndsItsTrainRun:
    """Mixed into the Tune trainable class of a multi-worker trial (``__mixins__`` of its function):
    ends the trial's Train run before Tune ends the trial's process or hands it to the next trial.

    Tune stops a function trainable by signalling the function's thread, without waiting for it, and
    then ends the process (``cleanup``) or resets it for another trial (``reset_config``, with
    ``reuse_actors``). The Train controller dies with the process, but the placement group of its
    workers would outlive it: Ray Train's clean-up of orphaned runs needs the dashboard's state API.
    So the run is aborted here, in Tune's own stop path, which Tune waits for.
    """

    def cleanup(self) -> None:
        _end_current_run()
        super().cleanup()

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        _end_current_run()
        return super().reset_config(new_config)


def _end_current_run() -> None:
    global _current_run
    if _current_run is not None:
        _current_run.abort()
        _current_run = None


def _ddp_wrapper(curriculum: str) -> Callable[[nn.Module], nn.Module]:
    """Ray Train's DDP wrapper for a trial with ``curriculum``.

    A curriculum may freeze parameter groups for a while; DDP then has to look for the parameters
    that got no gradient in each step (``find_unused_parameters``), or it fails the next step waiting
    for their gradients. That search costs a pass over the autograd graph per step, so the baseline
    ``none``, which never freezes, goes without it. (The model is wrapped before the first stage
    applies, while every parameter trains, so DDP syncs the frozen ones too once they unfreeze.)
    """
    if curriculum == "none":
        return ray.train.torch.prepare_model
    return functools.partial(ray.train.torch.prepare_model, parallel_strategy_kwargs={"find_unused_parameters": True})


def _record_start(log_dir: Path, rank: int, world_size: int) -> None:
    """Record this worker's start-up in the trial's :data:`WORKER_STARTS_DIR`."""
    start = {"rank": rank, "world_size": world_size, "pid": os.getpid(), "host": socket.gethostname(),
             "time": time.time()}
    write_json(start, log_dir / WORKER_STARTS_DIR / f"{time.time_ns()}-rank{rank}-pid{os.getpid()}.json")


def worker_group_starts(trial_dir: str | Path) -> list[dict[str, Any]]:
    """The start-ups of a multi-worker trial's worker group, in order: its rank-0 start records."""
    records = [json.loads(path.read_text()) for path in Path(trial_dir, WORKER_STARTS_DIR).glob("*-rank0-*.json")]
    return sorted(records, key=lambda record: record["time"])


def _train_worker(payload: dict[str, Any]) -> None:
    """Per-worker body of the Ray Train run: the trial loop on this worker's rank, shard and device."""
    context = ray.train.get_context()
    log_dir = Path(payload["log_dir"])
    _record_start(log_dir, context.get_world_rank(), context.get_world_size())
    worker = Worker(rank=context.get_world_rank(), world_size=context.get_world_size(),
                    device=ray.train.torch.get_device(), parallelize=_ddp_wrapper(payload["config"]["curriculum"]))

    def report(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir is not None else None
        ray.train.report(metrics, checkpoint=checkpoint)

    data = ray.get(payload["data"]) if payload["data"] is not None else None
    run_trial(payload["config"], report, restore_dir=payload["restore_dir"], log_dir=log_dir, worker=worker,
              data=data)


def distributed_trial(config: dict[str, Any], resources_per_worker: dict[str, float] | None = None,
                      data: PreparedData | None = None) -> None:
    """Multi-worker Tune function: ``workers_per_trial`` DDP workers in one Ray Train run, each epoch's
    result and checkpoint reported to Tune as it comes. Give Tune :func:`distributed_trainable`, whose
    trainable class also ends the run when Tune stops the trial.

    ``resources_per_worker`` is Ray Train's (default: one CPU, plus one GPU with ``use_gpu``).
    ``data``: the search's prepared data, handed to every worker; without it each worker prepares its own.
    """
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    global _current_run
    config = validate_config(config)
    trial_dir = Path(tune.get_context().get_trial_dir())
    restore = tune.get_checkpoint()  # a crash's or a PBT clone's
    # Ray Train's own run folder lives outside the trial directory, which Tune syncs to storage; Tune
    # keeps its own copy of each checkpoint.
    with (restore.as_directory() if restore is not None else nullcontext()) as restore_dir, \
            tempfile.TemporaryDirectory(prefix="tcnvae-train-") as runs, _epoch_queue() as epochs:
        trainer = TorchTrainer(
            _train_worker,
            # The data by reference: each worker reads it from the object store (trial_data copies it).
            train_loop_config={"config": config, "restore_dir": restore_dir, "log_dir": str(trial_dir),
                               "data": ray.put(data) if data is not None else None},
            scaling_config=ScalingConfig(num_workers=config["workers_per_trial"], use_gpu=config["use_gpu"],
                                         resources_per_worker=resources_per_worker),
            torch_config=TorchConfig(backend="nccl" if config["use_gpu"] else "gloo"),
            run_config=RunConfig(name="train", storage_path=runs, callbacks=[ForwardToTune(epochs)],
                                 checkpoint_config=CheckpointConfig(num_to_keep=None)),
        )
        _current_run = TrainRun(trainer.fit)
        _forward_epochs(_current_run, epochs)


@contextmanager
def _epoch_queue() -> Iterator[Queue]:
    """The queue (a zero-CPU actor) from the Train controller to the Tune function: one epoch at a time."""
    queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
    try:
        yield queue
    finally:
        queue.shutdown()


def _forward_epochs(run: TrainRun, epochs: Queue) -> None:
    """Report each epoch ``run`` puts on ``epochs`` to Tune, until the run ends; re-raise its error
    unless the trial aborted it."""
    while True:
        finished = run.future.done()  # before the get: a finished run has put every epoch already
        try:
            run.controller, metrics, checkpoint = epochs.get(timeout=_POLL_SECONDS)
        except Empty:
            if finished:
                break
            continue
        tune.report(metrics, checkpoint=tune.Checkpoint(checkpoint.path, checkpoint.filesystem)
                    if checkpoint is not None else None)
        if checkpoint is not None:  # Tune has persisted its own copy
            shutil.rmtree(checkpoint.path, ignore_errors=True)
    if not run.aborted:
        run.future.result()


def distributed_trainable(cpus_per_trial: float, gpus_per_trial: float, workers_per_trial: int,
                          data: PreparedData | None = None) -> Any:
    """The Tune trainable of ``workers_per_trial``-worker trials on ``cpus_per_trial`` CPUs and
    ``gpus_per_trial`` GPUs, split evenly across the workers, less :data:`DRIVER_CPUS` for the Tune
    function that drives them (:func:`~tcnvae.tuning.trainable.make_trainable` checks the resources),
    on the search's prepared ``data`` when given (into Ray's object store once, by ``tune.with_parameters``)."""
    if cpus_per_trial <= DRIVER_CPUS:
        raise ValueError(f"cpus_per_trial={cpus_per_trial}: expected more than {DRIVER_CPUS} for a "
                         f"{workers_per_trial}-worker trial (its driver takes {DRIVER_CPUS})")
    use_gpu = gpus_per_trial > 0
    per_worker = {"CPU": (cpus_per_trial - DRIVER_CPUS) / workers_per_trial}
    if use_gpu:
        per_worker["GPU"] = gpus_per_trial / workers_per_trial

    def tcnvae_distributed_trial(config: dict[str, Any], data: PreparedData | None = None) -> None:
        distributed_trial({**config, "workers_per_trial": workers_per_trial, "use_gpu": use_gpu}, per_worker, data)

    tcnvae_distributed_trial.__mixins__ = (EndsItsTrainRun,)  # read by Tune when it wraps the function
    trainable = tune.with_parameters(tcnvae_distributed_trial, data=data) if data is not None else tcnvae_distributed_trial
    return tune.with_resources(trainable, {"cpu": DRIVER_CPUS})
