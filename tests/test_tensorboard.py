"""TensorBoard's view of a search, read back with TensorBoard's own event reader: the HParams summary
declares exactly the searched hyperparameters with their domains, every session ends with the
leaderboard's status, confusion images label both axes, trials have readable names, and the end of
a search leaves the leaderboard and the parameter importance in the Text tab and importance.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
from ray import tune
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata

from tcnvae.tuning import run_trial, search
from tcnvae.tuning.report import parameter_importance
from tcnvae.tuning.tensorboard import (
    CONFUSION_TAG,
    IMPORTANCE_TAG,
    LEADERBOARD_TAG,
    SESSION_STATUS,
    TrialBoard,
    hparam_info,
    session_status,
    write_search_end,
    write_search_start,
)

from helpers import TINY_FLAGS as TINY, read_csv, recipe

TINY_CONFIG = {"source_options": {"synthetic": {"num_domains": 2, "subjects_per_domain": 3, "seconds_per_activity": 6.0}},
               "val_fraction": 0.2, "test_fraction": 0.2, "hidden_dims": [8], "latent_dim": 4, "head_hidden": 8,
               "decoder_channels": 8, "batch_size": 16, "max_epochs": 1}


def load_events(run: Path) -> EventAccumulator:
    events = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def hparams_content(run: Path) -> dict[str, bytes]:
    return load_events(run).PluginTagToContent(hparams_metadata.PLUGIN_NAME)


def text(run: Path, tag: str) -> str:
    return load_events(run).Tensors(tag)[0].tensor_proto.string_val[0].decode()


# -- the pieces ----------------------------------------------------------------------------------------

def test_search_space_entries_become_hparams_domains():
    lr = hparam_info("lr", tune.loguniform(1e-4, 1e-3))
    assert lr.type == api_pb2.DATA_TYPE_FLOAT64 and lr.differs
    assert (lr.domain_interval.min_value, lr.domain_interval.max_value) == pytest.approx((1e-4, 1e-3))
    batch = hparam_info("batch_size", tune.choice([32, 64, 128]))
    assert [value.number_value for value in batch.domain_discrete.values] == [32, 64, 128]
    grid = hparam_info("beta", tune.grid_search([0.1, 1.0]))
    assert [value.number_value for value in grid.domain_discrete.values] == [0.1, 1.0]
    assert hparam_info("beta", [0.1, 1.0]).domain_interval.max_value == 1.0  # PB2's [low, high] bounds
    policy = hparam_info("curriculum", optuna.distributions.CategoricalDistribution(["none", "self_paced"]))
    assert policy.type == api_pb2.DATA_TYPE_STRING
    assert [value.string_value for value in policy.domain_discrete.values] == ["none", "self_paced"]
    with pytest.raises(ValueError, match="cannot declare"):
        hparam_info("lr", "fast")


def test_trial_names_start_with_the_index_and_spell_out_the_drawn_values():
    trial = SimpleNamespace(experiment_tag="7_batch_size=64,lr=0.0003",
                            evaluated_params={"lr": 0.000321, "batch_size": 64, "curriculum.self_paced.ramp_epochs": 3})
    assert search.trial_dirname(trial) == "007_batch_size=64_ramp_epochs=3_lr=0.00032"
    long = SimpleNamespace(experiment_tag="12", evaluated_params={f"key{i}": 0.123456 for i in range(30)})
    assert len(search.trial_dirname(long)) == search.TRIAL_NAME_LENGTH and search.trial_dirname(long).startswith("012_")


def test_confusion_images_have_their_own_group_and_both_axes_labelled(tmp_path):
    run_trial(TINY_CONFIG, lambda metrics, checkpoint: None, log_dir=tmp_path)
    events = load_events(tmp_path)
    assert events.Tags()["images"] == [CONFUSION_TAG] and not CONFUSION_TAG.startswith("val/")
    description = events.SummaryMetadata(CONFUSION_TAG).summary_description
    rows, columns = description.split("Columns (x axis): predicted activity")
    assert rows.startswith("Rows (y axis): true activity")
    for name in ("lying", "sitting", "walking", "ascending_stairs"):
        assert name in rows and name in columns
    image = events.Images(CONFUSION_TAG)[-1]
    assert image.height > image.width - 40  # the column names stand above the grid, not just numbers


def test_the_confusion_image_is_drawn_where_the_objective_improves_and_at_the_last_epoch(tmp_path):
    board = TrialBoard(tmp_path, {"objective": "worst_domain_accuracy", "max_epochs": 6})
    confusion = np.array([[3, 1], [0, 4]])
    scores = [0.5, 0.4, 0.6, 0.6, 0.3, 0.2]  # the objective by epoch; val/accuracy rises all along
    for step, score in enumerate(scores, start=1):
        board.log_epoch({"val/worst_domain_accuracy": score, "val/accuracy": 0.1 * step}, step, confusion,
                        ["sitting", "walking"])
    board.close(completed=True)
    events = load_events(tmp_path)
    assert [image.step for image in events.Images(CONFUSION_TAG)] == [1, 3, 6]  # improvements, then the end
    assert [event.step for event in events.Scalars("val/worst_domain_accuracy")] == [1, 2, 3, 4, 5, 6]


def test_session_ends_follow_the_leaderboard_and_a_trials_own_end_is_kept(tmp_path):
    """A trial writes a success end when it runs all its epochs; the search driver ends the others
    with the leaderboard's status; the root run gets the leaderboard and the importance as Text."""
    config = {"lr": 1e-3, "batch_size": 64, "max_epochs": 3, "objective": "accuracy"}
    rows = []
    for rank, status in enumerate(["completed", "stopped early", "error"], start=1):
        path = tmp_path / f"00{rank}_lr=0.001"
        board = TrialBoard(path, config)
        board.close(completed=status == "completed")
        rows.append({"rank": rank, "trial": path.name, "status": status, "epochs": 3, "lr": 1e-3,
                     "val/accuracy": 0.9 / rank, "path": str(path),
                     "result": SimpleNamespace(metrics={"timestamp": 1_800_000_000 + rank})})
    write_search_end(tmp_path, rows, rows[0], ["lr"], ["val/accuracy"], {"lr": 1.0})
    for row in rows:
        assert session_status(row["path"]) == SESSION_STATUS[row["status"]]
    end = hparams_metadata.parse_session_end_info_plugin_data(
        hparams_content(Path(rows[1]["path"]))[hparams_metadata.SESSION_END_INFO_TAG])
    assert end.end_time_secs == 1_800_000_002  # no epoch logged: the trial's last report
    leaderboard = text(tmp_path, LEADERBOARD_TAG)
    assert f"**{rows[0]['trial']}**" in leaderboard
    assert "(/?pinnedCards=%5B%7B%22plugin%22%3A%22scalars%22%2C%22tag%22%3A%22val/accuracy%22%7D" in leaderboard
    assert "| 1 | ★ 001 | completed |" in leaderboard and "| 2 | 002 | stopped early |" in leaderboard
    assert "| lr | 1 |" in text(tmp_path, IMPORTANCE_TAG)


