"""The training loop of one trial, shared by single-worker Tune trials, Ray Train workers and plain runs.

:func:`run_trial` builds everything from the flat config (data, a TCN-VAE sized from the data, a
configured :class:`~tcnvae.trainer.TCNVAETrainer`, the curriculum policy), restores from a checkpoint
directory when given one, then each epoch: applies the epoch's replayed hyperparameters (if any) and
the curriculum's stage, trains, validates, evaluates the target slice (if a target domain is set)
or, with an unlabelled target, the label-free selection scores (:mod:`tcnvae.tuning.selection`),
logs to TensorBoard, writes a checkpoint directory and hands both to ``report``. Where the report
goes (Tune, Ray Train, a list in a test) is the caller's business, which is how one loop serves
every mode.

Reproducibility: the seed fixes the split, the model's initialisation and every epoch's batch order
(the loader seeds by (seed, epoch)); a checkpoint holds the RNG states and the curriculum's state, so
a resumed or cloned trial continues exactly as an uninterrupted one would, in the same stage.
"""

from __future__ import annotations

import copy
import logging
import random
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tcnvae.checkpoints import load_newest_intact, save_checkpoint
from tcnvae.curriculum import CurriculumRunner, make_curriculum
from tcnvae.data.loaders import WindowLoader
from tcnvae.data.pipeline import PreparedData, prepare
from tcnvae.trainer import TCNVAETrainer
from tcnvae.tuning.build import apply_hyperparameters, build_model, build_trainer, epoch_metrics
from tcnvae.tuning.config import CURRICULUM_PREFIX, curriculum_params, data_config, validate_config
from tcnvae.tuning.replay import history_entry, scheduled_values
from tcnvae.tuning.selection import LabelFreeSelection
from tcnvae.tuning.tensorboard import STAGE_METRIC, TrialBoard

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "trial_state.pt"
_TUNE_CHECKPOINT = re.compile(r"checkpoint_\d{6}")  # Tune's folder of a trial's n-th checkpoint

Report = Callable[[dict[str, float], Path | None], None]
"""Receives each epoch's metrics and the checkpoint directory (None on ranks that write none); the
directory is temporary, so a report must copy or persist it before returning."""


@dataclass
class TrialState:
    """Trial state beyond the trainer's own: saved in every checkpoint, restored with it.

    ``curriculum`` is the state of the trial's curriculum (``CurriculumRunner.state_dict()``: the
    policy's switch epochs and counters, the metrics its next decision reads, the stages seen), so
    that PBT clones and resumed trials continue in the right stage. Each history entry also holds the
    ``curriculum.*`` parameters the epoch ran with, which PBT may have perturbed.
    """

    hyperparameter_history: list[dict[str, Any]] = field(default_factory=list)
    curriculum: dict[str, Any] = field(default_factory=dict)


@dataclass
class Worker:
    """Where this copy of the loop runs: its rank among the trial's workers and its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    parallelize: Callable[[nn.Module], nn.Module] | None = None  # e.g. ray.train.torch.prepare_model


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class RankShard:
    """Every ``world_size``-th batch of a loader, from ``rank`` on: this worker's share of an epoch.

    All workers build the same seeded batch plan, so the shards are disjoint and together cover the
    epoch; each gets ``len(loader) // world_size`` batches, so DDP's collective steps stay in lockstep.
    ``batch_size`` is therefore per worker.
    """

    def __init__(self, loader: WindowLoader, rank: int, world_size: int):
        self.loader = loader
        self.rank = rank
        self.world_size = world_size
        self.domain_names = loader.domain_names

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader) // self.world_size

    def __iter__(self) -> Iterator[Any]:
        wanted = len(self)
        for index, batch in enumerate(self.loader):
            if index >= wanted * self.world_size:
                return
            if index % self.world_size == self.rank:
                yield batch


def target_slice_subjects(data: PreparedData, fraction: float, seed: int) -> list[str]:
    """The labelled slice of the held-out target domain: ``fraction`` of its subjects.

    The target domain is the test side of a ``lodo:<target>`` split. Whole subjects form the slice (at
    least one, and at least one left out when there are two or more), so selecting on it does not
    see the people the final test is on.
    """
    subjects = np.array(sorted(set(data.test.subject.tolist())))
    if len(subjects) == 0:
        raise ValueError(f"the target domain of split {data.config.split!r} has no windows")
    count = max(1, int(round(fraction * len(subjects))))
    if len(subjects) > 1:
        count = min(count, len(subjects) - 1)
    chosen = sorted(np.random.default_rng([seed, 7]).choice(subjects, size=count, replace=False).tolist())
    logger.info("target slice: %d of %d target subjects (%s)", count, len(subjects), ", ".join(chosen))
    return chosen


def target_slice(data: PreparedData, fraction: float, seed: int, pin_memory: bool = False) -> WindowLoader:
    """Loader over :func:`target_slice_subjects`' windows."""
    chosen = target_slice_subjects(data, fraction, seed)
    return data.loader(data.test.subset(np.isin(data.test.subject, chosen)), pin_memory=pin_memory)


