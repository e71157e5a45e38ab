"""One trial: the model, trainer and curriculum built from a flat config, its epochs, its checkpoints, and
the hyperparameters it ran with at each epoch.

Shared by single-worker Tune trials, Ray Train workers and plain runs. A :class:`Trial` builds
everything from the flat, validated config (data, a TCN-VAE sized from the data: :func:`build_model`;
a configured :class:`~tcnvae.trainer.TCNVAETrainer`: :func:`build_trainer`; the curriculum policy),
restores from a checkpoint directory when asked, then runs its epochs through the trainer's one loop
(:meth:`~tcnvae.trainer.TCNVAETrainer.train_epochs`), attached to it as hooks: before each epoch it
applies the epoch's replayed hyperparameters (if any) and the curriculum's stage; after it, it
validates, evaluates the target slice (if a target domain is set) or, with an unlabelled target, the
label-free selection scores (:mod:`tcnvae.tuning.selection`), and logs to TensorBoard.
:func:`run_epochs` drives it and hands each epoch's metrics (:func:`~tcnvae.tuning.metrics.epoch_metrics`)
to ``report``, with a checkpoint directory every ``checkpoint_interval`` epochs and at the last. Where
the report goes (Tune, Ray Train, a list in a test) is the caller's business, which is how one loop
serves every mode; :func:`run_trial` validates a config and does both.

What may change while a trial runs (PBT, a replayed epoch) goes through :func:`apply_hyperparameters`.
PBT changes a trial's hyperparameters while it trains (each exploit copies a better trial's weights
and perturbs its hyperparameters), so the winner's *final* config is not what produced its weights;
the whole sequence is. Every trial checkpoint therefore carries its ``hyperparameter_history`` — one
entry per epoch, ``{"epoch": e, <every mutable hyperparameter>}`` — which a clone inherits from the
trial it copies and then continues. Written to a file with the trial's base config, the history turns
a PBT discovery into a recipe: :func:`load_replay` gives a config whose ``replay_schedule`` makes a
single plain run set each epoch's hyperparameters exactly as the population did.

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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn, optim

from tcnvae.checkpoints import load_newest_intact, read_json_object, save_checkpoint, write_json
from tcnvae.curriculum import CurriculumRunner, grouped_optimizer, make_curriculum
from tcnvae.data.loaders import WindowLoader
from tcnvae.data.pipeline import PreparedData, prepare
from tcnvae.model import ARCHITECTURE, TCNVAE
from tcnvae.objective import Objective
from tcnvae.trainer import TCNVAETrainer
from tcnvae.tuning.config import CURRICULUM_PREFIX, curriculum_params, data_config, mutable_keys, validate_config
from tcnvae.tuning.metrics import (STAGE_METRIC, TARGET_ANALYSIS_ACCURACY, TARGET_ANALYSIS_MACRO_F1,
                                   epoch_metrics)
from tcnvae.tuning.tensorboard import TrialBoard

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "trial_state.pt"
_TUNE_CHECKPOINT = re.compile(r"checkpoint_\d{6}")  # Tune's folder of a trial's n-th checkpoint

Report = Callable[[dict[str, float], Path | None], None]
"""Receives each epoch's metrics and the checkpoint directory (None on ranks that write none); the
directory is temporary, so a report must copy or persist it before returning."""


def build_model(config: Mapping[str, Any], data: PreparedData) -> TCNVAE:
    """A TCN-VAE sized from the data (one input per channel, one output per activity and per domain),
    shaped by the config's :data:`~tcnvae.model.ARCHITECTURE` settings."""
    return TCNVAE(input_dim=len(data.channel_names), num_activities=data.num_activities, num_domains=data.num_domains,
                  **{key: config[key] for key in ARCHITECTURE})


