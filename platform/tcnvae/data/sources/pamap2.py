"""PAMAP2 (Reiss & Stricker, 2012): 9 people, three IMUs (wrist, chest, ankle), 12 protocol activities.

On-disk format (``PAMAP2_Dataset/Protocol/subjectXXX.dat``, one file per subject, 100 Hz): one sample
per line, 54 space-separated numbers, ``NaN`` where a wireless sensor dropped a sample (the 9 Hz heart
rate is NaN most of the time). 1-based columns:

    1 timestamp (s)   2 activityID   3 heart rate (bpm)
    4-20 IMU hand (dominant wrist)   21-37 IMU chest   38-54 IMU ankle (dominant side)
    within an IMU (17 columns): 1 temperature, 2-4 acceleration ±16 g (m/s²), 5-7 acceleration ±6 g
    (m/s², saturates during fast motion), 8-10 gyroscope (rad/s), 11-13 magnetometer, 14-17 orientation
    (invalid in this release)

We take the ±16 g accelerometer (converted to g) and the gyroscope of the IMU(s) named by ``imu``
(``"hand"``, ``"chest"`` or ``"ankle"``; default ``"chest"``, the trunk placement closest to the waist
phones of UCI-HAR/HAPT). Recordings carry ``placement`` = the body location: ``"wrist"`` for the hand IMU
(it is strapped over the wrist; MHEALTH uses the same word), ``"chest"``, ``"ankle"``.

Activity IDs: 1 lying, 2 sitting, 3 standing, 4 walking, 5 running, 6 cycling, 7 Nordic walking,
12 ascending stairs, 13 descending stairs, 16 vacuum cleaning, 17 ironing, 24 rope jumping; 0 marks
transient periods (unlabelled). The optional-protocol activities (9 watching TV, 10 computer work,
11 car driving, 18 folding laundry, 19 house cleaning, 20 playing soccer) have no canonical counterpart
and are left unlabelled (counted in the log). Point ``path`` at the ``Optional`` folder to read those
files; by default the ``Protocol`` folder is read.

Dropped samples: gaps of up to ``max_gap`` samples (default 10 = 0.1 s) in the chosen IMU columns are
linearly interpolated; longer gaps, gaps at a file's ends and timestamp jumps are cut out, splitting
the subject's file into several recordings, so no NaN and no invented stretch reaches a window.
Counts of both are logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tcnvae.data.recordings import ACC, GYRO, STANDARD_GRAVITY, Recording
from tcnvae.data.sources.download import Archive
from tcnvae.data.sources.parsing import contiguous_runs, map_codes, read_table, segments

logger = logging.getLogger(__name__)

NAME = "pamap2"
SAMPLE_RATE = 100.0
ARCHIVE = Archive(
    NAME,
    "https://archive.ics.uci.edu/static/public/231/pamap2+physical+activity+monitoring.zip",
    ("Protocol/subject*.dat", "subject*.dat"),
    "PAMAP2 subjectXXX.dat files (PAMAP2_Dataset/Protocol)",
)
COLUMNS = 54
ACTIVITY_MAP = {
    1: "lying",
    2: "sitting",
    3: "standing",
    4: "walking",
    5: "running",
    6: "cycling",
    7: "nordic_walking",
    12: "ascending_stairs",
    13: "descending_stairs",
    16: "vacuum_cleaning",
    17: "ironing",
    24: "rope_jumping",
}
TRANSIENT = 0
IMU_FIRST_COLUMN = {"hand": 3, "chest": 20, "ankle": 37}  # 0-based index of each IMU's temperature
ACC16_OFFSETS = (1, 2, 3)
GYRO_OFFSETS = (7, 8, 9)
PLACEMENTS = {"hand": "wrist", "chest": "chest", "ankle": "ankle"}
CHANNEL_NAMES = ACC + GYRO
MAX_INTERPOLATED_GAP = 10
_SUBJECT = re.compile(r"subject(\d+)\.dat")


def imu_columns(imu: str) -> list[int]:
    """0-based file columns of one IMU's ±16 g accelerometer xyz then gyroscope xyz."""
    if imu not in IMU_FIRST_COLUMN:
        raise ValueError(f"unknown PAMAP2 IMU {imu!r}; choose from {sorted(IMU_FIRST_COLUMN)}")
    first = IMU_FIRST_COLUMN[imu]
    return [first + offset for offset in ACC16_OFFSETS + GYRO_OFFSETS]


