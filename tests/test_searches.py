"""The search recipes, run in-process on tiny synthetic data against the suite's one Ray cluster,
and the pieces they are built from (flags → config, leaderboard, Pareto front)."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from pathlib import Path

import optuna
import pytest
import ray
import torch
from ray import tune
from ray.tune import ExperimentAnalysis
from ray.tune.search.sample import Categorical
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tcnvae.checkpoints import load_checkpoint
from tcnvae import beta_schedules
from tcnvae.tuning import CHECKPOINT_FILE, cli, search, validate_config
from tcnvae.tuning.report import (SNAPSHOT_LOGGER, SNAPSHOT_WARNING, SearchProgress, format_duration, pareto_front,
                                  rank, trial_settings, write_csv)

from helpers import TINY_FLAGS as TINY, TINY_MODEL_FLAGS as TINY_MODEL, epochs_reported, read_csv, recipe


# -- leaderboard and Pareto front ---------------------------------------------------------------------

def test_rank_orders_by_objective_then_tiebreak_and_puts_missing_values_last():
    rows = [{"trial": "a", "acc": 0.5, "worst": 0.1}, {"trial": "b", "acc": math.nan, "worst": 0.9},
            {"trial": "c", "acc": 0.7, "worst": 0.2}, {"trial": "d", "acc": 0.5, "worst": 0.3}]
    ranked = rank(rows, ["acc", "worst"])
    assert [row["trial"] for row in ranked] == ["c", "d", "a", "b"]
    assert [row["rank"] for row in ranked] == [1, 2, 3, 4]


def test_pareto_front_keeps_exactly_the_non_dominated_trials():
    rows = [{"trial": "balanced", "acc": 0.8, "worst": 0.7}, {"trial": "accurate", "acc": 0.9, "worst": 0.5},
            {"trial": "robust", "acc": 0.6, "worst": 0.8}, {"trial": "dominated", "acc": 0.7, "worst": 0.6},
            {"trial": "duplicate", "acc": 0.8, "worst": 0.7}, {"trial": "failed", "acc": math.nan, "worst": 0.9}]
    front = {row["trial"] for row in pareto_front(rows, ["acc", "worst"])}
    assert front == {"balanced", "accurate", "robust", "duplicate"}


def test_write_csv_is_atomic_and_leaves_result_objects_out(tmp_path):
    path = tmp_path / "leaderboard.csv"
    write_csv([{"trial": "a", "lr": 1e-3, "result": object()}, {"trial": "b", "lr": 2e-3, "extra": 1}], path)
    assert read_csv(path) == [{"trial": "a", "lr": "0.001", "extra": ""}, {"trial": "b", "lr": "0.002", "extra": "1"}]
    assert [p.name for p in tmp_path.iterdir()] == ["leaderboard.csv"]  # no temporary file left behind


# -- flags → config -----------------------------------------------------------------------------------

def test_settings_precedence_is_recipe_then_config_file_then_flags_then_set(tmp_path):
    config_file = tmp_path / "best_config.json"
    config_file.write_text(json.dumps({"beta": 0.3, "lr": 5e-4, "seed": 7, "objective": "worst_domain_accuracy"}))
    args = cli.search_parser("test").parse_args(
        ["--config", str(config_file), "--seed", "3", "--set", "lr=2e-4", "--set", "split=lodo:synthetic_b",
         "--data-path", "synthetic=/nowhere"])
    config = cli.base_config(args, {"beta": 0.9, "max_epochs": 5})
    assert (config["beta"], config["lr"], config["seed"], config["max_epochs"]) == (0.3, 2e-4, 3, 5)
    assert config["objective"] == "worst_domain_accuracy"  # flags left out do not reset the file's values
    assert config["split"] == "lodo:synthetic_b"  # a --set value that is not JSON stays a string
    assert config["data_paths"] == {"synthetic": "/nowhere"}


@pytest.mark.parametrize("argv, message", [
    (["--set", "lr"], "expected KEY=VALUE"),
    (["--set", "learning_rate=0.1"], "unknown config keys"),
    (["--num-samples", "0"], "--num-samples 0"),
    (["--config", "/no/such/file.json"], "does not exist"),
])
def test_bad_flags_are_named(argv, message):
    args = cli.search_parser("test").parse_args(argv)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        cli.base_config(args, {})


def test_a_new_search_starts_from_the_defaults_moved_into_its_ranges():
    config = validate_config({})
    space = recipe("loss_weights").SPACE
    first = search.defaults_trial({**config, **space}, config)
    assert first == {key: config[key] for key in space}  # lr, the loss weights, batch size, dropout
    narrowed = search.defaults_trial({**config, **space, "lr": tune.loguniform(1e-4, 1e-3)}, config)
    assert narrowed == {**first, "lr": 1e-3}  # lr 2e-3: the nearest end of the range
    assert search.defaults_trial({**config, "batch_size": tune.choice([16, 32])}, config) == {"batch_size": 32}
    assert search.defaults_trial({**config, "max_epochs": tune.randint(5, 20)}, config) == {"max_epochs": 19}
    assert search.defaults_trial({**config, "optimizer": tune.choice(["sgd"])}, config) is None  # nothing near
    assert search.defaults_trial({**config, **search.two_level_grid(space)}, config) is None  # a grid is its own design
    assert search.defaults_trial(config, config) is None  # nothing searched


def describe(domain):
    """A Tune domain as comparable data: its kind, its sampler and its range or choices."""
    values = domain.categories if isinstance(domain, Categorical) else [domain.lower, domain.upper]
    return type(domain).__name__, type(domain.get_sampler()).__name__.strip("_"), values


def test_the_recipes_search_the_ranges_their_docstrings_quote():
    """Each recipe writes its own space; where one says it searches another's ranges, they are the same."""
    loss_weights, curriculum, beta_annealing = map(recipe, ("loss_weights", "curriculum", "beta_annealing"))
    assert {key: describe(domain) for key, domain in loss_weights.SPACE.items()} == {
        "lr": ("Float", "LogUniform", [5e-4, 5e-3]), "beta": ("Float", "Uniform", [0.1, 1.0]),
        "lambda_act": ("Float", "Uniform", [1.0, 5.0]), "lambda_dom": ("Float", "LogUniform", [0.01, 0.1]),
        "batch_size": ("Categorical", "Uniform", [32, 64, 128]), "dropout": ("Float", "Uniform", [0.1, 0.5])}
    assert ({key: describe(domain) for key, domain in curriculum.SPACE.items()}
            == {key: describe(domain) for key, domain in loss_weights.SPACE.items()})
    # PBT moves the loss weights within the same ranges, and with --adapt unlabelled the same adaptation ranges.
    assert beta_annealing.BOUNDS == {key: describe(loss_weights.SPACE[key])[2] for key in beta_annealing.BOUNDS}
    assert beta_annealing.ADAPTATION_BOUNDS == {key: describe(domain)[2]
                                                for key, domain in loss_weights.ADAPTATION_SPACE.items()}
    # --search grid: each range's two ends, 2^6 = 64 combinations.
    grid = search.two_level_grid(loss_weights.SPACE)
    assert grid == {"lr": {"grid_search": [5e-4, 5e-3]}, "beta": {"grid_search": [0.1, 1.0]},
                    "lambda_act": {"grid_search": [1.0, 5.0]}, "lambda_dom": {"grid_search": [0.01, 0.1]},
                    "batch_size": {"grid_search": [32, 128]}, "dropout": {"grid_search": [0.1, 0.5]}}
    with pytest.raises(ValueError, match="no low and high end"):
        search.two_level_grid({"hidden_dims": tune.sample_from(lambda _: [64])})


