"""`single_to_cross`: a dataset curriculum — learn one dataset first, then bring in the others.

Start: a named training domain, or the "easiest" by a stated measure —

- ``"most_windows"``: the domain with the most training windows (the most to learn from);
- ``"best_val_accuracy"``: train ``probe_epochs`` epochs on all domains (domain-balanced), then pick
  the domain with the highest per-domain validation accuracy (``val/domain/<name>``): the one the
  model finds easiest.

Switch to all domains after ``single_epochs`` epochs on the start domain (``switch="epoch"``), or
earlier when validation accuracy (``val/accuracy``) has not improved by ``min_delta`` for
``patience`` epochs (``switch="plateau"``; ``single_epochs`` is then the latest switch). From the
switch the others come in at once (``ramp_epochs=0``) or by a linear mixing ramp over
``ramp_epochs`` epochs. Once several domains are in, batches are domain-balanced (equal shares),
whatever sampling the loader was configured with. While one domain is in, the adversarial domain
term is off (tcnvae.curriculum.apply.effective_stage).

The switch is recorded in the policy's state and never undone, so a PBT clone whose perturbed
``single_epochs`` lies in the past keeps mixing rather than returning to one domain.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ray import tune

from tcnvae.curriculum import (
    CurriculumContext,
    CurriculumPolicy,
    Stage,
    check_choice,
    check_int,
    check_number,
    linear_ramp,
    require_metric,
)
from tcnvae.model import TCNVAE
from tcnvae.tuning.metrics import VAL_ACCURACY, domain_accuracy_metric

logger = logging.getLogger(__name__)

START_MEASURES = ("most_windows", "best_val_accuracy")
SWITCHES = ("epoch", "plateau")


class SingleToCross(CurriculumPolicy):
    name = "single_to_cross"

    def __init__(self, start: str = "most_windows", switch: str = "epoch", single_epochs: int = 3,
                 ramp_epochs: int = 0, patience: int = 2, min_delta: float = 0.005, probe_epochs: int = 1):
        if not isinstance(start, str) or not start:
            raise ValueError(f"start must be a domain name or one of {', '.join(START_MEASURES)}, got {start!r}")
        self.start = start
        self.switch = check_choice("switch", switch, SWITCHES)
        self.single_epochs = check_int("single_epochs", single_epochs, 1)
        self.ramp_epochs = check_int("ramp_epochs", ramp_epochs, 0)
        self.patience = check_int("patience", patience, 1)
        self.min_delta = check_number("min_delta", min_delta, 0.0, 1.0)
        self.probe_epochs = check_int("probe_epochs", probe_epochs, 1)
        self._start_domain: str | None = None
        self._switched_at: int | None = None
        self._best: float | None = None
        self._since_best = 0
        self._seen_epoch = -1

    @classmethod
    def search_space(cls) -> dict[str, Any]:
        return {
            "start": tune.choice(list(START_MEASURES)),
            "switch": tune.choice(list(SWITCHES)),
            "single_epochs": tune.randint(1, 6),
            "ramp_epochs": tune.randint(0, 4),
            "patience": tune.randint(1, 4),
        }

    def setup(self, context: CurriculumContext, model: TCNVAE) -> None:
        super().setup(context, model)
        if self.start not in START_MEASURES and self.start not in context.domains:
            raise ValueError(f"single_to_cross: start {self.start!r} is neither a training domain "
                             f"({', '.join(context.domains)}) nor one of {', '.join(START_MEASURES)}")
        if len(context.domains) < 2:
            logger.info("single_to_cross: the training data hold one domain (%s); there is nothing to mix in",
                        ", ".join(context.domains))
        if self.start == "most_windows":
            counts = context.windows_per_domain
            self._start_domain = max(context.domains, key=lambda domain: counts[domain])
        elif self.start != "best_val_accuracy":
            self._start_domain = self.start

    def stage(self, epoch: int, metrics: Mapping[str, float] | None) -> Stage:
        domains = self.require_context().domains
        fresh = epoch > self._seen_epoch  # update the state once per epoch, however often asked
        self._seen_epoch = max(self._seen_epoch, epoch)
        probe = self.probe_epochs if self.start == "best_val_accuracy" else 0
        if self._start_domain is None:
            if epoch < probe:
                return Stage("probe", domain_weights=dict.fromkeys(domains, 1.0))
            self._start_domain = self._easiest(domains, metrics)
        if self._switched_at is None and fresh and self._should_switch(epoch, probe, metrics):
            self._switched_at = epoch
        start = self._start_domain
        if self._switched_at is None:
            return Stage(f"single:{start}", domain_weights={start: 1.0})
        mixed = linear_ramp(epoch, self._switched_at, self.ramp_epochs)
        if mixed >= 1:
            return Stage("cross", domain_weights=dict.fromkeys(domains, 1.0))
        share = mixed / len(domains)
        weights = {domain: share for domain in domains}
        weights[start] += 1 - mixed
        return Stage("mixing", domain_weights=weights)

    def _easiest(self, domains: tuple[str, ...], metrics: Mapping[str, float] | None) -> str:
        if metrics is None:
            raise ValueError("single_to_cross with start='best_val_accuracy' needs the validation metrics "
                             "of the probe epochs")
        accuracy = {d: require_metric(metrics, domain_accuracy_metric(d), self.policy_name) for d in domains}
        chosen = max(domains, key=lambda domain: accuracy[domain])
        logger.info("single_to_cross: starting on %s, the best per-domain validation accuracy after the probe "
                    "(%s)", chosen, ", ".join(f"{d} {a:.3f}" for d, a in accuracy.items()))
        return chosen

    def _should_switch(self, epoch: int, probe: int, metrics: Mapping[str, float] | None) -> bool:
        if epoch >= probe + self.single_epochs:
            return True
        if self.switch != "plateau" or metrics is None or epoch <= probe:  # no single-domain epoch yet
            return False
        accuracy = require_metric(metrics, VAL_ACCURACY, self.policy_name)
        if self._best is None or accuracy > self._best + self.min_delta:
            self._best, self._since_best = accuracy, 0
        else:
            self._since_best += 1
        return self._since_best >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"start_domain": self._start_domain, "switched_at": self._switched_at, "best": self._best,
                "since_best": self._since_best, "seen_epoch": self._seen_epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._start_domain = state["start_domain"]
        self._switched_at = state["switched_at"]
        self._best = state["best"]
        self._since_best = state["since_best"]
        self._seen_epoch = state["seen_epoch"]