def _fill_short_gaps(raw: np.ndarray, max_gap: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate NaN runs of at most ``max_gap`` rows; return the signal and the rows to keep."""
    missing = np.isnan(raw).any(axis=1)
    keep = np.ones(len(raw), dtype=bool)
    if not missing.any():
        return raw, keep
    runs = contiguous_runs(missing)
    lengths = runs[:, 1] - runs[:, 0]
    at_edge = (runs[:, 0] == 0) | (runs[:, 1] == len(raw))
    cut = (lengths > max_gap) | at_edge
    for start, stop in runs[cut].tolist():
        keep[start:stop] = False
    filled = raw.copy()
    rows = np.arange(len(raw))
    for column in range(raw.shape[1]):
        valid = ~np.isnan(raw[:, column])
        holes = ~valid & keep
        if holes.any():
            filled[holes, column] = np.interp(rows[holes], rows[valid], raw[valid, column])
    logger.info(
        "%s: interpolated %d gaps (%d samples) of at most %d samples; cut out %d longer or edge gaps "
        "(%d samples)",
        source,
        int((~cut).sum()),
        int(lengths[~cut].sum()),
        max_gap,
        int(cut.sum()),
        int(lengths[cut].sum()),
    )
    return filled, keep


def load_file(
    path: str | Path, *, imu: str | Sequence[str] = "chest", max_gap: int = MAX_INTERPOLATED_GAP
) -> list[Recording]:
    """The recordings of one subject file, per requested IMU (see the module docstring)."""
    path = Path(path)
    imus = [imu] if isinstance(imu, str) else list(imu)
    columns = {name: imu_columns(name) for name in imus}
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0 samples, got {max_gap}")
    table = read_table(path, COLUMNS, what="PAMAP2 subject file")
    match = _SUBJECT.fullmatch(path.name)
    subject = f"{NAME}:{match.group(1) if match else path.stem}"
    timestamps = table[:, 0]
    if np.isnan(timestamps).any() or np.isnan(table[:, 1]).any():
        raise ValueError(f"{path}: the timestamp or activityID column contains NaN")
    # half a sample of slack: timestamps are rounded to 10 ms
    jumps = np.flatnonzero(np.diff(timestamps) > (max_gap + 1.5) / SAMPLE_RATE) + 1
    if len(jumps):
        logger.info(
            "%s: split at %d timestamp jumps longer than %d samples", path, len(jumps), max_gap
        )
    labels, names = map_codes(
        table[:, 1].astype(np.int64), ACTIVITY_MAP, source=str(path), null_codes={TRANSIENT}
    )
    recordings = []
    for name, selected in columns.items():
        raw = table[:, selected]
        raw[:, :3] /= STANDARD_GRAVITY
        signal, keep = _fill_short_gaps(raw, max_gap, f"{path} ({name} IMU)")
        for start, stop in segments(keep, jumps):
            recordings.append(
                Recording(
                    signal=signal[start:stop],
                    labels=labels[start:stop],
                    activity_names=names,
                    channel_names=CHANNEL_NAMES,
                    sample_rate=SAMPLE_RATE,
                    dataset=NAME,
                    subject=subject,
                    attributes={"placement": PLACEMENTS[name]},
                    source=f"{path} rows {start + 1}-{stop}",
                )
            )
    return recordings


def load(
    path: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    download: bool = False,
    imu: str | Sequence[str] = "chest",
    max_gap: int = MAX_INTERPOLATED_GAP,
) -> list[Recording]:
    """PAMAP2 recordings from a ``subjectXXX.dat`` file, a dataset/Protocol folder, or the cache."""
    for name in [imu] if isinstance(imu, str) else imu:
        imu_columns(name)
    if path is not None and Path(path).is_file():
        return load_file(path, imu=imu, max_gap=max_gap)
    root = ARCHIVE.root(path, cache_dir=cache_dir, download=download)
    folder = root / "Protocol" if (root / "Protocol").is_dir() else root
    return [
        r
        for file in sorted(folder.glob("subject*.dat"))
        for r in load_file(file, imu=imu, max_gap=max_gap)
    ]
