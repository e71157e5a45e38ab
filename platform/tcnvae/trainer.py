"""The TCN-VAE training loop: ``total = vae + λ_act·activity + λ_dom·domain``.

One loop trains every model of the project: :meth:`TCNVAETrainer.train_epoch` runs each batch through
forward → objective (:class:`~tcnvae.objective.Objective`, the one loss formula) → backward → clip →
step, and :meth:`TCNVAETrainer.train_epochs` runs epochs of it with ``before_epoch``/``after_epoch``
hooks, where Tune trials (:mod:`tcnvae.tuning.trial`), the final model, pretraining, :meth:`fit` and
the benchmarks attach curricula, validation, reports and checkpoints.

The public API is the original training module's (``TCNVAETrainer(model, device, learning_rate)``,
``train_epoch``, ``validate``, ``vae_loss``, the ``beta``/``lambda_act``/``lambda_dom``/``optimizer``/
``scheduler`` attributes, ``OvernightTrainer``), so scripts written against it keep working. A
configured run passes the rest at construction: its optimizer, scheduler, :class:`~tcnvae.objective.Objective`
(the loss, one object), precision and data-parallel wrapper. Everything a run needs to be judged is
observable: ``last_train_metrics`` and ``last_val_metrics`` after each call, ``history`` after each
epoch of :meth:`TCNVAETrainer.fit`, and :meth:`TCNVAETrainer.evaluate` returns metrics without
changing anything.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn, optim

from tcnvae import learning_rates
from tcnvae.checkpoints import (
    atomic_write,
    capture_rng_state,
    check_writable_folder,
    load_checkpoint,
    load_newest_intact,
    restore_rng_state,
    save_checkpoint,
)
from tcnvae.data.metrics import classification_report
from tcnvae.model import TCNVAE
from tcnvae.objective import LOSS_TERMS, UNLABELLED, Objective, adversarial_alpha, kl_divergence, reconstruction
from tcnvae.weight_average import WeightAverage

logger = logging.getLogger(__name__)

__all__ = ["LOSS_TERMS", "PRECISIONS", "UNLABELLED", "NonFiniteDataError", "Objective", "OvernightTrainer",
           "TCNVAETrainer", "TrainingDivergedError", "TrainingHealthWarning", "adversarial_alpha",
           "resolve_precision"]

PRECISIONS = ("off", "bf16", "fp16", "auto")
"""Mixed-precision modes of ``TCNVAETrainer.mixed_precision``; "auto" picks per device (see :func:`resolve_precision`)."""


def resolve_precision(requested: str, device: torch.device | str, bf16_supported: bool | None = None) -> str:
    """The precision ("off", "bf16" or "fp16") that ``requested`` means on ``device``.

    "auto" is bf16 on a GPU that supports it (Ampere and later: same exponent range as fp32, so no loss
    scaling), fp16 with a gradient scaler on older GPUs, and off on a CPU, where bf16 autocast is often
    slower than fp32; bf16 on a CPU runs only when asked for. fp16 has no CPU kernels worth using and
    needs a GPU. ``bf16_supported`` overrides the CUDA query (for tests and planning).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"mixed_precision={requested!r}: expected one of {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if device.type != "cuda":
        if requested == "fp16":
            raise ValueError(f"mixed_precision='fp16' needs a CUDA GPU, but the device is {device}; "
                             "use 'bf16' (CPU autocast), 'auto' (off on a CPU) or 'off'")
        return "off" if requested == "auto" else requested
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_bf16_supported()
    if requested == "auto":
        return "bf16" if bf16_supported else "fp16"
    if requested == "bf16" and not bf16_supported:
        raise ValueError(f"mixed_precision='bf16': the GPU {device} does not support bf16; use 'fp16' or 'auto'")
    return requested


class TrainingDivergedError(RuntimeError):
    """Raised when the loss stays non-finite after repeated learning-rate reductions."""


class TrainingHealthWarning(UserWarning):
    """KL collapse, near-chance accuracy and other signs that a run is not learning."""


class NonFiniteDataError(ValueError):
    """Raised when batches keep arriving with NaN or infinite inputs: a data problem, not divergence."""


def _objective_setting(name: str) -> property:
    """A trainer attribute that reads and sets one setting of the trainer's :class:`Objective`, checked
    by the objective (a negative β or λ, say, is refused)."""

    def get(self: TCNVAETrainer) -> Any:
        return getattr(self.objective, name)

    def set_(self: TCNVAETrainer, value: Any) -> None:
        try:
            self.objective = replace(self.objective, **{name: value})
        except ValueError as error:
            raise ValueError(f"trainer.{error}") from None

    return property(get, set_, doc=f"The objective's ``{name}`` (see :class:`~tcnvae.objective.Objective`).")


