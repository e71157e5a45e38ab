"""An OptunaSearch that survives a search driver killed with SIGKILL and resumed.

Why: the Optuna study lives in optuna.db and is written at once, while Tune saves its own state
(trial statuses, the searcher) only every so often. A driver killed between the two leaves a study
ahead of Tune's state, in two ways:

- a trial the study already holds as finished is listed by Tune as running, is resumed from its
  latest saved checkpoint, and its redone epochs' results go to Optuna, which refuses to update a
  finished trial (optuna.exceptions.UpdateFinishedTrialError): the resumed search would die. The
  study already has those results, so they are skipped (and counted in the log);
- a trial the study handed out (``ask``) after Tune's last save is unknown to the restored searcher,
  so no Tune trial will ever report to it: it would stay RUNNING in the study for good. It is
  marked FAIL on restore (TPE learns from complete trials only), and the search asks afresh.
"""

from __future__ import annotations

import logging
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

logger = logging.getLogger(__name__)


class ResumableOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that skips results of trials its study has already finished and fails the study's
    trials that no Tune trial holds after a restore (see module doc)."""

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            logger.warning("trial %s is finished in the Optuna study already (a resumed search redoes the work "
                           "after Tune's last saved state); its redone result at iteration %s is not reported again",
                           trial_id, result.get("training_iteration"))

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        held = {trial.number for trial in self._ot_trials.values()}
        for orphan in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if orphan.number not in held:
                self._ot_study.tell(orphan.number, state=TrialState.FAIL)
                logger.warning("Optuna trial %d was handed out after Tune's last saved state and no trial runs "
                               "it: marked FAIL", orphan.number)
