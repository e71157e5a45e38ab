"""The trial loop and its Tune/Train trainables, on tiny synthetic data and a tiny model."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

from tcnvae.checkpoints import load_checkpoint
from tcnvae.curriculum import CurriculumRunner
from tcnvae.final_model import train_final_model
from tcnvae.tuning import cli
from tcnvae.data.pipeline import prepare
from tcnvae.tuning.trial import Trial, trial_data
from tcnvae.tuning import (
    CHECKPOINT_FILE,
    MUTABLE_KEYS,
    check_resources,
    load_replay,
    make_trainable,
    run_trial,
    train_trial,
    tune_logger_callbacks,
    validate_config,
    write_replay,
)

from helpers import LOOP_METRICS, TINY_TRIAL as TINY, Recorder, arrays_file, run, tune_run


# -- validation, before anything starts --------------------------------------------------------------

@pytest.mark.parametrize("bad, named", [
    ({"beta": -0.1}, "beta=-0.1"),
    ({"datasets": []}, "datasets is empty"),
    ({"datasets": ["no_such_dataset"]}, "no_such_dataset"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"lr": 0}, "lr=0"),
    ({"dropout": 1.0}, "dropout=1.0"),
    ({"val_fraction": 0.6, "test_fraction": 0.5}, "val_fraction + test_fraction"),
    ({"objective": "loss"}, "objective='loss'"),
    ({"objective": "target_accuracy"}, "target_domain"),
    ({"target_domain": "synthetic_b", "split": "subject:1"}, "lodo:synthetic_b"),
    ({"replay_schedule": [{"epoch": 0, "beta": -1.0}]}, "replay_schedule epoch 0: beta=-1.0"),
    ({"learning_rate": 1e-3}, "unknown config keys ['learning_rate']"),
])
def test_validate_config_names_the_bad_value(bad, named):
    with pytest.raises(ValueError) as error:
        validate_config(bad)
    assert named in str(error.value)


def test_validate_config_fills_defaults_and_holds_out_the_target_domain():
    from tcnvae.tuning import data_config

    config = validate_config({"target_domain": "synthetic_b", "objective": "target_accuracy"})
    assert config["lambda_dom"] == 0.1 and config["objective"] == "target_accuracy"
    assert data_config(config).split == "lodo:synthetic_b"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpus_per_trial_refused_without_a_gpu():
    with pytest.raises(ValueError, match="gpus_per_trial=0.25.*no GPU"):
        check_resources(cpus_per_trial=1, gpus_per_trial=0.25)
    with pytest.raises(ValueError, match="workers_per_trial=0"):
        check_resources(workers_per_trial=0)
    check_resources(cpus_per_trial=0.5, gpus_per_trial=0, workers_per_trial=2)


# -- the loop without Ray ------------------------------------------------------------------------------

def test_seed_fixes_metrics_and_another_seed_changes_them():
    first, again, other = run({"seed": 3}), run({"seed": 3}), run({"seed": 4})
    assert [set(m) for m in first.metrics] == [LOOP_METRICS] * 2
    assert first.metrics == again.metrics
    assert first.metrics != other.metrics


def test_checkpoint_holds_the_full_state_and_resuming_continues_exactly(tmp_path):
    # NumPy scalars, as search spaces sample them, must not make the checkpoint unloadable.
    config = {"lr_schedule": "cosine", "optimizer": "adamw", "weight_decay": np.float64(1e-3),
              "batch_size": np.int64(16), "max_epochs": 3}
    straight = run(config, checkpoint_root=tmp_path)
    payload = load_checkpoint(straight.checkpoints[0] / CHECKPOINT_FILE)
    state = payload["trainer"]
    assert state["epoch"] == 1
    assert state["optimizer_state"]["state"], "optimizer moments are saved"
    assert state["scheduler_state"]["last_epoch"] == 1
    assert set(state["rng"]) >= {"python", "numpy", "torch"}
    assert payload["hyperparameter_history"] == [{"epoch": 0, **{k: payload["config"][k] for k in MUTABLE_KEYS}}]
    assert state["metadata"]["data"]["activity_names"], "the label mapping travels with the weights"

    resumed = run(config, restore_dir=straight.checkpoints[0])
    assert resumed.metrics == straight.metrics[1:]


def test_restore_takes_the_new_config_and_replay_reproduces_the_schedule(tmp_path):
    """A PBT exploit in miniature: epochs 0-1 under one config, then 2-3 under a perturbed one."""
    first = {"beta": 0.5, "lambda_dom": 0.05, "max_epochs": 4, "lr": 1e-3, "lr_schedule": "constant"}
    second = {**first, "beta": 0.2, "lr": 5e-4, "beta_schedule": "linear", "beta_warmup_epochs": 3.0}
    early = Recorder(tmp_path / "early")
    run_trial({**TINY, **first}, early, until_epoch=2)
    late = Recorder()
    state = run_trial({**TINY, **second}, late, restore_dir=early.checkpoints[-1])
    assert [(h["epoch"], h["beta"], h["lr"]) for h in state.hyperparameter_history] == [
        (0, 0.5, 1e-3), (1, 0.5, 1e-3), (2, 0.2, 5e-4), (3, 0.2, 5e-4)]
    assert [m["schedule/lr"] for m in late.metrics] == [5e-4, 5e-4]

    replay_file = write_replay(tmp_path / "schedule.json", state.hyperparameter_history, {**TINY, **first})
    replay_config = load_replay(replay_file)
    assert replay_config["max_epochs"] == 4
    replayed = Recorder()
    replayed_state = run_trial(replay_config, replayed)
    assert replayed_state.hyperparameter_history == state.hyperparameter_history
    assert replayed.metrics == early.metrics + late.metrics


def test_a_trial_object_run_epoch_by_epoch_is_run_trial(tmp_path):
    """Set up, restore, one epoch at a time, close: the same epochs as run_trial, restore only before the first."""
    config = validate_config({**TINY, "max_epochs": 3, "checkpoint_interval": 1})
    straight = run(config, checkpoint_root=tmp_path)
    with Trial(config) as trial:
        trial.restore(straight.checkpoints[0])
        assert trial.epoch == 1
        assert [trial.run_epoch(), trial.run_epoch()] == straight.metrics[1:]
        with pytest.raises(RuntimeError, match="restore must come before the first epoch"):
            trial.restore(straight.checkpoints[0])


def test_the_final_model_gives_its_curriculum_the_training_metrics_a_trial_does(monkeypatch):
    """One loop: on the same data and seed, the final model trains as the trial did, and its curriculum
    sees the trial's training metrics (every term of the objective, entropy included), number for number."""
    seen: dict[str, list[dict[str, float]]] = {"trial": [], "final": []}
    after_epoch = CurriculumRunner.after_epoch

    def recorded_by(run_name: str):
        def record(runner: CurriculumRunner, metrics: dict[str, float]) -> None:
            seen[run_name].append(dict(metrics))
            after_epoch(runner, metrics)
        return record

    config = validate_config({**TINY, "lambda_ent": 0.3, "curriculum": "objective_ramp"})
    monkeypatch.setattr(CurriculumRunner, "after_epoch", recorded_by("trial"))
    run_trial(config, Recorder())
    monkeypatch.setattr(CurriculumRunner, "after_epoch", recorded_by("final"))
    with contextlib.redirect_stdout(io.StringIO()):
        train_final_model(config, trial_data(config), config["max_epochs"], members=1)
    assert len(seen["final"]) == config["max_epochs"]
    assert seen["final"] == [{key: value for key, value in metrics.items() if not key.startswith("val/")}
                             for metrics in seen["trial"]]
    assert all({"loss/total", "loss/entropy", "loss/kl", "schedule/beta"} <= set(metrics) for metrics in seen["final"])


