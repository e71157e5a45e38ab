"""Ray Tune trainables for the trial loop: one worker in the trial's own process, or N via Ray Train.

- :func:`train_trial` is a plain Tune function trainable: it drives a :class:`~tcnvae.tuning.loop.Trial`
  in the trial process and hands every epoch's metrics (and every ``checkpoint_interval`` epochs a
  checkpoint) to ``ray.tune.report``, resuming from ``ray.tune.get_checkpoint()``, so ASHA can stop
  it, PBT can clone it and a crash resumes it. The search's prepared data comes from Ray's object
  store (:func:`make_trainable`'s ``data``).
- :func:`distributed_trial` drives a Ray Train ``TorchTrainer`` (DDP; gloo on CPU, nccl on GPU) from
  the Tune function. Each ``fit()`` runs ``epochs_per_fit`` epochs of the same loop on every worker
  and Ray Train keeps every epoch's checkpoint (written by rank 0); when the fit returns, the Tune
  function reports each epoch's rank-0 metrics to Tune *with that epoch's checkpoint*, and the next
  fit resumes from the last one. Tune therefore sees exactly what a single-worker trial produces: a
  result and a checkpoint per epoch, which is what ASHA, PBT (set ``epochs_per_fit`` to the
  perturbation interval so results are not held back) and ``FailureConfig`` need. The price is
  latency: results arrive once per fit, and each fit starts its worker group afresh.

Multi-worker trials pass checkpoints and TensorBoard files through the trial directory, so all
workers must see it: one machine, or a cluster whose Tune storage is a shared file system.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch
from ray import tune
from torch import nn

from tcnvae.checkpoints import load_newest_intact
from tcnvae.data.pipeline import PreparedData
from tcnvae.tuning.config import check_resources, validate_config
from tcnvae.tuning.loop import Trial, Worker, run_epochs, run_trial, tune_checkpoint_candidates

# What the Tune function of a multi-worker trial reserves for itself: it only launches the Train run
# and forwards results, so it takes a sliver of the trial's CPUs and the workers share the rest (Ray
# Train reserves theirs in its own placement group). The two together never exceed cpus_per_trial,
# so a trial that fits the cluster can always start its workers: a whole CPU for the driver would
# leave a 2-worker, 2-CPU trial on a 2-CPU machine waiting forever for its second worker.
DRIVER_CPUS = 0.01


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
    """Single-worker Tune function trainable: one :class:`~tcnvae.tuning.loop.Trial` in this process.

    The config is validated here, once, where Tune hands it over. ``data`` is the search's prepared
    data from Ray's object store (:func:`make_trainable`); the trial prepares its own without it.
    """
    config = validate_config(config)
    trial = Trial(config, data=data, worker=Worker(device=_trial_device(config["use_gpu"])), log_dir=_trial_dir())
    with _tune_checkpoint_dir() as restore_dir:
        run_epochs(trial, _tune_report, restore_dir=restore_dir)


def _trial_device(use_gpu: bool) -> torch.device:
    if use_gpu and not torch.cuda.is_available():
        raise ValueError("use_gpu=True but this trial's process sees no CUDA device; "
                         "give the trial GPUs (make_trainable(gpus_per_trial=...)) or set use_gpu=False")
    return torch.device("cuda" if use_gpu else "cpu")


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


def _train_worker(payload: dict[str, Any]) -> None:
    """Per-worker body of a Ray Train run: the trial loop on this worker's rank, shard and device."""
    context = ray.train.get_context()
    worker = Worker(rank=context.get_world_rank(), world_size=context.get_world_size(),
                    device=ray.train.torch.get_device(), parallelize=_ddp_wrapper(payload["config"]["curriculum"]))

    def report(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir is not None else None
        ray.train.report(metrics, checkpoint=checkpoint)

    run_trial(payload["config"], report, restore_dir=payload["restore_dir"], log_dir=payload["log_dir"],
              worker=worker, until_epoch=payload["until_epoch"])


def distributed_trial(config: dict[str, Any], resources_per_worker: dict[str, float] | None = None) -> None:
    """Multi-worker Tune function trainable: ``workers_per_trial`` DDP workers, one fit per interval.

    ``resources_per_worker`` is Ray Train's (default: one CPU, plus one GPU with ``use_gpu``).
    """
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    config = validate_config(config)
    trial_dir = _trial_dir()
    scaling = ScalingConfig(num_workers=config["workers_per_trial"], use_gpu=config["use_gpu"],
                            resources_per_worker=resources_per_worker)
    backend = TorchConfig(backend="nccl" if config["use_gpu"] else "gloo")
    # Ray Train's own run folders live outside the trial directory, which Tune syncs to storage.
    with _tune_checkpoint_dir() as restore_dir, tempfile.TemporaryDirectory(prefix="tcnvae-train-") as runs:
        epoch = _checkpoint_epoch(restore_dir)
        previous_run: Path | None = None
        while epoch < config["max_epochs"]:
            until = min(epoch + config["epochs_per_fit"], config["max_epochs"])
            trainer = TorchTrainer(
                _train_worker,
                train_loop_config={"config": config, "restore_dir": restore_dir, "log_dir": str(trial_dir),
                                   "until_epoch": until},
                scaling_config=scaling,
                torch_config=backend,
                run_config=RunConfig(name=f"epochs_{epoch:04d}_{until:04d}", storage_path=runs,
                                     checkpoint_config=CheckpointConfig(num_to_keep=None)),
            )
            result = trainer.fit()
            reported = sorted(result.best_checkpoints or [], key=lambda pair: pair[1]["epoch"])
            if len(reported) != until - epoch:
                raise RuntimeError(f"Ray Train run {result.path} reported {len(reported)} checkpoints "
                                   f"for epochs {epoch}..{until - 1}")
            for checkpoint, metrics in reported:
                tune.report(_result_metrics(metrics),
                            checkpoint=tune.Checkpoint(checkpoint.path, checkpoint.filesystem))
            if previous_run is not None:  # the new run has restored from it
                shutil.rmtree(previous_run, ignore_errors=True)
            previous_run = Path(result.path)
            restore_dir = Path(reported[-1][0].path)
            epoch = until


def _checkpoint_epoch(restore_dir: Path | None) -> int:
    """Epochs completed by the checkpoint in ``restore_dir`` (0 without one); a torn newest checkpoint
    falls back to the newest readable one beside it, as the trial's own restore does."""
    if restore_dir is None:
        return 0
    _, payload = load_newest_intact(tune_checkpoint_candidates(restore_dir))
    return int(payload["trainer"]["epoch"])


def _result_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The loop's metrics out of a Ray Train result (which adds its own bookkeeping keys)."""
    return {key: value for key, value in metrics.items() if "/" in key or key == "epoch"}


def make_trainable(cpus_per_trial: float = 1, gpus_per_trial: float = 0, workers_per_trial: int = 1,
                   data: PreparedData | None = None) -> Any:
    """The trainable to give ``Tuner``, with its resources: the searches' one entry point.

    The resources decide the trial's mode and device: ``workers_per_trial`` 1 runs :func:`train_trial`
    on ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs (fractions pack several trials on one GPU);
    more runs :func:`distributed_trial` and splits those resources evenly across the workers (less
    :data:`DRIVER_CPUS` for the Tune function that drives them). The config's ``workers_per_trial``
    and ``use_gpu`` are set from them, so a trial always runs on what was reserved for it.

    ``data``: the search's data, prepared once by the driver (``cli.prepare_data``). It goes into
    Ray's object store once (``tune.with_parameters``) and every single-worker trial, retried and
    PBT-cloned ones included, reads it from there instead of preparing it again (a trial whose data
    settings differ, e.g. a searched window length, prepares its own: :func:`~tcnvae.tuning.loop.trial_data`).
    Multi-worker trials do not take it yet: each worker prepares its data.
    """
    check_resources(cpus_per_trial, gpus_per_trial, workers_per_trial)
    use_gpu = gpus_per_trial > 0
    if workers_per_trial == 1:
        def tcnvae_trial(config: dict[str, Any], data: PreparedData | None = None) -> None:
            train_trial({**config, "workers_per_trial": 1, "use_gpu": use_gpu}, data)

        trainable = tune.with_parameters(tcnvae_trial, data=data) if data is not None else tcnvae_trial
        return tune.with_resources(trainable, {"cpu": cpus_per_trial, "gpu": gpus_per_trial})

    if cpus_per_trial <= DRIVER_CPUS:
        raise ValueError(f"cpus_per_trial={cpus_per_trial}: expected more than {DRIVER_CPUS} for a "
                         f"{workers_per_trial}-worker trial (its driver takes {DRIVER_CPUS})")
    per_worker = {"CPU": (cpus_per_trial - DRIVER_CPUS) / workers_per_trial}
    if use_gpu:
        per_worker["GPU"] = gpus_per_trial / workers_per_trial

    def tcnvae_distributed_trial(config: dict[str, Any]) -> None:
        distributed_trial({**config, "workers_per_trial": workers_per_trial, "use_gpu": use_gpu}, per_worker)

    return tune.with_resources(tcnvae_distributed_trial, {"cpu": DRIVER_CPUS})
