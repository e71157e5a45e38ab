"""HAPT: RawData files and labels.txt segments become per-sample labelled recordings."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from tcnvae.data.recordings import UNLABELLED
from tcnvae.data.sources import hapt

# (experiment, user, samples) and labels.txt rows (exp, user, activity, start, end), 1-based inclusive
EXPERIMENTS = [(1, 1, 300), (2, 1, 240), (3, 2, 260)]
SEGMENTS = [
    (1, 1, 5, 11, 100),  # standing
    (1, 1, 7, 101, 130),  # stand-to-sit transition
    (1, 1, 4, 131, 290),  # sitting
    (2, 1, 1, 1, 240),  # walking, whole file
    (3, 2, 2, 50, 149),  # upstairs
    (3, 2, 12, 150, 170),  # lie-to-stand transition
]


def _signal(experiment: int, samples: int) -> np.ndarray:
    t = np.arange(samples)[:, None]
    acc = np.array([1.0, 0.0, 0.0]) + 0.01 * np.sin(t / 7 + experiment)
    gyro = 0.1 * np.cos(t / 5 + np.arange(3)) * experiment
    return np.concatenate([acc, gyro], axis=1)


def write_raw(root: Path) -> Path:
    raw = root / "HAPT Data Set" / "RawData"
    raw.mkdir(parents=True)
    for experiment, user, samples in EXPERIMENTS:
        signal = _signal(experiment, samples)
        np.savetxt(raw / f"acc_exp{experiment:02d}_user{user:02d}.txt", signal[:, :3], fmt="%.9e")
        np.savetxt(raw / f"gyro_exp{experiment:02d}_user{user:02d}.txt", signal[:, 3:], fmt="%.9e")
    np.savetxt(raw / "labels.txt", np.array(SEGMENTS), fmt="%d")
    return raw.parent


def _expected_codes(experiment: int, samples: int) -> np.ndarray:
    codes = np.full(samples, UNLABELLED)
    for exp, _, activity, start, end in SEGMENTS:
        if exp == experiment:
            codes[start - 1 : end] = activity
    return codes


def test_raw_layout_gives_one_labelled_recording_per_experiment(tmp_path):
    recordings = hapt.load(write_raw(tmp_path))
    assert [len(r) for r in recordings] == [300, 240, 260]
    assert [r.subject for r in recordings] == ["hapt:1", "hapt:1", "hapt:2"]
    first = recordings[0]
    assert first.channel_names == ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
    assert first.sample_rate == 50.0 and first.attributes == {"placement": "waist"}
    np.testing.assert_allclose(first.signal, _signal(1, 300), rtol=1e-6)
    names = [first.activity_names[i] if i >= 0 else None for i in first.labels]
    assert names[:10] == [None] * 10
    assert names[10] == names[99] == "standing"
    assert set(names[100:130]) == {"postural_transition"}
    assert names[130] == names[289] == "sitting"
    assert names[290:] == [None] * 10
    third = recordings[2]
    assert third.activity_names[third.labels[60]] == "ascending_stairs"
    assert third.activity_names[third.labels[160]] == "postural_transition"


def test_transitions_can_be_left_unlabelled(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="tcnvae.data.sources.hapt"):
        recordings = hapt.load(write_raw(tmp_path), include_transitions=False)
    assert "postural_transition" not in recordings[0].activity_names
    assert np.all(recordings[0].labels[100:130] == UNLABELLED)
    assert recordings[0].activity_names[recordings[0].labels[50]] == "standing"
    assert "51 postural-transition samples left unlabelled" in caplog.text


def test_npz_form_equals_raw_layout(tmp_path):
    from_raw = hapt.load(write_raw(tmp_path))
    signals = np.concatenate([_signal(e, n) for e, _, n in EXPERIMENTS]).astype(np.float32)
    labels = np.concatenate([_expected_codes(e, n) for e, _, n in EXPERIMENTS]).astype(np.int16)
    offsets = np.cumsum([0] + [n for *_, n in EXPERIMENTS])
    np.savez(tmp_path / "hapt.npz", signals=signals, labels=labels, offsets=offsets, user=[1, 1, 2])
    from_npz = hapt.load(tmp_path / "hapt.npz")
    assert len(from_npz) == len(from_raw)
    for a, b in zip(from_raw, from_npz):
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.signal, b.signal, rtol=1e-6)
        assert (a.subject, a.activity_names, a.attributes) == (
            b.subject,
            b.activity_names,
            b.attributes,
        )


def test_segment_outside_the_recording_names_the_line(tmp_path):
    root = write_raw(tmp_path)
    with open(root / "RawData" / "labels.txt", "a") as stream:
        stream.write("2 1 3 200 999\n")
    with pytest.raises(ValueError, match=r"labels.txt line 7: segment 200..999 of experiment 2"):
        hapt.load(root)


def test_missing_gyroscope_file_is_named(tmp_path):
    root = write_raw(tmp_path)
    (root / "RawData" / "gyro_exp02_user01.txt").unlink()
    with pytest.raises(FileNotFoundError, match="gyro_exp02_user01.txt"):
        hapt.load(root)


def test_npz_with_inconsistent_offsets(tmp_path):
    np.savez(
        tmp_path / "bad.npz",
        signals=np.zeros((100, 6), np.float32),
        labels=np.full(100, -1, np.int16),
        offsets=[0, 60, 90],
        user=[1, 2],
    )
    with pytest.raises(ValueError, match="offsets must rise strictly from 0 to 100"):
        hapt.load(tmp_path / "bad.npz")
