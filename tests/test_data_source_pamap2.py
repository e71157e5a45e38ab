"""PAMAP2: the right IMU's columns, m/s² → g, NaN gaps interpolated or cut, labels by meaning."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from tcnvae.data.recordings import STANDARD_GRAVITY, UNLABELLED
from tcnvae.data.sources import pamap2

ROWS = 400
IMU_NUMBER = {"hand": 1, "chest": 2, "ankle": 3}
RAMP = 0.001 * np.arange(ROWS)  # added to every sensor column so interpolation can be checked


def _imu_block(number: int) -> np.ndarray:
    """17 columns whose values tell the IMU (tens digit) and the column role apart."""
    block = np.empty((ROWS, 17))
    block[:, 0] = 30 + number  # temperature
    block[:, 1:4] = number * 10 + np.arange(1, 4) + RAMP[:, None]  # acc ±16 g, m/s²
    block[:, 4:7] = (
        number * 10 + np.arange(1, 4) + 0.5 + RAMP[:, None]
    )  # acc ±6 g: must not be used
    block[:, 7:10] = number + np.arange(1, 4) / 10 + RAMP[:, None]  # gyro, rad/s
    block[:, 10:13] = 100 * number + np.arange(1, 4)  # magnetometer
    block[:, 13:17] = [1, 0, 0, 0]  # orientation (invalid)
    return block


def pamap2_table() -> np.ndarray:
    activity = np.zeros(ROWS)
    activity[50:200], activity[200:300], activity[300:] = (
        4,
        9,
        24,
    )  # walking, watching TV, rope jumping
    heart_rate = np.full(ROWS, np.nan)
    heart_rate[::11] = 100.0
    timestamps = 5.0 + 0.01 * np.arange(ROWS)
    blocks = [_imu_block(IMU_NUMBER[name]) for name in ("hand", "chest", "ankle")]
    return np.column_stack([timestamps, activity, heart_rate, *blocks])


def write_dat(path: Path, table: np.ndarray) -> Path:
    def cell(column: int, value: float) -> str:
        if np.isnan(value):
            return "NaN"
        return f"{value:.2f}" if column == 0 else f"{int(value)}" if column == 1 else f"{value:.6f}"

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(" ".join(cell(c, v) for c, v in enumerate(row)) + "\n" for row in table)
    )
    return path


def _drop(table: np.ndarray, imu: str, rows: slice) -> None:
    first = pamap2.IMU_FIRST_COLUMN[imu]
    table[rows, first : first + 17] = np.nan


@pytest.mark.parametrize("imu", ["hand", "chest", "ankle"])
def test_each_imu_reads_its_own_columns_in_g_and_rad_per_s(tmp_path, imu):
    (recording,) = pamap2.load(write_dat(tmp_path / "subject101.dat", pamap2_table()), imu=imu)
    number = IMU_NUMBER[imu]
    acc_ms2 = recording.signal[:, :3] * STANDARD_GRAVITY - RAMP[:, None]
    np.testing.assert_allclose(
        acc_ms2, np.broadcast_to(number * 10 + np.arange(1, 4), (ROWS, 3)), atol=1e-4
    )
    gyro = recording.signal[:, 3:] - RAMP[:, None]
    np.testing.assert_allclose(
        gyro, np.broadcast_to(number + np.arange(1, 4) / 10, (ROWS, 3)), atol=1e-5
    )
    assert recording.channel_names == ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
    assert recording.attributes["placement"] == pamap2.PLACEMENTS[imu]
    assert recording.subject == "pamap2:101" and recording.sample_rate == 100.0


def test_chest_is_not_the_hand():
    assert pamap2.imu_columns("chest")[0] == 21 and pamap2.imu_columns("hand")[0] == 4
    assert pamap2.imu_columns("ankle") == [38, 39, 40, 44, 45, 46]


def test_labels_transient_and_optional_activities(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="tcnvae.data.sources.parsing"):
        (recording,) = pamap2.load(write_dat(tmp_path / "subject102.dat", pamap2_table()))
    names = recording.activity_names
    assert len(names) == 12 and "nordic_walking" in names and "rope_jumping" in names
    assert np.all(recording.labels[:50] == UNLABELLED)
    assert {names[i] for i in recording.labels[50:200]} == {"walking"}
    assert np.all(recording.labels[200:300] == UNLABELLED)
    assert {names[i] for i in recording.labels[300:]} == {"rope_jumping"}
    assert "100 samples carry activity codes outside the taxonomy" in caplog.text
    assert "{9: 100}" in caplog.text


def test_short_gaps_are_interpolated_long_and_edge_gaps_cut(tmp_path, caplog):
    table = pamap2_table()
    _drop(table, "chest", slice(100, 105))  # 5 samples: interpolated
    _drop(table, "chest", slice(250, 280))  # 30 samples: cut out
    _drop(table, "chest", slice(0, 2))  # at the start: cut out
    path = write_dat(tmp_path / "subject103.dat", table)
    with caplog.at_level(logging.INFO, logger="tcnvae.data.sources.pamap2"):
        recordings = pamap2.load(path, imu="chest")
    assert [r.source.rsplit(" ", 1)[1] for r in recordings] == ["3-250", "281-400"]
    first, second = recordings
    assert not any(np.isnan(r.signal).any() for r in recordings)
    acc_x = first.signal[:, 0] * STANDARD_GRAVITY
    np.testing.assert_allclose(acc_x[98:103], 21 + RAMP[100:105], atol=1e-4)  # linear fill is exact
    assert len(second) == 120
    assert np.all(second.labels[:20] == UNLABELLED)
    assert {second.activity_names[i] for i in second.labels[20:]} == {"rope_jumping"}
    assert "interpolated 1 gaps (5 samples)" in caplog.text
    assert "cut out 2 longer or edge gaps (32 samples)" in caplog.text
    (hand,) = pamap2.load(path, imu="hand")  # other IMUs are untouched by the chest's dropouts
    assert len(hand) == ROWS


def test_max_gap_decides_between_filling_and_cutting(tmp_path):
    table = pamap2_table()
    _drop(table, "ankle", slice(100, 112))
    path = write_dat(tmp_path / "subject104.dat", table)
    assert len(pamap2.load(path, imu="ankle")) == 2
    assert len(pamap2.load(path, imu="ankle", max_gap=12)) == 1


def test_timestamp_jump_splits_the_recording(tmp_path):
    table = pamap2_table()
    table[350:, 0] += 5.0
    recordings = pamap2.load(write_dat(tmp_path / "subject105.dat", table), imu=["hand", "ankle"])
    assert [(r.attributes["placement"], len(r)) for r in recordings] == [
        ("wrist", 350),
        ("wrist", 50),
        ("ankle", 350),
        ("ankle", 50),
    ]


def test_folder_reads_protocol_not_optional(tmp_path):
    root = tmp_path / "PAMAP2_Dataset"
    write_dat(root / "Protocol" / "subject101.dat", pamap2_table())
    write_dat(root / "Protocol" / "subject106.dat", pamap2_table())
    write_dat(root / "Optional" / "subject101.dat", pamap2_table()[:100])
    recordings = pamap2.load(tmp_path)
    assert [(r.subject, len(r)) for r in recordings] == [("pamap2:101", ROWS), ("pamap2:106", ROWS)]
    assert len(pamap2.load(root / "Optional")[0]) == 100


def test_bad_input_errors(tmp_path):
    path = write_dat(tmp_path / "subject107.dat", pamap2_table())
    with pytest.raises(ValueError, match=r"unknown PAMAP2 IMU 'wrist'.*ankle.*chest.*hand"):
        pamap2.load(path, imu="wrist")
    text = path.read_text().splitlines()
    path.write_text("\n".join(text[:-1] + [" ".join(text[-1].split()[:30])]) + "\n")
    with pytest.raises(ValueError, match="subject107.dat is malformed or truncated"):
        pamap2.load(path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        FileNotFoundError, match=f"no PAMAP2 subjectXXX.dat files .* in {tmp_path / 'empty'}"
    ):
        pamap2.load(tmp_path / "empty")
