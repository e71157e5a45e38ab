"""Data checked for meaning, not only format: units, rates, label names, layout, labels, activities, people and
the split asked for, through the data API the searches use (``prepare``) and a search's command line. No Ray."""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import ray

from tcnvae.data import DataConfig, load_source, prepare, register_source
from tcnvae.data.sources import SOURCES
from tcnvae.tuning import cli

from helpers import TINY_MODEL_FLAGS, recipe


def _recordings(people: int = 6, activities: tuple[str, ...] = ("walking", "sitting", "running")) -> list:
    return load_source("synthetic", num_domains=1, subjects_per_domain=people, seconds_per_activity=10,
                       activities=list(activities))


def arrays_file(path: Path, *, people: int = 6, activities: tuple[str, ...] = ("walking", "sitting", "running"),
                subjects: list[str] | None = None, datasets: list[str] | None = None, **fields) -> Path:
    """Continuous synthetic recordings in the arrays format, one per person; ``fields`` replace any field
    (``transform`` maps the (T, C) signals first)."""
    recordings = _recordings(people, activities)
    names = recordings[0].activity_names
    signals = np.concatenate([r.signal for r in recordings])
    contents = {
        "signals": fields.pop("transform", lambda x: x)(signals),
        "labels": np.concatenate([r.labels for r in recordings]),
        "label_names": np.array(names),
        "offsets": np.cumsum([0] + [len(r) for r in recordings]),
        "channel_names": np.array(recordings[0].channel_names),
        "sample_rate": recordings[0].sample_rate,
        "subjects": np.array(subjects if subjects is not None else [f"p{i}" for i in range(len(recordings))]),
    }
    if datasets is not None:
        contents["datasets"] = np.array(datasets)
    contents.update(fields)
    np.savez(path, **{key: value for key, value in contents.items() if value is not None})
    return path


def arrays_config(path: Path, **settings) -> DataConfig:
    return DataConfig(datasets=["arrays"], paths={"arrays": str(path)}, **settings)


def refused_by_prepare(path: Path, message: str, **settings) -> str:
    with pytest.raises(ValueError, match=message) as error:
        prepare(arrays_config(path, **settings))
    return str(error.value)


def refused_before_ray(monkeypatch, tmp_path: Path, argv: list[str], message: str) -> str:
    """The message of the error with which a search's main(argv) stops, with Ray refused to start."""
    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started before the data was checked")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    storage = tmp_path / "results"
    with pytest.raises(ValueError, match=message) as error:
        recipe("loss_weights").main(["--storage-path", str(storage), "--max-epochs", "1", *TINY_MODEL_FLAGS, *argv])
    assert not storage.exists()
    return str(error.value)


def _arrays_argv(path: Path) -> list[str]:
    return ["--data", "arrays", "--data-path", f"arrays={path}"]


# -- units -----------------------------------------------------------------------------------------------

def test_acceleration_in_metres_per_second_squared_is_refused_with_the_conversion(monkeypatch, tmp_path):
    def metres(signals):
        signals = signals.copy()
        signals[:, :3] *= 9.80665
        return signals

    path = arrays_file(tmp_path / "ms2.npz", transform=metres)
    message = refused_before_ray(monkeypatch, tmp_path, _arrays_argv(path), "look like m/s²")
    assert "arrays" in message and str(path) in message and "divide them by 9.80665" in message


def test_angular_velocity_in_degrees_per_second_is_refused_with_the_conversion(tmp_path):
    def degrees(signals):
        signals = signals.copy()
        signals[:, 3:] = signals[:, 3:] * 180 / np.pi + np.where(np.arange(len(signals)) % 2, 60.0, -60.0)[:, None]
        return signals

    message = refused_by_prepare(arrays_file(tmp_path / "deg.npz", transform=degrees), "deg/s, not rad/s")
    assert "gyro_x, gyro_y, gyro_z" in message and "pi/180" in message