def test_search_space_ends_are_validated():
    config = validate_config({})
    cli.validate_space(config, {"lr": [1e-4, 1e-3], "dropout": [0.1, 0.5]})
    with pytest.raises(ValueError, match="search space dropout=1.5"):
        cli.validate_space(config, {"dropout": [0.1, 1.5]})


def test_resume_needs_an_existing_experiment_and_a_new_run_a_new_folder(tmp_path):
    parser = cli.search_parser("test")
    with pytest.raises(ValueError, match="--resume needs --name"):
        cli.experiment_path(parser.parse_args(["--storage-path", str(tmp_path), "--resume"]), "x")
    with pytest.raises(FileNotFoundError, match="no experiment at"):
        cli.experiment_path(parser.parse_args(["--storage-path", str(tmp_path), "--name", "e", "--resume"]), "x")
    (tmp_path / "e").mkdir()
    with pytest.raises(ValueError, match="exists; pass --resume"):
        cli.experiment_path(parser.parse_args(["--storage-path", str(tmp_path), "--name", "e"]), "x")


@pytest.mark.parametrize("argv, message", [
    (["--set", "beta=-0.5"], "beta=-0.5"),
    (["--set", "datasets=[]"], "datasets is empty"),
    (["--data", "no_such_dataset"], "unknown datasets"),
    (["--lr-range", "1e-3", "1e-4"], "--lr-range"),
    (["--gpus-per-trial", "0.5"], "gpus_per_trial=0.5"),
    (["--cross-validate", "2", "--folds", "1", *TINY], "at least 2 folds"),
    (["--cross-validate", "2", "--folds", "9", *TINY], "has 3 people outside the test side; use --folds 3"),
    (["--cross-validate", "2", "--objectives", "accuracy,worst_domain_accuracy", *TINY], "one objective"),
])
def test_impossible_values_are_rejected_before_ray_starts(monkeypatch, tmp_path, argv, message):
    if "--gpus-per-trial" in argv and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")

    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started before the configuration was validated")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(ValueError, match=message):
        recipe("loss_weights").main(["--storage-path", str(tmp_path), *argv])
    assert list(tmp_path.iterdir()) == []  # nothing written either


