"""The random-forest baseline: its features, its fit on the trials' own split, and its place in every search."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from tcnvae.baselines import (
    BaselineResult,
    baseline_for_config,
    evaluate_baseline,
    feature_names,
    summary_lines,
    window_features,
)
from tcnvae.data.pipeline import prepare
from tcnvae.tuning.config import data_config, validate_config
from helpers import recipe

SMALL_DATA = {"datasets": ["synthetic"], "source_options": {"synthetic": {"num_domains": 2, "subjects_per_domain": 4, "seconds_per_activity": 10}}}
TINY_MODEL = {"hidden_dims": [8], "latent_dim": 4, "head_hidden": 16, "decoder_channels": 8}


def set_flags(settings: dict) -> list[str]:
    return [flag for key, value in settings.items() for flag in ("--set", f"{key}={json.dumps(value)}")]


def test_window_features_measure_what_their_names_say():
    rate, seconds = 50.0, 2.56
    t = np.arange(int(rate * seconds)) / rate
    wave = np.sin(2 * np.pi * 5.0 * t)
    signals = np.stack([wave, -2 * wave + 1, np.full_like(t, 3.0)], axis=1)[None].astype(np.float32)
    names = feature_names(["a", "b", "c"])
    features = dict(zip(names, window_features(signals, rate)[0]))
    assert len(features) == len(names) == window_features(signals, rate).shape[1]
    assert all(math.isfinite(value) for value in features.values())  # a constant channel included
    assert features["a:dominant_hz"] == pytest.approx(5.0, abs=1 / seconds)
    assert features["b:mean"] == pytest.approx(1.0, abs=0.05) and features["c:std"] == 0
    assert features["corr:a:b"] == pytest.approx(-1.0) and features["corr:a:c"] == 0
    assert features["a:spectral_entropy"] < 0.2 and features["c:spectral_entropy"] == 0  # one peak; none
    with pytest.raises(ValueError, match="windows, time >= 2, channels"):
        window_features(np.zeros((4, 128)), rate)


def test_the_forest_fits_the_trials_training_windows_and_is_deterministic():
    config = validate_config(SMALL_DATA)
    data = prepare(data_config(config))
    first, second = evaluate_baseline(data, seed=0), evaluate_baseline(data, seed=0)
    assert first == second
    assert first.train_windows == len(data.train)
    assert first.features == len(feature_names(data.channel_names))
    chance = 1 / data.num_activities
    for scores in (first.val, first.test):
        assert scores["accuracy"] > chance + 0.3 and scores["macro_f1"] > chance + 0.3
    assert baseline_for_config(SMALL_DATA) == first  # the same data a trial with this config sees


def test_the_summary_says_plainly_when_the_best_trial_does_not_beat_the_baseline():
    baseline = BaselineResult(val={"accuracy": 0.8, "macro_f1": 0.78}, test={"accuracy": 0.75, "macro_f1": 0.7},
                              train_windows=100, features=10)
    losing = summary_lines(baseline, {"val/accuracy": 0.82, "val/macro_f1": 0.7})
    assert losing[0] == ("baseline (random forest): val accuracy 0.8000 macro-F1 0.7800, "
                         "test accuracy 0.7500 macro-F1 0.7000")
    assert "does NOT beat" in losing[1]
    winning = summary_lines(baseline, {"val/accuracy": 0.9, "val/macro_f1": 0.88})
    assert "beats the baseline on validation by 10.0 accuracy and 10.0 macro-F1 points" in winning[1]


@pytest.mark.ray
def test_every_search_reports_the_baseline_beside_the_best_trial(ray_cluster, tmp_path, capsys):
    recipe("loss_weights").main(["--storage-path", str(tmp_path), "--name", "search", "--num-samples", "2",
                                 "--max-epochs", "1", "--max-concurrent", "1",
                                 *set_flags({**SMALL_DATA, **TINY_MODEL})])
    printed = capsys.readouterr().out
    expected = baseline_for_config({**SMALL_DATA, **TINY_MODEL})
    saved = json.loads((tmp_path / "search" / "baseline.json").read_text())
    assert saved["val"] == expected.val and saved["test"] == expected.test
    assert f"baseline (random forest): val accuracy {expected.val['accuracy']:.4f}" in printed
    # One epoch of a tiny model on 8 people does not beat the forest, and the summary says so.
    assert "the best trial does NOT beat the random forest baseline on validation" in printed
    with open(tmp_path / "search" / "leaderboard.csv", newline="") as stream:
        board = list(csv.DictReader(stream))
    assert len(board) == 2
    assert all(float(row["baseline val/accuracy"]) == pytest.approx(expected.val["accuracy"]) for row in board)


@pytest.mark.ray
def test_the_architecture_search_tries_encoders_of_the_documented_shapes(ray_cluster, tmp_path, capsys):
    architecture = recipe("architecture")
    architecture.main(["--storage-path", str(tmp_path), "--name", "shapes", "--num-samples", "2",
                       "--max-epochs", "1", "--max-concurrent", "1", "--seed", "2", *set_flags(SMALL_DATA)])
    with open(tmp_path / "shapes" / "leaderboard.csv", newline="") as stream:
        board = list(csv.DictReader(stream))
    assert len(board) == 2 and {row["status"] for row in board} == {"completed"}
    shapes = {(row["hidden_dims"], int(row["kernel_size"]), int(row["latent_dim"])) for row in board}
    assert len(shapes) > 1  # the trials differ in architecture
    for hidden_dims, kernel_size, latent_dim in shapes:
        widths = json.loads(hidden_dims)
        assert len(widths) in architecture.BLOCKS and set(widths) <= set(architecture.WIDTHS)
        assert len(set(widths)) == 1 and kernel_size in (3, 5, 7) and latent_dim in (16, 32, 64)
    assert {row["input_means"] for row in board} <= {"True", "False"}
    best = json.loads((tmp_path / "shapes" / "best_config.json").read_text())
    assert [best["hidden_dims"], best["kernel_size"], best["latent_dim"]] == [
        json.loads(board[0]["hidden_dims"]), int(board[0]["kernel_size"]), int(board[0]["latent_dim"])]
    printed = capsys.readouterr().out
    assert "baseline (random forest): val" in printed
    assert "First trial: a random draw like the others" in printed  # hidden_dims, a list, cannot be preset
