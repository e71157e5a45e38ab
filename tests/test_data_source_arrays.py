"""Bring-your-own-data source: arrays or .npz in, validated windows or recordings out."""

from __future__ import annotations

import numpy as np
import pytest

from tcnvae.data.recordings import Recording
from tcnvae.data.sources import arrays, load_source
from tcnvae.data.windows import WindowSet

CHANNELS = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
RNG = np.random.default_rng(3)


def _windows(n: int = 8, t: int = 32) -> np.ndarray:
    return RNG.normal(size=(n, t, len(CHANNELS))).astype(np.float32)


def test_windows_with_activity_names():
    x = _windows()
    labels = np.array(["walking", "sitting"] * 4)
    data = arrays.load(
        x,
        labels=labels,
        channel_names=CHANNELS,
        sample_rate=25,
        subjects=[1, 1, 2, 2, 3, 3, 4, 4],
        datasets="lab",
        domains=["left"] * 4 + ["right"] * 4,
    )
    assert isinstance(data, WindowSet)
    np.testing.assert_array_equal(data.signals, x)
    assert data.activity_names == ["sitting", "walking"]
    assert [data.activity_names[i] for i in data.activity] == labels.tolist()
    assert data.subject.tolist()[:3] == ["lab:1", "lab:1", "lab:2"]
    assert set(data.dataset) == {"lab"} and data.sample_rate == 25.0
    assert data.grouping("domain").tolist() == ["left"] * 4 + ["right"] * 4


def test_npz_with_codes_and_label_names_channels_first(tmp_path):
    x = _windows()
    np.savez(
        tmp_path / "mine.npz",
        signals=x.transpose(0, 2, 1),
        labels=np.array([0, 2, 1, 0, 2, 1, 0, 0]),
        label_names=np.array(["walking", "running", "lying"]),
        channel_names=np.array(CHANNELS),
        sample_rate=50.0,
        subjects=np.array(["a"] * 8),
        layout="channels_first",
    )
    data = load_source("arrays", tmp_path / "mine.npz")
    np.testing.assert_array_equal(data.signals, x)
    assert data.activity_names == ["lying", "walking", "running"]
    assert [data.activity_names[i] for i in data.activity[:3]] == ["walking", "lying", "running"]
    assert set(data.subject) == {"arrays:a"}


def test_recordings_from_offsets_list_and_single_array():
    signal = RNG.normal(size=(300, 3)).astype(np.float32)
    codes = np.repeat([-1, 4, 5], 100)
    common = {
        "label_names": {4: "cycling", 5: "ironing"},
        "channel_names": ["acc_x", "acc_y", "acc_z"],
        "sample_rate": 100,
    }
    stacked = arrays.load(
        signal, labels=codes, offsets=[0, 120, 300], subjects=["s1", "s2"], **common
    )
    listed = arrays.load(
        [signal[:120], signal[120:]],
        labels=[codes[:120], codes[120:]],
        subjects=["s1", "s2"],
        **common,
    )
    for recordings in (stacked, listed):
        assert all(isinstance(r, Recording) for r in recordings)
        assert [len(r) for r in recordings] == [120, 180]
        assert [r.subject for r in recordings] == ["arrays:s1", "arrays:s2"]
        np.testing.assert_array_equal(recordings[1].signal, signal[120:])
        first = recordings[0]
        assert first.activity_names == ["cycling", "ironing"]
        assert (first.labels[:100] == -1).all() and first.activity_names[
            first.labels[110]
        ] == "cycling"
    (single,) = arrays.load(
        signal,
        labels=np.repeat(["", "walking", "running"], 100),
        channel_names=["acc_x", "acc_y", "acc_z"],
        sample_rate=20,
        subjects="p9",
    )
    assert single.subject == "arrays:p9" and (single.labels[:100] == -1).all()


def test_shape_mismatches_name_both_shapes():
    x = _windows()
    with pytest.raises(
        ValueError, match=r"labels have shape \(7,\), expected \(8,\) for signals \(8, 32, 6\)"
    ):
        arrays.load(x, labels=["walking"] * 7, channel_names=CHANNELS, sample_rate=50)
    with pytest.raises(ValueError, match=r"shape \(8, 32, 6\) but 3 channel names"):
        arrays.load(x, labels=["walking"] * 8, channel_names=CHANNELS[:3], sample_rate=50)
    with pytest.raises(ValueError, match=r"subjects has shape \(3,\), expected \(8,\)"):
        arrays.load(
            x, labels=["walking"] * 8, channel_names=CHANNELS, sample_rate=50, subjects=[1, 2, 3]
        )
    with pytest.raises(
        ValueError, match=r"labels of recording 0 have shape \(10,\), expected \(32,\)"
    ):
        arrays.load(x[0], labels=["walking"] * 10, channel_names=CHANNELS, sample_rate=50)


def test_nans_are_reported_with_count_and_positions():
    x = _windows()
    x[2, 5, 1] = np.nan
    x[6, 0, 0] = np.inf
    with pytest.raises(
        ValueError, match=r"2 NaN or infinite values, first at indices \(2, 5, 1\), \(6, 0, 0\)"
    ):
        arrays.load(x, labels=["walking"] * 8, channel_names=CHANNELS, sample_rate=50)


