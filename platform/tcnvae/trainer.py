"""The TCN-VAE training loop: ``total = vae + λ_act·activity + λ_dom·domain``.

The public API is the original training module's (``TCNVAETrainer(model, device, learning_rate)``,
``train_epoch``, ``validate``, the ``beta``/``lambda_act``/``lambda_dom``/``optimizer``/``scheduler``
attributes, ``OvernightTrainer``), so scripts written against it keep working. Everything a run
needs to be judged is observable: ``last_train_metrics`` and ``last_val_metrics`` after each call,
``history`` after each epoch of :meth:`TCNVAETrainer.fit`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn, optim

from tcnvae.beta_schedules import BetaSchedule, Constant, make_beta_schedule
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

logger = logging.getLogger(__name__)

LOSS_TERMS = ("recon", "kl", "activity", "domain")
"""The terms of the training objective that ``TCNVAETrainer.loss_multipliers`` weighs."""
_UNWEIGHTED = dict.fromkeys(LOSS_TERMS, 1.0)


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


UNLABELLED = -1
"""Activity label of a window without one: it trains reconstruction, KL and the domain head, never
the activity head, and is left out of accuracy and F1. As a domain label, a window of unknown domain."""


def _loss_weight(name: str, meaning: str) -> property:
    """A loss weight attribute that refuses what would make the loss meaningless (negative, NaN, inf):
    a negative β or λ turns a minimised term into a maximised one and the loss runs off to -∞."""
    attribute = f"_{name}"

    def get(self: TCNVAETrainer) -> float:
        return getattr(self, attribute)

    def set_(self: TCNVAETrainer, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"trainer.{name} = {value!r}: expected a finite number >= 0 ({meaning})")
        setattr(self, attribute, float(value))

    return property(get, set_, doc=f"{meaning}; a finite number >= 0.")


def adversarial_alpha(batch_idx: int, epoch: int, num_batches: int, ramp_epochs: float = 10.0) -> float:
    """Gradient-reversal strength: ``p = (batch_idx + epoch·N) / (ramp_epochs·N)``, ``α = 2/(1+e^(-10p)) - 1``.

    α starts at 0 so the encoder first learns activity features, then rises to 1 over ``ramp_epochs``.
    """
    p = (batch_idx + epoch * num_batches) / (ramp_epochs * num_batches)
    return 2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0


class TCNVAETrainer:
    """Trains a :class:`~tcnvae.model.TCNVAE` on batches of ``(data, activity_labels, domain_labels)``.

    Activity labels of -1 (:data:`UNLABELLED`) mark unlabelled windows: they train the VAE and the
    domain head but not the activity head, and metrics count them apart (``labelled``/``unlabelled``).
    Domain labels of -1 (a window whose domain the domain head does not know) are ignored by the
    domain loss. Every batch is checked first: labels must be integers within the model's classes
    (or -1), and a batch with NaN or infinite inputs is skipped and counted as a data problem (the
    learning rate is halved only for a non-finite loss on finite inputs). Replace ``optimizer`` or ``scheduler`` after construction as you would on any trainer;
    a scheduler built from ``trainer.optimizer`` is stepped once per epoch by :meth:`train_epoch`
    (``ReduceLROnPlateau`` by :meth:`validate`, with the validation loss).
    """

    def __init__(self, model: TCNVAE, device: torch.device | str, learning_rate: float = 1e-3):
        if not (isinstance(learning_rate, (int, float)) and learning_rate > 0 and math.isfinite(learning_rate)):
            raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.beta = 1.0
        self.lambda_act = 1.0
        self.lambda_dom = 0.1
        self.beta_schedule: BetaSchedule = Constant()
        self.alpha_ramp_epochs = 10.0
        self.label_smoothing = 0.0
        self.grad_clip: float | None = 1.0
        self.input_noise = 0.0  # std of Gaussian noise added to training inputs; the clean input is the target
        self.log_interval = 100
        self.patience: int | None = None
        self.best_model_path: str | Path | None = None
        self.max_consecutive_nonfinite = 5
        self.max_nonfinite_input_batches = 3  # batches with NaN/inf inputs tolerated (skipped) before raising
        self.nonfinite_input_batches: list[tuple[int, int]] = []  # (epoch, batch) of each one skipped
        self.nonfinite_lr_factor = 0.5
        self.verbose = True
        self.scaler: torch.amp.GradScaler | None = None  # fp16 only: scales the loss so gradients stay representable
        self.mixed_precision = "off"
        self.metadata: dict[str, Any] = {}  # label mapping, normalisation, config: saved with every checkpoint
        # Extra weight of each training-loss term on top of β and the λs, set by curricula per epoch
        # (e.g. the adversarial term at 0 while one domain is in the batches). Validation ignores
        # them, so the validation loss stays the configured objective and compares across stages.
        self.loss_multipliers: dict[str, float] = dict.fromkeys(LOSS_TERMS, 1.0)
        self._scheduler_factory: Callable[[optim.Optimizer], Any] | None = None
        self._scheduler: Any = None
        self.optimizer = optim.Adam(self.model.parameters(), lr=learning_rate)
        self.epoch = 0  # epochs completed
        self.best_val_accuracy: float | None = None
        self.epochs_since_best = 0
        self.history: list[dict[str, Any]] = []
        self.last_train_metrics: dict[str, Any] = {}
        self.last_val_metrics: dict[str, Any] = {}
        self.applied_beta = self.beta * self.beta_schedule(0.0)
        self.alpha = 0.0
        self._nonfinite_streak = 0
        self._warned_short_windows = False

    beta = _loss_weight("beta", "the KL weight β")
    lambda_act = _loss_weight("lambda_act", "the activity-loss weight λ_act")
    lambda_dom = _loss_weight("lambda_dom", "the domain-loss weight λ_dom")

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

    @property
    def learning_rate(self) -> float:
        return self._optimizer.param_groups[0]["lr"]

    # -- losses --------------------------------------------------------------------------------------
    def vae_loss(self, recon_x: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor):
        """``(recon + β·KL, recon, KL)``.

        ``recon`` is the mean squared error over all elements. ``KL`` is KL(q(z|x) ‖ N(0, I)) summed over
        latent dimensions and averaged over the batch (per sample), so a given β weighs the same at
        every batch size. β here is the applied one, ``beta × beta_schedule(progress)``.
        """
        recon = nn.functional.mse_loss(recon_x, x)
        kl = (-0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)).mean()
        return recon + self.applied_beta * kl, recon, kl

    def _losses(self, data: torch.Tensor, target: torch.Tensor, activity_labels: torch.Tensor,
                domain_labels: torch.Tensor, alpha: float, multipliers: Mapping[str, float] | None = None):
        with self._autocast():
            outputs = self.model(data, alpha)
        # The losses in fp32 whatever the forward ran in: exp(logvar) and the sums overflow in fp16.
        recon, mu, logvar, activity_logits, domain_logits = (output.float() for output in outputs)
        vae, recon_loss, kl = self.vae_loss(recon, target, mu, logvar)
        # An unlabelled window contributes no activity loss (ignore_index); a batch without labelled
        # windows gets a zero that keeps the graph, as cross_entropy's mean over nothing is NaN.
        if (activity_labels >= 0).any():
            activity = nn.functional.cross_entropy(activity_logits, activity_labels, ignore_index=UNLABELLED,
                                                   label_smoothing=self.label_smoothing)
        else:
            activity = activity_logits.sum() * 0.0
        if (domain_labels >= 0).any():
            domain = nn.functional.cross_entropy(domain_logits, domain_labels, ignore_index=UNLABELLED)
        else:
            domain = domain_logits.sum() * 0.0
        weight = _UNWEIGHTED if multipliers is None else multipliers
        total = (weight["recon"] * recon_loss + weight["kl"] * self.applied_beta * kl
                 + weight["activity"] * self.lambda_act * activity + weight["domain"] * self.lambda_dom * domain)
        terms = {"total": total, "vae": vae, "recon": recon_loss, "kl": kl, "activity": activity, "domain": domain}
        return terms, activity_logits, domain_logits

    def _bare_model(self) -> TCNVAE:
        return getattr(self.model, "module", self.model)  # under DDP, train_epoch sees the wrapper

    def _check_batch(self, batch: Iterable[torch.Tensor], batch_idx: int, split: str):
        """``(data, activity, domain)`` after checking what torch would report obscurely or not at all:
        the labels' type and range, and the window length against the encoder's receptive field."""
        data, activity_labels, domain_labels = batch
        model = self._bare_model()
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

    # -- one epoch -----------------------------------------------------------------------------------
    def train_epoch(self, train_loader: Iterable, epoch: int) -> float:
        """Train one epoch; returns the average total loss over the steps taken.

        The component losses, applied β, α, learning rate, the domain head's accuracy, the numbers of
        labelled and unlabelled windows trained on and of batches skipped land in ``last_train_metrics``.
        The activity loss there is averaged over labelled windows (NaN when there were none).
        """
        self._check_scheduler()
        if hasattr(train_loader, "set_epoch"):  # seeded per-epoch order: resumes replay the same batches
            train_loader.set_epoch(epoch)
        num_batches = len(train_loader)
        if num_batches == 0:
            raise ValueError("train_loader yields no batches; is the training split empty?")
        self.model.train()
        sums = dict.fromkeys(("total", "vae", "recon", "kl", "domain", "beta", "alpha"), 0.0)
        activity_sum = 0.0
        steps = skipped = bad_inputs = overflowed = domain_correct = domain_seen = labelled = unlabelled = 0
        lr_used = self.learning_rate
        for batch_idx, batch in enumerate(train_loader):
            data, activity_labels, domain_labels = self._check_batch(batch, batch_idx, f"epoch {epoch}, training")
            if self._skip_nonfinite_input(data, epoch, batch_idx):
                bad_inputs += 1
                continue
            data, activity_labels, domain_labels = self._batch_to_device((data, activity_labels, domain_labels))
            self.alpha = adversarial_alpha(batch_idx, epoch, num_batches, self.alpha_ramp_epochs)
            self.applied_beta = self.beta * self.beta_schedule(epoch + batch_idx / num_batches)
            noisy = data + self.input_noise * torch.randn_like(data) if self.input_noise > 0 else data
            terms, _, domain_logits = self._losses(noisy, data, activity_labels, domain_labels, self.alpha,
                                                   self.loss_multipliers)

            self._optimizer.zero_grad(set_to_none=True)
            finite = bool(torch.isfinite(terms["total"]))
            if finite:
                self._backward(terms["total"])
                if self.grad_clip is not None:
                    norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
                    # With fp16 an infinite norm is a scale too high for this step, not divergence:
                    # the scaler skips the step and lowers the scale itself.
                    finite = self.scaler is not None or bool(torch.isfinite(norm))
            if not finite:
                skipped += 1
                self._on_nonfinite(epoch, batch_idx, terms["total"])
                continue
            self._nonfinite_streak = 0
            if not self._step():
                overflowed += 1
                continue

            steps += 1
            for key in sums.keys() - {"beta", "alpha"}:
                sums[key] += terms[key].item()
            sums["beta"] += self.applied_beta
            sums["alpha"] += self.alpha
            batch_labelled = int((activity_labels >= 0).sum())
            labelled += batch_labelled
            unlabelled += len(activity_labels) - batch_labelled
            activity_sum += terms["activity"].item() * batch_labelled
            known = domain_labels >= 0
            domain_correct += (domain_logits.argmax(1)[known] == domain_labels[known]).sum().item()
            domain_seen += known.sum().item()
            if (batch_idx + 1) % self.log_interval == 0:
                self._say(f"Epoch: {epoch}, Batch: {batch_idx + 1}, VAE Loss: {terms['vae'].item():.4f}, "
                          f"Activity Loss: {terms['activity'].item():.4f}, "
                          f"Domain Loss: {terms['domain'].item():.4f}")

        if steps == 0 and (skipped or bad_inputs):
            error = TrainingDivergedError if skipped else NonFiniteDataError
            raise error(f"epoch {epoch}: all {skipped + bad_inputs} batches were skipped ({skipped} with a non-finite "
                        f"loss, {bad_inputs} with NaN/inf inputs), so no step was taken; check the inputs for "
                        "NaNs, lower the learning rate or beta, or tighten gradient clipping")
        if self._scheduler is not None and not isinstance(self._scheduler, optim.lr_scheduler.ReduceLROnPlateau):
            self._scheduler.step()
        means = {key: value / max(steps, 1) for key, value in sums.items()}
        self.last_train_metrics = {
            **means,
            "activity": activity_sum / labelled if labelled else float("nan"),
            "lr": lr_used,
            "domain_accuracy": domain_correct / domain_seen if domain_seen else float("nan"),
            "labelled": labelled,
            "unlabelled": unlabelled,
            "steps": steps,
            "skipped_steps": skipped,
            "nonfinite_input_batches": bad_inputs,
            "overflow_steps": overflowed,
        }
        if steps and means["kl"] < 0.01:
            self._warn(f"KL collapse at epoch {epoch}: KL divergence {means['kl']:.4f} < 0.01 per sample; "
                       "the latent carries almost no information. Increase beta gradually "
                       "(a beta schedule) or check the latent dimension size.")
        return means["total"]

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

    def _backward(self, loss: torch.Tensor) -> None:
        """Backward pass; with fp16 through the scaler, then unscaled so clipping sees true gradients."""
        if self.scaler is None:
            loss.backward()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self._optimizer)

    def _step(self) -> bool:
        """Optimizer step; False when the fp16 scaler skipped it (gradients overflowed at this scale)."""
        if self.scaler is None:
            self._optimizer.step()
            return True
        scale = self.scaler.get_scale()
        self.scaler.step(self._optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= scale  # the scale drops exactly when the step was skipped

    def _on_nonfinite(self, epoch: int, batch_idx: int, loss: torch.Tensor) -> None:
        self._nonfinite_streak += 1
        for group in self._optimizer.param_groups:
            group["lr"] *= self.nonfinite_lr_factor
        if hasattr(self._scheduler, "base_lrs"):  # or the scheduler would restore the old rate next step
            self._scheduler.base_lrs = [lr * self.nonfinite_lr_factor for lr in self._scheduler.base_lrs]
        self._say(f"Non-finite loss ({loss.item()}) at epoch {epoch}, batch {batch_idx}: skipped the step "
                  f"and reduced the learning rate to {self.learning_rate:.3e}")
        if self._nonfinite_streak >= self.max_consecutive_nonfinite:
            raise TrainingDivergedError(
                f"the loss was non-finite for {self._nonfinite_streak} consecutive steps (epoch {epoch}, "
                f"batch {batch_idx}) on finite inputs, even at learning rate {self.learning_rate:.3e}; lower the "
                "learning rate or beta, tighten gradient clipping, or check the inputs' scale (standardise them)"
            )

    @torch.no_grad()
    def validate(self, val_loader: Iterable) -> tuple[float, float]:
        """Deterministic evaluation (heads read μ): returns ``(avg_val_loss, activity_accuracy)``.

        ``last_val_metrics`` also holds macro-F1, per-domain and worst-domain accuracy, the domain
        head's accuracy (near chance = a domain-invariant encoder), the confusion matrix and the
        ``labelled``/``unlabelled`` window counts. Unlabelled windows count in the loss (reconstruction,
        KL, domain) but not in accuracy or F1, which are NaN when no window is labelled.
        """
        self.model.eval()
        total_loss = 0.0
        batches = 0
        predictions, labels, domains, domain_predictions = [], [], [], []
        for batch_idx, batch in enumerate(val_loader):
            data, activity_labels, domain_labels = self._check_batch(batch, batch_idx, "validation")
            bad_windows = ~torch.isfinite(data).flatten(1).all(dim=1)
            if bad_windows.any():
                raise ValueError(
                    f"validation batch {batch_idx}: {int(bad_windows.sum())} of its {len(data)} windows contain NaN or "
                    f"infinite values (first at position {int(torch.nonzero(bad_windows)[0, 0])} in the batch); "
                    "no loss or accuracy can be computed on them: clean or drop those windows")
            data, activity_labels, domain_labels = self._batch_to_device((data, activity_labels, domain_labels))
            terms, activity_logits, domain_logits = self._losses(data, data, activity_labels, domain_labels,
                                                                 self.alpha)
            total_loss += terms["total"].item()
            batches += 1
            predictions.append(activity_logits.argmax(1).cpu())
            labels.append(activity_labels.cpu())
            domains.append(domain_labels.cpu())
            domain_predictions.append(domain_logits.argmax(1).cpu())
        if batches == 0:
            raise ValueError("val_loader yields no batches; is the validation split empty?")
        y_pred, y_true = torch.cat(predictions).numpy(), torch.cat(labels).numpy()
        domain_true, domain_pred = torch.cat(domains).numpy(), torch.cat(domain_predictions).numpy()
        num_classes = self.model.activity_classifier[-1].out_features
        labelled = y_true >= 0
        report = classification_report(y_true[labelled], y_pred[labelled], num_classes,
                                       domains=domain_true[labelled],
                                       domain_names=getattr(val_loader, "domain_names", None))
        known = domain_true >= 0
        avg_loss = total_loss / batches
        self.last_val_metrics = {
            **report,
            "loss": avg_loss,
            "labelled": int(labelled.sum()),
            "unlabelled": int((~labelled).sum()),
            "domain_classifier_accuracy": float((domain_pred[known] == domain_true[known]).mean())
            if known.any() else float("nan"),
        }
        if isinstance(self._scheduler, optim.lr_scheduler.ReduceLROnPlateau):
            self._scheduler.step(avg_loss)
        accuracy = float(report["accuracy"])
        if labelled.any() and accuracy <= 1.2 / num_classes:
            self._warn(f"validation accuracy {accuracy:.4f} is near chance (1/{num_classes}); check the data "
                       "preprocessing and label encoding, or increase lambda_act")
        return avg_loss, accuracy

    # -- full runs -----------------------------------------------------------------------------------
    def fit(self, train_loader: Iterable, val_loader: Iterable, epochs: int,
            on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Train from ``self.epoch`` up to ``epochs``; saves the best model on validation accuracy
        (to ``best_model_path`` when set) and stops early after ``patience`` epochs without improvement.
        """
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
        for epoch in range(self.epoch, epochs):
            train_loss = self.train_epoch(train_loader, epoch)
            val_loss, val_accuracy = self.validate(val_loader)
            self.epoch = epoch + 1
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
            self._say(f"Epoch {self.epoch}: Train Loss: {train_loss:.4f}, Val Loss: {val_loss:.4f}, "
                      f"Val Accuracy: {val_accuracy:.4f}")
            self.end_epoch(record)
            if on_epoch_end is not None:
                on_epoch_end(record)
            if self.patience is not None and self.epochs_since_best >= self.patience:
                self._say(f"Early stopping: no improvement in validation accuracy for {self.patience} epochs "
                          f"(best {self.best_val_accuracy:.4f})")
                break
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
            "epoch": self.epoch,
            "best_val_accuracy": self.best_val_accuracy,
            "epochs_since_best": self.epochs_since_best,
            "loss_weights": {"beta": self.beta, "lambda_act": self.lambda_act, "lambda_dom": self.lambda_dom},
            "beta_schedule": self.beta_schedule.to_config(),
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
        self.epoch = state["epoch"]
        self.best_val_accuracy = state["best_val_accuracy"]
        self.epochs_since_best = state["epochs_since_best"]
        for name, value in state["loss_weights"].items():
            setattr(self, name, value)
        schedule = dict(state["beta_schedule"])
        self.beta_schedule = make_beta_schedule(schedule.pop("name"), **schedule)
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
        super().__init__(model, device, learning_rate)
        if not isinstance(keep_last, int) or keep_last < 1:
            raise ValueError(f"keep_last must be a positive integer, got {keep_last!r}")
        self._scheduler_factory = lambda optimizer: optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=20, T_mult=2)
        self.optimizer = optim.AdamW(self.model.parameters(), lr=learning_rate, weight_decay=1e-4)
        self.beta = 0.4
        self.lambda_act = 2.5
        self.lambda_dom = 0.05
        self.grad_clip = 0.8
        self.label_smoothing = 0.1
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