# -- the searches, end to end -------------------------------------------------------------------------

@pytest.mark.ray
def test_optuna_with_asha_stops_bad_trials_early_and_optuna_receives_every_result(ray_cluster, tmp_path):
    recipe("loss_weights").main([
        "--storage-path", str(tmp_path), "--name", "asha", "--num-samples", "4", "--max-epochs", "4",
        "--max-concurrent", "1", "--lr-range", "1e-5", "3e-2", "--seed", "1", *TINY])
    experiment = tmp_path / "asha"
    board = read_csv(experiment / "leaderboard.csv")
    assert len(board) == 4
    statuses = [row["status"] for row in board]
    assert "stopped early" in statuses and statuses[0] == "completed"
    for row in board:
        assert len(epochs_reported(experiment / row["trial"])) == int(row["epochs"])
        # Every trial's TensorBoard run is in the experiment folder, complete, even one that ran in a
        # process another trial had used (Tune writes those elsewhere first).
        events = EventAccumulator(str(experiment / row["trial"]))
        events.Reload()
        assert len(events.Scalars("val/accuracy")) == int(row["epochs"])
        if row["status"] == "stopped early":
            assert int(row["epochs"]) < 4
            assert float(row["val/accuracy"]) <= float(board[0]["val/accuracy"])
    accuracies = [float(row["val/accuracy"]) for row in board]
    assert accuracies == sorted(accuracies, reverse=True)

    study = optuna.load_study(study_name="asha", storage=f"sqlite:///{experiment / 'optuna.db'}")
    told = sorted(trial.value for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE)
    assert told == sorted(accuracies)
    # The first trial is the defaults (enqueued; the batch size capped to the largest this small data
    # set allows), the others Optuna's draws.
    defaults = validate_config({})
    first, *others = sorted(study.trials, key=lambda trial: trial.number)
    assert set(first.params) == {"lr", "beta", "lambda_act", "lambda_dom", "batch_size", "dropout"}
    assert first.params == pytest.approx({**{key: defaults[key] for key in first.params}, "batch_size": 16})
    assert all(trial.params["lr"] != defaults["lr"] for trial in others)

    best = trial_settings(json.loads((experiment / "best_config.json").read_text()))
    assert validate_config(best) == best
    assert best["lr"] == pytest.approx(float(board[0]["lr"]))