def test_names_are_validated():
    x = _windows()
    with pytest.raises(ValueError, match=r"'Jumping Jacks' must be lower_snake_case.*label_map"):
        arrays.load(x, labels=["walking"] * 7 + ["Jumping Jacks"], channel_names=CHANNELS, sample_rate=50)
    with pytest.raises(ValueError, match=r"channel names \['accel_x'\] are not canonical"):
        arrays.load(
            x, labels=["walking"] * 8, channel_names=["accel_x"] + CHANNELS[1:], sample_rate=50
        )
    with pytest.raises(ValueError, match="integer labels need label_names"):
        arrays.load(x, labels=np.zeros(8, int), channel_names=CHANNELS, sample_rate=50)
    with pytest.raises(ValueError, match=r"label codes \[7\] have no entry"):
        arrays.load(
            x, labels=np.full(8, 7), label_names=["walking"], channel_names=CHANNELS, sample_rate=50
        )
    with pytest.raises(ValueError, match="windows must be labelled"):
        arrays.load(x, labels=[""] + ["walking"] * 7, channel_names=CHANNELS, sample_rate=50)


def test_missing_fields_and_bad_options():
    x = _windows()
    with pytest.raises(ValueError, match=r"needs \['channel_names', 'sample_rate'\]"):
        arrays.load(x, labels=["walking"] * 8)
    with pytest.raises(ValueError, match="layout must be one of"):
        arrays.load(
            x, labels=["walking"] * 8, channel_names=CHANNELS, sample_rate=50, layout="time_first"
        )
    with pytest.raises(ValueError, match="sample_rate must be positive"):
        arrays.load(x, labels=["walking"] * 8, channel_names=CHANNELS, sample_rate=0)
    with pytest.raises(ValueError, match=r"unknown fields \['labelz'\]"):
        arrays.load({"signals": x, "labelz": []})
    with pytest.raises(ValueError, match="nothing to download"):
        arrays.load(x, download=True)
    with pytest.raises(ValueError, match="offsets must be integers rising strictly from 0 to 32"):
        arrays.load(
            x[0], labels=["walking"] * 32, offsets=[0, 40], channel_names=CHANNELS, sample_rate=50
        )


def test_names_outside_the_taxonomy_become_new_activities_after_the_taxonomy_ones():
    x = _windows()
    labels = ["pendulum", "walking", "squat", "sitting"] * 2
    data = arrays.load(x, labels=labels, channel_names=CHANNELS, sample_rate=50)
    # Taxonomy order first, then new names alphabetically: the same in every process, no registry.
    assert data.activity_names == ["sitting", "walking", "pendulum", "squat"]
    assert [data.activity_names[i] for i in data.activity] == labels
    coded = arrays.load(x, labels=np.array([0, 1, 2, 3] * 2), label_names=["pendulum", "walking", "squat", "sitting"],
                        channel_names=CHANNELS, sample_rate=50)
    assert coded.activity_names == data.activity_names and coded.activity.tolist() == data.activity.tolist()


def test_label_map_maps_your_names_onto_the_taxonomy_from_keywords_and_from_a_file(tmp_path):
    x = _windows()
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    names = ["jog", "stroll", "pendulum"]
    mapped = arrays.load(x, labels=labels, label_names=names, label_map={"jog": "running", "stroll": "walking"},
                         channel_names=CHANNELS, sample_rate=50)
    assert mapped.activity_names == ["walking", "running", "pendulum"]
    assert [mapped.activity_names[i] for i in mapped.activity][:3] == ["running", "walking", "pendulum"]
    path = tmp_path / "mine.npz"
    np.savez(path, signals=x, labels=labels, label_names=np.array(names), channel_names=np.array(CHANNELS),
             sample_rate=50.0, label_map=np.array([["jog", "running"], ["stroll", "walking"]]))
    from_file = load_source("arrays", path=path)
    assert from_file.activity_names == mapped.activity_names
    assert from_file.activity.tolist() == mapped.activity.tolist()
    with pytest.raises(ValueError, match=r"label_map maps \['jogging'\], which name no activity of the data"):
        arrays.load(x, labels=labels, label_names=names, label_map={"jogging": "running"},
                    channel_names=CHANNELS, sample_rate=50)
    with pytest.raises(ValueError, match=r"label_map has shape \(2,\)"):
        arrays.load(x, labels=labels, label_names=names, label_map=np.array(["jog", "running"]),
                    channel_names=CHANNELS, sample_rate=50)


def test_a_corrupt_file_and_no_data_at_all_are_named(tmp_path):
    corrupt = tmp_path / "broken.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip archive")
    with pytest.raises(ValueError, match="broken.npz is not a readable .npz archive"):
        load_source("arrays", path=corrupt)
    with pytest.raises(ValueError, match="--data-path arrays=FILE.npz"):
        load_source("arrays")


def test_an_object_array_in_the_file_is_refused_without_numpys_pickle_advice(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, signals=np.array([np.zeros(3), np.zeros(4)], dtype=object), labels=np.zeros(2, int))
    with pytest.raises(ValueError, match=r"objects.npz is not a readable .npz archive.*object \(pickled\) array, "
                                         r"which is never loaded.*tcnvae.data.sources.arrays") as error:
        load_source("arrays", path=path)
    assert "allow_pickle" not in str(error.value)