def build_trainer(config: Mapping[str, Any], model: TCNVAE, device: torch.device,
                  parallelize: Callable[[nn.Module], nn.Module] | None = None) -> TCNVAETrainer:
    """The trainer of ``config``, its optimizer holding one param group per named part of the model
    (what a curriculum's per-part freezing and learning-rate multipliers act on). ``parallelize``
    wraps the model for a data-parallel trial (e.g. ``ray.train.torch.prepare_model``)."""
    optimizer_class = optim.AdamW if config["optimizer"] == "adamw" else optim.Adam
    optimizer = grouped_optimizer(model, optimizer_class, lr=config["lr"], weight_decay=config["weight_decay"])
    scheduler = (optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config["max_epochs"])
                 if config["lr_schedule"] == "cosine" else None)
    return TCNVAETrainer(model, device, config["lr"], optimizer=optimizer, scheduler=scheduler,
                         objective=Objective.from_config(config), precision=config["mixed_precision"],
                         parallelize=parallelize, grad_clip=config["grad_clip"], input_noise=config["input_noise"],
                         weight_average_epochs=config["weight_average_epochs"], verbose=False)


def apply_hyperparameters(trainer: TCNVAETrainer, values: Mapping[str, Any]) -> None:
    """Set the mutable hyperparameters on a live trainer (after a restore or a PBT clone, per replay epoch).

    A new learning rate keeps the scheduler's progress and each param group's curriculum multiplier
    (:meth:`TCNVAETrainer.set_learning_rate`); the objective keeps the curriculum's loss multipliers.
    """
    trainer.objective = trainer.objective.configured(values)
    trainer.grad_clip = values["grad_clip"]
    trainer.input_noise = values["input_noise"]
    trainer.set_learning_rate(values["lr"])
    for group in trainer.optimizer.param_groups:
        group["weight_decay"] = values["weight_decay"]


REPLAY_FORMAT = "tcnvae-replay/1"


def history_entry(epoch: int, config: Mapping[str, Any]) -> dict[str, Any]:
    """The record of one epoch: the mutable hyperparameters it ran with."""
    return {"epoch": int(epoch), **{key: config[key] for key in mutable_keys()}}


def scheduled_values(schedule: Sequence[Mapping[str, Any]] | None, epoch: int) -> dict[str, Any]:
    """The hyperparameters a replay schedule sets at ``epoch`` (empty if it has no entry there)."""
    for entry in schedule or ():
        if entry["epoch"] == epoch:
            return {key: value for key, value in entry.items() if key != "epoch"}
    return {}


def _replay_config(base_config: Mapping[str, Any], schedule: Any) -> dict[str, Any]:
    """The validated trial config that replays ``schedule`` from ``base_config``: where a replay enters."""
    return validate_config({**base_config, "replay_schedule": schedule})


def write_replay(path: str | Path, history: Sequence[Mapping[str, Any]], base_config: Mapping[str, Any]) -> Path:
    """Write a replay file: ``base_config`` plus the per-epoch ``history`` (atomic JSON).

    ``max_epochs`` becomes the number of epochs the history covers, so the replay ends where the
    trial did (a PBT trial may have been stopped before its configured end).
    """
    if not history:
        raise ValueError("the hyperparameter history is empty: the trial completed no epoch")
    epochs = [entry["epoch"] for entry in history]
    if epochs != list(range(len(epochs))):
        raise ValueError(f"the history must cover epochs 0, 1, ... in order; it has epochs {epochs}")
    schedule = [dict(entry) for entry in history]
    config = _replay_config({**base_config, "max_epochs": len(schedule)}, schedule)
    base = {key: value for key, value in config.items() if key != "replay_schedule"}
    path = Path(path)
    write_json({"format": REPLAY_FORMAT, "base_config": base, "schedule": schedule}, path)
    return path


def load_replay(path: str | Path) -> dict[str, Any]:
    """The validated trial config of a replay file, with its ``replay_schedule`` set.

    Refuses a schedule that names an epoch twice (which values would win is arbitrary) or names epochs
    the run never reaches (``max_epochs``): an edited file that does either would silently replay
    something else than it says.
    """
    payload = read_json_object(path, "replay file")
    if payload.get("format") != REPLAY_FORMAT:
        raise ValueError(f"{path} is not a replay file (expected a JSON object with format {REPLAY_FORMAT!r})")
    try:
        config = _replay_config(payload["base_config"], payload["schedule"])
    except (KeyError, ValueError) as error:
        raise ValueError(f"replay file {path} is malformed: {error}") from None
    epochs = [entry["epoch"] for entry in config["replay_schedule"]]
    repeated = sorted({epoch for epoch in epochs if epochs.count(epoch) > 1})
    if repeated:
        raise ValueError(f"replay file {path} lists epochs {repeated} more than once; keep one entry per epoch")
    beyond = sorted(epoch for epoch in epochs if epoch >= config["max_epochs"])
    if beyond:
        raise ValueError(f"replay file {path} sets epochs {beyond}, but its run has max_epochs="
                         f"{config['max_epochs']} (epochs 0..{config['max_epochs'] - 1}); drop those entries or "
                         "raise base_config.max_epochs")
    return config


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


