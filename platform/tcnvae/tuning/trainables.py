"""Ray Tune trainables for the trial loop: one worker in the trial's own process, or N via Ray Train; and
which trial failures recur, so that a retry refuses at once.

Single worker
-------------
:func:`train_trial` is a plain Tune function trainable: it drives a :class:`~tcnvae.tuning.trial.Trial`
in the trial process and hands every epoch's metrics (and every ``checkpoint_interval`` epochs a
checkpoint) to ``ray.tune.report``, resuming from ``ray.tune.get_checkpoint()``, so ASHA can stop
it, PBT can clone it and a crash resumes it. The search's prepared data comes from Ray's object
store (:func:`make_trainable`'s ``data``).

Multi-worker trials
-------------------
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

Failures that recur
-------------------
Tune retries a failed trial from its latest checkpoint up to ``--max-failures`` times, whatever the
error: it has no notion of an error that will recur. Worth a retry is what happens to the process from
outside (a killed worker, a lost node: Tune's ``RayActorError``, which the trial never sees) or
depends on the moment (memory taken by other trials, a storage hiccup). An error the trial's own code
raises on its config or data (:data:`RECURRING_ERRORS`: a diverging loss, an impossible value, a data
file gone, a programming error) comes back at every try, after the same training time.

So a trial records such an error in its folder as it fails (:func:`no_retry_of_recurring_errors`),
and a retry that finds the record refuses at once, without training, with :class:`RecurringTrialError`
naming the first error: Tune still restarts the trial's process, but no epoch is run twice for nothing.
A resumed search (another Ray job) tries an errored trial again, as ``--resume`` promises.

When every trial of a search failed, :func:`check_search_outcome` ends it with one
:class:`SearchFailedError` naming the cause, instead of a summary of nothing.
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
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch
from ray import cloudpickle, tune
from ray.exceptions import RayTaskError
from ray.train.v2.api.callback import UserCallback
from ray.tune import ResultGrid
from ray.util.queue import Empty, Queue
from torch import nn

from tcnvae.checkpoints import atomic_write, write_json
from tcnvae.data.pipeline import PreparedData
from tcnvae.trainer import TrainingDivergedError
from tcnvae.tuning.config import DEFAULT_CONFIG, check_resources, validate_config
from tcnvae.tuning.trial import Worker, run_trial

def _tune_report(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
    checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir is not None else None
    tune.report(metrics, checkpoint=checkpoint)


@contextmanager
def _tune_checkpoint_dir() -> Iterator[Path | None]:
    """The directory of the checkpoint Tune restores this trial from (a crash, a PBT exploit), if any."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        yield None
        return
    with checkpoint.as_directory() as directory:
        yield Path(directory)


def _trial_dir() -> Path:
    return Path(tune.get_context().get_trial_dir())


def train_trial(config: dict[str, Any], data: PreparedData | None = None) -> None:
    """Single-worker Tune function trainable: one :class:`~tcnvae.tuning.trial.Trial` in this process.

    The config (the search's base config with Tune's sampled values) is validated once, by
    :func:`~tcnvae.tuning.trial.run_trial`: sampled values can combine into an impossible config. ``data``
    is the search's prepared data from Ray's object store (:func:`make_trainable`); the trial prepares its
    own without it.
    """
    with no_retry_of_recurring_errors(_trial_dir()):  # a retry of a diverged trial refuses at once
        # make_trainable sets use_gpu; a direct call may leave it to its default
        worker = Worker(device=_trial_device(config.get("use_gpu", DEFAULT_CONFIG["use_gpu"])))
        with _tune_checkpoint_dir() as restore_dir:
            run_trial(config, _tune_report, restore_dir=restore_dir, log_dir=_trial_dir(), worker=worker, data=data)


def _trial_device(use_gpu: bool) -> torch.device:
    if use_gpu and not torch.cuda.is_available():
        raise ValueError("use_gpu=True but this trial's process sees no CUDA device; "
                         "give the trial GPUs (make_trainable(gpus_per_trial=...)) or set use_gpu=False")
    return torch.device("cuda" if use_gpu else "cpu")


def make_trainable(cpus_per_trial: float = 1, gpus_per_trial: float = 0, workers_per_trial: int = 1,
                   data: PreparedData | None = None) -> Any:
    """The trainable to give ``Tuner``, with its resources: the searches' one entry point.

    The resources decide the trial's mode and device: ``workers_per_trial`` 1 runs :func:`train_trial`
    on ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs (fractions pack several trials on one GPU);
    more runs :func:`distributed_trial` and splits those resources evenly
    across the workers (:func:`distributed_trainable`). The config's ``workers_per_trial``
    and ``use_gpu`` are set from them, so a trial always runs on what was reserved for it.

    ``data``: the search's data, prepared once by the driver (``cli.prepare_data``). It goes into
    Ray's object store once (``tune.with_parameters``) and every single-worker trial, retried and
    PBT-cloned ones included, reads it from there instead of preparing it again (a trial whose data
    settings differ, e.g. a searched window length, prepares its own: :func:`~tcnvae.tuning.trial.trial_data`);
    so does every worker of a multi-worker trial.
    """
    check_resources(cpus_per_trial, gpus_per_trial, workers_per_trial)
    use_gpu = gpus_per_trial > 0
    if workers_per_trial == 1:
        def tcnvae_trial(config: dict[str, Any], data: PreparedData | None = None) -> None:
            train_trial({**config, "workers_per_trial": 1, "use_gpu": use_gpu}, data)

        trainable = tune.with_parameters(tcnvae_trial, data=data) if data is not None else tcnvae_trial
        return tune.with_resources(trainable, {"cpu": cpus_per_trial, "gpu": gpus_per_trial})

    return distributed_trainable(cpus_per_trial, gpus_per_trial, workers_per_trial, data)


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
    function that drives them (:func:`make_trainable` checks the resources),
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


