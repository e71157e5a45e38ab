"""WISDM: the raw text file's quirks, segmentation into recordings, m/s² → g."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from tcnvae.data.recordings import STANDARD_GRAVITY
from tcnvae.data.sources import wisdm

STEP_NS = 50_000_000  # 20 Hz


def _records(user: int, activity: str, start_ns: int, count: int) -> list[str]:
    return [
        f"{user},{activity},{start_ns + i * STEP_NS},{0.5 + 0.01 * i:.4f},{9.80665:.5f},{-1.25:.2f};"
        for i in range(count)
    ]


def write_raw(folder: Path) -> Path:
    """Realistic file: 33 Jogging (60), then Walking (50, with a 3 s pause after 20); 7 Sitting (40)."""
    lines = _records(33, "Jogging", 49105962326000, 60)
    walking = _records(33, "Walking", 49200000000000, 20) + _records(
        33, "Walking", 49203000000000, 30
    )
    lines += walking
    lines += _records(7, "Sitting", 1_000_000_000, 40)
    # quirks of the real file, on known line numbers
    lines[4] = lines[4] + lines[5]  # line 5 holds two records: line 6's record moves up
    lines[5] = ""  # an empty line
    lines.insert(10, "33,Jogging,49106462326000,5.0,4.3,;")  # missing z (line 11)
    lines.insert(20, "33,Jogging,49106962326000,abc,4.3,1.0;")  # non-numeric (line 21)
    lines.insert(30, "33,Jogging,49107462326000,1.0,4.3")  # too few fields, no ';' (line 31)
    lines.insert(40, "33,Dancing,49107962326000,1.0,2.0,3.0;")  # unknown activity (line 41)
    path = folder / "WISDM_ar_v1.1" / wisdm.FILE_NAME
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_quirks_are_parsed_or_skipped_with_line_numbers(tmp_path, caplog):
    path = write_raw(tmp_path)
    with caplog.at_level(logging.WARNING, logger="tcnvae.data.sources.wisdm"):
        recordings = wisdm.load(path)
    assert sum(len(r) for r in recordings) == 60 + 50 + 40
    assert "skipped 4 malformed records (first on lines 11, 21, 31, 41)" in caplog.text


def test_recordings_split_at_user_activity_and_time_gaps(tmp_path):
    recordings = wisdm.load(write_raw(tmp_path))
    summary = [(r.subject, r.activity_names[r.labels[0]], len(r)) for r in recordings]
    assert summary == [
        ("wisdm:33", "running", 60),
        ("wisdm:33", "walking", 20),
        ("wisdm:33", "walking", 30),
        ("wisdm:7", "sitting", 40),
    ]
    assert all(len(set(r.labels.tolist())) == 1 for r in recordings)
    assert len(wisdm.load(write_raw(tmp_path / "again"), max_gap_s=5.0)) == 3


def test_timestamp_going_backwards_starts_a_new_recording(tmp_path):
    lines = _records(5, "Standing", 2_000_000_000, 30) + _records(5, "Standing", 1_000_000_000, 30)
    path = tmp_path / wisdm.FILE_NAME
    path.write_text("\n".join(lines) + "\n")
    assert [len(r) for r in wisdm.load(path)] == [30, 30]


def test_units_channels_and_attributes(tmp_path):
    recording = wisdm.load(write_raw(tmp_path))[0]
    assert recording.channel_names == ["acc_x", "acc_y", "acc_z"]
    np.testing.assert_allclose(recording.signal[:, 1], 1.0, rtol=1e-6)
    np.testing.assert_allclose(recording.signal[:, 2], -1.25 / STANDARD_GRAVITY, rtol=1e-6)
    assert recording.sample_rate == 20.0 and recording.attributes == {"placement": "pocket"}
    assert recording.activity_names == [
        "sitting",
        "standing",
        "walking",
        "running",
        "ascending_stairs",
        "descending_stairs",
    ]


def test_folder_path_and_missing_file(tmp_path):
    write_raw(tmp_path)
    assert len(wisdm.load(tmp_path)) == 4
    (tmp_path / "other").mkdir()
    with pytest.raises(FileNotFoundError, match=f"WISDM v1.1 raw file .* in {tmp_path / 'other'}"):
        wisdm.load(tmp_path / "other")


def test_file_without_any_valid_record(tmp_path):
    path = tmp_path / wisdm.FILE_NAME
    path.write_text("user,activity,timestamp,x,y,z\n;;\n")
    with pytest.raises(ValueError, match=f"{path} holds no well-formed"):
        wisdm.load(path)
