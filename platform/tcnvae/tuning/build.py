"""A trial's model and trainer, built from its flat config, and its hyperparameters set on a live trainer.

Everything the trainer needs is given at its construction (:func:`build_trainer`): the optimizer with
one param group per named part of the model, the learning-rate schedule, the
:class:`~tcnvae.objective.Objective` the config describes, the precision and the data-parallel wrapper.
What may change while a trial runs (PBT, a replayed epoch) goes through :func:`apply_hyperparameters`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn, optim

from tcnvae.curriculum import grouped_optimizer
from tcnvae.data.pipeline import PreparedData
from tcnvae.model import ARCHITECTURE, TCNVAE
from tcnvae.objective import LOSS_TERMS, Objective
from tcnvae.trainer import TCNVAETrainer
from tcnvae.tuning.tensorboard import TARGET_METRIC


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


def train_metrics(trainer: TCNVAETrainer) -> dict[str, float]:
    """The flat training metrics of the epoch just run (every loss term of the objective, the schedules):
    what a trial reports and what a run without validation (the final model) gives its curriculum."""
    train = trainer.last_train_metrics
    metrics = {
        "epoch": trainer.epoch,
        "loss/total": train["total"], **{f"loss/{term}": train[term] for term in LOSS_TERMS},
        "schedule/beta": train["beta"], "schedule/alpha": train["alpha"], "schedule/lr": train["lr"],
        "train/domain_accuracy": train["domain_accuracy"],
        "train/unlabelled": train["unlabelled"], "train/nonfinite_input_batches": train["nonfinite_input_batches"],
    }
    return {key: float(value) for key, value in metrics.items()}


def epoch_metrics(trainer: TCNVAETrainer, target_accuracy: float | None) -> dict[str, float]:
    """The flat metrics of the epoch just run and validated (:func:`train_metrics` and the validation
    metrics); the keys are also the TensorBoard tags."""
    val = trainer.last_val_metrics
    metrics = {
        **train_metrics(trainer),
        "val/loss": val["loss"], "val/accuracy": val["accuracy"], "val/macro_f1": val["macro_f1"],
        "val/worst_domain_accuracy": val["worst_domain_accuracy"],
        "val/domain_classifier_accuracy": val["domain_classifier_accuracy"],
    }
    metrics.update({f"val/domain/{name}": value for name, value in val["per_domain_accuracy"].items()})
    if target_accuracy is not None:
        metrics[TARGET_METRIC] = target_accuracy
    return {key: float(value) for key, value in metrics.items()}
