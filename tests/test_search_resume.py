"""Every Optuna recipe survives a driver killed while its Optuna study is ahead of Tune's saved state.

The study (optuna.db) is written the moment a trial finishes; Tune saves its own state (trial statuses,
the searcher) only every so often. A driver SIGKILLed in between leaves a study that holds a trial as
finished while Tune's state still lists it as running: ``--resume`` reruns that trial's last epochs
from its checkpoint and reports them to the searcher again. The shared search set-up
(:mod:`tcnvae.tuning.search`) gives every recipe the searcher that skips those reports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import ray

from helpers import SEARCHES, TINY_FLAGS as TINY, read_csv, recipe, saved_statuses, wait_for


def _finished_in_study(experiment: Path) -> int:
    """Trials the Optuna study of ``experiment`` holds as complete (0 before the study exists).

    Read-only through sqlite itself: opening the file with Optuna while the driver creates it would
    race the driver's own set-up of the schema."""
    database = experiment / "optuna.db"
    if not database.is_file():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as connection:
            return connection.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.OperationalError:  # the tables are not there yet, or the driver holds a write lock
        return 0


@pytest.mark.ray
def test_a_curriculum_search_killed_while_its_study_is_ahead_of_tune_resumes(ray_cluster, tmp_path):
    experiment = tmp_path / "curriculum_killed"
    argv = ["--storage-path", str(tmp_path), "--name", experiment.name, "--num-samples", "3", "--max-epochs", "3",
            "--max-concurrent", "1", "--curricula", "none,objective_ramp", *TINY]
    address = ray.get_runtime_context().gcs_address
    # Tune saves its state at the start and when a trial has written num_to_keep checkpoints since
    # the last save, never on a timer here: a trial that finishes is in the study at once and in
    # Tune's saved state only later, the window this test kills the driver in.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    driver = subprocess.Popen([sys.executable, str(SEARCHES / "curriculum.py"), *argv, "--address", address],
                              env={**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "3600"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def study_has_a_finished_trial() -> bool:
            assert driver.poll() is None, f"the search driver exited with {driver.returncode} before it was killed"
            return _finished_in_study(experiment) >= 1

        wait_for(study_has_a_finished_trial, "the Optuna study to hold a finished trial")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
    assert driver.returncode == -signal.SIGKILL
    saved = saved_statuses(experiment)
    finished_by_tune = sum(status == "TERMINATED" for status in saved.values())
    # The situation under test: the study is ahead of the state Tune resumes from.
    assert _finished_in_study(experiment) > finished_by_tune

    recipe("curriculum").main([*argv, "--resume"])
    board = read_csv(experiment / "leaderboard.csv")
    assert len(board) == 3 and {row["status"] for row in board} == {"completed"}
    study = optuna.load_study(study_name=experiment.name, storage=f"sqlite:///{experiment / 'optuna.db'}")
    states = [trial.state for trial in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 3
    # A trial the study handed out after Tune's last save is failed, not left running for good.
    assert optuna.trial.TrialState.RUNNING not in states
