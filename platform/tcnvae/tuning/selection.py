"""Model selection without target labels: source risk and Deep Embedded Validation.

With an unlabelled target, no target label may choose a trial or an epoch. Two criteria remain:

- **Source risk**: the activity cross-entropy on held-out *source* subjects. Assumes the target looks
  like the source; blind to the shift adaptation is meant to close.
- **Deep Embedded Validation** (DEV; You, Wang, Long and Jordan, "Towards Accurate Model Selection in
  Deep Unsupervised Domain Adaptation", ICML 2019): the same per-window validation loss, each window
  weighted by the density ratio p_target(f)/p_validation(f) of its features f, estimated by a domain
  classifier of validation versus target features; a control variate (the weights themselves, whose
  mean is 1 in expectation) cuts the variance of the weighted mean. Assumes covariate shift in feature
  space (p(y|f) is shared by the domains) and that the validation windows' features cover the target's;
  where they barely overlap the weights explode and the estimate is noisy.

  The ratio is taken against the *validation* windows, the ones it weighs, not against the training
  windows as in the paper: the encoder has fitted its training people, whose features are therefore
  unlike any unseen person's (held-out source or target), and a classifier of training versus target
  features called the held-out validation windows target-like, with mean weights of 5 to 60 instead
  of 1, which also broke the control variate. Each validation window's weight comes from a classifier
  fitted without it (cross-fitting, :data:`FOLDS` folds), so the weights are not fitted to themselves.

Both are risks (lower is better); the trial reports minus each as a score, as every objective is
maximised. Features are the encoder's μ, which the heads read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from tcnvae.data.loaders import UNLABELLED
from tcnvae.model import TCNVAE

MAX_WINDOWS = 2000
"""Target windows embedded for DEV's domain classifier: enough for a linear classifier on a small
latent, few enough that each epoch's selection stays a small fraction of its training."""

FOLDS = 5
"""Cross-fitting folds of DEV's domain classifier."""

_PROBABILITY_FLOOR = 1e-3  # keeps a confidently-source window's weight finite


@torch.no_grad()
def embed(model: TCNVAE, loader: Any, device: torch.device | str) -> dict[str, np.ndarray]:
    """Features (μ), per-window activity cross-entropy (NaN for unlabelled windows) and labels of
    every window of ``loader``, in eval mode."""
    was_training = model.training
    model.eval()
    features, losses, labels = [], [], []
    try:
        for data, activity, _ in loader:
            data, activity = data.to(device).float(), activity.to(device).long()
            mu, _ = model.encode(data)
            logits = model.activity_classifier(mu)
            loss = nn.functional.cross_entropy(logits, activity.clamp(min=0), reduction="none")
            features.append(mu.float().cpu())
            losses.append(torch.where(activity == UNLABELLED, torch.nan, loss).float().cpu())
            labels.append(activity.cpu())
    finally:
        model.train(was_training)
    return {"features": torch.cat(features).numpy(), "loss": torch.cat(losses).numpy(),
            "activity": torch.cat(labels).numpy()}


def source_risk(validation_losses: np.ndarray) -> float:
    """Mean activity cross-entropy on held-out source windows."""
    return float(np.mean(validation_losses))


def importance_weights(validation_features: np.ndarray, target_features: np.ndarray, seed: int = 0,
                       folds: int = FOLDS) -> np.ndarray:
    """Density ratio p_target/p_validation at each validation feature, from a logistic-regression domain
    classifier of validation versus target features, cross-fitted: ``w = (n_validation / n_target) ·
    P(target|f) / P(validation|f)`` (the prior ratio undone), P from the folds that leave the window out."""
    if len(validation_features) < folds or len(target_features) < folds:
        raise ValueError(f"importance weights need at least {folds} validation and {folds} target windows "
                         f"(one per fold), got {len(validation_features)} and {len(target_features)}")
    features = np.concatenate([validation_features, target_features])
    is_target = np.concatenate([np.zeros(len(validation_features)), np.ones(len(target_features))])
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
    p_target = cross_val_predict(classifier, features, is_target, method="predict_proba",
                                 cv=StratifiedKFold(folds, shuffle=True, random_state=seed))[:, 1]
    p_target = np.clip(p_target[:len(validation_features)], _PROBABILITY_FLOOR, 1 - _PROBABILITY_FLOOR)
    return len(validation_features) / len(target_features) * p_target / (1 - p_target)


def dev_risk(weights: np.ndarray, validation_losses: np.ndarray) -> float:
    """DEV's risk: the weighted mean loss with the control variate η = -Cov(w·l, w) / Var(w)."""
    weights, losses = np.asarray(weights, dtype=np.float64), np.asarray(validation_losses, dtype=np.float64)
    if weights.shape != losses.shape or weights.size < 2:
        raise ValueError(f"need one weight per validation loss and at least two of each, got {weights.shape} and "
                         f"{losses.shape}")
    weighted = weights * losses
    variance = np.var(weights, ddof=1)
    if variance == 0:  # all windows equally target-like: the plain mean is already unbiased
        return float(weighted.mean())
    eta = -np.cov(weighted, weights, ddof=1)[0, 1] / variance
    return float(weighted.mean() + eta * weights.mean() - eta)


def subsample(count: int, seed: int, limit: int = MAX_WINDOWS) -> np.ndarray:
    """At most ``limit`` indices of ``count`` windows, seeded (the same windows every epoch)."""
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng([seed, 13]).choice(count, size=limit, replace=False))


class LabelFreeSelection:
    """The label-free selection scores of a trial, computed each epoch from its prepared data.

    ``metrics(model, device)`` gives ``select/source_score`` (minus the source risk) and, when the
    data has unlabelled target windows, ``select/dev_score`` (minus the DEV risk) and the mean DEV
    weight. Target labels are never read: the target side enters only as features.
    """

    def __init__(self, data: Any, seed: int, pin_memory: bool = False):
        self.seed = seed
        self.validation = data.val_loader(pin_memory=pin_memory)
        self.target = None
        kind, _, target_name = data.config.split.partition(":")
        if kind == "unlabelled":
            # The target's unlabelled windows (not the source people's unlabelled stretches).
            target = data.unlabelled.subset(data.unlabelled.grouping(data.config.domain_by) == target_name)
            target = target.subset(subsample(len(target), seed))
            self.target = data.loader(data.train.subset(np.zeros(0, dtype=np.int64)), unlabelled=target,
                                      pin_memory=pin_memory)

    def metrics(self, model: TCNVAE, device: torch.device | str) -> dict[str, float]:
        validation = embed(model, self.validation, device)
        scores = {"select/source_score": -source_risk(validation["loss"])}
        if self.target is not None:
            weights = importance_weights(validation["features"], embed(model, self.target, device)["features"],
                                         self.seed)
            scores["select/dev_score"] = -dev_risk(weights, validation["loss"])
            scores["select/dev_weight_mean"] = float(weights.mean())
        return scores