ANALYSIS_PREFIX = "analysis/"
"""Metrics logged for analysis only, never an objective: the target's accuracy with adapt="unlabelled"."""


def selects_without_labels(config: Mapping[str, Any]) -> bool:
    """Whether a trial computes the label-free selection scores (source risk, DEV) each epoch."""
    return config["adapt"] == "unlabelled" or config["objective"] in ("source_risk", "dev")


def unlabelled_target_metrics(trainer: TCNVAETrainer, test_loader: WindowLoader) -> dict[str, float]:
    """The unlabelled target's held-out accuracy and macro-F1, under ``analysis/``: reported so a study can
    see how selection did, never read by an objective (the target's labels are not to be used)."""
    trainer.validate(test_loader)
    return {f"{ANALYSIS_PREFIX}target_accuracy": trainer.last_val_metrics["accuracy"],
            f"{ANALYSIS_PREFIX}target_macro_f1": trainer.last_val_metrics["macro_f1"]}


def save_trial_checkpoint(directory: Path, trainer: TCNVAETrainer, state: TrialState,
                          config: Mapping[str, Any]) -> None:
    save_checkpoint({"trainer": trainer.state_dict(), "hyperparameter_history": state.hyperparameter_history,
                     "curriculum": state.curriculum, "config": dict(config)}, directory / CHECKPOINT_FILE)


def load_trial_checkpoint(directory: str | Path, trainer: TCNVAETrainer) -> TrialState:
    """Restore ``trainer`` (weights, optimizer, scheduler, epoch, RNG) from a checkpoint directory.

    An unreadable checkpoint file is named and set aside, and the trial goes on from the newest
    readable older checkpoint beside it (Tune's numbered ``checkpoint_000123`` folders of the same
    trial), if any. A copy Tune downloaded elsewhere has no such neighbours: it has no fallback.
    """
    directory = Path(directory)
    older = []
    if _TUNE_CHECKPOINT.fullmatch(directory.name):
        older = sorted((sibling for sibling in directory.parent.iterdir()
                        if _TUNE_CHECKPOINT.fullmatch(sibling.name) and sibling.name < directory.name), reverse=True)
    candidates = [directory / CHECKPOINT_FILE, *(sibling / CHECKPOINT_FILE for sibling in older
                                                 if (sibling / CHECKPOINT_FILE).is_file())]
    _, payload = load_newest_intact(candidates, map_location=trainer.device)
    trainer.load_state_dict(payload["trainer"])
    return TrialState(list(payload["hyperparameter_history"]), dict(payload["curriculum"]))


def build_curriculum(config: Mapping[str, Any], trainer: TCNVAETrainer, train_loader: WindowLoader) -> CurriculumRunner:
    """The curriculum of ``config`` driving ``trainer`` and the unsharded ``train_loader``.

    Its policy's setup may load pretrained weights, so build it before restoring a checkpoint: the
    restore then has the last word on the weights.
    """
    policy = make_curriculum(config["curriculum"], **curriculum_params(config))
    return CurriculumRunner(policy, trainer, train_loader, config["max_epochs"])


def _rebuilt_curriculum(runner: CurriculumRunner, config: Mapping[str, Any], trainer: TCNVAETrainer,
                        train_loader: WindowLoader) -> CurriculumRunner:
    """``runner``'s curriculum with ``config``'s parameters (a replayed epoch changed them), continuing
    from ``runner``'s state, as a PBT clone with perturbed parameters does. The model keeps its weights:
    whatever the new policy's setup loads belongs to the start of a run."""
    weights = copy.deepcopy(trainer.model.state_dict())
    rebuilt = build_curriculum(config, trainer, train_loader)
    trainer.model.load_state_dict(weights)
    rebuilt.load_state_dict(runner.state_dict())
    return rebuilt


def _check_batches_per_worker(loader: WindowLoader, world_size: int, stage: str | None = None) -> None:
    """Every worker of a data-parallel trial needs a batch per step; a curriculum stage that trains on
    fewer windows (one domain, the easiest windows) has fewer batches."""
    if world_size > 1 and len(loader) < world_size:
        during = f" under curriculum stage {stage!r}" if stage is not None else ""
        raise ValueError(f"{len(loader)} training batches{during} cannot feed {world_size} workers; "
                         "lower batch_size or workers_per_trial")