def selects_without_labels(config: Mapping[str, Any]) -> bool:
    """Whether a trial computes the label-free selection scores (source risk, DEV) each epoch."""
    return config["adapt"] == "unlabelled" or config["objective"] in ("source_risk", "dev")


def unlabelled_target_metrics(trainer: TCNVAETrainer, test_loader: WindowLoader) -> dict[str, float]:
    """The unlabelled target's held-out accuracy and macro-F1, under ``analysis/``: reported so a study can
    see how selection did, never read by an objective (the target's labels are not to be used)."""
    target = trainer.evaluate(test_loader)
    return {TARGET_ANALYSIS_ACCURACY: target["accuracy"], TARGET_ANALYSIS_MACRO_F1: target["macro_f1"]}


def save_trial_checkpoint(directory: Path, trainer: TCNVAETrainer, state: TrialState,
                          config: Mapping[str, Any]) -> None:
    save_checkpoint({"trainer": trainer.state_dict(), "hyperparameter_history": state.hyperparameter_history,
                     "curriculum": state.curriculum, "config": dict(config)}, directory / CHECKPOINT_FILE)


def tune_checkpoint_candidates(directory: str | Path) -> list[Path]:
    """The checkpoint files to restore from, newest first: the one in ``directory``, then those of the
    older of Tune's numbered ``checkpoint_000123`` folders of the same trial beside it, if any. A copy
    Tune downloaded elsewhere has no such neighbours."""
    directory = Path(directory)
    older = []
    if _TUNE_CHECKPOINT.fullmatch(directory.name):
        older = sorted((sibling for sibling in directory.parent.iterdir()
                        if _TUNE_CHECKPOINT.fullmatch(sibling.name) and sibling.name < directory.name), reverse=True)
    return [directory / CHECKPOINT_FILE, *(sibling / CHECKPOINT_FILE for sibling in older
                                           if (sibling / CHECKPOINT_FILE).is_file())]


def load_trial_checkpoint(directory: str | Path, trainer: TCNVAETrainer) -> TrialState:
    """Restore ``trainer`` (weights, optimizer, scheduler, epoch, RNG) from a checkpoint directory.

    An unreadable checkpoint file is named and set aside, and the trial goes on from the newest
    readable older checkpoint of :func:`tune_checkpoint_candidates`, if any.
    """
    _, payload = load_newest_intact(tune_checkpoint_candidates(directory), map_location=trainer.device)
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


LOADER_SETTINGS = ("batch_size", "sampling", "augmentation")
"""DataConfig fields that only the loaders read: trials that differ in them share the same windows."""


def trial_data(config: Mapping[str, Any], shared: PreparedData | None = None) -> PreparedData:
    """The data of a trial with ``config``: a copy of the search's ``shared`` data (prepared once by the
    driver) when it holds this config's windows, else prepared here.

    The shared windows serve any trial whose window-deciding settings (datasets, split, seed, channels,
    rates ...) equal the driver's; the trial's own loader settings (:data:`LOADER_SETTINGS`, e.g. a
    searched ``batch_size``) apply to them. ``activities`` and ``window_seconds`` as the driver's
    preparation decided them (what ``cli.prepare_data`` records in the config) match its data. A
    searched data setting (another window length, say) makes the trial prepare its own data.

    The copy is the trial's own: arrays from Ray's object store are read-only views of memory every
    trial on the node shares, and torch tensors made from them could write into it.
    """
    wanted = data_config(config)
    if shared is None:
        return prepare(wanted)
    if wanted.window_seconds is None:
        wanted = replace(wanted, window_seconds=shared.config.window_seconds)
    comparable = wanted  # as the driver's data holds it: activities left to the data are None there
    if shared.config.activities is None and wanted.activities == shared.activity_names:
        comparable = replace(wanted, activities=None)
    if replace(shared.config, **{name: getattr(wanted, name) for name in LOADER_SETTINGS}) != comparable:
        logger.info("this trial's data settings differ from the search's prepared data: preparing its own")
        return prepare(data_config(config))
    return copy.deepcopy(replace(shared, config=wanted))