@pytest.mark.ray
def test_resume_completes_an_interrupted_search_without_rerunning_finished_trials(ray_cluster, tmp_path):
    """Interrupted as by Ctrl+C (Tune treats SIGUSR1 the same) while the second of six trials runs.

    Six trials: the experiment folder's copy of a trial's progress.csv can lag behind the trial (a
    reused trial process syncs it at checkpoints), and trials on the driver's shared data start fast,
    so with few trials left the search could finish before the signal lands."""
    experiment = tmp_path / "interrupted"
    argv = ["--storage-path", str(tmp_path), "--name", "interrupted", "--num-samples", "6", "--max-epochs", "3",
            "--max-concurrent", "1", "--objectives", "accuracy,worst_domain_accuracy", *TINY]
    previous_handler = signal.signal(signal.SIGUSR1, lambda *_: None)
    interrupted = threading.Event()

    def interrupt_during_second_trial() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(list(experiment.glob("*/progress.csv"))) < 2:
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGUSR1)
        interrupted.set()

    watcher = threading.Thread(target=interrupt_during_second_trial, daemon=True)
    watcher.start()
    try:
        with pytest.raises(search.SearchInterrupted, match="--resume"):  # the CLI turns it into the resume hint, exit 130
            recipe("loss_weights").main(argv)
    finally:
        watcher.join()
        signal.signal(signal.SIGUSR1, previous_handler)
    assert interrupted.is_set()
    assert not (experiment / "leaderboard.csv").exists()  # an interrupted search is not summarised
    saved = ExperimentAnalysis(str(experiment)).trials
    finished = {trial.trial_id: (Path(trial.path) / "progress.csv").read_text()
                for trial in saved if trial.status == "TERMINATED"}
    assert 1 <= len(finished) < 6

    recipe("loss_weights").main([*argv, "--resume"])
    board = read_csv(experiment / "leaderboard.csv")
    assert len(board) == 6 and {row["status"] for row in board} == {"completed"}
    for row in board:  # each trial went on from its checkpoint: none started over from epoch 1
        epochs = epochs_reported(experiment / row["trial"])
        assert epochs == sorted(epochs) and epochs.count(1) == 1 and epochs[-1] == 3
    paths = {trial.trial_id: Path(trial.path) for trial in ExperimentAnalysis(str(experiment)).trials}
    for trial_id, progress in finished.items():  # finished trials were not run again
        assert (paths[trial_id] / "progress.csv").read_text() == progress
    scores = {row["trial"]: (float(row["val/accuracy"]), float(row["val/worst_domain_accuracy"])) for row in board}
    beaten = {trial for trial, score in scores.items()
              if any(all(o >= s for o, s in zip(other, score)) and other != score for other in scores.values())}
    front = read_csv(experiment / "pareto_front.csv")
    assert {row["trial"] for row in front} == set(scores) - beaten

@pytest.mark.ray
def test_pbt_clones_continue_from_the_cloned_epoch_and_the_replay_reproduces_the_winner(ray_cluster, tmp_path):
    beta_annealing = recipe("beta_annealing")
    results = beta_annealing.main([
        "--storage-path", str(tmp_path), "--name", "pbt", "--num-samples", "2", "--max-epochs", "4",
        "--perturbation-interval", "1", "--quantile-fraction", "0.5", "--synch", "--set", "batch_size=16",
        "--set", "lr=0.01", *TINY])
    bounds = {**beta_annealing.BOUNDS, **beta_schedules.search_bounds("linear")}
    histories = []
    for result in results:
        assert epochs_reported(Path(result.path)).count(1) == 1  # no trial started over from epoch 1
        with result.checkpoint.as_directory() as directory:
            history = load_checkpoint(Path(directory) / CHECKPOINT_FILE)["hyperparameter_history"]
        assert [entry["epoch"] for entry in history] == [0, 1, 2, 3]  # contiguous across every exploit
        for entry in history:  # explorations stay inside the ranges
            assert all(low <= entry[key] <= high for key, (low, high) in bounds.items())
        histories.append(history)
    # The two trials drew their starting values independently; a shared first epoch means one trial's
    # weights descend from the other's checkpoint, and it trained on from there.
    assert histories[0][0] == histories[1][0]

    board = read_csv(tmp_path / "pbt" / "leaderboard.csv")
    replayed = beta_annealing.main(["--replay", str(tmp_path / "pbt" / "replay.json"), "--storage-path", str(tmp_path)])
    assert [metrics["epoch"] for metrics in replayed] == [1, 2, 3, 4]
    assert replayed[-1]["val/accuracy"] == pytest.approx(float(board[0]["val/accuracy"]))
    assert replayed[-1]["val/loss"] == pytest.approx(float(board[0]["val/loss"]), rel=1e-5)


def test_lr_range_test_suggests_a_range_below_the_loss_minimum_and_logs_the_curve(tmp_path):
    # The default synthetic data: enough batches in one epoch for a curve.
    suggestion = recipe("lr_range").main([
        "--storage-path", str(tmp_path), "--name", "lr", "--lr-min", "1e-5", "--lr-max", "1",
        "--set", "batch_size=32", *TINY_MODEL])
    curve = read_csv(tmp_path / "lr" / "lr_range.csv")
    rates = [float(row["lr"]) for row in curve]
    assert rates == sorted(rates) and rates[0] == pytest.approx(1e-5) and len(curve) > 20
    assert suggestion["min_loss"] < float(curve[0]["smoothed_loss"])  # the sweep found rates that learn
    assert suggestion["high"] == pytest.approx(suggestion["min_loss_lr"] / 10)
    assert 1e-5 <= suggestion["low"] < suggestion["high"]
    assert suggestion["steepest_lr"] <= suggestion["min_loss_lr"]
    events = EventAccumulator(str(tmp_path / "lr"))
    events.Reload()
    assert {"lr_range/loss", "lr_range/smoothed_loss", "lr_range/lr"} <= set(events.Tags()["scalars"])
    assert [event.value for event in events.Scalars("lr_range/lr")] == pytest.approx(rates, rel=1e-6)


