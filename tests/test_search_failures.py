"""Failures after Ray starts end cleanly: an error that recurs is not retried, a search every trial of
which failed is one ``error:`` line, signals give the resume hint and a non-zero status, a resume says
which settings it ignores, a data file gone at the end costs no leaderboard; and the console is quiet."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from types import SimpleNamespace

import pytest
import ray

from tcnvae.trainer import TrainingDivergedError
from tcnvae.tuning import cli, cluster, search, trainables
from tcnvae.tuning.report import SearchProgress, quiet_worker_logging

from helpers import SEARCHES, TINY_FLAGS as TINY, TINY_MODEL_FLAGS as TINY_MODEL, arrays_file, read_csv, recipe


def _run(argv: list[str], main=None) -> int:
    with pytest.raises(SystemExit) as exit_info:
        cli.run_command(main or recipe("loss_weights").main, argv)
    return exit_info.value.code


# --- a recurring error is recorded and refused at the retry; a transient one is retried ---

def test_a_recurring_error_is_recorded_and_its_retry_refuses_at_once(tmp_path):
    with pytest.raises(TrainingDivergedError):
        with trainables.no_retry_of_recurring_errors(tmp_path):
            raise TrainingDivergedError("the loss was non-finite; lower the learning rate")
    record = json.loads((tmp_path / trainables.RECORD_FILE).read_text())
    assert record["error"] == "TrainingDivergedError: the loss was non-finite; lower the learning rate"
    trained = []
    with pytest.raises(trainables.RecurringTrialError, match="not retried: TrainingDivergedError") as refused:
        with trainables.no_retry_of_recurring_errors(tmp_path):
            trained.append(1)
    assert trained == [] and refused.value.user_error


@pytest.mark.parametrize("error", [MemoryError("out of memory"), ConnectionError("storage unreachable"),
                                   RuntimeError("CUDA error: an illegal memory access")])
def test_an_error_of_the_moment_is_left_to_tunes_retry(tmp_path, error):
    with pytest.raises(type(error)):
        with trainables.no_retry_of_recurring_errors(tmp_path):
            raise error
    assert not (tmp_path / trainables.RECORD_FILE).exists()
    with trainables.no_retry_of_recurring_errors(tmp_path):
        pass  # the retry trains


def test_a_resumed_search_another_ray_job_tries_an_errored_trial_again(tmp_path):
    (tmp_path / trainables.RECORD_FILE).write_text(json.dumps({"error": "ValueError: x", "user_error": True,
                                                             "job": "an earlier job"}))
    with trainables.no_retry_of_recurring_errors(tmp_path):
        pass


# --- run_command: user-facing errors are one line, programming errors keep their traceback ---

def _raising(error: BaseException):
    def main(argv):
        raise error
    return main


@pytest.mark.parametrize("error", [
    IsADirectoryError(21, "Is a directory", "out"), PermissionError(13, "Permission denied", "data.csv"),
    UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), FileNotFoundError(2, "No such file", "x"),
], ids=["directory", "permission", "codec", "missing"])
def test_a_user_facing_error_is_one_error_line_with_status_2(capsys, error):
    assert _run([], _raising(error)) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: {error}"]


def test_a_programming_error_keeps_its_traceback():
    with pytest.raises(TypeError):
        cli.run_command(_raising(TypeError("unsupported operand")), [])


def test_a_failed_search_is_one_line_for_a_user_error_and_the_traceback_for_a_bug(capsys):
    user = trainables.SearchFailedError("every trial failed; all 2 trials with TrainingDivergedError: x", True,
                                      "Traceback ... TrainingDivergedError: x")
    assert _run([], _raising(user)) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: {user}"]
    bug = trainables.SearchFailedError("every trial failed; all 2 trials with TypeError: y", False,
                                     "Traceback (most recent call last):\n  ...\nTypeError: y")
    assert _run([], _raising(bug)) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and err.splitlines()[-1] == f"error: {bug}"


def _failed(error: BaseException | None):
    return SimpleNamespace(error=error)


def test_a_search_is_failed_only_when_every_trial_failed_and_the_cause_decides_the_status(tmp_path):
    diverged = TrainingDivergedError("the loss was non-finite; lower the learning rate")
    refused = trainables.RecurringTrialError(f"not retried: {trainables.describe(diverged)} (it would recur)")
    trainables.check_search_outcome([_failed(diverged), _failed(None)], tmp_path)  # one trial finished
    trainables.check_search_outcome([], tmp_path)
    with pytest.raises(trainables.SearchFailedError) as failed:
        trainables.check_search_outcome([_failed(refused), _failed(diverged), _failed(TypeError("bad operand"))],
                                      tmp_path)
    assert str(failed.value).startswith("every trial failed; 2 of the 3 trials with TrainingDivergedError: the "
                                        "loss was non-finite; lower the learning rate (1 other error ended the rest)")
    assert failed.value.user_error and str(tmp_path) in str(failed.value)
    with pytest.raises(trainables.SearchFailedError) as failed:
        trainables.check_search_outcome([_failed(TypeError("bad operand"))], tmp_path)
    assert not failed.value.user_error and "TypeError: bad operand" in str(failed.value)


def test_ctrl_c_outside_the_search_exits_130(capsys):
    assert _run([], _raising(KeyboardInterrupt())) == 130
    assert "interrupted (SIGINT)" in capsys.readouterr().err


# --- the progress line on a terminal ---

class _Trial(SimpleNamespace):
    def __str__(self) -> str:
        return "001_lr=0.1"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_progress_line_is_rewritten_in_place_and_failures_go_above_it(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    trials = [_Trial(status="RUNNING", last_result={"val/accuracy": 0.5, "training_iteration": 1}, config={},
                     pickled_error_file=None)]
    progress = SearchProgress("val/accuracy", 2, print_every_seconds=0, clock=lambda: 0.0)
    progress.setup(total_num_samples=1)
    progress.on_trial_result(0, trials, trials[0], {})
    progress.on_trial_result(0, trials, trials[0], {})
    progress.on_trial_error(0, trials, trials[0])
    progress.on_experiment_end(trials)
    lines = terminal.getvalue().split("\n")
    assert lines[0].count("\r\x1b[2K") == 2 and "1 running" in lines[0]  # one line, written twice
    assert lines[1] == "trial 001 failed: see its error.txt"
    assert "1 errored" in lines[2] and lines[3] == ""  # the last state, ended by a newline


# --- --resume names what it ignores ---

def test_resume_names_the_settings_it_ignores(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv(cluster.STATE_ENV, str(tmp_path / "state"))
    (tmp_path / "e").mkdir()
    args = cli.search_parser("test").parse_args([
        "--storage-path", str(tmp_path), "--name", "e", "--resume", "--set", "lr=0.01", "--max-epochs", "3",
        "--data", "synthetic", "--cpus-per-trial", "2"])
    with caplog.at_level(logging.WARNING):
        cli.experiment_path(args, "x")
    assert "--data synthetic, --set lr=0.01, --max-epochs 3 are ignored with --resume" in caplog.text
    assert "--cpus-per-trial" not in caplog.text.split("ignored")[0]


# --- the worker-side logging hook ---

def test_the_worker_hook_raises_rays_loggers_to_warnings():
    ray_logger = logging.getLogger("ray")
    level = ray_logger.level
    try:
        quiet_worker_logging()
        assert not logging.getLogger("ray.train._internal.storage").isEnabledFor(logging.INFO)
        assert logging.getLogger("ray.train._internal.storage").isEnabledFor(logging.WARNING)
    finally:
        ray_logger.setLevel(level)


# --- on the suite's Ray cluster ---

@pytest.mark.slow
@pytest.mark.ray
def test_a_search_whose_every_trial_diverges_is_one_error_line_and_no_trial_trains_twice(ray_cluster, tmp_path,
                                                                                        capsys):
    code = _run(["--storage-path", str(tmp_path), "--name", "diverged", "--num-samples", "2", "--max-epochs", "2",
                 "--scheduler", "fifo", "--max-failures", "2", "--set", "lr=1000", *TINY])
    out, err = capsys.readouterr()
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "every trial failed; all 2 trials with TrainingDivergedError" in errors[0]
    assert "lower the learning rate" in errors[0]
    assert "Traceback" not in out + err
    failed = [line for line in out.splitlines() if line.startswith("trial ") and " failed" in line]
    assert len(failed) == 2  # once each: Tune's restarts, refused at once, are not shown
    assert all("TrainingDivergedError" in line and line.endswith("not retried: it would recur") for line in failed)
    error_files = list((tmp_path / "diverged").glob("*/error.txt"))
    assert len(error_files) == 2
    for error_file in error_files:  # the first try diverged; Tune's restarts refused without training
        text = error_file.read_text()
        assert text.count("tcnvae.trainer.TrainingDivergedError:") == 1
        assert text.count("Failure #") == 1 + text.count("RecurringTrialError: not retried")


@pytest.mark.slow
@pytest.mark.ray
def test_a_data_file_deleted_during_the_search_costs_no_leaderboard(ray_cluster, tmp_path, monkeypatch, caplog):
    data_file = arrays_file(tmp_path / "recordings.npz")
    run_search = search.run_search

    def delete_data_then_return(*args, **kwargs):
        results = run_search(*args, **kwargs)
        data_file.unlink()  # gone before the summary fits the baseline on it
        return results

    monkeypatch.setattr(search, "run_search", delete_data_then_return)
    recipe("loss_weights").main(["--storage-path", str(tmp_path), "--name", "gone", "--num-samples", "2",
                                 "--max-epochs", "1", "--data", "arrays", "--data-path", f"arrays={data_file}",
                                 "--set", "batch_size=8", *TINY_MODEL])
    rows = read_csv(tmp_path / "gone" / "leaderboard.csv")
    assert len(rows) == 2 and all(row["status"] == "completed" for row in rows)
    assert (tmp_path / "gone" / "best_config.json").exists()
    assert "baseline not fitted" in caplog.text and "recordings.npz" in caplog.text


@pytest.mark.slow
@pytest.mark.ray
def test_the_console_of_a_search_has_no_ray_internals_unless_verbose(ray_cluster, tmp_path):
    """The search runs as its own driver joined to this session's cluster, so its workers get the search's
    logging hook; what it prints is the data line, the search lines, progress lines and the summary."""
    argv = ["--storage-path", str(tmp_path), "--name", "quiet", "--num-samples", "1", "--max-epochs", "2",
            "--scheduler", "fifo", "--address", ray.get_runtime_context().gcs_address, *TINY]
    run = subprocess.run([sys.executable, str(SEARCHES / "loss_weights.py"), *argv], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    printed = run.stdout + run.stderr
    for internal in ("Checkpoint successfully created", "Configuration for experiment", "View detailed results",
                     "Connecting to existing Ray cluster", "Wrote the latest version", "A new study created",
                     "tcnvae_trial pid="):
        assert internal not in printed
    assert "Leaderboard (1 trials)" in run.stdout
    assert len(printed.splitlines()) < 45