def checkpoint_due(epoch: int, interval: int, end: int) -> bool:
    """Whether the epoch count ``epoch`` gets a checkpoint: every ``interval`` epochs and at ``end``,
    the last epoch of the run (so a finished trial, or a fit of a multi-worker trial, always has one)."""
    return epoch % interval == 0 or epoch >= end


class Trial:
    """One trial: set up from a validated config, restore, run epochs (:meth:`run`, or one at a time:
    :meth:`run_epoch`), close.

    The set-up builds everything from the flat config (data, a TCN-VAE sized from the data, a
    configured :class:`~tcnvae.trainer.TCNVAETrainer`, the curriculum policy). ``config`` must come
    from :func:`~tcnvae.tuning.config.validate_config`: a trial validates nothing itself, so each
    caller validates once, where the config arrives (:func:`run_trial`, the Tune trainables).
    ``data`` is the search's prepared data (see :func:`trial_data`); without it the trial prepares
    its own. Only rank 0 writes TensorBoard (to ``log_dir``) and checkpoints.

    Ordering is the object's business: :meth:`restore` runs before the first epoch (the curriculum's
    set-up, which may load pretrained weights, has already run, so the checkpoint has the last word),
    and the evaluation loaders and the TensorBoard run are made as the first epoch starts, after any
    restore. (The DDP wrapper comes with the trainer, before the curriculum's set-up, while every
    parameter still trains.) Use it as a context manager, or call :meth:`close` at the end.
    """

    def __init__(self, config: Mapping[str, Any], *, data: PreparedData | None = None,
                 worker: Worker | None = None, log_dir: str | Path | None = None):
        self.config = dict(config)
        self.worker = worker or Worker()
        self.data = trial_data(config, data)
        seed_everything(config["seed"])  # after the data: the shared and the prepared path start alike
        # Wrapped for data parallelism while every parameter still trains (no stage applied yet), so DDP
        # syncs all of them once they are unfrozen.
        self.trainer = build_trainer(config, build_model(config, self.data), self.worker.device,
                                     self.worker.parallelize)
        self.log_dir = log_dir
        self.state = TrialState()
        # Page-locked batches on a GPU, so the trainer's non_blocking copies overlap with compute.
        self._pin_memory = self.worker.device.type == "cuda"
        self._base_loader = self.data.train_loader(pin_memory=self._pin_memory)
        self._current = dict(config)  # the config as the epochs run it (a replay changes it)
        first_epoch = {**config, **scheduled_values(config["replay_schedule"], 0)}  # a replay starts as the trial did
        self._runner = build_curriculum(first_epoch, self.trainer, self._base_loader)
        self._runner_params = curriculum_params(first_epoch)
        self._evaluation: _Evaluation | None = None  # made as the first epoch starts

    @property
    def epoch(self) -> int:
        """Epochs completed (after a restore, the checkpoint's)."""
        return self.trainer.epoch

    @property
    def writes_checkpoints(self) -> bool:
        return self.worker.rank == 0

    def restore(self, directory: str | Path) -> None:
        """Continue from the checkpoint in ``directory``, with this trial's config as the hyperparameters.

        After a restore the trial's *current* config sets the hyperparameters, not the checkpoint's:
        that is how a PBT clone takes the donor's weights with its own perturbed values. The curriculum
        is likewise built from the current ``curriculum.*`` parameters and continues from the
        checkpoint's curriculum state (the stage it reached, the epoch it switched at).
        """
        if self._evaluation is not None:
            raise RuntimeError("Trial.restore must come before the first epoch")
        self.state = load_trial_checkpoint(directory, self.trainer)
        apply_hyperparameters(self.trainer, self.config)
        self._runner.load_state_dict(self.state.curriculum)
        logger.info("restored from %s at epoch %d", directory, self.trainer.epoch)

    def run(self, end: int, report: Callable[[dict[str, float]], None]) -> None:
        """Run the epochs up to ``end`` (epochs completed) through the trainer's loop
        (:meth:`~tcnvae.trainer.TCNVAETrainer.train_epochs`), handing each epoch's metrics to ``report``
        (they are also logged to TensorBoard on rank 0).

        Before each epoch: its replayed hyperparameters (if any) and the curriculum's stage. After it:
        validation, the target slice (with a target domain) or, with an unlabelled target, the
        label-free selection scores (:mod:`tcnvae.tuning.selection`), the curriculum's record.
        """
        if self.epoch >= end:
            return
        self._evaluation = self._evaluation or self._start()
        self.trainer.train_epochs(self._evaluation.train_loader, end, before_epoch=self._before_epoch,
                                  after_epoch=lambda: report(self._after_epoch()))

    def run_epoch(self) -> dict[str, float]:
        """Run the next epoch (:meth:`run`) and return its metrics."""
        reported: list[dict[str, float]] = []
        self.run(self.epoch + 1, reported.append)
        return reported[0]

    def _before_epoch(self, epoch: int) -> None:
        """Apply epoch ``epoch``'s replayed hyperparameters and curriculum stage, and record them."""
        self._apply_replay(epoch)
        self.state.hyperparameter_history.append(
            {**history_entry(epoch, self._current),
             **{key: value for key, value in self._current.items() if key.startswith(CURRICULUM_PREFIX)}})
        stage = self._runner.before_epoch(epoch)
        _check_batches_per_worker(self._base_loader, self.worker.world_size, stage.name)

    def _after_epoch(self) -> dict[str, float]:
        """The metrics of the epoch just trained, recorded for the curriculum and TensorBoard."""
        evaluation, runner = self._evaluation, self._runner
        metrics = self._evaluate(evaluation)
        stage_metrics = runner.metrics()
        if evaluation.reports_curriculum:
            metrics.update(stage_metrics)
        previous_stage = (runner.last_metrics or {}).get(STAGE_METRIC)
        runner.after_epoch({**metrics, **stage_metrics})  # the next decision reads these
        self.state.curriculum = runner.state_dict()
        if evaluation.board is not None:
            evaluation.board.log_epoch(metrics, self.trainer.epoch, self.trainer.last_val_metrics["confusion"],
                                       self.data.activity_names)
            if evaluation.reports_curriculum and stage_metrics[STAGE_METRIC] != previous_stage:
                evaluation.board.log_stage(runner.stage, self.trainer.epoch, self.config["max_epochs"])
        return metrics

    def _apply_replay(self, epoch: int) -> None:
        """Set the epoch's replayed hyperparameters, if the replay schedule has any; rebuild the
        curriculum when they change its parameters."""
        replayed = scheduled_values(self.config["replay_schedule"], epoch)
        if not replayed:
            return
        self._current.update(replayed)
        apply_hyperparameters(self.trainer, self._current)
        if curriculum_params(self._current) != self._runner_params:
            self._runner = _rebuilt_curriculum(self._runner, self._current, self.trainer, self._base_loader)
            self._runner_params = curriculum_params(self._current)

    def _evaluate(self, evaluation: _Evaluation) -> dict[str, float]:
        """The metrics of the epoch just trained: the target slice, the unlabelled target's analysis
        scores, validation (whose results the trainer keeps), the label-free scores."""
        trainer = self.trainer
        target_accuracy = (trainer.evaluate(evaluation.target_loader)["accuracy"]
                           if evaluation.target_loader is not None else None)
        analysis = (unlabelled_target_metrics(trainer, evaluation.test_loader) if evaluation.test_loader is not None
                    else {})
        trainer.validate(evaluation.val_loader)
        metrics = {**epoch_metrics(trainer, target_accuracy), **analysis}
        if evaluation.selection is not None:
            metrics.update(evaluation.selection.metrics(trainer.model, self.worker.device))
        return metrics

    def save(self, directory: Path) -> None:
        """Write the trial's checkpoint (:data:`CHECKPOINT_FILE`) into ``directory``."""
        save_trial_checkpoint(directory, self.trainer, self.state, self._current)

    def close(self) -> None:
        """End the TensorBoard run: a success when the trial ran all its epochs."""
        if self._evaluation is not None and self._evaluation.board is not None:
            self._evaluation.board.close(completed=self.trainer.epoch == self.config["max_epochs"])

    def __enter__(self) -> Trial:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _start(self) -> _Evaluation:
        config, data, worker, trainer = self.config, self.data, self.worker, self.trainer
        trainer.metadata = {"data": data.metadata(), "config": dict(config)}  # saved with every checkpoint
        _check_batches_per_worker(self._base_loader, worker.world_size)
        unlabelled_target = config["adapt"] == "unlabelled"
        return _Evaluation(
            train_loader=(RankShard(self._base_loader, worker.rank, worker.world_size) if worker.world_size > 1
                          else self._base_loader),
            val_loader=data.val_loader(pin_memory=self._pin_memory),
            target_loader=(target_slice(data, config["target_labelled_fraction"], config["seed"], self._pin_memory)
                           if config["target_domain"] and not unlabelled_target else None),
            test_loader=data.test_loader(pin_memory=self._pin_memory) if unlabelled_target else None,
            selection=_label_free_selection(data, config["seed"], self._pin_memory) if selects_without_labels(config) else None,
            reports_curriculum=config["curriculum"] != "none",  # the baseline's stage never changes: nothing to draw
            board=(TrialBoard(self.log_dir, config, first_step=trainer.epoch + 1)
                   if self.log_dir is not None and worker.rank == 0 else None),
        )