# -- the console -------------------------------------------------------------------------------------

class FakeTrial:
    """What :class:`SearchProgress` reads of a Tune trial: status, latest result, config, name."""

    def __init__(self, name: str, status: str, result: dict | None = None) -> None:
        self.name, self.status, self.last_result, self.config = name, status, result or {}, {"max_epochs": 4}

    def __str__(self) -> str:
        return self.name


def test_the_progress_line_counts_trials_names_the_best_and_estimates_the_time_left(capsys):
    now = [100.0]
    progress = SearchProgress("val/accuracy", max_epochs=4, clock=lambda: now[0])
    progress.setup(total_num_samples=5)
    trials = [FakeTrial("000_lr=0.009", "ERROR", {"training_iteration": 1, "val/accuracy": math.nan}),
              FakeTrial("001_lr=0.001", "TERMINATED", {"training_iteration": 4, "val/accuracy": 0.5}),
              FakeTrial("002_lr=0.003", "RUNNING", {"training_iteration": 2, "val/accuracy": 0.7}),
              FakeTrial("003_lr=0.002", "PENDING")]
    assert progress.line(trials).endswith("ETA after the first epochs")
    for _ in range(7):
        progress.on_trial_result(0, trials, trials[2], {})
    now[0] += 60
    # 6 epochs in 60 s after the first; 10 to go: trial 002's last 2, trial 003's 4 and the 4 of the
    # trial not drawn yet.
    assert progress.line(trials) == ("search 1:00  trials: 1 done, 1 errored, 1 running, 2 pending (of 5)  "
                                     "best val/accuracy 0.7000 (trial 002)  ETA 1:40")
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 and printed[0].startswith("search 0:00")  # one line per 30 s while trials report
    trials[2].status, trials[3].status = "ERROR", "TERMINATED"
    trials[3].last_result = {"training_iteration": 4, "val/accuracy": 0.9}
    trials.append(FakeTrial("004_lr=0.004", "RUNNING", {"training_iteration": 4, "val/accuracy": 0.1}))
    progress.on_trial_complete(0, trials, trials[-1])  # Tune calls it while the trial is still RUNNING
    assert capsys.readouterr().out == ("search 1:00  trials: 3 done, 2 errored, 0 running, 0 pending (of 5)  "
                                       "best val/accuracy 0.9000 (trial 003)  ETA 0:00\n")
    assert format_duration(3723) == "1:02:03"


@pytest.mark.ray
@pytest.mark.parametrize("verbose", [False, True])
def test_the_console_shows_progress_lines_and_no_snapshot_warnings_unless_verbose(ray_cluster, tmp_path, capsys,
                                                                                   monkeypatch, verbose):
    # Tune warns when two forced state snapshots come closer than this many seconds: here, always.
    monkeypatch.setenv("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "1000")
    warned: list[str] = []
    collector = logging.Handler()
    collector.emit = lambda record: warned.append(record.getMessage())
    snapshot_logger = logging.getLogger(SNAPSHOT_LOGGER)
    snapshot_logger.addHandler(collector)
    try:
        recipe("loss_weights").main([
            "--storage-path", str(tmp_path), "--name", "console", "--num-samples", "1", "--max-epochs", "4",
            "--scheduler", "fifo", *(["--verbose"] if verbose else []), *TINY])
    finally:
        snapshot_logger.removeHandler(collector)
    out = capsys.readouterr().out
    snapshots = [message for message in warned if message.startswith(SNAPSHOT_WARNING)]
    assert bool(snapshots) == verbose  # Tune's own console with its warnings only with --verbose
    assert ("Trial status" in out) == verbose
    progress = [line for line in out.splitlines() if line.startswith("search ")]
    assert "trials: 1 done, 0 running, 0 pending (of 1)" in progress[-1]
    assert progress[-1].endswith("ETA 0:00") and "best val/accuracy" in progress[-1]


# -- the cross-dataset search: selection never reads the held-out target's test labels -------------------

CROSS_DATASET_DATA = [*TINY_MODEL, "--set", 'source_options={"synthetic": {"num_domains": 3, "subjects_per_domain": 4, '
                      '"seconds_per_activity": 10}}']


@pytest.mark.parametrize("argv, message", [
    (["--set", "split=lodo:synthetic_c", "--metric", "target_accuracy"], "reads the labels of the held-out target"),
    (["--target-domain", "synthetic_c", "--metric", "target_accuracy"], "reads the labels of the held-out target"),
    (["--target-domain", "synthetic_c"], "without --adapt unlabelled labels a slice of the target's test people"),
    (["--set", "split=subject"], "holds no dataset out: name the target with --set split=lodo:NAME"),
])
def test_the_cross_dataset_search_refuses_a_selection_that_reads_the_targets_test_labels(
        monkeypatch, tmp_path, argv, message):
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: pytest.fail("Ray started before the refusal"))
    with pytest.raises(ValueError, match=message):
        recipe("cross_dataset").main(["--storage-path", str(tmp_path), *argv, *CROSS_DATASET_DATA])
    assert list(tmp_path.iterdir()) == []