class _EpochTally:
    """Running sums over one training epoch: its steps and the batches it skipped, for ``last_train_metrics``."""

    AVERAGED = ("total", "vae", *(term for term in LOSS_TERMS if term != "activity"))
    """Averaged per step; the activity loss is averaged per labelled window instead."""

    def __init__(self, lr: float) -> None:
        self.lr = lr  # the rate the epoch started at
        self.sums = dict.fromkeys((*self.AVERAGED, "beta", "alpha"), 0.0)
        self.activity_sum = 0.0
        self.steps = self.labelled = self.unlabelled = self.domain_correct = self.domain_seen = 0
        self.skipped = dict.fromkeys(("nonfinite", "overflow", "bad_input"), 0)

    def add(self, terms: Mapping[str, torch.Tensor], activity_labels: torch.Tensor, domain_labels: torch.Tensor,
            domain_logits: torch.Tensor, beta: float, alpha: float) -> None:
        self.steps += 1
        for key in self.AVERAGED:
            self.sums[key] += terms[key].item()
        self.sums["beta"] += beta
        self.sums["alpha"] += alpha
        batch_labelled = int((activity_labels >= 0).sum())
        self.labelled += batch_labelled
        self.unlabelled += len(activity_labels) - batch_labelled
        self.activity_sum += terms["activity"].item() * batch_labelled
        known = domain_labels >= 0
        self.domain_correct += (domain_logits.argmax(1)[known] == domain_labels[known]).sum().item()
        self.domain_seen += known.sum().item()

    def metrics(self) -> dict[str, float]:
        return {
            **{key: value / max(self.steps, 1) for key, value in self.sums.items()},
            "activity": self.activity_sum / self.labelled if self.labelled else float("nan"),
            "domain_accuracy": self.domain_correct / self.domain_seen if self.domain_seen else float("nan"),
            "labelled": self.labelled,
            "unlabelled": self.unlabelled,
            "steps": self.steps,
            "lr": self.lr,
            "skipped_steps": self.skipped["nonfinite"],
            "nonfinite_input_batches": self.skipped["bad_input"],
            "overflow_steps": self.skipped["overflow"],
        }


