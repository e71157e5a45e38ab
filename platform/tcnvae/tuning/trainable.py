"""Ray Tune trainables for the trial loop: one worker in the trial's own process, or N via Ray Train.

- :func:`train_trial` is a plain Tune function trainable: it drives a :class:`~tcnvae.tuning.loop.Trial`
  in the trial process and hands every epoch's metrics (and every ``checkpoint_interval`` epochs a
  checkpoint) to ``ray.tune.report``, resuming from ``ray.tune.get_checkpoint()``, so ASHA can stop
  it, PBT can clone it and a crash resumes it. The search's prepared data comes from Ray's object
  store (:func:`make_trainable`'s ``data``).
- :func:`~tcnvae.tuning.distributed.distributed_trial` (its own module) drives one Ray Train
  ``TorchTrainer`` run per trial (DDP) from the Tune function and reports every epoch to Tune as it
  comes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from ray import tune

from tcnvae.data.pipeline import PreparedData
from tcnvae.tuning.config import DEFAULT_CONFIG, check_resources
from tcnvae.tuning.distributed import distributed_trainable
from tcnvae.tuning.failures import no_retry_of_recurring_errors
from tcnvae.tuning.loop import Worker, run_trial


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

    The config (the search's base config with Tune's sampled values) is validated once, by
    :func:`~tcnvae.tuning.loop.run_trial`: sampled values can combine into an impossible config. ``data``
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
    more runs :func:`~tcnvae.tuning.distributed.distributed_trial` and splits those resources evenly
    across the workers (:func:`~tcnvae.tuning.distributed.distributed_trainable`). The config's ``workers_per_trial``
    and ``use_gpu`` are set from them, so a trial always runs on what was reserved for it.

    ``data``: the search's data, prepared once by the driver (``cli.prepare_data``). It goes into
    Ray's object store once (``tune.with_parameters``) and every single-worker trial, retried and
    PBT-cloned ones included, reads it from there instead of preparing it again (a trial whose data
    settings differ, e.g. a searched window length, prepares its own: :func:`~tcnvae.tuning.loop.trial_data`);
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
