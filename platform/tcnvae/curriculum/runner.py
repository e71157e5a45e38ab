"""`CurriculumRunner`: one policy driving one training run, epoch by epoch.

It is the glue a training loop needs, and the only place that does the bookkeeping:

    runner = CurriculumRunner(policy, trainer, train_loader, max_epochs)  # before restoring a checkpoint
    runner.load_state_dict(saved)            # when resuming (saved = an earlier runner.state_dict())
    def after_epoch():                       # ...validate..., then
        runner.after_epoch(metrics)          # the epoch's flat metrics, for the next decision
        metrics.update(runner.metrics())     # "curriculum/stage", multipliers, ...
        saved = runner.state_dict()          # into the checkpoint

    trainer.train_epochs(train_loader, max_epochs,
                         before_epoch=runner.before_epoch,  # decide and apply the stage
                         after_epoch=after_epoch)

The state holds the policy's state and the metrics the next decision needs, so a resumed run makes
the same decision the uninterrupted one would have made.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from tcnvae.curriculum.apply import apply_stage
from tcnvae.curriculum.groups import parameter_groups, trainable_fraction
from tcnvae.curriculum.policy import CurriculumContext, CurriculumPolicy
from tcnvae.curriculum.stage import Stage
from tcnvae.data.loaders import WindowLoader
from tcnvae.objective import LOSS_TERMS
from tcnvae.trainer import TCNVAETrainer

logger = logging.getLogger(__name__)

STAGE_METRIC = "curriculum/stage"
"""The reported index of the current stage (a step up at every new stage); the other ``curriculum/*``
metrics are its multipliers and shares (:meth:`CurriculumRunner.metrics`)."""


class CurriculumRunner:
    """Applies ``policy``'s stage to ``trainer`` and ``train_loader`` at the start of every epoch.

    Constructing it calls ``policy.setup`` (which may load pretrained weights), so build the runner
    before restoring a checkpoint into the trainer: the restore then has the last word on weights.
    """

    def __init__(self, policy: CurriculumPolicy, trainer: TCNVAETrainer, train_loader: WindowLoader,
                 max_epochs: int):
        self.policy = policy
        self.trainer = trainer
        self.train_loader = train_loader
        self.context = CurriculumContext.of(trainer.model, train_loader, max_epochs)
        policy.setup(self.context, trainer.model)
        self.stage: Stage | None = None
        self.stage_names: list[str] = []  # in order of first appearance; a stage's index is its place here
        self.last_metrics: dict[str, float] | None = None

    def before_epoch(self, epoch: int) -> Stage:
        """Decide epoch ``epoch``'s stage from the last metrics, apply it, log a change of stage."""
        stage = apply_stage(self.policy.stage(epoch, self.last_metrics), self.trainer, self.train_loader)
        if self.stage is None or stage.name != self.stage.name:
            logger.info("curriculum stage %r at epoch %d (%s): %s", stage.name, epoch, self.policy.policy_name,
                        stage.describe())
        if stage.name not in self.stage_names:
            self.stage_names.append(stage.name)
        self.stage = stage
        return stage

    def after_epoch(self, metrics: Mapping[str, float]) -> None:
        """Record the epoch's flat metrics (``"val/accuracy"``, ``"val/domain/<name>"``, ...)."""
        self.last_metrics = {key: float(value) for key, value in metrics.items()}

    def metrics(self) -> dict[str, float]:
        """The current stage as numbers for reports and TensorBoard: its index (a step up at every new
        stage), loss multipliers, learning-rate multipliers (0 while frozen), the trainable share of
        the weights, the window fraction and each domain's share of the batches."""
        if self.stage is None:
            raise RuntimeError("CurriculumRunner.metrics() before the first before_epoch()")
        stage = self.stage
        values = {STAGE_METRIC: float(self.stage_names.index(stage.name)),
                  "curriculum/trainable_fraction": trainable_fraction(self.trainer.model),
                  "curriculum/window_fraction": 1.0 if stage.window_fraction is None else stage.window_fraction}
        values.update({f"curriculum/loss_multiplier/{term}": stage.loss_multiplier(term) for term in LOSS_TERMS})
        for group in parameter_groups(self.trainer.model):
            trains = stage.trainable.get(group, True)
            values[f"curriculum/lr_multiplier/{group}"] = float(stage.lr_multipliers.get(group, 1.0)) if trains else 0.0
        if stage.domain_weights is not None:
            total = sum(stage.domain_weights.values())
            values.update({f"curriculum/domain_weight/{domain}": stage.domain_weights.get(domain, 0.0) / total
                           for domain in self.context.domains})
        return values

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.policy_name, "policy_state": self.policy.state_dict(),
                "last_metrics": self.last_metrics, "stage_names": list(self.stage_names)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a saved state; an empty mapping (a checkpoint without a curriculum) starts afresh."""
        if not state:
            return
        if state["policy"] != self.policy.policy_name:
            raise ValueError(f"the checkpoint's curriculum is {state['policy']!r}, this run's is "
                             f"{self.policy.policy_name!r}; a run cannot change curriculum when it resumes")
        self.policy.load_state_dict(state["policy_state"])
        self.last_metrics = None if state["last_metrics"] is None else dict(state["last_metrics"])
        self.stage_names = list(state["stage_names"])
