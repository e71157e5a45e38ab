"""A curriculum's *stage*: what one epoch of training looks like, as plain data.

A policy decides the stage; :func:`~tcnvae.curriculum.apply.apply_stage` puts it into effect. Keeping
the decision as data (rather than letting policies reach into the trainer) is what lets stages
compose (:func:`merge_stages`), be logged, reported to TensorBoard and compared in tests.

Everything a stage leaves out means "as configured": no domain weights → the loader's own sampling,
a parameter group not named → trainable at multiplier 1, a loss term not named → multiplier 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tcnvae.objective import LOSS_TERMS


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Stage:
    """One epoch's training regime.

    - ``name``: what the logs and TensorBoard call it; a change of name is a stage change.
    - ``domain_weights``: share of each training domain in every batch (0 or absent: left out);
      None: the domains and sampling the loader was configured with.
    - ``trainable``: parameter group → whether it trains (groups of
      :func:`~tcnvae.curriculum.groups.parameter_groups`).
    - ``lr_multipliers``: parameter group → factor on the run's learning rate (> 0; freeze a group
      with ``trainable`` instead of a zero rate).
    - ``loss_multipliers``: loss term ("recon", "kl", "activity", "domain") → extra weight (>= 0) on
      top of β, λ_act and λ_dom.
    - ``window_fraction``: train on this fraction of the easiest windows of each activity, by the
      current model's per-window loss (self-paced); None: every window.
    """

    name: str
    domain_weights: Mapping[str, float] | None = None
    trainable: Mapping[str, bool] = field(default_factory=dict)
    lr_multipliers: Mapping[str, float] = field(default_factory=dict)
    loss_multipliers: Mapping[str, float] = field(default_factory=dict)
    window_fraction: float | None = None

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.name, str) or not self.name:
            problems.append(f"name must be a non-empty string, got {self.name!r}")
        if self.domain_weights is not None:
            weights = dict(self.domain_weights)
            if not weights or any(not _finite(w) or w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
                problems.append(f"domain_weights must be finite, >= 0 and not all 0, got {weights}")
        for group, flag in self.trainable.items():
            if not isinstance(flag, bool):
                problems.append(f"trainable[{group!r}] must be True or False, got {flag!r}")
        for group, value in self.lr_multipliers.items():
            if not _finite(value) or value <= 0:
                problems.append(f"lr_multipliers[{group!r}] must be a positive number (freeze a group with "
                                f"trainable instead), got {value!r}")
        unknown_terms = sorted(set(self.loss_multipliers) - set(LOSS_TERMS))
        if unknown_terms:
            problems.append(f"loss_multipliers names unknown loss terms {unknown_terms}; "
                            f"the terms are {', '.join(LOSS_TERMS)}")
        for term, value in self.loss_multipliers.items():
            if not _finite(value) or value < 0:
                problems.append(f"loss_multipliers[{term!r}] must be a number >= 0, got {value!r}")
        if self.window_fraction is not None and not (_finite(self.window_fraction) and 0 < self.window_fraction <= 1):
            problems.append(f"window_fraction must lie in (0, 1] or be None, got {self.window_fraction!r}")
        if problems:
            raise ValueError(f"invalid curriculum stage {self.name!r}: " + "; ".join(problems))

    def loss_multiplier(self, term: str) -> float:
        return float(self.loss_multipliers.get(term, 1.0))

    def describe(self) -> str:
        """One line for the log: only what differs from "everything as configured"."""
        parts = []
        if self.domain_weights is not None:
            total = sum(self.domain_weights.values())
            parts.append("domain shares " + ", ".join(f"{d} {w / total:.2f}" for d, w in self.domain_weights.items()
                                                      if w > 0))
        frozen = [group for group, flag in self.trainable.items() if not flag]
        if frozen:
            parts.append("frozen " + ", ".join(frozen))
        rates = [f"{group}×{m:.3g}" for group, m in self.lr_multipliers.items()
                 if m != 1 and self.trainable.get(group, True)]
        if rates:
            parts.append("lr " + ", ".join(rates))
        weights = [f"{term}×{m:.3g}" for term, m in self.loss_multipliers.items() if m != 1]
        if weights:
            parts.append("loss " + ", ".join(weights))
        if self.window_fraction is not None:
            parts.append(f"easiest {self.window_fraction:.0%} of windows")
        return "; ".join(parts) or "everything as configured"


def _same_shares(first: Mapping[str, float], second: Mapping[str, float]) -> bool:
    names = set(first) | set(second)
    total_first, total_second = sum(first.values()), sum(second.values())
    return all(math.isclose(first.get(n, 0.0) / total_first, second.get(n, 0.0) / total_second, abs_tol=1e-9)
               for n in names)


def merge_stages(stages: Sequence[Stage]) -> Stage:
    """The stage of several policies at once (a dataset schedule and an encoder schedule, say).

    Names join with "+"; a group trains only if no policy freezes it; learning-rate and loss
    multipliers multiply; the smallest window fraction wins. Two policies that both set domain
    weights must agree on the shares: mixing two dataset schedules has no single meaning.
    """
    if not stages:
        raise ValueError("merge_stages needs at least one stage")
    weighted = [stage for stage in stages if stage.domain_weights is not None]
    for other in weighted[1:]:
        if not _same_shares(weighted[0].domain_weights, other.domain_weights):
            raise ValueError(
                f"composed curricula disagree on the domain weights: stage {weighted[0].name!r} wants "
                f"{dict(weighted[0].domain_weights)}, stage {other.name!r} wants {dict(other.domain_weights)}; "
                "compose at most one dataset schedule"
            )
    trainable: dict[str, bool] = {}
    lr_multipliers: dict[str, float] = {}
    loss_multipliers: dict[str, float] = {}
    for stage in stages:
        for group, flag in stage.trainable.items():
            trainable[group] = trainable.get(group, True) and flag
        for group, value in stage.lr_multipliers.items():
            lr_multipliers[group] = lr_multipliers.get(group, 1.0) * value
        for term, value in stage.loss_multipliers.items():
            loss_multipliers[term] = loss_multipliers.get(term, 1.0) * value
    fractions = [stage.window_fraction for stage in stages if stage.window_fraction is not None]
    return Stage(
        name="+".join(stage.name for stage in stages),
        domain_weights=dict(weighted[0].domain_weights) if weighted else None,
        trainable=trainable,
        lr_multipliers=lr_multipliers,
        loss_multipliers=loss_multipliers,
        window_fraction=min(fractions) if fractions else None,
    )
