"""The Ray platform: one trial of the TCN-VAE loop as a Tune trainable, and what searches build on.

A walk through the package, in the order a search runs:

- :mod:`~tcnvae.tuning.cli`: the command-line flags → one validated base config → checked data;
- :mod:`~tcnvae.tuning.config`: the declared trial config (every setting, its default and check);
- :mod:`~tcnvae.tuning.search`: the search set-up (searchers, schedulers, spaces, resume);
- :mod:`~tcnvae.tuning.cluster`: the Ray cluster and the storage, and the trust record ``--resume`` checks;
- :mod:`~tcnvae.tuning.trainables`: the Tune trainables (one worker, or N with Ray Train) and failures;
- :mod:`~tcnvae.tuning.trial`: one trial, its epochs, checkpoints and hyperparameter history;
- :mod:`~tcnvae.tuning.metrics`: every metric name reported and read;
- :mod:`~tcnvae.tuning.tensorboard`: the TensorBoard runs of trials and searches;
- :mod:`~tcnvae.tuning.report`: what a search reports (console, leaderboard, test score, importance);
- :mod:`~tcnvae.tuning.selection`: model selection without target labels, and cross-validation.

A search validates its base config (:func:`validate_config`) and resources (:func:`check_resources`)
before Ray starts, makes the trainable with :func:`make_trainable`, optimises one of
:data:`OBJECTIVES`, and turns a PBT winner's schedule into a replayable recipe (:func:`write_replay`,
:func:`load_replay`). :func:`run_trial` is the loop itself, usable without Ray.
"""

from tcnvae.tuning.config import (
    DEFAULT_CONFIG,
    MUTABLE_KEYS,
    check_resources,
    data_config,
    validate_config,
)
from tcnvae.tuning.metrics import OBJECTIVE_MODE, OBJECTIVES
from tcnvae.tuning.tensorboard import tune_logger_callbacks
from tcnvae.tuning.trainables import distributed_trial, make_trainable, train_trial
from tcnvae.tuning.trial import CHECKPOINT_FILE, TrialState, Worker, load_replay, run_trial, write_replay

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
