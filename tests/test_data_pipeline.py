"""The glue a run uses: DataConfig, prepare(), the standardiser and the metrics."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from tcnvae.data import DataConfig, Standardiser, build_windows, classification_report, prepare
from tcnvae.data.loaders import WindowLoader
from tcnvae.data.pipeline import split_windows
from tcnvae.tuning.config import data_config, declarations, validate_config

SMALL = {"synthetic": {"num_domains": 3, "subjects_per_domain": 4, "seconds_per_activity": 10}}


def _config(**overrides) -> DataConfig:
    return DataConfig(source_options=SMALL, **overrides)


def test_prepare_gives_subject_disjoint_standardised_splits_and_matching_loaders():
    data = prepare(_config(batch_size=32))
    assert data.channel_names == ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
    assert data.window_length == 128 and data.num_domains == 3 and data.num_activities == 8
    subjects = [set(ws.subject) for ws in (data.train, data.val, data.test)]
    assert not (subjects[0] & subjects[1] or subjects[0] & subjects[2] or subjects[1] & subjects[2])
    flat = data.train.signals.reshape(-1, 6)
    np.testing.assert_allclose(flat.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(flat.std(axis=0), 1, atol=1e-3)
    x, activity, domain = next(iter(data.train_loader()))
    assert x.shape == (32, 128, 6) and activity.max() < 8 and domain.max() < 3
    assert len(data.val_loader()) == int(np.ceil(len(data.val) / 32))


def test_the_standardiser_is_fitted_on_the_training_side_only():
    config = _config()
    data = prepare(config)
    windows = build_windows(config)
    train = windows.signals[split_windows(windows, config)["train"]].reshape(-1, 6).astype(np.float64)
    np.testing.assert_allclose(data.standardiser.mean, train.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(data.standardiser.std, train.std(axis=0), rtol=1e-5)
    everything = windows.signals.reshape(-1, 6)
    assert not np.allclose(data.standardiser.mean, everything.mean(axis=0), atol=1e-4)


def test_metadata_is_plain_data_that_restores_the_standardiser():
    data = prepare(_config())
    metadata = json.loads(json.dumps(data.metadata()))
    assert metadata["activity_index"]["walking"] == data.activity_names.index("walking")
    assert metadata["domain_names"] == ["synthetic_a", "synthetic_b", "synthetic_c"]
    restored = Standardiser.from_state_dict(metadata["standardiser"])
    np.testing.assert_allclose(restored.mean, data.standardiser.mean)
    assert DataConfig.from_dict(metadata["config"]) == data.config
    assert metadata["splits"]["test"]["windows"] == len(data.test)


def test_leave_one_domain_out_keeps_the_held_out_domain_named():
    data = prepare(_config(split="lodo:synthetic_b"))
    assert set(data.test.dataset) == {"synthetic_b"}
    assert "synthetic_b" not in set(data.train.dataset)
    _, _, domain = next(iter(data.test_loader()))
    assert set(domain.tolist()) == {data.domain_names.index("synthetic_b")}


def test_activity_filter_keeps_only_those_and_names_missing_ones():
    data = prepare(_config(activities=["walking", "sitting", "running"]))
    assert data.activity_names == ["sitting", "walking", "running"]
    assert all(count > 0 for count in data.train.class_counts().values())
    with pytest.raises(ValueError, match="nordic_walking"):
        build_windows(_config(activities=["walking", "nordic_walking"]))


@pytest.mark.parametrize(
    "change,message",
    [
        ({"datasets": []}, "datasets is empty"),
        ({"datasets": ["synthetc"]}, "unknown datasets"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "below 1"),
        ({"test_fraction": 1.2}, "test_fraction"),
        ({"split": "random"}, "unknown split"),
        ({"split": "lodo:"}, "unknown split"),
        ({"split": "uci_har_official"}, "needs 'uci_har'"),
        ({"channel_set": "magnetometer"}, "channel_set"),
        ({"sampling": "shuffled"}, "sampling"),
        ({"activities": ["Jogging"]}, "lower_snake_case"),
        ({"min_purity": 0.0}, "min_purity"),
        ({"paths": {"pamap2": "/data"}}, "not in datasets"),
    ],
)
def test_bad_configurations_are_refused_with_the_reason(change, message):
    with pytest.raises(ValueError, match=message):
        DataConfig(**change).validate()


def test_unknown_config_keys_are_refused():
    with pytest.raises(ValueError, match="batchsize"):
        DataConfig.from_dict({"batchsize": 3})


def test_standardiser_state_round_trip_and_checks(caplog):
    rng = np.random.default_rng(0)
    windows = rng.normal(2.0, 3.0, size=(50, 16, 3))
    windows[..., 2] = 5.0  # a dead axis
    with caplog.at_level(logging.WARNING, logger="tcnvae.data.normalise"):
        standardiser = Standardiser.fit(windows)
    assert "no variance" in caplog.text
    out = standardiser.transform(windows)
    assert np.isfinite(out).all() and np.abs(out[..., 2]).max() == 0
    np.testing.assert_allclose(out[..., :2].reshape(-1, 2).std(axis=0), 1, atol=1e-4)
    restored = Standardiser.from_state_dict(json.loads(json.dumps(standardiser.state_dict())))
    np.testing.assert_array_equal(restored.transform(windows), out)
    with pytest.raises(ValueError, match="4 channels"):
        standardiser.transform(np.zeros((2, 16, 4)))
    with pytest.raises(ValueError, match="lacks"):
        Standardiser.from_state_dict({"mean": [0.0]})


def test_classification_report_by_hand():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    domains = np.array([0, 0, 0, 1, 1, 1])
    report = classification_report(y_true, y_pred, num_classes=4, domains=domains, domain_names=["a", "b"])
    assert report["accuracy"] == pytest.approx(4 / 6)
    # F1: class 0 = 2*1/(2+2) = 0.5, class 1 = 2*2/(2+3) = 0.8, class 2 = 2*1/(2+1) = 2/3; class 3 absent
    assert report["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert report["per_domain_accuracy"] == {"a": pytest.approx(2 / 3), "b": pytest.approx(2 / 3)}
    assert report["confusion"].tolist()[0] == [1, 1, 0, 0]
    named = classification_report(y_true, y_pred, 4, domains=np.array(["x", "x", "x", "x", "y", "y"]))
    assert named["worst_domain_accuracy"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="y_pred"):
        classification_report(y_true, y_pred + 3, num_classes=4)


def _ten_second_windows(tmp_path) -> str:
    """80 pre-windowed series of 10 s at 10 Hz (100 samples) from 8 people, as an arrays file."""
    rng = np.random.default_rng(0)
    path = tmp_path / "ten_seconds.npz"
    np.savez(path, signals=rng.normal(size=(80, 100, 3)).astype(np.float32), labels=np.arange(80) % 2,
             label_names=np.array(["lying", "walking"]), channel_names=np.array(["acc_x", "acc_y", "acc_z"]),
             sample_rate=10.0, subjects=np.repeat(np.arange(8), 10))
    return str(path)


def test_pre_windowed_data_keeps_its_own_duration_and_is_cropped_only_when_asked(tmp_path, caplog):
    path = _ten_second_windows(tmp_path)
    config = DataConfig(datasets=["arrays"], paths={"arrays": path}, channel_set="acc")
    with caplog.at_level(logging.INFO, logger="tcnvae.data.pipeline"):
        data = prepare(config)
    assert data.config.window_seconds == 10.0 and data.window_length == 500  # 10 s at 50 Hz: nothing dropped
    assert "resampled to sample_rate 50 Hz" in caplog.text and "spans 10 s" in caplog.text
    assert prepare(DataConfig(**{**config.__dict__, "sample_rate": 10.0})).window_length == 100
    with pytest.raises(ValueError, match=r"span 10 s .* would crop 74% of each window.*crop_windows=true"):
        prepare(DataConfig(**{**config.__dict__, "window_seconds": 2.56}))
    cropped = prepare(DataConfig(**{**config.__dict__, "window_seconds": 2.56, "crop_windows": True}))
    assert cropped.window_length == 128


def test_pre_windowed_data_keeps_the_usual_length_when_it_has_it(uci_har_windowset):
    assert uci_har_windowset.window_length / uci_har_windowset.sample_rate == 2.56
    assert _config().window_seconds is None and prepare(_config()).config.window_seconds == 2.56


def test_the_data_layer_defaults_to_the_trial_config_and_checks_by_the_same_declarations():
    """One declaration per setting: DataConfig() and a bare loader are what a trial with the defaults
    uses, and a bad value gets the same message from the data layer and the trial config."""
    config = validate_config({})
    assert DataConfig().validate() == data_config(config)
    loader = WindowLoader(np.zeros((3, 8, 2)), np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64))
    assert (loader.batch_size, loader.sampling) == (config["batch_size"], config["sampling"])
    message = "val_fraction=1.5: expected a fraction in [0, 1) (share of each dataset's subjects that validates)"
    with pytest.raises(ValueError) as from_data:
        DataConfig(val_fraction=1.5).validate()
    with pytest.raises(ValueError) as from_trial:
        validate_config({"val_fraction": 1.5})
    assert message in str(from_data.value) and message in str(from_trial.value)
    assert all(setting.help for setting in declarations().values())