USER_FAILURES = (TrainingDivergedError, ValueError, OSError)
"""Recurring errors a user fixes (a learning rate, a setting, a data file): a failed search exits with status 2."""
PROGRAMMING_FAILURES = (TypeError, AttributeError, NameError, KeyError, IndexError, NotImplementedError,
                        AssertionError, ZeroDivisionError)
"""Recurring errors of the code itself: a failed search shows the traceback and exits with status 1."""
TRANSIENT_OS_ERRORS = (ConnectionError, TimeoutError, InterruptedError, BlockingIOError)
"""OSErrors of the moment, retried like any error outside :data:`RECURRING_ERRORS`."""
RECURRING_ERRORS = (*USER_FAILURES, *PROGRAMMING_FAILURES)
RECORD_FILE = "recurring_error.json"
"""In the trial's folder: the recurring error a try of this trial failed with, and the Ray job of that try."""


class RecurringTrialError(RuntimeError):
    """A retried trial refusing to train again: its first try failed with an error that recurs."""

    def __init__(self, message: str, user_error: bool = True) -> None:
        super().__init__(message)
        self.user_error = user_error


class SearchFailedError(RuntimeError):
    """Every trial of the search failed. ``user_error``: the cause is the user's to fix (exit status 2, no
    traceback); else ``details`` holds the first failed trial's traceback."""

    def __init__(self, message: str, user_error: bool, details: str = "") -> None:
        super().__init__(message)
        self.user_error = user_error
        self.details = details


def recurs(error: BaseException) -> bool:
    """Whether ``error``, raised by a trial's own code, would come back at every retry."""
    return isinstance(error, (*RECURRING_ERRORS, RecurringTrialError)) and not isinstance(error, TRANSIENT_OS_ERRORS)


def cause(error: BaseException) -> BaseException:
    """The trial's own exception inside what Tune hands back (a ``RayTaskError`` wraps it)."""
    return error.cause if isinstance(error, RayTaskError) and error.cause is not None else error


def describe(error: BaseException) -> str:
    """``Type: message`` of a trial's error, the message's first line only."""
    error = cause(error)
    if isinstance(error, RecurringTrialError):
        return str(error)
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0]}" if message else type(error).__name__


def _is_user_error(error: BaseException) -> bool:
    error = cause(error)
    if isinstance(error, (RecurringTrialError, SearchFailedError)):
        return error.user_error
    return isinstance(error, USER_FAILURES)


def _job_id() -> str:
    return ray.get_runtime_context().get_job_id() if ray.is_initialized() else ""


@contextmanager
def no_retry_of_recurring_errors(trial_dir: Path) -> Iterator[None]:
    """Around a trial's training: record a recurring error (:func:`recurs`) in ``trial_dir`` as it
    propagates; refuse at once when an earlier try of this search (this Ray job) recorded one."""
    record_path = Path(trial_dir) / RECORD_FILE
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("job") == _job_id():
            raise RecurringTrialError(f"not retried: {record['error']} (it would recur)", record["user_error"])
    try:
        yield
    except Exception as error:
        if recurs(error):
            record = {"error": describe(error), "user_error": _is_user_error(error), "job": _job_id()}
            record_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(record_path, lambda stream: stream.write(json.dumps(record).encode()))
        raise


def check_search_outcome(results: ResultGrid, experiment: str | Path) -> None:
    """Raise :class:`SearchFailedError` when the search had trials and every one ended in an error:
    the most frequent cause, how many trials it ended, and where the trials' ``error.txt`` are."""
    errors = [result.error for result in results if result.error is not None]
    if not errors or len(errors) < len(results):
        return
    causes = Counter(_first_cause(error) for error in errors)
    (main, count), others = causes.most_common(1)[0], len(causes) - 1
    first = next(error for error in errors if _first_cause(error) == main)
    tally = f"all {len(errors)} trials" if count == len(errors) else f"{count} of the {len(errors)} trials"
    also = f" ({others} other error{'s' if others > 1 else ''} ended the rest)" if others else ""
    raise SearchFailedError(f"every trial failed; {tally} with {main}{also}. Each trial's error.txt under "
                            f"{experiment} holds its traceback", user_error=_is_user_error(first),
                            details=str(first))


def _first_cause(error: BaseException) -> str:
    """The error a trial first failed with: a refused retry names it."""
    text = describe(error)
    prefix = "not retried: "
    text = text[len(prefix):] if text.startswith(prefix) else text
    return text.removesuffix(" (it would recur)")


def trial_error(trial: Any) -> BaseException | None:
    """The error a Tune trial just failed with, read from the file Tune wrote in this driver a moment ago
    (Tune's own ``get_error`` reads the storage copy, which is synced later); None if it cannot be read."""
    path = trial.pickled_error_file
    if not path or not Path(path).is_file():
        return None
    try:
        with open(path, "rb") as stream:
            return cloudpickle.load(stream)
    except Exception:  # an error that does not unpickle here: its error.txt still holds the traceback
        return None
