"""Your own data through the searches' command lines: new activity names, data checked before Ray,
`error:` lines instead of tracebacks, fixed keys, search spaces and schedulers fitted to the data."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import ray
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.sample import Categorical

from tcnvae.tuning import cli, search, validate_config
from tcnvae.tuning.report import trial_settings

from helpers import TINY_FLAGS as TINY, TINY_MODEL_FLAGS as TINY_MODEL, arrays_file, read_csv, recipe

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def new_names_file(tmp_path_factory) -> Path:
    return arrays_file(tmp_path_factory.mktemp("byo") / "exercises.npz")


def _arrays(path: Path) -> list[str]:
    return ["--data", "arrays", "--data-path", f"arrays={path}"]


# -- 1. new activity names and label_map ---------------------------------------------------------------

@pytest.mark.ray
def test_a_search_on_new_activity_names_runs_every_trial_and_fixes_what_set_gives(
        ray_cluster, tmp_path, new_names_file, capsys):
    results = recipe("loss_weights").main([
        "--storage-path", str(tmp_path), "--name", "byo", "--num-samples", "2", "--max-epochs", "1",
        "--set", "batch_size=8", *_arrays(new_names_file), *TINY_MODEL])
    assert not results.errors and len(results) == 2
    assert all(result.metrics["epoch"] == 1 for result in results)
    assert all(result.config["batch_size"] == 8 for result in results)  # fixed, never sampled
    assert len({result.config["lr"] for result in results}) == 2  # the rest is searched
    best = json.loads((tmp_path / "byo" / "best_config.json").read_text())
    assert best["activities"] == ["pendulum", "plank", "squat"]  # the head's order, recorded
    assert "batch_size" not in read_csv(tmp_path / "byo" / "leaderboard.csv")[0]
    printed = capsys.readouterr().out
    assert "Searching: lr, beta, lambda_act, lambda_dom, dropout\n" in printed
    assert "Fixed by --config/--set: batch_size=8" in printed
    assert "ASHA: grace period 1 >= max_epochs 1" in printed


def test_label_map_from_the_command_line_pools_your_names_with_the_taxonomy(new_names_file):
    args = cli.search_parser("test").parse_args([
        *_arrays(new_names_file), "--set", 'source_options={"arrays": {"label_map": {"pendulum": "walking"}}}'])
    config, data = cli.prepare_data(cli.base_config(args, {}))
    assert data.activity_names == config["activities"] == ["walking", "plank", "squat"]


# -- 2. data problems before Ray, 3. one `error:` line -------------------------------------------------

def _bad_data(tmp_path: Path, case: str) -> list[str]:
    if case == "missing file":
        return _arrays(tmp_path / "absent.npz")
    if case == "corrupt file":
        (tmp_path / "corrupt.npz").write_bytes(b"not an archive")
        return _arrays(tmp_path / "corrupt.npz")
    if case == "wrong shape":
        np.savez(tmp_path / "cube.npz", signals=np.zeros((2, 3, 4, 5)), labels=np.zeros(2, int),
                 label_names=np.array(["pendulum"]), channel_names=np.array(["acc_x"]), sample_rate=50.0)
        return _arrays(tmp_path / "cube.npz")
    if case == "NaN":
        return _arrays(arrays_file(tmp_path / "nan.npz", nan=True))
    if case == "forgotten --data-path":
        return ["--data", "arrays"]
    if case == "channels the data lacks":
        return _arrays(arrays_file(tmp_path / "acc_only.npz", channels=slice(0, 3)))
    if case == "unknown split subject":
        return [*_arrays(arrays_file(tmp_path / "ok.npz")), "--set", "split=loso:arrays:nobody"]
    assert case == "unknown target domain"
    return [*_arrays(arrays_file(tmp_path / "ok.npz")), "--metric", "target_accuracy", "--target-domain", "gym"]


BAD_DATA = {
    "missing file": "absent.npz not found",
    "corrupt file": "corrupt.npz is not a readable .npz archive",
    "wrong shape": r"signals have shape \(2, 3, 4, 5\)",
    "NaN": "1 NaN or infinite values",
    "forgotten --data-path": "--data-path arrays=FILE.npz",
    "channels the data lacks": r"needs gyro_x.*channel_set accepts a named set .* or a list of channel names",
    "unknown split subject": "no windows with subject 'arrays:nobody'; present: arrays:p0",
    "unknown target domain": "no windows with dataset 'gym'; present: arrays",
}


@pytest.mark.parametrize("case", BAD_DATA)
def test_bad_data_is_one_message_before_ray_starts(monkeypatch, tmp_path, case):
    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started before the data was checked")

    argv = _bad_data(tmp_path, case)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    storage = tmp_path / "results"
    with pytest.raises((ValueError, FileNotFoundError), match=BAD_DATA[case]):
        recipe("loss_weights").main(["--storage-path", str(storage), *argv])
    assert not storage.exists()


@pytest.mark.slow
def test_a_user_error_on_the_command_line_is_one_error_line_with_status_2_and_no_ray(tmp_path):
    command = [sys.executable, str(ROOT / "searches" / "curriculum.py"), "--storage-path", str(tmp_path),
               *_arrays(tmp_path / "absent.npz")]
    started = time.monotonic()
    plain = subprocess.run(command, capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - started
    assert plain.returncode == 2
    assert plain.stderr.strip().splitlines() == [f"error: arrays file {tmp_path / 'absent.npz'} not found "
                                                 "(expected a .npz file)"]
    assert "Ray" not in plain.stdout + plain.stderr and seconds < 60  # imports only (CPU shared)
    debug = subprocess.run([*command, "--debug"], capture_output=True, text=True, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "FileNotFoundError" in debug.stderr


# -- 4. fixed keys leave the space, 5. spaces and schedulers fit the data -------------------------------

def test_config_and_set_keys_leave_the_search_space_and_batch_sizes_fit_the_training_set(tmp_path, capsys):
    config_file = tmp_path / "best_config.json"
    config_file.write_text(json.dumps({"lr": 5e-4, "beta": 0.3}))
    args = cli.search_parser("test").parse_args(["--config", str(config_file), "--set", "dropout=0.2"])
    config = cli.base_config(args, {})
    loss_weights = recipe("loss_weights")
    space = cli.search_space(args, config, loss_weights.SPACE, train_windows=34)
    assert set(space) == {"lambda_act", "lambda_dom", "batch_size"}
    assert isinstance(space["batch_size"], Categorical) and space["batch_size"].categories == [2, 4]
    printed = capsys.readouterr().out
    assert "batch_size choices [32, 64, 128] capped at 4" in printed
    assert "Fixed by --config/--set: lr=0.0005, beta=0.3, dropout=0.2" in printed
    grid = cli.search_space(args, config, search.two_level_grid(loss_weights.SPACE), train_windows=2000)
    assert grid["batch_size"] == {"grid_search": [32, 128]}  # enough data: nothing capped
    everything = cli.search_parser("test").parse_args(["--config", str(config_file)])
    with pytest.raises(ValueError, match="nothing is left to search"):
        cli.search_space(everything, config, {"lr": [1e-4, 1e-3], "beta": [0.1, 1.0]}, train_windows=2000)


def test_schedulers_fit_the_epochs_instead_of_failing_inside_ray(capsys):
    loss_weights = recipe("loss_weights")
    assert [loss_weights.default_grace_period(epochs) for epochs in (1, 3, 10, 40)] == [1, 1, 2, 10]
    assert isinstance(search.asha("val/accuracy", 10, loss_weights.default_grace_period(10), 2), ASHAScheduler)
    assert isinstance(search.asha("val/accuracy", 3, grace_period=4, reduction_factor=2), FIFOScheduler)
    assert "grace period 4 >= max_epochs 3" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--reduction-factor 1"):
        search.asha("val/accuracy", 10, grace_period=2, reduction_factor=1)
    assert search.perturbation_interval(2, 10) == 2
    assert search.perturbation_interval(4, 4) == 2
    assert "lowered to 2" in capsys.readouterr().out


@pytest.mark.ray
@pytest.mark.parametrize("name, extra", [
    ("loss_weights", ["--num-samples", "1", "--search", "random"]),
    ("curriculum", ["--num-samples", "1", "--curricula", "single_to_cross"]),
    ("beta_annealing", ["--num-samples", "2"]),
])
def test_every_search_runs_with_one_epoch(ray_cluster, tmp_path, name, extra):
    results = recipe(name).main(["--storage-path", str(tmp_path), "--name", name, "--max-epochs", "1",
                                 *extra, *TINY])
    assert not results.errors and all(result.metrics["epoch"] == 1 for result in results)
    best = json.loads((tmp_path / name / "best_config.json").read_text())
    settings = trial_settings(best)  # best_config.json also holds the test record, which is no setting
    assert validate_config(settings) == settings and settings["max_epochs"] == 1


@pytest.mark.parametrize("name, extra", [("pretrain", ["--max-epochs", "1"]), ("lr_range", ["--epochs", "1"])])
def test_the_plain_runs_check_their_data_the_same_way(tmp_path, new_names_file, name, extra):
    recipe(name).main(["--storage-path", str(tmp_path), "--name", name, *extra, *_arrays(new_names_file),
                       "--set", "batch_size=8", *TINY_MODEL])
    with pytest.raises(FileNotFoundError, match="absent.npz not found"):
        recipe(name).main(["--storage-path", str(tmp_path), "--name", f"{name}-bad", *extra,
                           *_arrays(tmp_path / "absent.npz")])
