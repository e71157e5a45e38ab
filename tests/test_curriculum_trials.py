"""Curricula inside trials: the stage in the reported metrics and TensorBoard, resume and PBT-style
restores in the middle of a curriculum, replay of perturbed curriculum parameters, validation before
Ray, data-parallel trials that freeze, and the curriculum search end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest
import ray
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tcnvae.checkpoints import load_checkpoint
from tcnvae.tuning import CHECKPOINT_FILE, load_replay, make_trainable, run_trial, validate_config, write_replay
from tcnvae.tuning.search import CurriculumSpace
from tcnvae.tuning.report import trial_settings
from helpers import TINY_FLAGS, TINY_TRIAL as TINY, Recorder, recipe, run, tune_run

STAGE = "curriculum/stage"
# TINY's training domains; single_to_cross starts on the one with the most training windows.
START, OTHER = "synthetic_a", "synthetic_b"


def column(recorder: Recorder, key: str) -> list[float]:
    return [metrics[key] for metrics in recorder.metrics]


def test_a_trial_reports_its_stage_and_changes_stage_at_the_switch_epoch(tmp_path):
    recorder = run({"curriculum": "single_to_cross", "curriculum.single_epochs": 2, "max_epochs": 3},
                   log_dir=tmp_path)
    assert column(recorder, STAGE) == [0, 0, 1]
    assert column(recorder, f"curriculum/domain_weight/{START}") == [1.0, 1.0, 0.5]
    assert column(recorder, f"curriculum/domain_weight/{OTHER}") == [0.0, 0.0, 0.5]
    # One domain in the batches: a domain classifier has nothing to tell apart, so its term is off.
    assert column(recorder, "curriculum/loss_multiplier/domain") == [0.0, 0.0, 1.0]

    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    assert [event.value for event in events.Scalars(STAGE)] == [0, 0, 1]
    texts = {event.step: event.tensor_proto.string_val[0].decode() for event in events.Tensors(f"{STAGE}/text_summary")}
    assert sorted(texts) == [1, 3]  # a text where a stage begins, none where it continues
    assert f"single:{START}" in texts[1] and "cross" in texts[3] and f"{OTHER} 0.50" in texts[3]


def test_resuming_in_the_middle_of_a_curriculum_continues_in_the_same_stage(tmp_path):
    """Three policies at once: a domain switch, gradual unfreezing at discounted learning rates under
    a cosine schedule, and self-paced window subsets; each has state or effects a resume must restore."""
    # β and λ_act pinned at 1: at the defaults' 0.1 and 2.5 the resumed self_paced run's losses drift
    # from the straight run's at the 1e-5 level (reported as an open question, not settled here).
    config = {"curriculum": "single_to_cross+freeze_then_finetune+self_paced", "max_epochs": 4,
              "beta": 1.0, "lambda_act": 1.0, "lr_schedule": "cosine", "curriculum.single_epochs": 2, "curriculum.freeze_epochs": 1,
              "curriculum.encoder_lr_multiplier": 0.1, "curriculum.layer_decay": 0.5,
              "curriculum.warmup_epochs": 1, "curriculum.start_fraction": 0.5, "curriculum.self_paced.ramp_epochs": 2}
    straight = run(config, checkpoint_root=tmp_path)
    assert column(straight, STAGE) == [0, 1, 2, 3]  # single+frozen+warmup, single+unfreezing+easiest, cross+...
    assert column(straight, "curriculum/window_fraction") == [1.0, 0.5, 0.75, 1.0]
    assert column(straight, "curriculum/lr_multiplier/encoder.latent") == pytest.approx([0.0, 0.1, 0.1, 0.1])
    assert column(straight, "curriculum/lr_multiplier/encoder.block0") == pytest.approx([0.0, 0.0, 0.05, 0.05])

    saved = load_checkpoint(straight.checkpoints[1] / CHECKPOINT_FILE)["curriculum"]["policy_state"]
    # After two epochs: unfreezing began at epoch 1 (a fresh policy would begin it at epoch 2 and thaw
    # one group, not both), and the switch to all domains is still ahead.
    assert saved["freeze_then_finetune"]["unfreezing_from"] == 1
    assert saved["single_to_cross"]["switched_at"] is None
    resumed = run(config, restore_dir=straight.checkpoints[1])
    assert resumed.metrics == straight.metrics[2:]


def test_a_pbt_clone_runs_its_perturbed_curriculum_parameters_from_the_stage_it_took_over(tmp_path):
    """A PBT exploit in miniature, and its replay: epochs 0-1 switch to all domains at epoch 1 at once;
    the clone's perturbed values would not have switched yet (single_epochs 3) and ramp the other
    domains in over two epochs (ramp_epochs 2). It keeps the switch it inherited and ramps from there."""
    donor = {"curriculum": "single_to_cross", "curriculum.single_epochs": 1, "curriculum.ramp_epochs": 0,
             "max_epochs": 4}
    clone = {**donor, "curriculum.single_epochs": 3, "curriculum.ramp_epochs": 2}
    early = Recorder(tmp_path / "early")
    run_trial({**TINY, **donor}, early, until_epoch=2)
    late = Recorder()
    state = run_trial({**TINY, **clone}, late, restore_dir=early.checkpoints[-1])
    assert column(early, STAGE) == [0, 1]  # single, cross
    assert column(late, STAGE) == [2, 1]  # mixing (2/3 of the way at epoch 2), cross
    assert column(late, f"curriculum/domain_weight/{START}") == pytest.approx([1 / 3 + 1 / 3, 0.5])
    assert [(entry["curriculum.single_epochs"], entry["curriculum.ramp_epochs"])
            for entry in state.hyperparameter_history] == [(1, 0), (1, 0), (3, 2), (3, 2)]

    replay = load_replay(write_replay(tmp_path / "replay.json", state.hyperparameter_history, {**TINY, **donor}))
    replayed = Recorder()
    assert run_trial(replay, replayed).hyperparameter_history == state.hyperparameter_history
    assert replayed.metrics == early.metrics + late.metrics


@pytest.mark.parametrize("bad, named", [
    ({"curriculum": "single_to_crosss"}, "unknown curriculum 'single_to_crosss'; registered: freeze_then_finetune"),
    ({"curriculum": "single_to_cross", "curriculum.switch_epoch": 3}, "has no parameter 'switch_epoch'"),
    ({"curriculum": "self_paced", "curriculum.ramp_epochs": 0}, "ramp_epochs must be an integer >= 1, got 0"),
    ({"curriculum.single_epochs": 2}, "curriculum 'none' has no parameter 'single_epochs'"),
    ({"curriculum": "single_to_cross+self_paced", "curriculum.ramp_epochs": 2}, "write it as one of"),
    ({"curriculum": "freeze_then_finetune", "curriculum.encoder_path": "/no/encoder.pt"},
     "/no/encoder.pt does not exist"),
    ({"curriculum": "no_such_file.py:Policy"}, "no_such_file.py does not exist"),
    ({"curriculum": ["single_to_cross"]}, "curriculum=['single_to_cross']: expected a policy name"),
    ({"curriculum": "single_to_cross", "replay_schedule": [{"epoch": 0, "curriculum.single_epochs": 0}]},
     "replay_schedule epoch 0: curriculum 'single_to_cross': single_epochs must be an integer >= 1"),
])
def test_malformed_curricula_are_rejected_by_validate_config(bad, named):
    with pytest.raises(ValueError) as error:
        validate_config(bad)
    assert named in str(error.value)


USER_POLICY = '''
from ray import tune

from tcnvae.curriculum import CurriculumPolicy, Stage, check_int


class DecoderLater(CurriculumPolicy):
    def __init__(self, ramp_epochs: int = 1):
        self.ramp_epochs = check_int("ramp_epochs", ramp_epochs, 0)

    @classmethod
    def search_space(cls):
        return {"ramp_epochs": tune.randint(0, 3)}

    def stage(self, epoch, metrics):
        return Stage("recon_off" if epoch < self.ramp_epochs else "all",
                     loss_multipliers={"recon": 0.0 if epoch < self.ramp_epochs else 1.0})
'''


def test_the_search_space_gives_each_trial_the_parameters_of_the_policy_it_drew(tmp_path):
    """Shipped, composed and user policies in one conditional space; two of them have a ramp_epochs."""
    path = tmp_path / "mypolicies.py"
    path.write_text(USER_POLICY)
    specs = ["none", "self_paced", "single_to_cross+objective_ramp", f"{path}:DecoderLater"]
    space = CurriculumSpace.from_tune(recipe("curriculum").SPACE, specs)
    prefixes = {"none": [], "self_paced": ["self_paced"], "single_to_cross+objective_ramp": ["single_to_cross",
                "objective_ramp"], f"{path}:DecoderLater": ["DecoderLater"]}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    drawn = set()
    for _ in range(20):
        trial = study.ask()
        assert space(trial) == {}
        config = trial.params
        drawn.add(config["curriculum"])
        curriculum_keys = {key.split(".")[1] for key in config if key.startswith("curriculum.")}
        assert curriculum_keys == set(prefixes[config["curriculum"]])
        assert validate_config({**TINY, **config})["curriculum"] == config["curriculum"]
    assert drawn == set(specs)
    assert "curriculum.DecoderLater.ramp_epochs" in space.hyperparameters()
    assert "curriculum.self_paced.ramp_epochs" in space.hyperparameters()


@pytest.mark.parametrize("argv, message", [
    (["--curricula", "none,single_to_crosss"], "unknown curriculum 'single_to_crosss'"),
    (["--curriculum", "missing.py:MyPolicy"], "missing.py does not exist"),
    (["--set", "curriculum=self_paced"], "name the curricula with --curricula"),
    (["--encoder-path", "encoder.pt"], "--encoder-path is for freeze_then_finetune"),
])
def test_the_curriculum_search_rejects_bad_curricula_before_ray_starts(monkeypatch, tmp_path, argv, message):
    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started before the configuration was validated")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        recipe("curriculum").main(["--storage-path", str(tmp_path), *argv])
    assert list(tmp_path.iterdir()) == []


# -- through Ray ---------------------------------------------------------------------------------------

@pytest.mark.ray
def test_a_two_worker_trial_freezes_and_unfreezes_under_ddp(ray_cluster, tmp_path):
    """DDP wraps the model before the first stage freezes the encoder: the frozen epoch must not hang
    waiting for gradients, and the unfrozen encoder must train after."""
    result = tune_run(make_trainable(cpus_per_trial=1, workers_per_trial=2),
                      {"curriculum": "freeze_then_finetune", "curriculum.freeze_epochs": 1,
                       "curriculum.unfreeze": "all", "max_epochs": 2}, tmp_path, "ddp")
    assert result.error is None
    assert result.metrics_dataframe["curriculum/trainable_fraction"].tolist()[-1] == 1.0
    assert result.metrics_dataframe["curriculum/trainable_fraction"].tolist()[0] < 1.0
    encoders = []
    for checkpoint, _ in sorted(result.best_checkpoints, key=lambda pair: pair[1]["epoch"]):
        with checkpoint.as_directory() as directory:
            weights = load_checkpoint(Path(directory) / CHECKPOINT_FILE)["trainer"]["model_state"]
        encoders.append({key: value for key, value in weights.items() if key.startswith("tcn_encoder.")})
    assert len(encoders) == 2
    assert any(not torch.equal(encoders[0][key], encoders[1][key]) for key in encoders[0])


@pytest.mark.ray
def test_the_curriculum_search_chooses_policies_and_their_parameters(ray_cluster, tmp_path):
    recipe("curriculum").main([
        "--storage-path", str(tmp_path), "--name", "curricula", "--num-samples", "3", "--max-epochs", "2",
        "--grace-period", "2", "--max-concurrent", "1", "--curricula", "none,single_to_cross,objective_ramp",
        "--seed", "2", *TINY_FLAGS])  # seed 2: TPE's first (random) draws pick each policy once
    experiment = tmp_path / "curricula"
    with open(experiment / "leaderboard.csv", newline="") as stream:
        board = list(csv.DictReader(stream))
    assert len(board) == 3 and {row["status"] for row in board} == {"completed"}
    assert {row["curriculum"] for row in board} == {"none", "single_to_cross", "objective_ramp"}
    study = optuna.load_study(study_name="curricula", storage=f"sqlite:///{experiment / 'optuna.db'}")
    assert sorted(trial.params["curriculum"] for trial in study.trials) == sorted(row["curriculum"] for row in board)
    for row in board:
        config = json.loads((experiment / row["trial"] / "params.json").read_text())
        policy = config["curriculum"]
        drawn = {key for key in config if key.startswith("curriculum.")}
        assert all(key.startswith(f"curriculum.{policy}.") for key in drawn)  # only the drawn policy's
        with open(experiment / row["trial"] / "progress.csv", newline="") as stream:
            reported = next(csv.DictReader(stream))
        if policy == "none":
            assert not drawn and "curriculum/stage" not in reported
        else:
            assert drawn and "curriculum/stage" in reported, "a policy's parameters are searched with it"
    best = trial_settings(json.loads((experiment / "best_config.json").read_text()))
    assert validate_config(best) == best
