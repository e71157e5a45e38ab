"""Unsupervised domain adaptation in the data layer and the trials: the target's training-side windows
join training without labels, its other subjects are the test side, and selection reads no target label."""

import json
import math

import numpy as np
import pytest
import ray

from tcnvae.data import DataConfig, prepare
from tcnvae.data.splits import unlabelled_target_split, with_subject_groups
from tcnvae.tuning import cli
from tcnvae.tuning.config import ADAPT_DEFAULTS, validate_config
from tcnvae.tuning.trial import run_trial
from tcnvae.tuning.selection import dev_risk, importance_weights
from helpers import TINY_FLAGS as TINY, read_csv, recipe

TINY_TRIAL = {"hidden_dims": [8], "latent_dim": 4, "head_hidden": 8, "decoder_channels": 8, "max_epochs": 1,
              "mixed_precision": "off"}


def test_the_target_splits_by_subject_into_unlabelled_training_windows_and_a_test_side(synthetic_windows):
    split = unlabelled_target_split(synthetic_windows, "synthetic_b", val_fraction=0.2, target_test_fraction=0.5)
    dataset, subject = synthetic_windows.dataset, synthetic_windows.subject
    assert set(dataset[split["train"]]) == set(dataset[split["val"]]) == {"synthetic_a", "synthetic_c", "synthetic_d"}
    assert set(dataset[split["unlabelled"]]) == set(dataset[split["test"]]) == {"synthetic_b"}
    sides = [set(subject[index]) for index in split.values()]
    assert sum(len(side) for side in sides) == len(set().union(*sides))  # no person on two sides
    assert len(set(subject[split["test"]])) == 3 and len(set(subject[split["unlabelled"]])) == 3


def test_a_transductive_target_is_adapted_on_and_tested_on_its_own_windows_even_one_person(synthetic_windows):
    split = unlabelled_target_split(synthetic_windows, "synthetic_b", val_fraction=0.2, transductive=True)
    target = np.flatnonzero(synthetic_windows.dataset == "synthetic_b")
    assert np.array_equal(split["test"], target) and np.array_equal(split["unlabelled"], target)
    assert not set(synthetic_windows.subject[split["train"]]) & set(synthetic_windows.subject[target])
    # One new person: refused without transductive (nobody would be left to test on), adapted to with it.
    config = dict(split="unlabelled:one", domain_by="subject_group", batch_size=32, sampling="target_balanced",
                  subject_groups={"source": [f"synthetic_a:{i}" for i in range(1, 7)], "one": ["synthetic_b:1"]})
    with pytest.raises(ValueError, match="or transductive=True"):
        prepare(DataConfig(**config))
    data = prepare(DataConfig(**config, transductive=True))
    assert set(data.test.subject) == set(data.unlabelled.subject) == {"synthetic_b:1"}
    assert np.array_equal(data.test.signals, data.unlabelled.signals)  # the same windows, standardised alike
    assert data.metadata()["unlabelled"]["windows"] == len(data.test)


def test_unlabelled_windows_reach_the_training_batches_with_label_minus_one_and_balanced_batches():
    data = prepare(DataConfig(split="unlabelled:synthetic_b", batch_size=32, sampling="target_balanced"))
    assert data.metadata()["unlabelled"]["windows"] == len(data.unlabelled) > 0
    target = data.domain_names.index("synthetic_b")
    loader = data.train_loader()
    for _, activity, domain in loader:
        unlabelled = activity == -1
        assert int(unlabelled.sum()) == 16  # half of every batch is unlabelled target
        assert (domain[unlabelled] == target).all() and (domain[~unlabelled] != target).all()
    # An epoch is one pass over the labelled windows, however many target windows there are.
    assert len(loader) == math.ceil(len(data.train) / 16)
    loader.set_subset(np.concatenate([np.arange(len(data.train)), len(data.train) + np.arange(10)]))
    assert len(loader) == math.ceil(len(data.train) / 16)
    assert set(data.test.subject) | set(data.unlabelled.subject) == {f"synthetic_b:{i}" for i in range(1, 7)}


def test_subject_groups_make_groups_of_people_the_domains(synthetic_windows):
    groups = {"source": ["synthetic_a:1", "synthetic_a:2", "synthetic_c:3"], "target": ["synthetic_b:1"]}
    grouped = with_subject_groups(synthetic_windows, groups)
    assert set(grouped.subject) == {*groups["source"], *groups["target"]}
    assert grouped.domain_ids("subject_group")[1] == ["source", "target"]
    with pytest.raises(ValueError, match=r"subject_groups name subjects with no windows: \['nobody:1'\]"):
        with_subject_groups(synthetic_windows, {"target": ["nobody:1"]})