def test_predict_checks_units_with_the_same_function_as_training():
    import tcnvae.predict
    from tcnvae.data import checks

    assert tcnvae.predict.check_units is checks.check_units


# -- sample rates ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("rate, message", [
    (0.02, r"sample rate 0.02 Hz is outside 2-10000 Hz.*grow 2,500-fold.*sample period in seconds, the rate is "
           r"1/0.02 = 50 Hz"),
    (1.0, r"sample rate 1 Hz is outside 2-10000 Hz.*grow 50-fold.*give the rate in Hz"),
    (50_000.0, r"sample rate 50000 Hz is outside 2-10000 Hz.*if it is in mHz, the rate is 50 Hz"),
])
def test_a_sample_rate_no_sensor_has_is_refused_before_resampling(tmp_path, rate, message):
    path = arrays_file(tmp_path / "rate.npz", sample_rate=rate)
    assert f"arrays ({path}) recording 0 (arrays:p0)" in refused_by_prepare(path, message)


def test_an_impossible_common_rate_is_refused_too(tmp_path):
    refused_by_prepare(arrays_file(tmp_path / "ok.npz"), r"sample_rate \(the common rate.*0.5 Hz", sample_rate=0.5)


# -- labels and layout -----------------------------------------------------------------------------------

def test_two_codes_with_one_name_are_refused_naming_the_codes(tmp_path):
    path = arrays_file(tmp_path / "twice.npz", label_names=np.array(["walking", "sitting", "walking"]))
    message = refused_by_prepare(path, "codes 0, 2 are all 'walking'")
    assert "label_map" in message  # how to merge on purpose


def test_every_label_unlabelled_is_named_as_the_cause(monkeypatch, tmp_path):
    recordings = _recordings()
    path = arrays_file(tmp_path / "unlabelled.npz", labels=np.full(sum(len(r) for r in recordings), -1))
    message = refused_before_ray(monkeypatch, tmp_path, _arrays_argv(path), "every sample of its 6 recording")
    assert "unlabelled (label -1" in message and "purity" not in message


@pytest.mark.parametrize("windows", [False, True])
def test_a_wrong_layout_is_named_as_the_cause(tmp_path, windows):
    recordings = _recordings()
    if windows:  # (N, C, T) windows, declared channels_last
        signals = np.stack([r.signal[:128].T for r in recordings])
        path = arrays_file(tmp_path / "windows.npz", signals=signals, labels=np.array(["walking"] * len(recordings)),
                           label_names=None, offsets=None)
        message = refused_by_prepare(path, r"have shape \(6, 6, 128\): with layout 'channels_last'")
    else:  # (T, C) recordings back to back, declared channels_first: the offsets no longer fit
        path = arrays_file(tmp_path / "recordings.npz", layout="channels_first")
        message = refused_by_prepare(path, "with layout 'channels_first' axis 0 holds the channels")
    assert "set layout='channels_" in message and "offsets" not in message


# -- recordings shorter than a window --------------------------------------------------------------------

def test_recordings_shorter_than_a_window_are_dropped_with_a_warning_naming_them(tmp_path, caplog):
    recordings = _recordings()
    signals = np.concatenate([r.signal for r in recordings])
    labels = np.concatenate([r.labels for r in recordings])
    cut = len(recordings[0])  # recording 1 is 40 samples of person p1, the rest of the file goes on as before
    path = arrays_file(tmp_path / "short.npz", signals=np.concatenate([signals[:cut + 40], signals[cut:]]),
                       labels=np.concatenate([labels[:cut + 40], labels[cut:]]),
                       offsets=np.cumsum([0, cut, 40] + [len(r) for r in recordings[1:]]),
                       subjects=np.array(["p0", "p1"] + [f"p{i}" for i in range(1, len(recordings))]))
    with caplog.at_level(logging.WARNING, logger="tcnvae.data.harmonise"):
        data = prepare(arrays_config(path))
    warned = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert ("1 recordings shorter than one window (128 samples, 2.56 s) dropped: arrays recording 1 (arrays:p1): "
            "40 samples (0.80 s)") in warned
    assert len(data.train) + len(data.val) + len(data.test) > 0