def run_trial(config: Mapping[str, Any], report: Report, *, restore_dir: str | Path | None = None,
              log_dir: str | Path | None = None, worker: Worker | None = None,
              until_epoch: int | None = None) -> TrialState:
    """Run one trial from epoch 0, or from the checkpoint in ``restore_dir``, to ``max_epochs``.

    ``until_epoch`` stops earlier (a multi-worker trial runs its epochs in several Ray Train fits);
    the schedules still span ``max_epochs``.

    After a restore the trial's *current* config sets the hyperparameters, not the checkpoint's: that
    is how a PBT clone takes the donor's weights with its own perturbed values. The curriculum is
    likewise built from the current ``curriculum.*`` parameters and continues from the checkpoint's
    curriculum state (the stage it reached, the epoch it switched at). Only rank 0 writes TensorBoard
    (to ``log_dir``) and checkpoints. Returns the final trial state.

    With a curriculum other than ``none``, each epoch's metrics include the stage (``curriculum/stage``,
    the index of the stage in order of first appearance) and its multipliers and shares
    (``curriculum/*``), and TensorBoard gets a text entry at every change of stage.
    """
    config = validate_config(config)
    worker = worker or Worker()
    seed_everything(config["seed"])
    data = prepare(data_config(config))
    model = build_model(config, data)
    # Wrapped for data parallelism while every parameter still trains (no stage applied yet), so DDP
    # syncs all of them once they are unfrozen.
    trainer = build_trainer(config, model, worker.device, worker.parallelize)
    # Page-locked batches on a GPU, so the trainer's non_blocking copies overlap with compute.
    pin_memory = worker.device.type == "cuda"
    base_loader = data.train_loader(pin_memory=pin_memory)
    schedule = config["replay_schedule"]
    first_epoch = {**config, **scheduled_values(schedule, 0)}  # a replay's curriculum starts as the trial's did
    runner = build_curriculum(first_epoch, trainer, base_loader)
    runner_params = curriculum_params(first_epoch)
    state = TrialState()
    if restore_dir is not None:
        state = load_trial_checkpoint(restore_dir, trainer)
        apply_hyperparameters(trainer, config)
        runner.load_state_dict(state.curriculum)
        logger.info("restored from %s at epoch %d", restore_dir, trainer.epoch)
    trainer.metadata = {"data": data.metadata(), "config": dict(config)}  # saved with every checkpoint
    _check_batches_per_worker(base_loader, worker.world_size)
    train_loader: Any = RankShard(base_loader, worker.rank, worker.world_size) if worker.world_size > 1 else base_loader
    val_loader = data.val_loader(pin_memory=pin_memory)
    unlabelled_target = config["adapt"] == "unlabelled"
    target_loader = (target_slice(data, config["target_labelled_fraction"], config["seed"], pin_memory)
                     if config["target_domain"] and not unlabelled_target else None)
    test_loader = data.test_loader(pin_memory=pin_memory) if unlabelled_target else None
    selection = LabelFreeSelection(data, config["seed"], pin_memory) if selects_without_labels(config) else None
    reports_curriculum = config["curriculum"] != "none"  # the baseline's stage never changes: nothing to draw
    board = None
    if log_dir is not None and worker.rank == 0:
        board = TrialBoard(log_dir, config, first_step=trainer.epoch + 1)
    current = dict(config)
    end = config["max_epochs"] if until_epoch is None else min(until_epoch, config["max_epochs"])
    try:
        for epoch in range(trainer.epoch, end):
            replayed = scheduled_values(schedule, epoch)
            if replayed:
                current.update(replayed)
                apply_hyperparameters(trainer, current)
                if curriculum_params(current) != runner_params:
                    runner = _rebuilt_curriculum(runner, current, trainer, base_loader)
                    runner_params = curriculum_params(current)
            state.hyperparameter_history.append(
                {**history_entry(epoch, current),
                 **{key: value for key, value in current.items() if key.startswith(CURRICULUM_PREFIX)}})
            previous_stage = (runner.last_metrics or {}).get(STAGE_METRIC)
            stage = runner.before_epoch(epoch)
            _check_batches_per_worker(base_loader, worker.world_size, stage.name)
            trainer.train_epoch(train_loader, epoch)
            target_accuracy = trainer.validate(target_loader)[1] if target_loader is not None else None
            analysis = unlabelled_target_metrics(trainer, test_loader) if test_loader is not None else {}
            trainer.validate(val_loader)
            trainer.epoch = epoch + 1
            metrics = epoch_metrics(trainer, target_accuracy)
            metrics.update(analysis)
            if selection is not None:
                metrics.update(selection.metrics(trainer.model, worker.device))
            stage_metrics = runner.metrics()
            if reports_curriculum:
                metrics.update(stage_metrics)
            runner.after_epoch({**metrics, **stage_metrics})  # the next decision reads these
            state.curriculum = runner.state_dict()
            if board is not None:
                board.log_epoch(metrics, trainer.epoch, trainer.last_val_metrics["confusion"], data.activity_names)
                if reports_curriculum and stage_metrics[STAGE_METRIC] != previous_stage:
                    board.log_stage(stage, trainer.epoch, config["max_epochs"])
            _checkpoint_and_report(report, metrics, trainer, state, current, worker.rank == 0)
    finally:
        if board is not None:
            board.close(completed=trainer.epoch == config["max_epochs"])
    return state


def _checkpoint_and_report(report: Report, metrics: dict[str, float], trainer: TCNVAETrainer,
                           state: TrialState, config: Mapping[str, Any], writes_checkpoint: bool) -> None:
    if not writes_checkpoint:
        report(metrics, None)
        return
    with tempfile.TemporaryDirectory(prefix="tcnvae-checkpoint-") as directory:
        save_trial_checkpoint(Path(directory), trainer, state, config)
        report(metrics, Path(directory))