@pytest.mark.parametrize("settings, message", [
    ({"adapt": "unlabelled"}, "adapt='unlabelled' needs the target"),
    ({"adapt": "unlabelled", "target_domain": "synthetic_b", "objective": "target_accuracy"},
     "the target's labels are not to be used"),
    ({"objective": "dev"}, "Deep Embedded Validation weighs by unlabelled target windows"),
    ({"sampling": "target_balanced"}, "it balances labelled source and unlabelled target windows"),
    ({"transductive": True}, "transductive=True needs split 'unlabelled:<domain>'"),
])
def test_contradictory_adaptation_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        validate_config(settings)


@pytest.mark.parametrize("argv, message", [
    (["--target-domain", "synthetic_z", "--adapt", "unlabelled"], r"no windows with dataset 'synthetic_z'; present: "),
    (["--target-domain", "uci_har", "--adapt", "unlabelled", "--set", "datasets=[\"uci_har\"]"],
     r"every window has dataset 'uci_har'; nothing is left to train on"),
])
def test_a_bad_target_fails_before_ray_starts(monkeypatch, tmp_path, shared_data_file, argv, message):
    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started before the target was checked")

    monkeypatch.setattr(ray, "init", refuse)
    paths = ["--data-path", f"uci_har={shared_data_file('uci_har_windows.npz')}"] if "uci_har" in argv else []
    with pytest.raises(ValueError, match=message):
        recipe("loss_weights").main(["--storage-path", str(tmp_path), *paths, *argv])


def test_dev_weights_favour_target_like_validation_windows_and_average_one():
    rng = np.random.default_rng(0)
    validation, target = rng.normal(0, 1, (400, 2)), rng.normal(0.75, 1, (400, 2))
    weights = importance_weights(validation, target)
    towards_target = np.argsort(validation.sum(axis=1))
    assert weights[towards_target[:100]].mean() < 0.5 < 2 < weights[towards_target[-100:]].mean()
    # A density ratio against the windows it weighs averages 1 over them (E_validation[p_t/p_v] = 1);
    # against the training windows the encoder has fitted, real runs averaged 5 to 60.
    assert weights.mean() == pytest.approx(1, abs=0.1)
    with pytest.raises(ValueError, match="at least 5 validation and 5 target windows"):
        importance_weights(validation[:3], target)
    losses = rng.uniform(0, 2, 50)
    assert dev_risk(np.ones(50), losses) == pytest.approx(losses.mean())
    # The control variate: with weights correlated to the losses, DEV differs from the weighted mean.
    correlated = 0.5 + losses
    assert dev_risk(correlated, losses) != pytest.approx((correlated * losses).mean())


def _arrays_file(path, windows, target, scramble_target_labels):
    activity = np.array(windows.activity_names)[windows.activity]
    if scramble_target_labels:  # the target's labels, replaced: what an unlabelled recording would carry
        is_target = windows.dataset == target
        activity = activity.copy()
        activity[is_target] = np.random.default_rng(1).permutation(activity[is_target])
    np.savez(path, signals=windows.signals, labels=activity, channel_names=np.array(windows.channel_names),
             sample_rate=windows.sample_rate, subjects=windows.subject, domains=windows.dataset)
    return str(path)


def test_a_trials_selection_metrics_do_not_depend_on_the_target_labels(tmp_path, synthetic_windows):
    reports = {}
    # Two domains of four people each keep the two trials short.
    small = synthetic_windows.subset(np.isin(synthetic_windows.subject, [f"synthetic_{d}:{i}" for d in "ab"
                                                                         for i in range(1, 5)]))
    for scrambled in (False, True):
        file = _arrays_file(tmp_path / f"scrambled_{scrambled}.npz", small, "synthetic_b", scrambled)
        config = {**TINY_TRIAL, "datasets": ["arrays"], "data_paths": {"arrays": file}, "domain_by": "domain",
                  "target_domain": "synthetic_b", "adapt": "unlabelled", "objective": "dev",
                  "sampling": "target_balanced"}
        metrics = []
        run_trial(config, lambda m, _: metrics.append(m))
        reports[scrambled] = metrics[-1]
    for key in ("select/dev_score", "select/source_score", "val/accuracy", "loss/total"):
        assert reports[True][key] == reports[False][key], key
    # The target's labels did change, and so did the accuracy logged for analysis.
    assert reports[True]["analysis/target_accuracy"] != reports[False]["analysis/target_accuracy"]
    assert reports[False]["train/unlabelled"] > 0


