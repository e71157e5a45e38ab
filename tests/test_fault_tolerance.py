"""Fault tolerance measured on the suite's Ray cluster: real processes killed with SIGKILL.

- a trial's worker process killed in the middle of an epoch is restarted from its last checkpoint;
- the search driver killed mid-experiment: ``--resume`` finishes the search without rerunning the
  trials it had finished, and the leaderboard lists every trial once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray
from ray import tune

from tcnvae.tuning import tune_logger_callbacks

from helpers import (PATIENCE_SECONDS, SEARCHES, TINY_FLAGS as TINY, TINY_TRIAL, epochs_reported, read_csv, recipe,
                     saved_statuses, trial_with_epoch_hook, wait_for)


@pytest.mark.ray
def test_trial_process_killed_mid_epoch_resumes_from_its_last_checkpoint(ray_cluster, tmp_path):
    """The trial logs (process, epoch) as each epoch starts; the first process parks in epoch 2 (the
    third: its history entry and curriculum stage applied, before its first batch) after writing its
    pid, and the test SIGKILLs it there, from outside."""
    epochs_log = tmp_path / "epochs.log"
    victim_file = tmp_path / "victim.pid"

    def log_and_park_in_epoch_2(epoch: int) -> None:
        with open(epochs_log, "a") as log:
            log.write(f"{os.getpid()} {epoch}\n")
        if epoch == 2 and not victim_file.exists():
            victim_file.write_text(str(os.getpid()))
            time.sleep(PATIENCE_SECONDS)  # killed here: inside epoch 2, between two checkpoints

    killed: list[int] = []

    def kill_the_parked_trial() -> None:
        wait_for(lambda: victim_file.is_file() and victim_file.read_text().strip() != "",
                 "the trial to reach epoch 2")
        killed.append(int(victim_file.read_text()))
        os.kill(killed[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_the_parked_trial, daemon=True)
    killer.start()
    tuner = tune.Tuner(
        tune.with_resources(trial_with_epoch_hook(log_and_park_in_epoch_2), {"cpu": 1}),
        param_space={**TINY_TRIAL, "max_epochs": 4},
        run_config=tune.RunConfig(name="killed", storage_path=str(tmp_path), callbacks=tune_logger_callbacks(),
                                  failure_config=tune.FailureConfig(max_failures=1), verbose=0),
    )
    result = tuner.fit()[0]
    killer.join(timeout=PATIENCE_SECONDS)

    assert killed and result.error is None
    log = [tuple(int(field) for field in line.split()) for line in epochs_log.read_text().splitlines()]
    first, second = killed[0], log[-1][0]
    assert first != second, "the retry ran in a new process"
    # Epochs 0 and 1 ran once, in the killed process; the interrupted epoch 2 was run again, in the
    # new process, which restored the checkpoint of epoch 1 instead of starting over.
    assert log == [(first, 0), (first, 1), (first, 2), (second, 2), (second, 3)]
    assert result.metrics_dataframe["epoch"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert epochs_reported(Path(result.path)) == [1, 2, 3, 4]  # no epoch reported twice


@pytest.mark.ray
def test_driver_killed_mid_search_is_resumed_without_rerunning_finished_trials(ray_cluster, tmp_path):
    """The search runs in its own driver process joined to this session's cluster and is SIGKILLed
    once Tune's saved state lists a finished trial; ``--resume`` in this process finishes it.

    "Finished" is what that saved state says: the driver may have finished more (or more epochs)
    after its last save, and those are redone from their latest saved checkpoint."""
    experiment = tmp_path / "driver_killed"
    argv = ["--storage-path", str(tmp_path), "--name", experiment.name, "--num-samples", "4", "--max-epochs", "3",
            "--max-concurrent", "1", "--scheduler", "fifo", *TINY]
    address = ray.get_runtime_context().gcs_address
    # Tune saves its state every 10 s or more by default, long enough for the whole search to end
    # between two saves on an idle machine; every second leaves the kill room to land mid-search.
    driver = subprocess.Popen([sys.executable, str(SEARCHES / "loss_weights.py"), *argv, "--address", address],
                              env={**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "1"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def one_trial_finished() -> bool:
            assert driver.poll() is None, f"the search driver exited with {driver.returncode} before it was killed"
            return "TERMINATED" in saved_statuses(experiment).values()

        wait_for(one_trial_finished, "Tune's saved state to list a finished trial")
        finished_before_kill = {trial for trial, status in saved_statuses(experiment).items()
                                if status == "TERMINATED"}
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
    assert driver.returncode == -signal.SIGKILL
    assert not (experiment / "leaderboard.csv").exists()
    assert 1 <= len(finished_before_kill) < 4
    progress = {trial: (_trial_folder(experiment, trial) / "progress.csv").read_text()
                for trial in finished_before_kill}

    recipe("loss_weights").main([*argv, "--resume"])
    board = read_csv(experiment / "leaderboard.csv")
    assert len(board) == 4 and len({row["trial"] for row in board}) == 4
    assert {row["status"] for row in board} == {"completed"}
    for row in board:
        # Work done after Tune's last saved state (every second here, 10 s or more by default) is
        # redone on resume, from the latest checkpoint that state lists (from scratch for a trial
        # it lists none for): an epoch may be reported twice, and a redone epoch reproduces its
        # metrics exactly (the checkpoint holds the RNG states, the batch order is seeded).
        rows = read_csv(experiment / row["trial"] / "progress.csv")
        epochs = [int(float(report["epoch"])) for report in rows]
        assert epochs == sorted(epochs) and set(epochs) == {1, 2, 3}
        for epoch in set(epochs):
            reports = {(report["val/loss"], report["val/accuracy"], report["loss/total"])
                       for report in rows if int(float(report["epoch"])) == epoch}
            assert len(reports) == 1, f"{row['trial']} epoch {epoch} redone with other results: {reports}"
    for trial, text in progress.items():  # trials finished before the kill were not run again
        assert (_trial_folder(experiment, trial) / "progress.csv").read_text() == text


def _trial_folder(experiment: Path, trial_id: str) -> Path:
    """The folder of the trial with Tune id ``trial_id`` (folders are named by index and drawn values)."""
    for folder in experiment.iterdir():
        result = folder / "result.json"
        if result.is_file() and f'"trial_id": "{trial_id}"' in result.read_text():
            return folder
    raise AssertionError(f"no trial folder of {trial_id} in {experiment}")
