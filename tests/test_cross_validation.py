"""Choosing a search's winner by cross-validation over people (``--cross-validate``), end to end on
tiny synthetic data against the suite's Ray cluster."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tcnvae.tuning.report import TEST_RECORD_KEY, trial_settings
from helpers import TINY_FLAGS as TINY, read_csv, recipe


@pytest.mark.ray
def test_cross_validation_reruns_the_best_trials_over_folds_of_people_and_chooses_by_their_mean(
        ray_cluster, tmp_path, capsys):
    recipe("loss_weights").main([
        "--storage-path", str(tmp_path), "--name", "cv", "--num-samples", "3", "--max-epochs", "2",
        "--scheduler", "fifo", "--cross-validate", "2", "--folds", "2", *TINY])
    experiment = tmp_path / "cv"
    out = capsys.readouterr().out
    # The search's own choice is not scored on test: only the cross-validated choice is, once.
    assert "not scored: left to the cross-validation" in out
    assert out.count("test/accuracy:") == 1

    board = read_csv(experiment / "leaderboard.csv")
    rows = read_csv(experiment / "cross_validation.csv")
    assert [row["trial"] for row in rows] == [row["trial"] for row in board[:2]]  # the two best, in order
    for row in rows:
        folds = [float(row[f"fold {fold} val/accuracy"]) for fold in range(2)]
        assert float(row["mean val/accuracy"]) == pytest.approx(np.mean(folds))
        searched = board[int(row["search rank"]) - 1]
        assert float(row["search val/accuracy"]) == pytest.approx(float(searched["val/accuracy"]))
    winner = max(rows, key=lambda row: (float(row["mean val/accuracy"]), -int(row["search rank"])))
    assert f"Chosen by cross-validation: {winner['trial']}" in out

    # best_config.json is the winner's, with its test record; the search's own choice is kept when it lost.
    chosen = json.loads((experiment / "best_config.json").read_text())
    params = json.loads((experiment / winner["trial"] / "params.json").read_text())
    assert trial_settings(chosen) == params
    test_accuracy = float(winner["test/accuracy (never used for choosing)"])
    assert chosen[TEST_RECORD_KEY]["accuracy"] == pytest.approx(test_accuracy)
    single_split = experiment / "best_config_single_split.json"
    if winner["search rank"] == "1":
        assert not single_split.exists()
    else:
        search_choice = json.loads((experiment / board[0]["trial"] / "params.json").read_text())
        assert json.loads(single_split.read_text()) == search_choice