def test_adapting_to_an_unlabelled_target_brings_its_own_defaults_and_given_values_win():
    adapting = validate_config({"adapt": "unlabelled", "target_domain": "synthetic_b"})
    assert {key: adapting[key] for key in ADAPT_DEFAULTS} == ADAPT_DEFAULTS
    assert validate_config({})["sampling"] == "uniform" and validate_config({})["lambda_ent"] == 0
    given = validate_config({"adapt": "unlabelled", "target_domain": "synthetic_b", "objective": "dev",
                             "sampling": "uniform", "lambda_dom": 0.5})
    assert (given["objective"], given["sampling"], given["lambda_dom"]) == ("dev", "uniform", 0.5)


def test_search_flags_reach_the_trial_config(tmp_path):
    parser = cli.search_parser("test")
    args = parser.parse_args(["--target-domain", "synthetic_b", "--adapt", "unlabelled", "--metric", "dev"])
    config = cli.base_config(args, {})
    assert (config["adapt"], config["objective"], config["target_domain"]) == ("unlabelled", "dev", "synthetic_b")


@pytest.mark.ray
def test_a_search_adapts_to_an_unlabelled_target_ranks_by_dev_and_logs_the_target_apart(ray_cluster, tmp_path):
    recipe("loss_weights").main([
        "--storage-path", str(tmp_path), "--name", "uda", "--num-samples", "2", "--max-epochs", "2",
        "--search", "random", "--scheduler", "fifo", "--target-domain", "synthetic_b", "--adapt", "unlabelled",
        "--metric", "dev", "--set", "sampling=target_balanced", *TINY])
    experiment = tmp_path / "uda"
    board = read_csv(experiment / "leaderboard.csv")
    scores = [float(row["select/dev_score"]) for row in board]
    assert len(board) == 2 and scores == sorted(scores, reverse=True)
    for row in board:
        progress = read_csv(experiment / row["trial"] / "progress.csv")
        assert len(progress) == 2
        assert all(0 <= float(epoch["analysis/target_accuracy"]) <= 1 for epoch in progress)
        assert all(float(epoch["train/unlabelled"]) > 0 for epoch in progress)
    best = json.loads((experiment / "best_config.json").read_text())
    assert best["adapt"] == "unlabelled" and best["objective"] == "dev"
    assert 0.01 <= best["lambda_dom"] <= 1.0 and 1.0 <= best["alpha_ramp_epochs"] <= 20.0  # searched for adaptation
    # The first trial is the defaults (no entropy term), the other draws one from the searched range.
    drawn = sorted(json.loads((experiment / row["trial"] / "params.json").read_text())["lambda_ent"] for row in board)
    assert drawn[0] == 0 and 0 < drawn[1] <= 0.5


def _recordings_file(path):
    """Six people, one recording each: 20 s walking, 20 s unlabelled, 20 s sitting, at 50 Hz."""
    rng = np.random.default_rng(0)
    labels = np.concatenate([np.full(1000, 0), np.full(1000, -1), np.full(1000, 1)])
    signals = rng.normal(size=(6 * 3000, 6)).astype(np.float32)
    np.savez(path, signals=signals, labels=np.tile(labels, 6), label_names=np.array(["walking", "sitting"]),
             offsets=np.arange(0, 6 * 3000 + 1, 3000), subjects=np.arange(1, 7), sample_rate=50.0,
             channel_names=np.array(["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]))
    return str(path)


def test_unlabelled_stretches_of_training_people_join_training_and_no_one_elses(tmp_path):
    config = DataConfig(datasets=["arrays"], paths={"arrays": _recordings_file(tmp_path / "r.npz")},
                        val_fraction=0.2, test_fraction=0.2, unlabelled_stretches=True)
    data = prepare(config)
    train_people = set(data.train.subject)
    assert set(data.unlabelled.subject) == train_people
    # A 2.56 s window every 1.28 s with >= 80 % unlabelled samples: 14 per 20 s stretch, per person.
    assert len(data.unlabelled) == 14 * len(train_people)
    activity = np.concatenate([batch[1].numpy() for batch in data.train_loader()])
    assert (activity == -1).sum() == len(data.unlabelled) and (activity >= 0).sum() == len(data.train)
    with pytest.raises(ValueError, match="pre-windowed sources such as uci_har have no stretches"):
        prepare(DataConfig(unlabelled_stretches=True, datasets=["arrays"],
                           paths={"arrays": _arrays_file(tmp_path / "w.npz", data.train, "none", False)}))
