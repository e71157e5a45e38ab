"""A new dataset from a few labelled people: with ``split=lodo:NAME`` and ``target_labelled_people=K``, K of the
target's people (drawn by the split's seed) are labelled training data, and the test is the target's other
people; validation stays on the source people."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tcnvae.data import DataConfig, prepare
from tcnvae.data.splits import leave_one_domain_out
from tcnvae.tuning import DEFAULT_CONFIG, validate_config
from helpers import TINY_FLAGS, recipe, refused

TARGET = "synthetic_b"
TARGET_PEOPLE = {f"{TARGET}:{i}" for i in range(1, 7)}  # the default synthetic data: 4 domains x 6 people


def people(ws, index) -> set[str]:
    return set(ws.subject[index].tolist())


def labelled_people(ws, split) -> set[str]:
    return {s for s in people(ws, split["train"]) if s.startswith(f"{TARGET}:")}


def test_k_target_people_train_with_labels_and_the_test_is_exactly_the_targets_other_people(synthetic_windows):
    ws = synthetic_windows
    split = leave_one_domain_out(ws, TARGET, val_fraction=0.2, seed=3, labelled_people=2)
    labelled = labelled_people(ws, split)
    assert len(labelled) == 2 and labelled <= TARGET_PEOPLE
    # every window of the K people is training data, none is anywhere else
    of_labelled = np.flatnonzero(np.isin(ws.subject, sorted(labelled)))
    assert np.isin(of_labelled, split["train"]).all()
    assert people(ws, split["test"]) == TARGET_PEOPLE - labelled
    assert set(ws.dataset[split["test"]].tolist()) == {TARGET}  # no source person is tested on
    assert not people(ws, split["val"]) & TARGET_PEOPLE  # validation stays on source people
    sides = [people(ws, index) for index in split.values()]
    assert sum(len(side) for side in sides) == len(set().union(*sides))  # nobody on two sides
    assert sum(len(index) for index in split.values()) == len(ws)  # every window has a side
    # K = 0 is the plain leave-one-dataset-out split
    plain = leave_one_domain_out(ws, TARGET, val_fraction=0.2, seed=3)
    zero = leave_one_domain_out(ws, TARGET, val_fraction=0.2, seed=3, labelled_people=0)
    assert all(np.array_equal(plain[side], zero[side]) for side in plain)
    assert people(ws, plain["test"]) == TARGET_PEOPLE and not labelled_people(ws, plain)
    # the source side is the same whatever K: only target people move
    assert np.array_equal(plain["val"], split["val"])
    assert people(ws, split["train"]) - labelled == people(ws, plain["train"])


def test_the_k_people_are_drawn_by_the_seed_reproducibly_and_nested_across_k(synthetic_windows):
    ws = synthetic_windows

    def drawn(seed: int, k: int) -> set[str]:
        return labelled_people(ws, leave_one_domain_out(ws, TARGET, val_fraction=0.2, seed=seed, labelled_people=k))

    assert drawn(5, 2) == drawn(5, 2)
    assert len({frozenset(drawn(seed, 2)) for seed in range(8)}) > 1  # other seeds, other people
    for seed in (0, 1):  # a larger K of one seed keeps the people of a smaller one: K = 1, 2, 4 compare alike
        assert drawn(seed, 1) <= drawn(seed, 2) <= drawn(seed, 4)
    # not chosen by their labels: the draw ignores which activities anyone did
    shuffled = ws.subset(np.arange(len(ws)))
    shuffled.activity[:] = np.random.default_rng(0).permutation(shuffled.activity)
    assert labelled_people(shuffled, leave_one_domain_out(shuffled, TARGET, val_fraction=0.2, seed=5,
                                                          labelled_people=2)) == drawn(5, 2)


def test_prepared_data_trains_on_the_k_people_labelled_and_scores_the_others():
    data = prepare(DataConfig(split=f"lodo:{TARGET}", target_labelled_people=2, seed=1))
    in_training = data.train.subset(data.train.dataset == TARGET)
    assert len(set(in_training.subject.tolist())) == 2 and (in_training.activity >= 0).all()
    assert set(data.test.subject.tolist()) == TARGET_PEOPLE - set(in_training.subject.tolist())
    assert set(data.test.dataset.tolist()) == {TARGET} and TARGET not in set(data.val.dataset.tolist())
    assert data.unlabelled is None
    # the domain head sees the target's labelled people under the target's own domain label
    target = data.domain_names.index(TARGET)
    domains = np.concatenate([domain.numpy() for _, _, domain in data.loader(data.train)])
    assert (domains == target).sum() == len(in_training)
    recorded = data.metadata()
    assert recorded["config"]["target_labelled_people"] == 2
    assert set(in_training.subject.tolist()) <= set(recorded["splits"]["train"]["subjects"])


def test_the_setting_is_a_trial_key_refused_where_it_cannot_mean_anything():
    assert validate_config({"split": f"lodo:{TARGET}", "target_labelled_people": 3})["target_labelled_people"] == 3
    assert validate_config({"target_domain": TARGET, "target_labelled_people": 3})["target_labelled_people"] == 3
    for split in ("subject", f"unlabelled:{TARGET}", "loso:synthetic_a:1"):
        with pytest.raises(ValueError, match=r"target_labelled_people=2 needs split 'lodo:<domain>'.*set "
                                             r"split=lodo:NAME \(or target_domain=NAME\), or target_labelled_people=0"):
            DataConfig(split=split, target_labelled_people=2).validate()
    with pytest.raises(ValueError, match=r"invalid trial config: .*target_labelled_people=2 needs split"):
        validate_config({"adapt": "unlabelled", "target_domain": TARGET, "target_labelled_people": 2})
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match=r"target_labelled_people=.*expected an integer >= 0"):
            DataConfig(split=f"lodo:{TARGET}", target_labelled_people=bad).validate()


def test_too_many_labelled_people_is_refused_before_anything_trains(synthetic_windows):
    message = (r"target_labelled_people=6: the target \(synthetic_b\) has 6 people, and at least one must stay out "
               r"of training to be tested on; use target_labelled_people=5 or fewer")
    with pytest.raises(ValueError, match=message):
        leave_one_domain_out(synthetic_windows, TARGET, labelled_people=6)
    with pytest.raises(ValueError, match=message.replace("=6", "=9")):
        prepare(DataConfig(split=f"lodo:{TARGET}", target_labelled_people=9))
    split = leave_one_domain_out(synthetic_windows, TARGET, labelled_people=5)  # one person left to test on
    assert len(people(synthetic_windows, split["test"])) == 1


def test_a_search_refuses_too_many_labelled_people_before_ray_starts(no_ray):
    message = refused([*TINY_FLAGS, "--set", f"split=lodo:{TARGET}", "--set", "target_labelled_people=4"],
                      "target_labelled_people=4: the target")
    assert "has 4 people" in message and "use target_labelled_people=3 or fewer" in message
    refused([*TINY_FLAGS, "--set", "target_labelled_people=1"], "target_labelled_people=1 needs split 'lodo:<domain>'")


def test_a_target_whose_people_another_pooled_dataset_recorded_stays_refused():
    same = {"synthetic_b": "synthetic_a"}  # the synthetic domains number their people alike: declared the same
    with pytest.raises(ValueError, match=r"split 'lodo:synthetic_b' tests on synthetic_b, whose people are "
                                         r"synthetic_a's too"):
        prepare(DataConfig(split=f"lodo:{TARGET}", target_labelled_people=2, same_people=same))


def test_one_command_pretrains_then_fine_tunes_from_the_encoder_on_the_same_split(tmp_path):
    output = recipe("pretrain").main([
        *TINY_FLAGS, "--max-epochs", "1", "--all-windows", "--finetune-epochs", "2", "--output",
        str(tmp_path / "encoder.pt"), "--set", f"split=lodo:{TARGET}", "--set", "target_labelled_people=1",
        "--set", "curriculum=freeze_then_finetune", "--set", "curriculum.freeze_epochs=1"])
    pretrained = json.loads(output.with_suffix(".json").read_text())
    summary = json.loads(output.with_suffix(".finetune.json").read_text())
    everyone = {f"{domain}:{i}" for domain in ("synthetic_a", TARGET) for i in range(1, 5)}
    assert pretrained["all_windows"] and pretrained["windows"] == sum(
        pretrained["data"]["splits"][side]["windows"] for side in ("train", "val", "test"))
    # fine-tuning: from the encoder written, with freeze_then_finetune, the trial's β, on the same split
    config = summary["config"]
    assert config["curriculum"] == "freeze_then_finetune" and config["curriculum.encoder_path"] == str(output)
    assert config["curriculum.freeze_epochs"] == 1 and config["beta"] == DEFAULT_CONFIG["beta"] != 0.01
    assert summary["split"] == f"lodo:{TARGET}"
    labelled = {s for s in summary["training_people"] if s.startswith(f"{TARGET}:")}
    assert len(labelled) == 1 and labelled <= set(pretrained["data"]["splits"]["train"]["subjects"])
    assert set(summary["test"]["subjects"]) == set(pretrained["data"]["splits"]["test"]["subjects"]) == (
        {s for s in everyone if s.startswith(f"{TARGET}:")} - labelled)
    history = summary["history"]
    assert [int(h["epoch"]) for h in history] == [1, 2]
    assert history[0]["curriculum/trainable_fraction"] < history[1]["curriculum/trainable_fraction"]  # frozen, then not
    chosen = max(history, key=lambda h: h["val/accuracy"])  # the first of the best validation epochs
    assert summary["chosen_epoch"] == int(chosen["epoch"])
    assert summary["selected_on"] == {"val/accuracy": chosen["val/accuracy"]}
    assert summary["test"]["windows"] == pretrained["data"]["splits"]["test"]["windows"]
    assert 0 <= summary["test"]["accuracy"] <= 1 and 0 <= summary["test"]["macro_f1"] <= 1
    assert (tmp_path / "encoder_finetune").is_dir()  # its TensorBoard run


@pytest.mark.parametrize("flags, message", [
    (["--finetune-epochs", "2", "--set", "curriculum=single_to_cross"],
     "--finetune-epochs fine-tunes with freeze_then_finetune, not curriculum='single_to_cross'"),
    (["--finetune-epochs", "-1"], "--finetune-epochs -1: expected an integer >= 0"),
    (["--finetune-epochs", "2", "--set", "target_labelled_people=1"], "target_labelled_people=1 needs split"),
])
def test_the_one_command_refuses_before_pretraining(tmp_path, flags, message):
    with pytest.raises(ValueError, match=message):
        recipe("pretrain").main([*TINY_FLAGS, "--output", str(tmp_path / "encoder.pt"), *flags])
    assert not (tmp_path / "encoder.pt").exists()


@pytest.mark.real_data
def test_two_labelled_people_of_wisdm_2019_phone_beside_hapt(shared_data_file):
    paths = {"hapt": str(shared_data_file("hapt_raw.npz")),
             "wisdm2019_phone": str(shared_data_file("wisdm2019_phone_raw.npz"))}
    config = dict(datasets=["hapt", "wisdm2019_phone"], paths=paths, sample_rate=20.0, window_seconds=2.5,
                  step_seconds=1.25, split="lodo:wisdm2019_phone", target_labelled_people=2, seed=4)
    data = prepare(DataConfig(**config))
    phone_people = {s for ws in (data.train, data.val, data.test) for s in ws.subject.tolist()
                    if s.startswith("wisdm2019_phone:")}
    assert len(phone_people) == 21  # WISDM 2019's phone people, all on training or test
    labelled = {s for s in data.train.subject.tolist() if s.startswith("wisdm2019_phone:")}
    assert len(labelled) == 2
    assert set(data.test.subject.tolist()) == phone_people - labelled
    assert set(data.test.dataset.tolist()) == {"wisdm2019_phone"} and set(data.val.dataset.tolist()) == {"hapt"}
    in_training = data.train.subset(data.train.dataset == "wisdm2019_phone")
    assert (in_training.activity >= 0).all() and len(set(in_training.activity.tolist())) > 5  # labelled, all kinds
    assert prepare(DataConfig(**config)).train.subject.tolist() == data.train.subject.tolist()  # reproducible
