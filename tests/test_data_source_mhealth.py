"""MHEALTH: placement columns, deg/s → rad/s, m/s² → g, labels mapped by meaning."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from tcnvae.data.recordings import STANDARD_GRAVITY, UNLABELLED
from tcnvae.data.sources import mhealth

# 50 samples of each label code 0..12, in order
CODES = np.repeat(np.arange(13), 50)


def mhealth_table() -> np.ndarray:
    """24 columns; each sensor's value tells its column: chest acc 1.x, ankle 2.x/gyro 90+x, wrist 3.x/180+x."""
    table = np.zeros((len(CODES), 24))
    table[:, 0:3] = [9.80665, 1.0, 2.0]  # chest acc
    table[:, 3:5] = [0.1, -0.1]  # ECG
    table[:, 5:8] = [4.903325, 2.0, 2.1]  # ankle acc
    table[:, 8:11] = [90.0, 45.0, -90.0]  # ankle gyro, deg/s
    table[:, 11:14] = 7.0  # ankle magnetometer
    table[:, 14:17] = [19.6133, 3.0, 3.1]  # wrist acc
    table[:, 17:20] = [180.0, -180.0, 360.0]  # wrist gyro, deg/s
    table[:, 20:23] = 8.0  # wrist magnetometer
    table[:, 23] = CODES
    return table


def write_log(path: Path, table: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, table, fmt="%.6g", delimiter="\t")
    return path


def test_placements_take_their_own_columns_and_units(tmp_path):
    path = write_log(tmp_path / "mHealth_subject3.log", mhealth_table())
    chest, ankle, wrist = mhealth.load(path, placement=["chest", "ankle", "wrist"])
    assert chest.channel_names == ["acc_x", "acc_y", "acc_z"]
    np.testing.assert_allclose(
        chest.signal[0], np.array([9.80665, 1.0, 2.0]) / STANDARD_GRAVITY, rtol=1e-6
    )
    assert (
        ankle.channel_names
        == wrist.channel_names
        == ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
    )
    np.testing.assert_allclose(
        ankle.signal[0],
        [0.5, 2.0 / STANDARD_GRAVITY, 2.1 / STANDARD_GRAVITY, np.pi / 2, np.pi / 4, -np.pi / 2],
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        wrist.signal[0, :3], [2.0, 3.0 / STANDARD_GRAVITY, 3.1 / STANDARD_GRAVITY], rtol=1e-5
    )
    np.testing.assert_allclose(wrist.signal[0, 3:], [np.pi, -np.pi, 2 * np.pi], rtol=1e-6)
    assert [r.attributes["placement"] for r in (chest, ankle, wrist)] == ["chest", "ankle", "wrist"]
    assert {r.subject for r in (chest, ankle, wrist)} == {"mhealth:3"}
    assert wrist.sample_rate == 50.0 and len(wrist) == len(CODES)


def test_labels_map_by_meaning_and_exercises_stay_unlabelled(tmp_path, caplog):
    path = write_log(tmp_path / "mHealth_subject1.log", mhealth_table())
    with caplog.at_level(logging.INFO, logger="tcnvae.data.sources.parsing"):
        (recording,) = mhealth.load(path)
    names = [
        recording.activity_names[i] if i != UNLABELLED else None for i in recording.labels[::50]
    ]
    assert names == [
        None,
        "standing",
        "sitting",
        "lying",
        "walking",
        "ascending_stairs",
        None,
        None,
        None,
        "cycling",
        "running",
        "running",
        None,
    ]
    assert "200 samples carry activity codes outside the taxonomy" in caplog.text


def test_folder_orders_subjects_numerically(tmp_path):
    for n in (10, 2, 1):
        write_log(tmp_path / "MHEALTHDATASET" / f"mHealth_subject{n}.log", mhealth_table()[:100])
    assert [r.subject for r in mhealth.load(tmp_path)] == ["mhealth:1", "mhealth:2", "mhealth:10"]


def test_bad_files_are_named(tmp_path):
    wrong = write_log(tmp_path / "mHealth_subject4.log", mhealth_table()[:, :23])
    with pytest.raises(ValueError, match="mHealth_subject4.log has 23 columns, expected 24"):
        mhealth.load(wrong)
    table = mhealth_table()
    table[77, 16] = np.nan
    damaged = write_log(tmp_path / "mHealth_subject5.log", table)
    with pytest.raises(
        ValueError, match="mHealth_subject5.log has 1 NaN values .*line 78, column 17"
    ):
        mhealth.load(damaged)
    with pytest.raises(ValueError, match=r"unknown MHEALTH placement \['waist'\]"):
        mhealth.load(damaged, placement="waist")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "missing")):
        mhealth.load(tmp_path / "missing")
