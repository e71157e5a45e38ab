"""WISDM v1.1 (Kwapisz, Weiss & Moore, 2010): 36 people, phone in the front trouser pocket, 20 Hz.

On-disk format (``WISDM_ar_v1.1/WISDM_ar_v1.1_raw.txt``): records ``user,activity,timestamp,x,y,z;``
with the accelerometer in m/s² (10 ≈ 1 g), timestamp = phone uptime in ns, activity one of Walking,
Jogging, Upstairs, Downstairs, Sitting, Standing. The real file is messy: records end in ``;``, some
lines hold several ``;``-separated records, some lines are empty, and a few records are malformed
(missing z, empty or non-numeric fields, unknown activity). Malformed records are skipped and logged
with a count and the first few line numbers.

Records arrive in file order; a user's stream is cut into recordings wherever the user or activity
changes, the timestamp goes backwards, or more than ``max_gap_s`` seconds (default 1 s) pass between
records, so no window spans two sessions. Channels acc_x..z in g only (no gyroscope); subject
``"wisdm:<user>"``; attribute ``placement = "pocket"``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from tcnvae.data.recordings import ACC, STANDARD_GRAVITY, Recording
from tcnvae.data.sources.download import Archive
from tcnvae.data.sources.parsing import map_codes, segments

logger = logging.getLogger(__name__)

NAME = "wisdm"
SAMPLE_RATE = 20.0
FILE_NAME = "WISDM_ar_v1.1_raw.txt"
ARCHIVE = Archive(
    NAME,
    "https://www.cis.fordham.edu/wisdm/includes/datasets/latest/WISDM_ar_latest.tar.gz",
    (FILE_NAME,),
    f"the WISDM v1.1 raw file {FILE_NAME}",
)
ACTIVITY_MAP = {
    "Walking": "walking",
    "Jogging": "running",
    "Upstairs": "ascending_stairs",
    "Downstairs": "descending_stairs",
    "Sitting": "sitting",
    "Standing": "standing",
}
CHANNEL_NAMES = ACC
PLACEMENT = "pocket"
TIMESTAMP_UNIT_S = 1e-9
MAX_GAP_S = 1.0
_REPORTED_LINES = 5


def _parse_record(text: str) -> tuple[int, str, int, float, float, float] | None:
    fields = [field.strip() for field in text.split(",")]
    if len(fields) != 6 or fields[1] not in ACTIVITY_MAP:
        return None
    try:
        user, timestamp = int(fields[0]), int(fields[2])
        x, y, z = (float(v) for v in fields[3:])
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in (x, y, z)):
        return None
    return user, fields[1], timestamp, x, y, z


def read_records(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(user, activity string, timestamp, xyz in m/s²) columns of the well-formed records."""
    if not path.is_file():
        raise FileNotFoundError(f"WISDM raw file {path} not found")
    records, malformed = [], []
    with open(path, encoding="utf-8", errors="replace") as stream:
        for line_number, line in enumerate(stream, start=1):
            for text in line.split(";"):
                if not text.strip():
                    continue
                record = _parse_record(text)
                if record is None:
                    malformed.append(line_number)
                else:
                    records.append(record)
    if malformed:
        logger.warning(
            "%s: skipped %d malformed records (first on lines %s)",
            path,
            len(malformed),
            ", ".join(map(str, malformed[:_REPORTED_LINES])),
        )
    if not records:
        raise ValueError(f"{path} holds no well-formed 'user,activity,timestamp,x,y,z;' records")
    users, activities, timestamps, x, y, z = zip(*records)
    xyz = np.column_stack([x, y, z])
    return np.array(users), np.array(activities), np.array(timestamps, dtype=np.int64), xyz


def load_file(path: str | Path, *, max_gap_s: float = MAX_GAP_S) -> list[Recording]:
    """Recordings of the raw text file (see the module docstring)."""
    path = Path(path)
    if max_gap_s <= 0:
        raise ValueError(f"max_gap_s must be positive, got {max_gap_s}")
    users, activities, timestamps, xyz = read_records(path)
    labels, names = map_codes(activities, ACTIVITY_MAP, source=str(path))
    step = np.diff(timestamps) * TIMESTAMP_UNIT_S
    time_breaks = (step > max_gap_s) | (step < 0)
    changes = (users[1:] != users[:-1]) | (activities[1:] != activities[:-1])
    breaks = np.flatnonzero(changes | time_breaks) + 1
    logger.info(
        "%s: %d records cut into %d recordings (%d cuts at timestamp gaps or jumps back)",
        path,
        len(users),
        len(breaks) + 1,
        int((time_breaks & ~changes).sum()),
    )
    signal = xyz / STANDARD_GRAVITY
    return [
        Recording(
            signal=signal[start:stop],
            labels=labels[start:stop],
            activity_names=names,
            channel_names=CHANNEL_NAMES,
            sample_rate=SAMPLE_RATE,
            dataset=NAME,
            subject=f"{NAME}:{users[start]}",
            attributes={"placement": PLACEMENT},
            source=f"{path} (well-formed records {start + 1}-{stop})",
        )
        for start, stop in segments(np.ones(len(users), dtype=bool), breaks)
    ]


def load(
    path: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    download: bool = False,
    max_gap_s: float = MAX_GAP_S,
) -> list[Recording]:
    """WISDM recordings from the raw text file, a folder holding it, or the cache."""
    if path is not None and Path(path).is_file():
        return load_file(path, max_gap_s=max_gap_s)
    root = ARCHIVE.root(path, cache_dir=cache_dir, download=download)
    return load_file(root / FILE_NAME, max_gap_s=max_gap_s)
