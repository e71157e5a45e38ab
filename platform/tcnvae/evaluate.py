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

from tcnvae.data.metrics import classification_report, per_class_f1
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


def check_activities_present(present: Sequence[str], activities: Sequence[str]) -> list[str]:
    """``present`` if every name is one of the model's ``activities`` (and there is one), else a ValueError
    naming the unknown ones and listing the model's."""
    unknown = [name for name in present if name not in activities]
    if unknown or not present:
        problem = f"unknown activities {unknown}" if unknown else "no activity named"
        raise ValueError(f"activities present: {problem}; the model knows {', '.join(activities)}")
    return list(present)


def restrict_probabilities(probabilities: np.ndarray, activities: Sequence[str],
                           present: Sequence[str] | None) -> np.ndarray:
    """``probabilities`` (N, activities) with the activities not in ``present`` set to 0 and each row
    renormalised over those that are: the model asked "which of these?" (None: unchanged)."""
    if present is None:
        return probabilities
    keep = np.isin(np.asarray(activities), check_activities_present(present, activities))
    restricted = np.where(keep, probabilities, 0.0)
    total = restricted.sum(axis=1, keepdims=True)
    # A row whose every present activity has probability 0 (float underflow) spreads evenly over them.
    return np.where(total > 0, restricted / np.where(total > 0, total, 1.0), keep / keep.sum()).astype(np.float32)


def training_activities(train: WindowSet) -> list[str]:
    """The activities ``train`` has windows of: all a target can be scored on (:func:`score`'s
    ``scored_activities``); the model's head may hold more (a pooled label space)."""
    return [name for name, count in train.class_counts().items() if count > 0]


def score(model: nn.Module, windows: WindowSet, domain_by: str, domain_names: list[str], *,
          scored_activities: Sequence[str] | None = None,
          activities_present: Sequence[str] | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1, per-activity F1, per-domain and worst-domain accuracy and the confusion matrix
    of ``model`` on ``windows`` (standardised as in training), as plain JSON-ready values.

    ``scored_activities`` (the sources' training activities, :func:`training_activities`): only windows of
    these activities are scored; the others' are left out and counted by activity in
    ``unscored_activities`` (a held-out dataset's activities the sources never taught). ``activities_present``:
    the predictions are restricted to these activities (:func:`restrict_probabilities`), as a user who
    knows which activities occur restricts ``predict``.
    """
    unscored: dict[str, int] = {}
    if scored_activities is not None:
        names = np.asarray(windows.activity_names)[windows.activity] if len(windows) else np.zeros(0, str)
        kept = np.isin(names, list(scored_activities))
        unscored = {name: int((names == name).sum()) for name in windows.activity_names if (names == name).any()
                    and name not in scored_activities}
        if len(windows) and not kept.any():
            raise ValueError(f"none of the scored windows' activities ({', '.join(unscored)}) has training windows "
                             f"(the sources teach {', '.join(scored_activities)}): nothing can be scored")
        windows = windows.subset(kept)
    if len(windows) == 0:
        raise ValueError("there are no windows to score (an empty split)")
    probabilities = activity_probabilities(model, windows.signals)
    predictions = restrict_probabilities(probabilities, windows.activity_names, activities_present).argmax(axis=1)
    domains, _ = windows.domain_ids(domain_by, domain_names)
    report = classification_report(windows.activity, predictions, len(windows.activity_names),
                                   domains=domains, domain_names=domain_names)
    matrix = report["confusion"]
    per_activity_f1 = per_class_f1(matrix, list(windows.activity_names))
    return {
        "windows": int(report["count"]),
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "worst_domain_accuracy": report["worst_domain_accuracy"],
        "per_domain_accuracy": report["per_domain_accuracy"],
        "per_activity_f1": per_activity_f1,
        "confusion": matrix.tolist(),
        "activities": list(windows.activity_names),
        **({} if scored_activities is None else {
            "scored_activities": [name for name in windows.activity_names if name in scored_activities],
            "unscored_activities": unscored}),
        **({} if activities_present is None else {"activities_present": list(activities_present)}),
    }