def test_the_cross_dataset_search_takes_the_adaptation_ranges_of_loss_weights():
    cross_dataset, loss_weights = recipe("cross_dataset"), recipe("loss_weights")
    assert {key: describe(cross_dataset.SPACE[key]) for key in ("lambda_dom", "alpha_ramp_epochs")} == {
        key: describe(loss_weights.ADAPTATION_SPACE[key]) for key in ("lambda_dom", "alpha_ramp_epochs")}
    assert describe(cross_dataset.SPACE["augment_rotation_deg"])[2] == [0.0, 15.0, "sphere"]


@pytest.mark.parametrize("argv, sampling", [
    (["--set", "split=lodo:synthetic_c"], "domain_balanced"),
    (["--target-domain", "synthetic_c", "--adapt", "unlabelled"], "target_balanced"),  # adaptation's own batches
    (["--set", "split=lodo:synthetic_c", "--set", "sampling=uniform"], "uniform"),
])
def test_the_cross_dataset_search_starts_from_its_transfer_defaults(argv, sampling):
    cross_dataset = recipe("cross_dataset")
    args = cross_dataset.parse_args(argv)
    config = cli.base_config(args, cross_dataset.recipe_defaults(args))
    assert config["magnitude_channels"] is True and config["sampling"] == sampling
    assert config["objective"] == "source_risk"


@pytest.mark.ray
def test_the_cross_dataset_search_varies_its_settings_and_selects_on_the_sources_only(ray_cluster, tmp_path, capsys):
    cross_dataset = recipe("cross_dataset")
    results = cross_dataset.main([
        "--storage-path", str(tmp_path), "--name", "xd", "--num-samples", "3", "--max-epochs", "1",
        "--search", "random", "--scheduler", "fifo", "--set", "split=lodo:synthetic_c", "--set", "batch_size=16",
        *CROSS_DATASET_DATA])
    assert not results.errors and len(results) == 3
    configs = [result.config for result in results]
    for key in cross_dataset.SPACE:  # every searched key drawn in every trial; continuous ones all differ
        assert all(key in config for config in configs)
    for key in ("lambda_dom", "alpha_ramp_epochs"):
        assert len({config[key] for config in configs}) == 3
    categorical = [key for key, domain in cross_dataset.SPACE.items() if isinstance(domain, Categorical)]
    assert len({tuple(str(config[key]) for key in categorical) for config in configs}) > 1
    assert "selection: source_risk on synthetic_a, synthetic_b" in capsys.readouterr().out
    for result in results:  # no reported figure reads the target: it has no validation or slice metric
        assert "select/source_score" in result.metrics
        assert not [key for key in result.metrics if key.startswith("target/") or "synthetic_c" in key]
    best = json.loads((tmp_path / "xd" / "best_config.json").read_text())
    assert best["objective"] == "source_risk" and best["split"] == "lodo:synthetic_c"
    test = best["test_never_used_for_choosing"]  # scored once, after selection, on the target's people only
    assert test["subjects"] and all(subject.startswith("synthetic_c:") for subject in test["subjects"])
    assert not [key for key in test["selected_on"] if key.startswith("target/") or "synthetic_c" in key]
