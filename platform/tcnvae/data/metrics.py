"""Classification metrics for activity recognition across domains, in plain numpy.

Accuracy alone hides two failures that matter here: a rare activity the model never predicts (macro
F1 catches it) and a dataset or subject group on which the model is poor (per-domain and worst-domain
accuracy catch it, which is what domain-adversarial training is meant to improve).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts; rows are true classes, columns predictions."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def macro_f1(matrix: np.ndarray) -> float:
    """Mean F1 over the classes that occur in the true labels (absent classes have no defined F1)."""
    true_counts = matrix.sum(axis=1)
    predicted_counts = matrix.sum(axis=0)
    hits = np.diag(matrix)
    present = true_counts > 0
    if not present.any():
        return float("nan")
    f1 = 2 * hits[present] / (true_counts[present] + predicted_counts[present])
    return float(f1.mean())


def per_class_f1(matrix: np.ndarray, names: list[str]) -> dict[str, float]:
    """F1 of each class that occurs in the true labels (rows of ``matrix``), by name."""
    true_counts, predicted_counts = matrix.sum(axis=1), matrix.sum(axis=0)
    return {name: float(2 * matrix[i, i] / (true_counts[i] + predicted_counts[i]))
            for i, name in enumerate(names) if true_counts[i] > 0}


def classification_report(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    num_classes: int,
    domains: np.ndarray | None = None,
    domain_names: list[str] | None = None,
) -> dict[str, Any]:
    """Accuracy, macro F1, confusion matrix and, given ``domains``, accuracy per domain and the worst.

    ``domains`` holds a domain per sample: integer ids into ``domain_names`` (ids < 0 are left out of
    the per-domain figures) or the names themselves.
    """
    y_true = np.asarray(y_true).astype(np.int64).reshape(-1)
    y_pred = np.asarray(y_pred).astype(np.int64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    for name, labels in (("y_true", y_true), ("y_pred", y_pred)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    matrix = confusion_matrix(y_true, y_pred, num_classes)
    correct = y_true == y_pred
    report: dict[str, Any] = {
        "count": int(y_true.size),
        "accuracy": float(correct.mean()) if y_true.size else float("nan"),
        "macro_f1": macro_f1(matrix),
        "confusion": matrix,
    }
    if domains is None:
        return report
    domains = np.asarray(domains).reshape(-1)
    if domains.shape != y_true.shape:
        raise ValueError(f"domains has {domains.size} entries for {y_true.size} labels")
    if np.issubdtype(domains.dtype, np.integer):
        if domain_names is not None and domains.size and domains.max() >= len(domain_names):
            raise ValueError(f"domain id {domains.max()} has no name among {len(domain_names)} names")
        known = domains >= 0
        names = np.array(
            [domain_names[d] if domain_names is not None else str(d) for d in domains[known]], dtype=object
        )
        domain_correct = correct[known]
    else:
        names, domain_correct = domains.astype(str), correct
    per_domain = {
        str(name): float(domain_correct[names == name].mean()) for name in sorted(set(names.tolist()))
    }
    report["per_domain_accuracy"] = per_domain
    report["worst_domain_accuracy"] = min(per_domain.values()) if per_domain else float("nan")
    return report