# -- activities, people and the split --------------------------------------------------------------------

def test_one_activity_is_refused(tmp_path):
    message = refused_by_prepare(arrays_file(tmp_path / "one.npz", activities=("walking",)),
                                 "holds one activity, 'walking'")
    assert "scores 1.000" in message


def test_keeping_one_activity_is_refused_saying_so(tmp_path):
    refused_by_prepare(arrays_file(tmp_path / "three.npz"), r"activities=\['walking'\] keeps only it",
                       activities=["walking"])


def test_one_person_is_refused_with_the_fix(monkeypatch, tmp_path):
    path = arrays_file(tmp_path / "one_person.npz", subjects=["p0"] * 6)
    message = refused_before_ray(monkeypatch, tmp_path, _arrays_argv(path), r"holds one person \(arrays:p0\)")
    assert "at least 3" in message and "'subjects'" in message


def test_a_split_that_leaves_validation_empty_is_refused_with_the_people_counted(tmp_path):
    path = arrays_file(tmp_path / "two.npz", people=2)
    message = refused_by_prepare(path, r"split 'subject' leaves no validation windows \(\d+ train, 0 val, \d+ test\)")
    assert "val_fraction 0.2" in message and "arrays: 2 people" in message and "at least 3" in message


def test_a_search_with_no_validation_is_refused_before_ray(monkeypatch, tmp_path):
    path = arrays_file(tmp_path / "ok.npz")
    message = refused_before_ray(monkeypatch, tmp_path, [*_arrays_argv(path), "--set", "val_fraction=0"],
                                 r"no validation windows \(\d+ training, 0 validation and \d+ test windows; "
                                 r"val_fraction=0")
    assert "--set val_fraction=0.2" in message
    refused_before_ray(monkeypatch, tmp_path, [*_arrays_argv(path), "--set", "test_fraction=0"],
                       "no test windows .*--set test_fraction=0.2")


def test_without_validation_a_final_model_still_prepares_its_data(tmp_path):
    data = prepare(arrays_config(arrays_file(tmp_path / "ok.npz"), val_fraction=0.0))
    assert len(data.val) == 0 and len(data.train) and len(data.test)


# -- the same people in two datasets ---------------------------------------------------------------------

def _two_devices(tmp_path: Path) -> Path:
    """Six people, each recorded by a "phone" and a "watch" (the same ids)."""
    people = [f"p{i}" for i in range(3)]
    return arrays_file(tmp_path / "devices.npz", subjects=people + people,
                       datasets=["phone"] * 3 + ["watch"] * 3)


def _sides(data) -> dict[str, set[str]]:
    return {side: {subject.partition(":")[2] for subject in getattr(data, side).subject.tolist()}
            for side in ("train", "val", "test")}


def test_shared_ids_in_a_users_datasets_are_warned_about_and_declared_they_are_split_as_one(tmp_path, caplog):
    path = _two_devices(tmp_path)
    with caplog.at_level(logging.WARNING, logger="tcnvae.data.checks"):
        prepare(arrays_config(path))
    assert any("phone and watch share subject ids p0, p1, p2" in record.getMessage()
               and "same_people" in record.getMessage() for record in caplog.records)
    caplog.clear()
    for seed in range(3):
        data = prepare(arrays_config(path, same_people={"watch": "phone"}, seed=seed))
        sides = _sides(data)
        assert not (sides["train"] & sides["val"] or sides["train"] & sides["test"] or sides["val"] & sides["test"])
        assert all(len(found) == 1 for found in sides.values())  # 3 people: one a side, with both devices
        assert {dataset for dataset in data.test.dataset.tolist()} == {"phone", "watch"}
    assert not [record for record in caplog.records if "share subject ids" in record.getMessage()]


