"""From a search to predictions: the test split scored once at the end of a search, the final model
(retrained, tested, exported) and `tcnvae.predict` on .npz and .csv recordings, with its input checks.

One tiny search (2 trials, 2 epochs, synthetic data) and one final model serve the whole module."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tcnvae.checkpoints import load_checkpoint
from tcnvae.data import load_source
from tcnvae.data.harmonise import window_recordings
from tcnvae.data.pipeline import DataConfig, prepare
from tcnvae.data.recordings import Recording
from tcnvae.evaluate import activity_probabilities, score
from tcnvae.final_model import read_search_choice
from tcnvae.predict import Predictor, main as predict_main
from tcnvae.tuning import CHECKPOINT_FILE, cli, data_config, validate_config
from tcnvae.tuning.metrics import leaderboard_test_column
from tcnvae.tuning.report import (TEST_RECORD_KEY, load_trial_model, near_chance_warning, scored_test_windows,
                                  trial_settings)
from tcnvae.tuning.trial import target_slice_subjects
from helpers import TINY_FLAGS as TINY, read_csv, recipe

SEARCH = ["--num-samples", "2", "--max-epochs", "2", "--max-concurrent", "1", "--scheduler", "fifo",
          "--seed", "3", *TINY]
SYNTHETIC = {"num_domains": 2, "subjects_per_domain": 4, "seconds_per_activity": 10}


def run_quietly(function, argv):
    """``function(argv)`` and everything it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        value = function(argv)
    return value, printed.getvalue()


@pytest.fixture(scope="module")
def search(ray_cluster, tmp_path_factory):
    """(experiment folder, what the search printed)."""
    storage = tmp_path_factory.mktemp("search")
    _, printed = run_quietly(recipe("loss_weights").main, ["--storage-path", str(storage), "--name", "tiny", *SEARCH])
    return storage / "tiny", printed


