"""Plain helpers that several test modules share: tiny settings, synthetic data, the search recipes as
modules, polling and reading what a search wrote. Fixtures live in conftest.py; no test module imports
another."""

from __future__ import annotations

import csv
import importlib.util
import logging
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from ray import tune
from ray.tune import ExperimentAnalysis

from tcnvae.data import load_source
from tcnvae.data.loaders import WindowLoader
from tcnvae.model import TCNVAE
from tcnvae.tuning import run_trial, train_trial, tune_logger_callbacks

SEARCHES = Path(__file__).resolve().parents[1] / "searches"

# -- the search recipes, on a tiny model and tiny synthetic data ---------------------------------------

# A model of a few hundred weights; data of 2 domains × 4 subjects × 10 s per activity: epochs of a second.
TINY_MODEL_FLAGS = ["--set", "hidden_dims=[8]", "--set", "latent_dim=4", "--set", "head_hidden=16",
                    "--set", "decoder_channels=8"]
TINY_FLAGS = [*TINY_MODEL_FLAGS, "--set", 'datasets=["synthetic"]', "--set",
              'source_options={"synthetic": {"num_domains": 2, "subjects_per_domain": 4, "seconds_per_activity": 10}}']


def recipe(name: str) -> ModuleType:
    """A search script loaded as a module, so tests call its ``main(argv)`` against the shared cluster."""
    spec = importlib.util.spec_from_file_location(f"searches_{name}", SEARCHES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def refused(argv: list[str], message: str) -> str:
    """The message of the ValueError with which ``loss_weights.py argv`` refuses to start."""
    with pytest.raises(ValueError, match=message) as error:
        recipe("loss_weights").main(argv)
    return str(error.value)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def epochs_reported(trial_dir: Path) -> list[int]:
    return [int(float(row["epoch"])) for row in read_csv(trial_dir / "progress.csv")]


# -- one trial, run in-process or through Tune ----------------------------------------------------------

TINY_TRIAL = {
    "source_options": {"synthetic": {"num_domains": 2, "subjects_per_domain": 3, "seconds_per_activity": 6.0}},
    "val_fraction": 0.2,
    "test_fraction": 0.2,
    "hidden_dims": [8],
    "latent_dim": 4,
    "head_hidden": 8,
    "decoder_channels": 8,
    "batch_size": 16,
    "max_epochs": 2,
    "checkpoint_interval": 1,  # every epoch: the crash and resume tests count on it
}
LOOP_METRICS = {
    "epoch", "loss/total", "loss/recon", "loss/kl", "loss/activity", "loss/domain", "loss/entropy", "schedule/beta",
    "schedule/alpha", "schedule/lr", "train/domain_accuracy", "val/loss", "val/accuracy", "val/macro_f1",
    "val/worst_domain_accuracy", "val/domain_classifier_accuracy", "val/domain/synthetic_a",
    "val/domain/synthetic_b", "train/unlabelled", "train/nonfinite_input_batches",
}


class Recorder:
    """A report function that keeps every epoch's metrics and a copy of every checkpoint."""

    def __init__(self, checkpoint_root: Path | None = None):
        self.metrics: list[dict[str, float]] = []
        self.checkpoints: list[Path] = []
        self.checkpoint_root = checkpoint_root

    def __call__(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        self.metrics.append(metrics)
        if self.checkpoint_root is not None and checkpoint_dir is not None:
            kept = self.checkpoint_root / f"epoch_{int(metrics['epoch'])}"
            shutil.copytree(checkpoint_dir, kept)
            self.checkpoints.append(kept)


def run(config: dict, **options) -> Recorder:
    """:func:`run_trial` on ``TINY_TRIAL`` updated with ``config``, every report recorded."""
    recorder = Recorder(options.pop("checkpoint_root", None))
    run_trial({**TINY_TRIAL, **config}, recorder, **options)
    return recorder


def tune_run(trainable, config: dict, storage: Path, name: str, max_failures: int = 0):
    tuner = tune.Tuner(
        trainable, param_space={**TINY_TRIAL, **config},
        tune_config=tune.TuneConfig(num_samples=1, metric="val/accuracy", mode="max"),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), callbacks=tune_logger_callbacks(),
                                  failure_config=tune.FailureConfig(max_failures=max_failures), verbose=0),
    )
    return tuner.fit()[0]


# -- your own data: the arrays format ------------------------------------------------------------------

NEW_NAMES = {"walking": "pendulum", "sitting": "plank", "running": "squat"}  # none is in the taxonomy