def test_same_people_is_a_setting_of_the_command_line(tmp_path):
    args = cli.search_parser("test").parse_args([*_arrays_argv(_two_devices(tmp_path)),
                                                 "--set", 'same_people={"watch": "phone"}'])
    config, data = cli.prepare_data(cli.base_config(args, {}))
    assert config["same_people"] == {"watch": "phone"}
    assert all(len(found) == 1 for found in _sides(data).values())
    with pytest.raises(ValueError, match="same_people"):
        cli.base_config(cli.search_parser("test").parse_args(["--set", 'same_people={"watch": 3}']), {})


def test_holding_out_one_dataset_of_the_same_people_is_refused(tmp_path):
    refused_by_prepare(_two_devices(tmp_path), r"split 'lodo:watch' tests on watch, whose people are phone's too",
                       same_people={"watch": "phone"}, split="lodo:watch")
    refused_by_prepare(_two_devices(tmp_path), "same_people names .*'tablet'.* the datasets loaded: phone, watch",
                       same_people={"tablet": "phone"})


def test_a_source_declares_the_people_it_shares(tmp_path):
    """A source module's SAME_PEOPLE_AS is read as UCI-HAR and HAPT's is: pooled, the two are split as one."""
    recordings = _recordings(people=3)

    def source(name: str, same_people_as: tuple[str, ...] = ()) -> ModuleType:
        module = ModuleType(f"test_source_{name}")
        module.NAME, module.SAME_PEOPLE_AS = name, same_people_as

        def load(path=None, **_):
            return [replace(r, dataset=name, subject=f"{name}:{r.subject.partition(':')[2]}") for r in recordings]

        module.load = load
        return module

    for name, declared in (("windows_from", ()), ("recordings_of", ("windows_from",))):
        module = source(name, declared)
        sys.modules[module.__name__] = module
        register_source(name, module, replace=True)
    try:
        data = prepare(DataConfig(datasets=["windows_from", "recordings_of"]))
        sides = _sides(data)
        assert all(len(found) == 1 for found in sides.values()) and len(set.union(*sides.values())) == 3
        loso = prepare(DataConfig(datasets=["windows_from", "recordings_of"], split="loso:recordings_of:2"))
        assert set(loso.test.subject.tolist()) == {"windows_from:2", "recordings_of:2"}
    finally:
        for name in ("windows_from", "recordings_of"):
            SOURCES.pop(name, None)
            sys.modules.pop(f"test_source_{name}", None)


def test_uci_har_and_hapt_are_declared_the_same_people():
    from tcnvae.data.sources import source_module

    assert source_module("hapt").SAME_PEOPLE_AS == ("uci_har",)
    assert source_module("wisdm2019_watch").SAME_PEOPLE_AS == ("wisdm2019_phone",)


def test_pooled_uci_har_and_hapt_put_each_person_on_one_side(shared_data_file):
    """The README's `--data uci_har hapt`: nobody is trained on and tested (real data; skipped without it)."""
    paths = {"uci_har": str(shared_data_file("uci_har_windows.npz")), "hapt": str(shared_data_file("hapt_raw.npz"))}
    data = prepare(DataConfig(datasets=["uci_har", "hapt"], paths=paths))
    sides = _sides(data)
    assert not (sides["train"] & sides["test"] or sides["train"] & sides["val"] or sides["val"] & sides["test"])
    assert len(sides["test"]) == 6 and len(set.union(*sides.values())) == 30  # a fifth of the 30 people, not 12 ids
    official = prepare(DataConfig(datasets=["uci_har", "hapt"], paths=paths, split="uci_har_official"))
    assert set(official.test.dataset.tolist()) == {"uci_har"}  # UCI-HAR's own test windows, nothing added
    assert not _sides(official)["train"] & {"2", "4", "9", "10", "12", "13", "18", "20", "24"}