@pytest.fixture(scope="module")
def final_dir(search):
    experiment, _ = search
    output, _ = run_quietly(recipe("final_model").main, [str(experiment)])
    return output


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A synthetic recording the model never saw, as (Recording, .npz path, .csv path)."""
    folder = tmp_path_factory.mktemp("recording")
    unseen = load_source("synthetic", **{**SYNTHETIC, "seed": 99})[0]
    npz = folder / "recording.npz"
    np.savez(npz, signals=unseen.signal, channel_names=np.array(unseen.channel_names), sample_rate=unseen.sample_rate)
    table = folder / "recording.csv"
    times = np.arange(len(unseen)) / unseen.sample_rate
    np.savetxt(table, np.column_stack([times, unseen.signal]), delimiter=",", comments="",
               header=",".join(["time", *unseen.channel_names]))
    return unseen, npz, table


# -- the test split at the end of a search ------------------------------------------------------------

@pytest.mark.ray
def test_a_search_scores_its_best_checkpoint_once_on_the_test_split(search):
    experiment, printed = search
    best = json.loads((experiment / "best_config.json").read_text())
    record = best[TEST_RECORD_KEY]
    assert "never used for choosing" in record["note"]
    board = read_csv(experiment / "leaderboard.csv")
    winner = Path(board[0]["path"])

    # The checkpoint scored is the trial's best epoch on validation...
    history = read_csv(winner / "progress.csv")
    accuracies = [float(row["val/accuracy"]) for row in history]
    assert record["selected_on"]["val/accuracy"] == pytest.approx(max(accuracies))
    assert accuracies[record["epoch"] - 1] == pytest.approx(max(accuracies))
    # ...scored on the test subjects only, and rescoring that checkpoint gives the same figures.
    checkpoint = winner / f"checkpoint_{record['epoch'] - 1:06d}"
    splits = load_checkpoint(checkpoint / CHECKPOINT_FILE)["trainer"]["metadata"]["data"]["splits"]
    assert record["subjects"] == splits["test"]["subjects"]
    assert not set(record["subjects"]) & set(splits["train"]["subjects"] + splits["val"]["subjects"])
    model, data, config = load_trial_model(checkpoint)
    again = score(model, scored_test_windows(data, config), config["domain_by"], data.domain_names)
    assert again["accuracy"] == record["accuracy"] and again["confusion"] == record["confusion"]
    assert record["windows"] == splits["test"]["windows"]

    # Leaderboard: test columns on the best trial only; the summary prints them under their own heading.
    assert float(board[0][leaderboard_test_column("accuracy")]) == pytest.approx(record["accuracy"])
    assert all(row[leaderboard_test_column("accuracy")] == "" for row in board[1:])
    assert "Test split (scored once, after selection; never used for choosing)" in printed
    assert f"test/accuracy: {record['accuracy']:.4g}" in printed
    # Beside the forest on the same test people, with the points between them; then the commands to run next.
    forest = json.loads((experiment / "baseline.json").read_text())
    points = 100 * (record["macro_f1"] - forest["test"]["macro_f1"])
    assert (f"Test vs random forest (the same test people): macro-F1 {record['macro_f1']:.4f} vs "
            f"{forest['test']['macro_f1']:.4f}") in printed
    assert (f"the model beats the forest by {points:.1f}" if points > 0 else
            f"the forest is {-points:.1f} macro-F1 points ahead — the platform does not beat it here") in printed
    assert "  forest F1 per activity: " in printed
    assert f"python searches/final_model.py {experiment}   #" in printed
    # best_config.json still feeds back with --config: the test record is not a setting.
    assert validate_config(trial_settings(best)) == trial_settings(best)
    args = recipe("loss_weights").parse_args(["--config", str(experiment / "best_config.json")])
    assert cli.base_config(args, {})["lr"] == best["lr"]


def test_near_chance_warning_names_the_likely_causes():
    data = prepare(DataConfig(source_options={"synthetic": SYNTHETIC}))
    config = {"batch_size": 128}
    one_class = np.zeros((data.num_activities, data.num_activities), dtype=int)
    one_class[:, 2] = 10
    test = {"confusion": one_class.tolist(), "activities": data.activity_names}
    warning = near_chance_warning(0.15, data, config, epochs=1, stopped_early=True, test=test)
    assert warning is not None and "near chance" in warning
    assert "optimiser steps per epoch" in warning and "batch_size" in warning
    assert "stopped early" in warning and "--grace-period" in warning
    assert f"answers {data.activity_names[2]!r} for 100%" in warning
    assert near_chance_warning(0.9, data, config, epochs=10, stopped_early=False) is None


def test_with_a_target_domain_the_test_leaves_out_the_slice_selection_was_made_on():
    config = validate_config({"target_domain": "synthetic_b", "target_labelled_fraction": 0.5,
                              "source_options": {"synthetic": SYNTHETIC}})
    data = prepare(data_config(config))
    labelled = set(target_slice_subjects(data, 0.5, config["seed"]))
    tested = set(scored_test_windows(data, config).subject.tolist())
    assert labelled and tested and not labelled & tested
    assert labelled | tested == set(data.test.subject.tolist())


# -- the final model ----------------------------------------------------------------------------------

@pytest.mark.ray
def test_final_model_trains_on_train_and_validation_subjects_and_tests_once(search, final_dir):
    experiment, _ = search
    assert final_dir == experiment / "final"
    card = json.loads((final_dir / "model.json").read_text())
    record = json.loads((experiment / "best_config.json").read_text())[TEST_RECORD_KEY]
    assert card["trained_on"]["epochs"] == card["config"]["max_epochs"] == 2  # the whole schedule
    assert card["trained_on"]["members"] == 3  # seeds averaged, by default
    assert card["test"]["subjects"] == record["subjects"]  # the same test people as the search
    assert not set(card["trained_on"]["subjects"]) & set(card["test"]["subjects"])
    assert len(card["trained_on"]["subjects"]) + len(card["test"]["subjects"]) == 2 * 4  # every subject used once
    assert card["activities"] == record["activities"]
    assert [channel["name"] for channel in card["channels"]] == ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
    assert card["channels"][0]["unit"].startswith("g") and card["channels"][3]["unit"] == "rad/s"
    assert (card["sample_rate"], card["window_length"], card["hop_seconds"]) == (50.0, 128, 1.28)
    assert len(card["normaliser"]["mean"]) == 6 and len(card["data_fingerprint"]["windows_sha256"]) == 64
    weights = torch.load(final_dir / "weights.pt", weights_only=True)
    assert set(weights) == {"member_states", "model_config", "trained_with"} and len(weights["member_states"]) == 3
    assert weights["trained_with"]["activities"] == card["activities"]  # what predict checks the card against
    image = (final_dir / "confusion_matrix.png").read_bytes()
    assert image.startswith(b"\x89PNG")


@pytest.mark.ray
@pytest.mark.real_data
def test_exported_model_equals_the_eager_model_on_real_windows(final_dir, uci_har_windowset):
    """Real UCI-HAR windows (acc in g, gyro in rad/s, 128 samples at 50 Hz), through the program that
    needs only torch and through the eager model: the same probabilities."""
    card = json.loads((final_dir / "model.json").read_text())
    columns = [uci_har_windowset.channel_names.index(c["name"]) for c in card["channels"]]
    windows = uci_har_windowset.signals[::20][:, :, columns]
    exported = torch.export.load(str(final_dir / "model.pt2")).module()
    with torch.no_grad():
        from_export = exported(torch.as_tensor(windows)).numpy()
    eager = activity_probabilities(Predictor.load(final_dir).model, windows)
    assert np.abs(from_export - eager).max() <= 1e-5
    assert np.allclose(from_export.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.ray
def test_final_model_epochs_best_is_the_winners_validation_peak(search, tmp_path):
    experiment, _ = search
    record = json.loads((experiment / "best_config.json").read_text())[TEST_RECORD_KEY]
    assert read_search_choice(experiment, epochs="best").epochs == record["epoch"]
    assert read_search_choice(experiment, epochs=5).config["max_epochs"] == 5  # the schedules span the run
    without_record = tmp_path / "best_config.json"
    without_record.write_text(json.dumps(trial_settings(json.loads((experiment / "best_config.json").read_text()))))
    assert read_search_choice(config_file=without_record).epochs == 2
    with pytest.raises(ValueError, match="records no scored checkpoint"):
        read_search_choice(config_file=without_record, epochs="best")


@pytest.mark.ray
def test_an_ensemble_final_model_averages_its_members_from_training_to_prediction(search, recording, tmp_path):
    experiment, _ = search
    output, printed = run_quietly(recipe("final_model").main,
                                  [str(experiment), "--members", "2", "--epochs", "1", "--output", str(tmp_path / "pair")])
    card = json.loads((output / "model.json").read_text())
    assert card["trained_on"]["members"] == 2 and card["trained_on"]["seeds"] == [card["config"]["seed"],
                                                                                  card["config"]["seed"] + 1]
    assert "members=2" in printed
    predictor = Predictor.load(output)
    members = list(predictor.model.model.members)
    assert len(members) == 2
    assert not torch.equal(members[0].activity_classifier[0].weight, members[1].activity_classifier[0].weight)  # other seeds

    # Its probabilities are the mean of its members' (each standardised as in training), on unseen windows,
    # and the model card's test score is that average's.
    unseen, npz, _ = recording
    cut = window_recordings(load_source("arrays", npz, labels=np.full(len(unseen), "walking"), subjects="x"),
                            2.56, 1.28, 50.0, "acc_gyro")
    standardised = (cut.signals - np.array(card["normaliser"]["mean"])) / np.array(card["normaliser"]["std"])
    mean = np.mean([activity_probabilities(member, standardised.astype(np.float32)) for member in members], axis=0)
    assert np.allclose(activity_probabilities(predictor.model, cut.signals), mean, atol=1e-5)
    config = {**trial_settings(json.loads((experiment / "best_config.json").read_text())), "val_fraction": 0.0}
    data = prepare(data_config(validate_config(config)))
    test = scored_test_windows(data, config)
    accuracy = (np.mean([activity_probabilities(member, test.signals) for member in members], axis=0).argmax(1)
                == test.activity).mean()
    assert card["test"]["accuracy"] == pytest.approx(accuracy)
    exported = torch.export.load(output / "model.pt2").module()
    assert np.allclose(exported(torch.as_tensor(cut.signals, dtype=torch.float32)).detach().numpy(), mean, atol=1e-5)


@pytest.mark.parametrize("argv, message", [
    ([], "best config {folder}/best_config.json does not exist"),
    (["--epochs", "last"], "argument --epochs: expected a number of epochs or 'best', got 'last'"),
    (["--epochs", "0"], "epochs must be a positive integer or 'best', got 0"),
    (["--members", "0"], "--members must be at least 1, got 0"),
])
def test_final_model_command_line_errors_are_one_line(tmp_path, capsys, argv, message):
    if argv:  # a valid best config (all defaults): only the flag is wrong
        (tmp_path / "best_config.json").write_text("{}")
    with pytest.raises(SystemExit) as exit_info:
        recipe("final_model").main([str(tmp_path), *argv])
    assert exit_info.value.code == 2
    assert f"error: {message.format(folder=tmp_path)}" in capsys.readouterr().err


# -- predict ------------------------------------------------------------------------------------------

@pytest.mark.ray
def test_predict_npz_and_csv_give_one_row_per_window_as_in_training(final_dir, recording, tmp_path, capsys):
    unseen, npz, table = recording
    from_npz = tmp_path / "from_npz.csv"
    predict_main([str(final_dir), str(npz), "--output", str(from_npz)])
    rows = read_csv(from_npz)
    expected = (len(unseen) - 128) // 64 + 1
    assert len(rows) == expected
    assert [float(rows[1]["start_s"]), float(rows[1]["end_s"])] == [1.28, 3.84]
    assert {"activity", "probability", "activity_2", "probability_2", "activity_3"} <= set(rows[0])

    # The windows are the training pipeline's: the same as preparing this recording through the data layer.
    predictor = Predictor.load(final_dir)
    labelled = load_source("arrays", npz, labels=np.full(len(unseen), "walking"), subjects="x")
    cut = window_recordings(labelled, 2.56, 1.28, 50.0, "acc_gyro")
    probabilities = activity_probabilities(predictor.model, cut.signals)
    assert [row["activity"] for row in rows] == [predictor.activities[i] for i in probabilities.argmax(1)]

    # CSV with a time column: the same predictions; the Python API: the same rows.
    predict_main([str(final_dir), str(table), "--output", str(tmp_path / "from_csv.csv")])
    from_csv = read_csv(tmp_path / "from_csv.csv")
    assert [row["activity"] for row in from_csv] == [row["activity"] for row in rows]
    assert np.allclose([float(r["probability"]) for r in from_csv], [float(r["probability"]) for r in rows], atol=1e-5)
    api = predictor.predict(npz)
    assert [row["activity"] for row in api.rows] == [row["activity"] for row in rows]


def _expect_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        predict_main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.ray
def test_predict_refuses_wrong_units_missing_channels_and_a_contradicted_rate(final_dir, recording, tmp_path, capsys):
    unseen, _, table = recording
    fields = {"channel_names": np.array(unseen.channel_names), "sample_rate": unseen.sample_rate}
    metres = unseen.signal.copy()
    metres[:, :3] *= 9.80665
    np.savez(tmp_path / "ms2.npz", signals=metres, **fields)
    assert "look like m/s²" in _expect_error([str(final_dir), str(tmp_path / "ms2.npz")], capsys)
    degrees = unseen.signal.copy()
    degrees[:, 3:] *= 180 / np.pi
    degrees[:, 3:] += np.where(np.arange(len(degrees)) % 2, 60.0, -60.0)[:, None]  # a rotating wrist
    np.savez(tmp_path / "degrees.npz", signals=degrees, **fields)
    message = _expect_error([str(final_dir), str(tmp_path / "degrees.npz")], capsys)
    assert "deg/s" in message and "pi/180" in message
    np.savez(tmp_path / "acc_only.npz", signals=unseen.signal[:, :3], channel_names=np.array(unseen.channel_names[:3]),
             sample_rate=unseen.sample_rate)
    message = _expect_error([str(final_dir), str(tmp_path / "acc_only.npz")], capsys)
    assert "lacks channels ['gyro_x', 'gyro_y', 'gyro_z']" in message and "channel_set" in message
    message = _expect_error([str(final_dir), str(table), "--sample-rate", "100"], capsys)
    assert "steps at 50 Hz" in message
    with open(table, newline="") as stream:
        rows = list(csv.reader(stream))
    untimed = tmp_path / "untimed.csv"
    with open(untimed, "w", newline="") as stream:
        csv.writer(stream).writerows([row[1:] for row in rows])
    assert "--sample-rate HZ" in _expect_error([str(final_dir), str(untimed)], capsys)
    assert "sample_rate must be positive" in _expect_error([str(final_dir), str(untimed), "--sample-rate", "-5"], capsys)
    torn = tmp_path / "torn.npz"
    torn.write_bytes((tmp_path / "ms2.npz").read_bytes()[:200])  # a copy cut short
    assert "not a valid .npz archive" in _expect_error([str(final_dir), str(torn)], capsys)


@pytest.mark.ray
def test_predict_warns_when_a_recording_is_slower_than_the_model(final_dir, recording):
    unseen, _, _ = recording
    slow = unseen.signal[::2]  # 25 Hz
    slowed = Recording(signal=slow, labels=np.full(len(slow), -1), activity_names=[], channel_names=unseen.channel_names,
                       sample_rate=25.0, dataset="input", subject="input:1")
    with pytest.warns(UserWarning, match="resampled up"):
        predictions = Predictor.load(final_dir).predict(slowed)
    assert len(predictions.rows) == (len(slow) * 2 - 128) // 64 + 1
    assert any("resampled up" in message for message in predictions.warnings)