def test_checkpoints_every_interval_and_at_the_last_epoch_and_resuming_from_one_continues_exactly(tmp_path):
    config = {"max_epochs": 5, "checkpoint_interval": 2}
    straight = run(config, checkpoint_root=tmp_path)
    assert [int(path.name.split("_")[1]) for path in straight.checkpoints] == [2, 4, 5]
    assert run(config, restore_dir=straight.checkpoints[0]).metrics == straight.metrics[2:]
    assert validate_config({})["checkpoint_interval"] >= 1
    with pytest.raises(ValueError, match="checkpoint_interval=0: expected an integer >= 1"):
        validate_config({"checkpoint_interval": 0})


def test_a_trial_on_the_searchs_prepared_data_computes_what_it_would_on_its_own(tmp_path, monkeypatch):
    """The driver's data (as cli.prepare_data records it) feeds trials bit for bit as their own would;
    a trial that searches a loader setting shares the windows, one that changes the windows prepares."""
    config, data = cli.prepare_data(validate_config({**TINY, "max_epochs": 2}))
    preparations = []
    monkeypatch.setattr("tcnvae.tuning.trial.prepare", lambda wanted: preparations.append(wanted) or prepare(wanted))
    for change, shares in (({}, True), ({"batch_size": 8}, True), ({"val_fraction": 0.4}, False)):
        trial_config = validate_config({**config, **change})
        own, shared = Recorder(tmp_path / f"own{change}"), Recorder(tmp_path / f"shared{change}")
        run_trial(trial_config, own)
        preparations.clear()
        run_trial(trial_config, shared, data=data)
        assert len(preparations) == (0 if shares else 1)
        assert shared.metrics == own.metrics
        kept = [load_checkpoint(recorder.checkpoints[-1] / CHECKPOINT_FILE) for recorder in (own, shared)]
        assert kept[0]["trainer"]["metadata"] == kept[1]["trainer"]["metadata"]
        reused = trial_data(trial_config, data)
        assert reused.config.batch_size == trial_config["batch_size"]
        if shares:  # the same windows, in the trial's own copy
            assert np.array_equal(reused.train.signals, data.train.signals)
            assert not np.shares_memory(reused.train.signals, data.train.signals)


def test_replay_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_replay(tmp_path / "missing.json")
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"schedule": []}')
    with pytest.raises(ValueError, match="bogus.json is not a replay file"):
        load_replay(bogus)
    with pytest.raises(ValueError, match="epochs 0, 1"):
        write_replay(tmp_path / "gap.json", [{"epoch": 1}], TINY)


