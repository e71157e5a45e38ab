"""An OptunaSearch that survives a search driver killed with SIGKILL and resumed.

Why: the Optuna study lives in optuna.db and is written at once, while Tune saves its own state
(trial statuses, the searcher) every 10 s or more. A driver killed between the two leaves a study
ahead of Tune's state: a trial the study already holds as finished is listed as running, is resumed
from its latest saved checkpoint, and its redone epochs' results go to Optuna, which refuses to
update a finished trial (optuna.exceptions.UpdateFinishedTrialError) and the resumed search dies.
The study already has those results, so they are skipped (and counted in the log).
"""

from __future__ import annotations

import logging
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

logger = logging.getLogger(__name__)


class ResumableOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that skips results of trials its study has already finished (see module doc)."""

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            logger.warning("trial %s is finished in the Optuna study already (a resumed search redoes the work "
                           "after Tune's last saved state); its redone result at iteration %s is not reported again",
                           trial_id, result.get("training_iteration"))
