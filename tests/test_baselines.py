"""The random-forest baseline: its features, its fit on the trials' own split, and its place in every search."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace

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
from tcnvae.tuning.report import HeldOutScore, next_steps, print_test
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
    # Its F1 per test activity, by name, read beside the model's; macro-F1 is their mean.
    assert set(first.test_per_activity_f1) == {data.activity_names[i] for i in np.unique(data.test.activity)}
    assert np.mean(list(first.test_per_activity_f1.values())) == pytest.approx(first.test["macro_f1"])


def test_the_forest_restricted_to_the_activities_present_answers_only_those():
    data = prepare(data_config(validate_config(SMALL_DATA)))
    names = np.asarray(data.test.activity_names)[data.test.activity]
    lying = replace(data, test=data.test.subset(names == "lying"))
    free = evaluate_baseline(lying)
    told_sitting = evaluate_baseline(lying, activities_present=["sitting"])
    told_both = evaluate_baseline(lying, activities_present=["lying", "sitting"])
    assert free.test["accuracy"] > 0.9 and told_both.test["accuracy"] >= free.test["accuracy"]
    assert told_sitting.test["accuracy"] == 0.0  # every lying window answered with the one activity allowed
    assert told_sitting.val == free.val  # validation (the sources' own people) is never restricted
    with pytest.raises(ValueError, match="unknown activities"):
        evaluate_baseline(lying, activities_present=["typing"])


def test_the_summary_says_plainly_when_the_best_trial_does_not_beat_the_baseline():
    baseline = BaselineResult(val={"accuracy": 0.8, "macro_f1": 0.78}, test={"accuracy": 0.75, "macro_f1": 0.7},
                              train_windows=100, features=10)
    losing = summary_lines(baseline, {"val/accuracy": 0.82, "val/macro_f1": 0.7})
    assert losing[0] == ("baseline (random forest): val accuracy 0.8000 macro-F1 0.7800, "
                         "test accuracy 0.7500 macro-F1 0.7000")
    assert "does NOT beat" in losing[1]
    winning = summary_lines(baseline, {"val/accuracy": 0.9, "val/macro_f1": 0.88})
    assert "beats the baseline on validation by 10.0 accuracy and 10.0 macro-F1 points" in winning[1]


def held_out(data, per_activity_f1: dict[str, float], windows: int) -> HeldOutScore:
    macro_f1 = float(np.mean(list(per_activity_f1.values())))
    metrics = {"windows": windows, "accuracy": macro_f1 + 0.01, "macro_f1": macro_f1, "worst_domain_accuracy": 0.5,
               "per_activity_f1": per_activity_f1}
    return HeldOutScore(metrics=metrics, epoch=2, selection={"val/accuracy": 0.6}, split="subject",
                        subjects=sorted(set(data.test.subject)), data=data)


def test_the_test_summary_sets_the_model_beside_the_forest_and_flags_weak_activities(capsys):
    data = prepare(data_config(validate_config(SMALL_DATA)))
    names = data.activity_names[:3]
    forest = BaselineResult(val={"accuracy": 0.8, "macro_f1": 0.78}, test={"accuracy": 0.81, "macro_f1": 0.8},
                            train_windows=100, features=10, test_per_activity_f1=dict(zip(names, (0.9, 0.8, 0.7))))
    print_test(held_out(data, dict(zip(names, (1.0, 0.0, 0.5))), len(data.test)), None, forest)
    printed = capsys.readouterr().out
    assert f"  test F1 per activity: {names[0]} 1.000, {names[1]} 0.000, {names[2]} 0.500\n" in printed
    assert f"  forest F1 per activity: {names[0]} 0.900, {names[1]} 0.800, {names[2]} 0.700\n" in printed
    assert f"  below 0.5 F1: {names[1]} 0.000 (forest 0.800)\n" in printed  # 0.5 itself is not flagged
    assert ("Test vs random forest (the same test people): macro-F1 0.5000 vs 0.8000, accuracy 0.5100 vs 0.8100: "
            "the forest is 30.0 macro-F1 points ahead — the platform does not beat it here") in printed

    # A model that wins says by how much; one scored on fewer windows than the forest says so.
    print_test(held_out(data, dict(zip(names, (0.9, 0.9, 0.9))), len(data.test) - 5), None, forest)
    printed = capsys.readouterr().out
    assert "below 0.5 F1" not in printed
    assert (f"(the same test people; model on {len(data.test) - 5} of the forest's {len(data.test)} windows): "
            "macro-F1 0.9000 vs 0.8000") in printed
    assert "the model beats the forest by 10.0 macro-F1 points" in printed
    # Without a baseline (e.g. it could not be fitted) the test split prints as before, with no verdict.
    print_test(held_out(data, dict(zip(names, (0.9, 0.9, 0.9))), len(data.test)), None)
    assert "forest" not in capsys.readouterr().out


def test_the_summary_ends_with_the_commands_to_run_next(tmp_path):
    lines = next_steps(tmp_path / "search")
    assert lines[0] == "Next:"
    assert lines[1].startswith(f"  python searches/final_model.py {tmp_path / 'search'}   # final model")
    assert lines[2].startswith(f"  tensorboard --logdir {tmp_path / 'search'}   #")


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