def test_importance_finds_the_hyperparameter_the_objective_depends_on():
    rng = np.random.default_rng(0)
    rows = [{"lr": float(lr), "beta": float(beta), "batch_size": int(size), "curriculum.x": None,
             "val/accuracy": float(0.5 + 0.4 * math.log10(lr / 1e-4) + 0.01 * beta)}
            for lr, beta, size in zip(10 ** rng.uniform(-4, -3, 24), rng.uniform(0.1, 1, 24), rng.choice([32, 64], 24))]
    rows.append({**rows[0], "val/accuracy": math.nan})  # an errored trial: left out
    importance, basis = parameter_importance(rows, ["lr", "beta", "batch_size", "curriculum.x"], "val/accuracy")
    assert list(importance)[0] == "lr" and importance["lr"] > 0.8
    assert sum(importance.values()) == pytest.approx(1.0)
    assert "24 trials" in basis and "curriculum.x" in basis
    assert parameter_importance(rows[:2], ["lr"], "val/accuracy") == ({}, "no parameter importance: 2 trials "
                                                                          "reported val/accuracy, at least 3 needed")


def test_the_experiment_summary_declares_only_the_searched_keys_objective_first(tmp_path):
    config = {"objective": "worst_domain_accuracy", "target_domain": None, "lr": 1e-3, "hidden_dims": [8]}
    write_search_start(tmp_path, {"lr": tune.loguniform(1e-4, 1e-3)}, config)
    experiment = hparams_metadata.parse_experiment_plugin_data(hparams_content(tmp_path)[hparams_metadata.EXPERIMENT_TAG])
    assert [info.name for info in experiment.hparam_infos] == ["lr"]
    assert experiment.metric_infos[0].name.tag == "val/worst_domain_accuracy"
    fixed = text(tmp_path, "search/shared_settings")
    assert "| hidden_dims | [8] |" in fixed and "| lr |" not in fixed