def test_target_domain_reports_target_accuracy():
    metrics = run({"target_domain": "synthetic_b", "objective": "target_accuracy", "max_epochs": 1}).metrics
    assert 0.0 <= metrics[0]["target/accuracy"] <= 1.0


def test_tensorboard_run_has_grouped_tags_hparams_and_confusion_matrix(tmp_path):
    run({"beta": 0.7}, log_dir=tmp_path)
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    scalar_tags = set(events.Tags()["scalars"])
    assert scalar_tags == LOOP_METRICS - {"epoch"}
    assert [event.step for event in events.Scalars("val/accuracy")] == [1, 2]
    assert [event.step for event in events.Images("val_confusion_matrix")] == [1, 2]

    content = events.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    start = hparams_metadata.parse_session_start_info_plugin_data(content[hparams_metadata.SESSION_START_INFO_TAG])
    assert start.hparams["beta"].number_value == pytest.approx(0.7)
    assert start.hparams["hidden_dims"].string_value == "[8]"
    assert start.start_time_secs > 0
    # A search's experiment summary is the driver's (tests/test_tensorboard.py); a trial writes none.
    assert hparams_metadata.EXPERIMENT_TAG not in content
    end = hparams_metadata.parse_session_end_info_plugin_data(content[hparams_metadata.SESSION_END_INFO_TAG])
    assert end.status == 1 and end.end_time_secs >= start.start_time_secs  # STATUS_SUCCESS: all epochs ran


# -- through Ray Tune and Ray Train ------------------------------------------------------------------

@pytest.mark.ray
def test_crashed_trial_resumes_from_its_checkpoint(ray_cluster, tmp_path):
    marker = tmp_path / "crashed"

    def crash_after_two_epochs_once(config: dict) -> None:  # nested: Ray pickles it by value
        if marker.exists():
            train_trial(config)
            return
        train_trial({**config, "max_epochs": 2})
        marker.touch()
        raise RuntimeError("injected crash after epoch 2, first attempt only")

    result = tune_run(crash_after_two_epochs_once, {"max_epochs": 3}, tmp_path, "crash", max_failures=1)
    assert marker.exists() and result.error is None
    assert result.metrics_dataframe["epoch"].tolist() == [1.0, 2.0, 3.0]  # epoch 3 came after a restore
    assert {key for key in result.metrics if "/" in key or key == "epoch"} == LOOP_METRICS
    with result.checkpoint.as_directory() as directory:
        assert load_checkpoint(Path(directory) / CHECKPOINT_FILE)["trainer"]["epoch"] == 3
    assert list(Path(result.path).glob("events.out.tfevents.*")), "the trial wrote TensorBoard events"



@pytest.mark.ray
def test_a_search_prepares_its_data_once_and_retried_trials_read_it_from_the_object_store(ray_cluster, tmp_path,
                                                                                           monkeypatch):
    """The driver prepares the data (counted: once); then its file is deleted, so a trial, a trial in
    a reused process or a retried trial that prepared its data again would fail."""
    from ray import tune

    path = arrays_file(tmp_path / "people.npz")
    preparations = []
    monkeypatch.setattr(cli, "prepare", lambda wanted: preparations.append(wanted) or prepare(wanted))
    config, data = cli.prepare_data(validate_config({**TINY, "datasets": ["arrays"], "source_options": {},
                                                     "data_paths": {"arrays": str(path)}}))
    path.unlink()
    assert len(preparations) == 1

    tuner = tune.Tuner(
        make_trainable(cpus_per_trial=1, data=data), param_space={**config, "lr": tune.grid_search([1e-3, 3e-3])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),  # the second reuses the process
        run_config=tune.RunConfig(name="shared", storage_path=str(tmp_path), callbacks=tune_logger_callbacks(),
                                  verbose=0))
    results = sorted(tuner.fit(), key=lambda result: result.config["lr"])
    assert [result.error for result in results] == [None, None]
    assert results[0].metrics["pid"] == results[1].metrics["pid"], "Tune reused the trial process"
    for result in results:  # bit for bit what the trial computes here on the same data
        alone = Recorder()
        run_trial(result.config, alone, data=data)
        assert result.metrics_dataframe["val/accuracy"].tolist() == [m["val/accuracy"] for m in alone.metrics]

    marker = tmp_path / "crashed"

    def crash_after_one_epoch_once(config: dict, data=None) -> None:  # nested: Ray pickles it by value
        if marker.exists():
            train_trial(config, data)
            return
        train_trial({**config, "max_epochs": 1}, data)
        marker.touch()
        raise RuntimeError("injected crash after epoch 1, first attempt only")

    retried = tune_run(tune.with_parameters(crash_after_one_epoch_once, data=data), config, tmp_path, "retried",
                       max_failures=1)
    assert marker.exists() and retried.error is None
    assert retried.metrics_dataframe["epoch"].tolist() == [1.0, 2.0]  # epoch 2 after a restore, on the shared data
