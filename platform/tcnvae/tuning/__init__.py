"""The Ray platform: one trial of the TCN-VAE loop as a Tune trainable, and what searches build on.

A search validates its base config (:func:`validate_config`) and resources (:func:`check_resources`)
before Ray starts, makes the trainable with :func:`make_trainable`, optimises one of
:data:`OBJECTIVES`, and turns a PBT winner's schedule into a replayable recipe (:func:`write_replay`,
:func:`load_replay`). :func:`run_trial` is the loop itself, usable without Ray.
"""

from tcnvae.tuning.config import (
    DEFAULT_CONFIG,
    MUTABLE_KEYS,
    OBJECTIVE_MODE,
    OBJECTIVES,
    check_resources,
    data_config,
    validate_config,
)
from tcnvae.tuning.distributed import distributed_trial
from tcnvae.tuning.loop import CHECKPOINT_FILE, TrialState, Worker, run_trial
from tcnvae.tuning.replay import load_replay, write_replay
from tcnvae.tuning.tensorboard import tune_logger_callbacks
from tcnvae.tuning.trainable import make_trainable, train_trial

__all__ = [
    "CHECKPOINT_FILE",
    "DEFAULT_CONFIG",
    "MUTABLE_KEYS",
    "OBJECTIVES",
    "OBJECTIVE_MODE",
    "TrialState",
    "Worker",
    "check_resources",
    "data_config",
    "distributed_trial",
    "load_replay",
    "make_trainable",
    "run_trial",
    "train_trial",
    "tune_logger_callbacks",
    "validate_config",
    "write_replay",
]