# -- a real search, end to end -------------------------------------------------------------------------

@pytest.mark.ray
def test_a_search_leaves_a_tensorboard_that_compares_its_trials(ray_cluster, tmp_path):
    loss_weights = recipe("loss_weights")
    loss_weights.main(["--storage-path", str(tmp_path), "--name", "board", "--num-samples", "4", "--max-epochs", "3",
                       "--max-concurrent", "1", "--lr-range", "1e-5", "3e-2", "--seed", "1", *TINY])
    experiment = tmp_path / "board"
    board = read_csv(experiment / "leaderboard.csv")

    summary = hparams_metadata.parse_experiment_plugin_data(hparams_content(experiment)[hparams_metadata.EXPERIMENT_TAG])
    declared = {info.name: info for info in summary.hparam_infos}
    assert set(declared) == set(loss_weights.SPACE)
    assert (declared["lr"].domain_interval.min_value, declared["lr"].domain_interval.max_value) == pytest.approx((1e-5, 3e-2))
    # The batch-size choices as searched: capped to the tiny training set, so each epoch has enough steps.
    batch_sizes = [value.number_value for value in declared["batch_size"].domain_discrete.values]
    assert batch_sizes and all(float(row["batch_size"]) in batch_sizes for row in board)
    assert summary.metric_infos[0].name.tag == "val/accuracy"

    assert {row["status"] for row in board} >= {"completed", "stopped early"}
    for index, row in enumerate(sorted(board, key=lambda row: row["trial"])):
        # Named in trial order, by the drawn values.
        assert row["trial"].startswith(f"{index + 1:03d}_batch_size=") and f"_lr={float(row['lr']):.2g}" in row["trial"]
        content = hparams_content(experiment / row["trial"])
        start = hparams_metadata.parse_session_start_info_plugin_data(content[hparams_metadata.SESSION_START_INFO_TAG])
        end = hparams_metadata.parse_session_end_info_plugin_data(content[hparams_metadata.SESSION_END_INFO_TAG])
        assert end.status == SESSION_STATUS[row["status"]]
        assert 0 < start.start_time_secs <= end.end_time_secs
        assert start.hparams["lr"].number_value == pytest.approx(float(row["lr"]))

    assert f"| 1 | ★ {board[0]['trial'][:3]} |" in text(experiment, LEADERBOARD_TAG)
    importance = json.loads((experiment / "importance.json").read_text())
    assert importance["metric"] == "val/accuracy" and set(importance["importance"]) <= set(declared)
    assert sum(importance["importance"].values()) == pytest.approx(1.0)
    assert "fANOVA" in text(experiment, IMPORTANCE_TAG)