def arrays_file(path: Path, *, channels: slice = slice(None), nan: bool = False) -> Path:
    """Six people's continuous recordings (synthetic signals) in the arrays format, activities renamed."""
    recordings = load_source("synthetic", num_domains=2, subjects_per_domain=3, seconds_per_activity=10,
                             activities=list(NEW_NAMES))
    signals = np.concatenate([r.signal for r in recordings])[:, channels]
    if nan:
        signals[5, 0] = np.nan
    names = recordings[0].activity_names
    np.savez(path, signals=signals, labels=np.concatenate([r.labels for r in recordings]),
             label_names=np.array([NEW_NAMES[name] for name in names]),
             offsets=np.cumsum([0] + [len(r) for r in recordings]),
             channel_names=np.array(recordings[0].channel_names[channels]), sample_rate=recordings[0].sample_rate,
             subjects=np.array([f"p{i}" for i in range(len(recordings))]))
    return path


# -- waiting on processes and reading the experiment state ------------------------------------------

POLL_SECONDS = 0.2
PATIENCE_SECONDS = 300  # generous: the CI machine may be loaded


def trial_with_epoch_hook(before_epoch: Callable[[int], None]) -> Callable[[dict], None]:
    """A trainable running :func:`train_trial` that calls ``before_epoch(epoch)`` in the trial's process
    as each epoch starts (before any of its batches): where a test parks a trial to kill it mid-epoch.

    Both functions are nested, so Ray pickles them by value: the trial processes cannot import tests.
    """
    def trial(config: dict) -> None:
        from tcnvae.trainer import TCNVAETrainer

        train_epoch = TCNVAETrainer.train_epoch

        def hooked_train_epoch(trainer, loader, epoch):
            before_epoch(epoch)
            return train_epoch(trainer, loader, epoch)

        TCNVAETrainer.train_epoch = hooked_train_epoch
        try:
            train_trial(config)
        finally:
            TCNVAETrainer.train_epoch = train_epoch

    return trial


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {PATIENCE_SECONDS} s waiting for {what}")
        time.sleep(POLL_SECONDS)


def saved_statuses(experiment: Path) -> dict[str, str]:
    """Trial id → status in the experiment state Tune last saved (empty before its first save)."""
    if not list(experiment.glob("experiment_state-*.json")):
        return {}
    analysis_logger = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = analysis_logger.level
    analysis_logger.setLevel(logging.ERROR)  # trials without results yet are warned about, every poll
    try:
        return {trial.trial_id: trial.status for trial in ExperimentAnalysis(str(experiment)).trials}
    except (ValueError, OSError):  # a state file not written yet
        return {}
    finally:
        analysis_logger.setLevel(level)


# -- the trainer on oscillation windows ------------------------------------------------------------------

NUM_CLASSES = 4
CHANNELS = 6


def oscillation_windows(count: int, length: int = 64, seed: int = 0):
    """Windows whose class sets the oscillation frequency (like cadence) and whose domain sets the gain."""
    generator = torch.Generator().manual_seed(seed)
    activity = torch.randint(0, NUM_CLASSES, (count,), generator=generator)
    domain = torch.randint(0, 2, (count,), generator=generator)
    seconds = torch.arange(length) / 50.0
    frequency = (0.5 + 0.8 * activity.float())[:, None, None]
    phase = 2 * math.pi * torch.rand(count, 1, CHANNELS, generator=generator)
    gain = (1.0 + 0.5 * domain.float())[:, None, None]
    signal = gain * torch.sin(2 * math.pi * frequency * seconds[None, :, None] + phase)
    signal = signal + 0.3 * torch.randn(count, length, CHANNELS, generator=generator)
    return signal, activity, domain


def loaders(count=256, batch_size=32, seed=0):
    train = WindowLoader(*oscillation_windows(count, seed=seed), batch_size=batch_size, shuffle=True, seed=seed)
    val = WindowLoader(*oscillation_windows(count // 2, seed=seed + 1), batch_size=batch_size)
    return train, val


def small_model(seed=0, **overrides):
    torch.manual_seed(seed)
    config = dict(input_dim=CHANNELS, latent_dim=8, num_activities=NUM_CLASSES, num_domains=2,
                  hidden_dims=[16, 16], kernel_size=3, head_hidden=16, decoder_channels=16)
    config.update(overrides)
    return TCNVAE(**config)


def quiet(trainer):
    trainer.verbose = False
    return trainer