@dataclass
class _Evaluation:
    """What a trial makes as its first epoch starts: its training shard, the evaluation loaders and
    scores, and its TensorBoard run."""

    train_loader: Any
    val_loader: WindowLoader
    target_loader: WindowLoader | None
    test_loader: WindowLoader | None
    selection: Any  # a LabelFreeSelection, or None
    reports_curriculum: bool
    board: TrialBoard | None


def _label_free_selection(data: PreparedData, seed: int, pin_memory: bool) -> Any:
    """:class:`~tcnvae.tuning.selection.LabelFreeSelection`, imported here: it needs scikit-learn (with
    SciPy), which would add about a second to the start of every trial process, most of which never select
    without labels."""
    from tcnvae.tuning.selection import LabelFreeSelection

    return LabelFreeSelection(data, seed, pin_memory)


def run_epochs(trial: Trial, report: Report, *, restore_dir: str | Path | None = None,
               until_epoch: int | None = None) -> TrialState:
    """Drive ``trial`` from its start, or from the checkpoint in ``restore_dir``, to ``max_epochs``
    (``until_epoch`` stops earlier; the schedules still span ``max_epochs``), then close it.

    Every epoch's metrics go to ``report``; every ``checkpoint_interval`` epochs and at the last one
    a checkpoint directory goes with them (None otherwise, and on ranks that write none). Returns the
    final trial state.
    """
    with trial:
        if restore_dir is not None:
            trial.restore(restore_dir)
        end = trial.config["max_epochs"] if until_epoch is None else min(until_epoch, trial.config["max_epochs"])

        def report_epoch(metrics: dict[str, float]) -> None:
            if not (trial.writes_checkpoints and checkpoint_due(trial.epoch, trial.config["checkpoint_interval"], end)):
                report(metrics, None)
                return
            with tempfile.TemporaryDirectory(prefix="tcnvae-checkpoint-") as directory:
                trial.save(Path(directory))
                report(metrics, Path(directory))

        trial.run(end, report_epoch)
    return trial.state


def run_trial(config: Mapping[str, Any], report: Report, *, restore_dir: str | Path | None = None,
              log_dir: str | Path | None = None, worker: Worker | None = None,
              until_epoch: int | None = None, data: PreparedData | None = None) -> TrialState:
    """Validate ``config`` and run one :class:`Trial` of it through :func:`run_epochs`: the loop
    without Ray, and what each Ray Train worker of a multi-worker trial runs.

    With a curriculum other than ``none``, each epoch's metrics include the stage (``curriculum/stage``,
    the index of the stage in order of first appearance) and its multipliers and shares
    (``curriculum/*``), and TensorBoard gets a text entry at every change of stage.
    """
    trial = Trial(validate_config(config), data=data, worker=worker, log_dir=log_dir)
    return run_epochs(trial, report, restore_dir=restore_dir, until_epoch=until_epoch)
