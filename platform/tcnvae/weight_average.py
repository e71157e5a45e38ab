"""An exponential moving average (EMA) of the weights: what a trainer evaluates, checkpoints and exports.

The last weights of a run carry the noise of its last few hundred steps; their running average sits
nearer the middle of the basin and tends to hold up better on people the model never saw. The
average is :class:`torch.optim.swa_utils.AveragedModel` with an EMA update after every optimiser step
(buffers too), whose time constant is given in *epochs* (``epochs``), so it means the same on a data set
of 300 windows as on one of 30 000: the per-step decay is ``exp(-1 / (epochs · steps per epoch))``.

Between epochs the model holds the *averaged* weights, so every evaluation, checkpoint, selection score
and export reads the same weights that are saved; the weights being trained are set aside and put
back when the next epoch starts (:meth:`WeightAverage.start_epoch` / :meth:`WeightAverage.end_epoch`).
A checkpoint holds both (:meth:`WeightAverage.state_dict`), so a resumed or cloned run continues exactly.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


class WeightAverage:
    """The EMA of ``model``'s weights with a time constant of ``epochs`` epochs (see the module docstring)."""

    def __init__(self, model: nn.Module, epochs: float):
        if not (isinstance(epochs, (int, float)) and math.isfinite(epochs) and epochs > 0):
            raise ValueError(f"weight-average time constant must be a positive number of epochs, got {epochs!r}")
        self.epochs = float(epochs)
        self.decay = 0.0  # set per epoch from its number of steps
        self.averaged = AveragedModel(model, avg_fn=self._ema, use_buffers=True)
        self.training_weights: dict[str, torch.Tensor] | None = None  # set aside between epochs

    def _ema(self, averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        return torch.lerp(averaged, current, 1.0 - self.decay)

    def start_epoch(self, model: nn.Module, steps: int) -> None:
        """Put the trained weights back into ``model`` and set the decay for an epoch of ``steps`` steps."""
        if self.training_weights is not None:
            model.load_state_dict(self.training_weights)
            self.training_weights = None
        self.decay = math.exp(-1.0 / (self.epochs * max(steps, 1)))

    def update(self, model: nn.Module) -> None:
        """Fold the weights after an optimiser step into the average (the first step copies them)."""
        self.averaged.update_parameters(model)

    def end_epoch(self, model: nn.Module) -> None:
        """Set the trained weights aside and load the average into ``model`` (if any step was taken)."""
        if int(self.averaged.n_averaged) == 0:
            return
        self.training_weights = copy.deepcopy(model.state_dict())
        model.load_state_dict(self.averaged.module.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {"averaged": self.averaged.state_dict(), "training_weights": self.training_weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state["averaged"])
        self.training_weights = state["training_weights"]