class TCNVAETrainer:
    """Trains a :class:`~tcnvae.model.TCNVAE` on batches of ``(data, activity_labels, domain_labels)``.

    ``TCNVAETrainer(model, device, learning_rate)`` is the original trainer: Adam at ``learning_rate``,
    no scheduler, the original loss weights. A configured run gives the rest at construction:
    ``optimizer`` (over ``model``'s parameters; ``learning_rate`` is then unused), ``scheduler``
    (built from that optimizer), ``objective``, ``precision`` (:data:`PRECISIONS`), ``parallelize``
    (wraps the model for data-parallel training, e.g. ``ray.train.torch.prepare_model``: the training
    forward pass runs through ``forward_module``, evaluation and checkpoints through ``model``),
    ``grad_clip`` (None: no clipping) and ``input_noise`` (std of Gaussian noise on training inputs;
    the clean input is the reconstruction target), ``weight_average_epochs`` (0: off; else the time
    constant, in epochs, of an EMA of the weights that the model holds between epochs, so evaluation,
    checkpoints and exports all read the averaged weights: :mod:`tcnvae.weight_average`).

    Activity labels of -1 (:data:`UNLABELLED`) mark unlabelled windows: they train the VAE and the
    domain head but not the activity head, and metrics count them apart (``labelled``/``unlabelled``).
    Domain labels of -1 (a window whose domain the domain head does not know) are ignored by the
    domain loss. Every batch is checked first: labels must be integers within the model's classes
    (or -1), and a batch with NaN or infinite inputs is skipped and counted as a data problem (the
    learning rate is halved only for a non-finite loss on finite inputs). Replace ``optimizer`` or
    ``scheduler`` after construction as you would on any trainer; a scheduler built from
    ``trainer.optimizer`` is stepped once per epoch by :meth:`train_epoch` (``ReduceLROnPlateau`` by
    :meth:`validate`, with the validation loss). Learning rates change only through
    :meth:`set_learning_rate` and :meth:`set_lr_multipliers` (:mod:`tcnvae.learning_rates`).
    """

    def __init__(self, model: TCNVAE, device: torch.device | str, learning_rate: float = 1e-3, *,
                 optimizer: optim.Optimizer | None = None, scheduler: Any = None, objective: Objective | None = None,
                 precision: str = "off", parallelize: Callable[[nn.Module], nn.Module] | None = None,
                 grad_clip: float | None = 1.0, input_noise: float = 0.0, weight_average_epochs: float = 0.0,
                 verbose: bool = True):
        if not (isinstance(learning_rate, (int, float)) and learning_rate > 0 and np.isfinite(learning_rate)):
            raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
        self.device = torch.device(device)
        self._model = model.to(self.device)
        # What the training forward pass runs through: the model, or its data-parallel wrapper (which
        # shares the model's parameters and syncs their gradients across workers).
        self.forward_module: nn.Module = parallelize(self._model) if parallelize is not None else self._model
        # Between epochs the model holds the EMA of its weights (tcnvae.weight_average); None: the last weights.
        self.weight_average = WeightAverage(self._model, weight_average_epochs) if weight_average_epochs else None
        self.objective = objective if objective is not None else Objective()
        self.grad_clip = grad_clip
        self.input_noise = input_noise
        self.verbose = verbose
        self.log_interval = 100
        self.patience: int | None = None
        self.best_model_path: str | Path | None = None
        self.max_consecutive_nonfinite = 5
        self.max_nonfinite_input_batches = 3  # batches with NaN/inf inputs tolerated (skipped) before raising
        self.nonfinite_input_batches: list[tuple[int, int]] = []  # (epoch, batch) of each one skipped
        self.nonfinite_lr_factor = 0.5
        self.mixed_precision = precision
        self.metadata: dict[str, Any] = {}  # label mapping, normalisation, config: saved with every checkpoint
        self._scheduler_factory: Callable[[optim.Optimizer], Any] | None = None
        self._scheduler: Any = None
        self.optimizer = optimizer if optimizer is not None else optim.Adam(self._model.parameters(), lr=learning_rate)
        if scheduler is not None:
            self.scheduler = scheduler
        self.epoch = 0  # epochs completed
        self.best_val_accuracy: float | None = None
        self.epochs_since_best = 0
        self.history: list[dict[str, Any]] = []
        self.last_train_metrics: dict[str, Any] = {}
        self.last_val_metrics: dict[str, Any] = {}
        self.applied_beta = self.objective.beta_at(0.0)  # β as last applied, × the schedule
        self.alpha = 0.0  # the gradient-reversal strength of the last training batch
        self._nonfinite_streak = 0
        self._warned_short_windows = False

    @property
    def model(self) -> TCNVAE:
        """The model being trained (never a wrapper of it: see ``forward_module``)."""
        return self._model

    beta = _objective_setting("beta")
    lambda_act = _objective_setting("lambda_act")
    lambda_dom = _objective_setting("lambda_dom")
    beta_schedule = _objective_setting("beta_schedule")
    alpha_ramp_epochs = _objective_setting("alpha_ramp_epochs")
    label_smoothing = _objective_setting("label_smoothing")
    lambda_ent = _objective_setting("lambda_ent")
    loss_multipliers = _objective_setting("loss_multipliers")

    # -- optimizer and scheduler: replaceable, and kept consistent with each other -------------------
    @property
    def optimizer(self) -> optim.Optimizer:
        return self._optimizer

    @optimizer.setter
    def optimizer(self, optimizer: optim.Optimizer) -> None:
        self._optimizer = optimizer
        if self._scheduler_factory is not None:  # a trainer-made scheduler follows the new optimizer
            self._scheduler = self._scheduler_factory(optimizer)

    @property
    def scheduler(self) -> Any:
        return self._scheduler

    @scheduler.setter
    def scheduler(self, scheduler: Any) -> None:
        self._scheduler_factory = None
        self._scheduler = scheduler

    def _check_scheduler(self) -> None:
        bound = getattr(self._scheduler, "optimizer", self._optimizer)
        if bound is not self._optimizer:
            raise ValueError(
                "trainer.scheduler is bound to a different optimizer than trainer.optimizer; "
                "build the scheduler from trainer.optimizer after replacing the optimizer"
            )

    # -- the learning rate: one writer --------------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """The current rate of the first param group (a grouped optimizer's activity head: the run's
        reference rate, undiscounted by any curriculum multiplier of the encoder)."""
        return self._optimizer.param_groups[0]["lr"]

    def set_learning_rate(self, learning_rate: float) -> None:
        """A new configured rate (PBT, a replayed epoch), at the scheduler's current progress and each
        param group's multiplier (:func:`tcnvae.learning_rates.set_learning_rate`)."""
        learning_rates.set_learning_rate(self._optimizer, self._scheduler, learning_rate)

    def set_lr_multipliers(self, multipliers: Mapping[str, float]) -> None:
        """Per-part rates of a grouped optimizer (a curriculum stage), on the scheduler's curve
        (:func:`tcnvae.learning_rates.set_lr_multipliers`)."""
        learning_rates.set_lr_multipliers(self._optimizer, self._scheduler, multipliers)

    # -- mixed precision -----------------------------------------------------------------------------
    @property
    def mixed_precision(self) -> str:
        """The precision in use: "off", "bf16" or "fp16". Set it to any of :data:`PRECISIONS`; "auto"
        resolves for this trainer's device (:func:`resolve_precision`). fp16 brings a ``GradScaler``."""
        return self._precision

    @mixed_precision.setter
    def mixed_precision(self, requested: str) -> None:
        self._precision = resolve_precision(requested, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type) if self._precision == "fp16" else None

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self._precision == "off":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self._precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    # -- losses --------------------------------------------------------------------------------------
    def vae_loss(self, recon_x: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor):
        """``(recon + β·KL, recon, KL)``.

        ``recon`` is the mean squared error over all elements. ``KL`` is KL(q(z|x) ‖ N(0, I)) summed over
        latent dimensions and averaged over the batch (per sample), so a given β weighs the same at
        every batch size. β here is the applied one, ``beta × beta_schedule(progress)``.
        """
        terms = {"recon": reconstruction(recon_x, x).mean(), "kl": kl_divergence(mu, logvar).mean()}
        return self.objective.total(terms, self.applied_beta), terms["recon"], terms["kl"]

    def _forward(self, module: nn.Module, data: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(recon, mu, logvar, activity_logits, domain_logits)`` of ``module`` at the current α, run in
        the trainer's precision and returned in fp32: exp(logvar) and the loss sums overflow in fp16."""
        with self._autocast():
            outputs = module(data, self.alpha)
        return tuple(output.float() for output in outputs)

    def _batch_loss(self, outputs: tuple[torch.Tensor, ...], target: torch.Tensor, activity_labels: torch.Tensor,
                    domain_labels: torch.Tensor,
                    multipliers: Mapping[str, float] | None = None) -> dict[str, torch.Tensor]:
        """The objective's terms of one batch, ``total`` (what is minimised: each term weighed, and
        multiplied by ``multipliers``) and ``vae`` (recon + β·KL), at the applied β."""
        objective = self.objective
        terms = objective.batch_terms(objective.window_terms(outputs, target, activity_labels, domain_labels),
                                      activity_labels, domain_labels)
        total = objective.total(terms, self.applied_beta, multipliers)
        vae = objective.total({"recon": terms["recon"], "kl": terms["kl"]}, self.applied_beta)
        return {"total": total, "vae": vae, **terms}

    def _check_batch(self, batch: Iterable[torch.Tensor], batch_idx: int, split: str):
        """``(data, activity, domain)`` after checking what torch would report obscurely or not at all:
        the labels' type and range, and the window length against the encoder's receptive field."""
        data, activity_labels, domain_labels = batch
        model = self._model
        sizes = {"activity": (activity_labels, model.activity_classifier[-1].out_features,
                              "-1 marks an unlabelled window"),
                 "domain": (domain_labels, model.domain_classifier[-1].out_features,
                            "-1 marks a window of unknown domain")}
        for name, (labels, classes, note) in sizes.items():
            labels = torch.as_tensor(labels)
            if labels.is_floating_point() or labels.is_complex():
                raise TypeError(f"{split} batch {batch_idx}: {name} labels are {labels.dtype}; labels must be "
                                f"integer class ids (a float label would be silently truncated): convert them "
                                f"with .long() after checking they are whole numbers")
            outside = (labels < UNLABELLED) | (labels >= classes)
            if outside.any():
                raise ValueError(f"{split} batch {batch_idx}: {name} label {int(labels[outside][0])} is outside "
                                 f"0..{classes - 1} (the model has {classes} {name} classes; {note}); check the "
                                 f"label encoding or the model's num_{'activities' if name == 'activity' else 'domains'}")
        if data.ndim == 3 and data.shape[1] == 0:
            raise ValueError(f"{split} batch {batch_idx}: windows of length 0 (data shape {tuple(data.shape)}, "
                             "expected (batch, time, channels) with time >= 1)")
        receptive_field = model.tcn_encoder.receptive_field
        if data.ndim == 3 and data.shape[1] < receptive_field and not self._warned_short_windows:
            self._warned_short_windows = True
            self._warn(f"windows of {data.shape[1]} samples are shorter than the encoder's receptive field of "
                       f"{receptive_field} samples: its deepest dilations see only padding. Use longer windows "
                       "or fewer encoder blocks / a smaller kernel_size")
        return data, activity_labels, domain_labels

    def _batch_to_device(self, batch: Iterable[torch.Tensor]):
        data, activity_labels, domain_labels = batch
        return (data.to(self.device, non_blocking=True).float(),
                activity_labels.to(self.device, non_blocking=True).long(),
                domain_labels.to(self.device, non_blocking=True).long())

    # -- the training loop: every run of the project trains through train_epoch ------------------------
    def train_epoch(self, train_loader: Iterable, epoch: int) -> float:
        """Train one epoch; returns the average total loss over the steps taken.

        Each batch: forward → objective → backward → clip → step. The component losses, applied β, α,
        learning rate, the domain head's accuracy, the numbers of labelled and unlabelled windows
        trained on and of batches skipped land in ``last_train_metrics``. The activity loss there is
        averaged over labelled windows (NaN when there were none).
        """
        num_batches = self._open_epoch(train_loader, epoch)
        tally = _EpochTally(lr=self.learning_rate)
        for batch_idx, batch in enumerate(train_loader):
            data, activity_labels, domain_labels = self._check_batch(batch, batch_idx, f"epoch {epoch}, training")
            if self._skip_nonfinite_input(data, epoch, batch_idx):
                tally.skipped["bad_input"] += 1
                continue
            data, activity_labels, domain_labels = self._batch_to_device((data, activity_labels, domain_labels))

            # forward → objective: α and β move every step; the clean window is the reconstruction target
            self.alpha = self.objective.alpha_at(batch_idx, epoch, num_batches)
            self.applied_beta = self.objective.beta_at(epoch + batch_idx / num_batches)
            noisy = data + self.input_noise * torch.randn_like(data) if self.input_noise > 0 else data
            outputs = self._forward(self.forward_module, noisy)
            terms = self._batch_loss(outputs, data, activity_labels, domain_labels, self.objective.loss_multipliers)
            loss = terms["total"]

            # backward → clip → step; a non-finite loss or gradient skips the step and lowers the rate
            self._optimizer.zero_grad(set_to_none=True)
            finite = bool(torch.isfinite(loss))
            if finite:
                if self.scaler is None:
                    loss.backward()
                else:  # fp16: backward on the scaled loss, then unscaled so that clipping sees true gradients
                    self.scaler.scale(loss).backward()
                    self.scaler.unscale_(self._optimizer)
                if self.grad_clip is not None:
                    norm = nn.utils.clip_grad_norm_(self._model.parameters(), self.grad_clip)
                    # With fp16 an infinite norm is a scale too high for this step, not divergence:
                    # the scaler skips the step and lowers the scale itself.
                    finite = self.scaler is not None or bool(torch.isfinite(norm))
            if not finite:
                self._back_off(epoch, batch_idx, loss)
                tally.skipped["nonfinite"] += 1
                continue
            self._nonfinite_streak = 0
            if self.scaler is None:
                self._optimizer.step()
            else:
                scale = self.scaler.get_scale()
                self.scaler.step(self._optimizer)
                self.scaler.update()
                if self.scaler.get_scale() < scale:  # the scaler skipped the step: gradients overflowed at this scale
                    tally.skipped["overflow"] += 1
                    continue

            if self.weight_average is not None:
                self.weight_average.update(self._model)
            tally.add(terms, activity_labels, domain_labels, outputs[4], self.applied_beta, self.alpha)
            if (batch_idx + 1) % self.log_interval == 0:
                self._say(f"Epoch: {epoch}, Batch: {batch_idx + 1}, VAE Loss: {terms['vae'].item():.4f}, "
                          f"Activity Loss: {terms['activity'].item():.4f}, "
                          f"Domain Loss: {terms['domain'].item():.4f}")
        return self._close_epoch(tally, epoch)

    def _open_epoch(self, train_loader: Iterable, epoch: int) -> int:
        """Ready epoch ``epoch``: the loader's order, the weight average, training mode; returns the
        number of batches."""
        self._check_scheduler()
        if hasattr(train_loader, "set_epoch"):  # seeded per-epoch order: resumes replay the same batches
            train_loader.set_epoch(epoch)
        num_batches = len(train_loader)
        if num_batches == 0:
            raise ValueError("train_loader yields no batches; is the training split empty?")
        if self.weight_average is not None:
            self.weight_average.start_epoch(self._model, num_batches)
        self.forward_module.train()
        return num_batches

    def _close_epoch(self, tally: _EpochTally, epoch: int) -> float:
        """End epoch ``epoch``: refuse one that took no step, step the scheduler, leave the averaged
        weights in the model, keep the metrics; returns the average total loss."""
        skipped = tally.skipped
        if tally.steps == 0 and (skipped["nonfinite"] or skipped["bad_input"]):
            error = TrainingDivergedError if skipped["nonfinite"] else NonFiniteDataError
            raise error(f"epoch {epoch}: all {skipped['nonfinite'] + skipped['bad_input']} batches were skipped "
                        f"({skipped['nonfinite']} with a non-finite loss, {skipped['bad_input']} with NaN/inf inputs), "
                        "so no step was taken; check the inputs for NaNs, lower the learning rate or beta, or "
                        "tighten gradient clipping")
        if self._scheduler is not None and not isinstance(self._scheduler, optim.lr_scheduler.ReduceLROnPlateau):
            self._scheduler.step()
        if self.weight_average is not None:
            self.weight_average.end_epoch(self._model)
        self.last_train_metrics = tally.metrics()
        if tally.steps and self.last_train_metrics["kl"] < 0.01:
            self._warn(f"KL collapse at epoch {epoch}: KL divergence {self.last_train_metrics['kl']:.4f} < 0.01 per "
                       "sample; the latent carries almost no information. Increase beta gradually "
                       "(a beta schedule) or check the latent dimension size.")
        return self.last_train_metrics["total"]

    def _skip_nonfinite_input(self, data: torch.Tensor, epoch: int, batch_idx: int) -> bool:
        """True when the batch has NaN/inf inputs and is skipped. Bad inputs are a data problem, not
        divergence, so the learning rate stays; the batch is counted and, once there have been
        ``max_nonfinite_input_batches`` such batches, training stops naming them."""
        bad_windows = ~torch.isfinite(data).flatten(1).all(dim=1)
        if not bad_windows.any():
            return False
        self.nonfinite_input_batches.append((epoch, batch_idx))
        where = ", ".join(f"epoch {e} batch {b}" for e, b in self.nonfinite_input_batches)
        positions = torch.nonzero(bad_windows).flatten().tolist()
        problem = (f"batch {batch_idx} of epoch {epoch} has NaN or infinite input values in {len(positions)} of its "
                   f"{len(data)} windows (positions {positions[:5]} in the batch)")
        if len(self.nonfinite_input_batches) >= self.max_nonfinite_input_batches:
            raise NonFiniteDataError(f"{problem}; {len(self.nonfinite_input_batches)} batches have had non-finite "
                                     f"inputs ({where}): the data contain NaN or inf. Clean or drop those windows "
                                     "(a WindowSet refuses them) before training")
        self._say(f"Skipped {problem}: a data problem, not divergence (the learning rate stays)")
        return True

    def _back_off(self, epoch: int, batch_idx: int, loss: torch.Tensor) -> None:
        """After a non-finite loss or gradient on finite inputs: lower the learning rate, and give up
        after ``max_consecutive_nonfinite`` such steps in a row."""
        self._nonfinite_streak += 1
        learning_rates.rescale(self._optimizer, self._scheduler,
                               [self.nonfinite_lr_factor] * len(self._optimizer.param_groups))
        self._say(f"Non-finite loss ({loss.item()}) at epoch {epoch}, batch {batch_idx}: skipped the step "
                  f"and reduced the learning rate to {self.learning_rate:.3e}")
        if self._nonfinite_streak >= self.max_consecutive_nonfinite:
            raise TrainingDivergedError(
                f"the loss was non-finite for {self._nonfinite_streak} consecutive steps (epoch {epoch}, "
                f"batch {batch_idx}) on finite inputs, even at learning rate {self.learning_rate:.3e}; lower the "
                "learning rate or beta, tighten gradient clipping, or check the inputs' scale (standardise them)"
            )

    @torch.no_grad()
    def evaluate(self, loader: Iterable) -> dict[str, Any]:
        """Deterministic evaluation (heads read μ), changing nothing: no scheduler step, no stored
        metrics, the model left in the mode it was in.

        Returns the loss (the configured objective: the curriculum's multipliers left out, so it
        compares across stages) and the activity accuracy, macro-F1, per-domain and worst-domain
        accuracy, the domain head's accuracy (near chance = a domain-invariant encoder), the
        confusion matrix and the ``labelled``/``unlabelled`` window counts. Unlabelled windows count in
        the loss (reconstruction, KL, domain) but not in accuracy or F1, which are NaN when no window
        is labelled.
        """
        was_training = self._model.training
        self._model.eval()
        try:
            total_loss, batches, predictions = self._evaluation_pass(loader)
        finally:
            self._model.train(was_training)
        if batches == 0:
            raise ValueError("the evaluation loader yields no batches; is the split empty?")
        y_pred, y_true, domain_pred, domain_true = (torch.cat(values).numpy() for values in predictions)
        num_classes = self._model.activity_classifier[-1].out_features
        labelled = y_true >= 0
        report = classification_report(y_true[labelled], y_pred[labelled], num_classes,
                                       domains=domain_true[labelled],
                                       domain_names=getattr(loader, "domain_names", None))
        known = domain_true >= 0
        return {
            **report,
            "loss": total_loss / batches,
            "labelled": int(labelled.sum()),
            "unlabelled": int((~labelled).sum()),
            "domain_classifier_accuracy": float((domain_pred[known] == domain_true[known]).mean())
            if known.any() else float("nan"),
        }

    def _evaluation_pass(self, loader: Iterable) -> tuple[float, int, tuple[list[torch.Tensor], ...]]:
        """The summed loss, the number of batches and (activity predictions, labels, domain
        predictions, labels) over ``loader``."""
        total_loss = 0.0
        batches = 0
        predictions: tuple[list[torch.Tensor], ...] = ([], [], [], [])
        for batch_idx, batch in enumerate(loader):
            data, activity_labels, domain_labels = self._check_batch(batch, batch_idx, "validation")
            bad_windows = ~torch.isfinite(data).flatten(1).all(dim=1)
            if bad_windows.any():
                raise ValueError(
                    f"validation batch {batch_idx}: {int(bad_windows.sum())} of its {len(data)} windows contain NaN or "
                    f"infinite values (first at position {int(torch.nonzero(bad_windows)[0, 0])} in the batch); "
                    "no loss or accuracy can be computed on them: clean or drop those windows")
            data, activity_labels, domain_labels = self._batch_to_device((data, activity_labels, domain_labels))
            outputs = self._forward(self._model, data)
            total_loss += self._batch_loss(outputs, data, activity_labels, domain_labels)["total"].item()
            batches += 1
            for values, tensor in zip(predictions, (outputs[3].argmax(1), activity_labels,
                                                    outputs[4].argmax(1), domain_labels)):
                values.append(tensor.cpu())
        return total_loss, batches, predictions

    def validate(self, val_loader: Iterable) -> tuple[float, float]:
        """:meth:`evaluate` on the validation split, kept in ``last_val_metrics``; returns
        ``(avg_val_loss, activity_accuracy)``. Steps a ``ReduceLROnPlateau`` scheduler with the loss
        and warns when the accuracy is near chance."""
        metrics = self.evaluate(val_loader)
        self.last_val_metrics = metrics
        if isinstance(self._scheduler, optim.lr_scheduler.ReduceLROnPlateau):
            self._scheduler.step(metrics["loss"])
        accuracy = float(metrics["accuracy"])
        num_classes = self._model.activity_classifier[-1].out_features
        if metrics["labelled"] and accuracy <= 1.2 / num_classes:
            self._warn(f"validation accuracy {accuracy:.4f} is near chance (1/{num_classes}); check the data "
                       "preprocessing and label encoding, or increase lambda_act")
        return metrics["loss"], accuracy

    # -- full runs -----------------------------------------------------------------------------------
    def train_epochs(self, train_loader: Iterable, epochs: int, *, before_epoch: Callable[[int], Any] | None = None,
                     after_epoch: Callable[[], bool | None] | None = None) -> None:
        """The loop over epochs that every run goes through, from ``self.epoch`` up to ``epochs``:
        ``before_epoch(epoch)`` (a curriculum's stage, replayed hyperparameters), :meth:`train_epoch`,
        the epoch counted done (``self.epoch`` advances here and nowhere else), then ``after_epoch()``
        (validation, reports, checkpoints, TensorBoard), which ends the run early by returning True."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
        for epoch in range(self.epoch, epochs):
            if before_epoch is not None:
                before_epoch(epoch)
            self.train_epoch(train_loader, epoch)
            self.epoch = epoch + 1
            if after_epoch is not None and after_epoch():
                return

    def fit(self, train_loader: Iterable, val_loader: Iterable, epochs: int,
            on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Train from ``self.epoch`` up to ``epochs`` (:meth:`train_epochs`), validating after each epoch;
        saves the best model on validation accuracy (to ``best_model_path`` when set) and stops early
        after ``patience`` epochs without improvement."""

        def after_epoch() -> bool:
            val_loss, val_accuracy = self.validate(val_loader)
            improved = self.best_val_accuracy is None or val_accuracy > self.best_val_accuracy
            if improved:
                self.best_val_accuracy = val_accuracy
                self.epochs_since_best = 0
            else:
                self.epochs_since_best += 1
            record = {"epoch": self.epoch, "train": dict(self.last_train_metrics),
                      "val": {k: v for k, v in self.last_val_metrics.items() if k != "confusion"},
                      "best_val_accuracy": self.best_val_accuracy, "improved": improved}
            self.history.append(record)
            self._say(f"Epoch {self.epoch}: Train Loss: {self.last_train_metrics['total']:.4f}, "
                      f"Val Loss: {val_loss:.4f}, Val Accuracy: {val_accuracy:.4f}")
            self.end_epoch(record)
            if on_epoch_end is not None:
                on_epoch_end(record)
            if self.patience is not None and self.epochs_since_best >= self.patience:
                self._say(f"Early stopping: no improvement in validation accuracy for {self.patience} epochs "
                          f"(best {self.best_val_accuracy:.4f})")
                return True
            return False

        self.train_epochs(train_loader, epochs, after_epoch=after_epoch)
        return self.history

    def end_epoch(self, record: dict[str, Any]) -> None:
        """Called after each epoch of :meth:`fit`; saves the best model. Subclasses add more."""
        if record["improved"] and self.best_model_path is not None:
            self.save_model(self.best_model_path)

    # -- persistence ---------------------------------------------------------------------------------
    def save_model(self, path: str | Path) -> None:
        save_checkpoint({"model_state": self.model.state_dict(), "model_config": self.model.config,
                         "epoch": self.epoch, "val_accuracy": self.best_val_accuracy,
                         "metadata": self.metadata}, path)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimizer, scheduler, epoch, RNG, history."""
        return {
            "model_state": self.model.state_dict(),
            "model_config": self.model.config,
            "optimizer_state": self._optimizer.state_dict(),
            "scheduler_state": self._scheduler.state_dict() if self._scheduler is not None else None,
            "scaler_state": self.scaler.state_dict() if self.scaler is not None else None,
            # model_state holds the averaged weights then; this, the weights being trained
            "weight_average": self.weight_average.state_dict() if self.weight_average is not None else None,
            "epoch": self.epoch,
            "best_val_accuracy": self.best_val_accuracy,
            "epochs_since_best": self.epochs_since_best,
            **self.objective.state(),  # "loss_weights" and "beta_schedule"
            "rng": capture_rng_state(),
            "history": self.history,
            "metadata": self.metadata,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model_state"])
        self._optimizer.load_state_dict(state["optimizer_state"])
        if state["scheduler_state"] is not None:
            if self._scheduler is None:
                raise ValueError("the checkpoint has a scheduler state but this trainer has no scheduler")
            self._scheduler.load_state_dict(state["scheduler_state"])
        self._load_scaler_state(state.get("scaler_state"))  # absent from checkpoints older than the scaler
        if self.weight_average is not None and state.get("weight_average"):  # else the average starts afresh
            self.weight_average.load_state_dict(state["weight_average"])
        self.epoch = state["epoch"]
        self.best_val_accuracy = state["best_val_accuracy"]
        self.epochs_since_best = state["epochs_since_best"]
        self.objective = self.objective.restored(state)
        self.history = list(state["history"])
        self.metadata = dict(state["metadata"])
        restore_rng_state(state["rng"])

    def _load_scaler_state(self, scaler_state: dict[str, Any] | None) -> None:
        """The fp16 loss scale, when both the checkpoint and this trainer use one. A checkpoint may come
        from another precision (a retried trial on another GPU type under "auto"): the scale is then
        dropped, or starts afresh, since it only means something to fp16."""
        if self.scaler is not None and scaler_state:
            self.scaler.load_state_dict(scaler_state)
        elif (self.scaler is not None) != bool(scaler_state):
            logger.info("checkpoint loss-scaler state %s; this trainer runs %s",
                        "present" if scaler_state else "absent", self._precision)

    def save_checkpoint(self, path: str | Path) -> None:
        save_checkpoint(self.state_dict(), path)

    def load_checkpoint(self, path: str | Path) -> None:
        self.load_state_dict(load_checkpoint(path, map_location=self.device))

    # -- reporting -----------------------------------------------------------------------------------
    def _say(self, message: str) -> None:
        if self.verbose:
            print(message, flush=True)

    def _warn(self, message: str) -> None:
        warnings.warn(message, TrainingHealthWarning, stacklevel=3)


class OvernightTrainer(TCNVAETrainer):
    """The long-run trainer with the tuned defaults of the overnight runs.

    AdamW (lr 3e-4, weight decay 1e-4), cosine annealing with warm restarts (T_0=20, T_mult=2),
    β 0.4, λ_act 2.5, λ_dom 0.05, gradient clipping at 0.8, label smoothing 0.1, patience 50.
    In ``checkpoint_dir`` (checked for writing at construction) it keeps the last
    ``keep_last`` epoch checkpoints and ``best.pt``, resumes exactly from the newest readable one (model,
    optimizer, scheduler, epoch, RNG; an unreadable newer one is named, set aside as ``*.corrupt`` and
    skipped), prints an ETA each epoch and writes every epoch's metrics to ``metrics.jsonl``.
    """

    def __init__(self, model: TCNVAE, device: torch.device | str, learning_rate: float = 3e-4,
                 checkpoint_dir: str | Path = "checkpoints", keep_last: int = 3):
        if not isinstance(keep_last, int) or keep_last < 1:
            raise ValueError(f"keep_last must be a positive integer, got {keep_last!r}")
        super().__init__(model, device, learning_rate,
                         optimizer=optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4),
                         objective=Objective(beta=0.4, lambda_act=2.5, lambda_dom=0.05, label_smoothing=0.1),
                         grad_clip=0.8)
        # Its own scheduler, rebuilt for an optimizer that replaces the AdamW.
        self._scheduler_factory = lambda optimizer: optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=20, T_mult=2)
        self._scheduler = self._scheduler_factory(self.optimizer)
        self.patience = 50
        self.checkpoint_dir = check_writable_folder(checkpoint_dir, "OvernightTrainer checkpoint_dir")
        self.keep_last = keep_last
        self.best_model_path = self.checkpoint_dir / "best.pt"
        self.log_path = self.checkpoint_dir / "metrics.jsonl"
        self._epoch_seconds: list[float] = []
        self._epoch_started = 0.0
        self._target_epochs = 0

    def fit(self, train_loader: Iterable, val_loader: Iterable, epochs: int,
            on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
            resume: bool = True) -> list[dict[str, Any]]:
        """Like :meth:`TCNVAETrainer.fit`, resuming from the newest readable checkpoint when ``resume``."""
        checkpoints = sorted(self.checkpoint_dir.glob("epoch_*.pt"), reverse=True) if resume else []
        if checkpoints:
            latest, state = load_newest_intact(checkpoints, map_location=self.device)
            self.load_state_dict(state)
            self._say(f"Resumed from {latest} at epoch {self.epoch}")
        self._target_epochs = epochs
        self._epoch_started = time.perf_counter()
        return super().fit(train_loader, val_loader, epochs, on_epoch_end)

    def end_epoch(self, record: dict[str, Any]) -> None:
        super().end_epoch(record)
        self.save_checkpoint(self.checkpoint_dir / f"epoch_{self.epoch:05d}.pt")
        for stale in sorted(self.checkpoint_dir.glob("epoch_*.pt"))[:-self.keep_last]:
            stale.unlink()
        now = time.perf_counter()
        self._epoch_seconds.append(now - self._epoch_started)
        self._epoch_started = now
        eta = float(np.mean(self._epoch_seconds)) * (self._target_epochs - self.epoch)
        record["seconds"] = self._epoch_seconds[-1]
        record["eta_seconds"] = eta
        # Rewritten whole and atomically: a kill never leaves a torn last line.
        text = "".join(json.dumps(entry, sort_keys=True, default=float) + "\n" for entry in self.history)
        atomic_write(self.log_path, lambda stream: stream.write(text.encode()))
        self._say(f"Epoch {self.epoch}/{self._target_epochs}: {record['seconds']:.1f}s, "
                  f"ETA {_format_seconds(eta)}, domain head accuracy "
                  f"{record['val']['domain_classifier_accuracy']:.3f} (near chance = domain-invariant)")


def _format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
