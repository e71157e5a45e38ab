"""Running a trained TCN-VAE on windows: activity probabilities, and scores against true labels.

Evaluation is deterministic: the model is put in eval mode (no dropout, heads read μ) and runs without
gradients, so scoring the same checkpoint on the same windows always gives the same numbers.

:class:`InferenceModel` is the deployable form: raw windows in canonical units in, probabilities out,
with the training standardisation built in. It is what :mod:`tcnvae.final_model` exports (a
``torch.export`` program that needs only torch) and what :mod:`tcnvae.predict` runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from tcnvae.data.metrics import classification_report
from tcnvae.data.normalise import Standardiser
from tcnvae.data.windows import WindowSet
from tcnvae.model import TCNVAE

BATCH_SIZE = 512


class Ensemble(nn.Module):
    """``forward(windows)``: standardised windows → the members' activity probabilities, averaged.

    Members are the same config trained from different seeds: averaging removes much of what one seed's
    initialisation and batch order decide (one seed's spread: docs/results.md, "Smaller measurements").
    """

    def __init__(self, members: Sequence[TCNVAE]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.softmax(member(windows)[3], dim=1) for member in self.members]).mean(dim=0)


class InferenceModel(nn.Module):
    """``forward(windows)``: (batch, time, channels) in the training units → (batch, activities) probabilities.

    ``model`` is a :class:`TCNVAE` or an :class:`Ensemble` of them. The standardiser's mean and std are
    buffers, so an exported copy carries them.
    """

    def __init__(self, model: TCNVAE | Ensemble, standardiser: Standardiser):
        super().__init__()
        self.model = model.eval()
        self.register_buffer("mean", torch.as_tensor(standardiser.mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(standardiser.std, dtype=torch.float32))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        output = self.model((windows - self.mean) / self.std)
        return torch.softmax(output[3], dim=1) if isinstance(output, tuple) else output


@torch.no_grad()
def activity_probabilities(model: nn.Module, signals: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Softmax over the activity head for windows (N, T, C), in batches, in eval mode.

    ``model`` is a :class:`TCNVAE` or an :class:`Ensemble` (standardised windows in) or an
    :class:`InferenceModel` (raw windows in).
    """
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    for start in range(0, len(signals), batch_size):
        batch = torch.as_tensor(signals[start:start + batch_size], dtype=torch.float32, device=device)
        output = model(batch)
        logits_or_probabilities = output[3] if isinstance(output, tuple) else output
        outputs.append(logits_or_probabilities.float().cpu())
    if not outputs:
        return np.zeros((0, 0), dtype=np.float32)
    stacked = torch.cat(outputs)
    probabilities = torch.softmax(stacked, dim=1) if isinstance(model, TCNVAE) else stacked
    return probabilities.numpy()


def score(model: nn.Module, windows: WindowSet, domain_by: str, domain_names: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-activity F1, per-domain and worst-domain accuracy and the confusion matrix
    of ``model`` on ``windows`` (standardised as in training), as plain JSON-ready values."""
    if len(windows) == 0:
        raise ValueError("there are no windows to score (an empty split)")
    predictions = activity_probabilities(model, windows.signals).argmax(axis=1)
    domains, _ = windows.domain_ids(domain_by, domain_names)
    report = classification_report(windows.activity, predictions, len(windows.activity_names),
                                   domains=domains, domain_names=domain_names)
    matrix = report["confusion"]
    true_counts, predicted_counts = matrix.sum(axis=1), matrix.sum(axis=0)
    per_activity_f1 = {
        name: float(2 * matrix[i, i] / (true_counts[i] + predicted_counts[i]))
        for i, name in enumerate(windows.activity_names) if true_counts[i] > 0
    }
    return {
        "windows": int(report["count"]),
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "worst_domain_accuracy": report["worst_domain_accuracy"],
        "per_domain_accuracy": report["per_domain_accuracy"],
        "per_activity_f1": per_activity_f1,
        "confusion": matrix.tolist(),
        "activities": list(windows.activity_names),
    }
