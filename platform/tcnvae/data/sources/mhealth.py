"""MHEALTH (Banos et al., 2014): 10 people, sensors on chest, left ankle and right wrist, 50 Hz.

On-disk format (``MHEALTHDATASET/mHealth_subjectN.log``, one file per subject): one sample per line,
24 tab-separated numbers. 1-based columns:

    1-3 chest acceleration (m/s²)          4-5 ECG leads (mV)
    6-8 left-ankle acceleration (m/s²)     9-11 left-ankle gyroscope (deg/s)    12-14 its magnetometer
    15-17 right-lower-arm acceleration     18-20 right-lower-arm gyroscope      21-23 its magnetometer
    24 activity: 0 null, 1 standing still, 2 sitting and relaxing, 3 lying down, 4 walking,
       5 climbing stairs, 6 waist bends forward, 7 frontal elevation of arms, 8 knees bending
       (crouching), 9 cycling, 10 jogging, 11 running, 12 jump front & back

``placement`` picks the sensor(s): ``"chest"`` (accelerometer only: the chest unit has no gyroscope,
so its recordings carry only acc_x..z), ``"ankle"``, ``"wrist"`` (the right-lower-arm unit); default
``"wrist"``. Acceleration is converted to g, angular velocity from deg/s to rad/s.

Mapping by meaning: jogging and running both become ``running``; climbing stairs becomes
``ascending_stairs``. Waist bends, arm elevation and knee bends are exercises with no canonical
activity, and "jump front & back" (two-footed jumps moving forwards and backwards) is not rope jumping
(in place, with the rope's rhythm), so these four codes stay unlabelled (counted in the log).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tcnvae.data.recordings import ACC, GYRO, STANDARD_GRAVITY, Recording
from tcnvae.data.sources.download import Archive
from tcnvae.data.sources.parsing import map_codes, read_table

NAME = "mhealth"
SAMPLE_RATE = 50.0
ARCHIVE = Archive(
    NAME,
    "https://archive.ics.uci.edu/static/public/319/mhealth+dataset.zip",
    ("mHealth_subject*.log",),
    "MHEALTH mHealth_subjectN.log files (MHEALTHDATASET)",
)
COLUMNS = 24
LABEL_COLUMN = 23
NULL = 0
ACTIVITY_MAP = {
    1: "standing",
    2: "sitting",
    3: "lying",
    4: "walking",
    5: "ascending_stairs",
    9: "cycling",
    10: "running",
    11: "running",
}
# placement -> (0-based accelerometer columns, 0-based gyroscope columns or ())
SENSOR_COLUMNS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "chest": ((0, 1, 2), ()),
    "ankle": ((5, 6, 7), (8, 9, 10)),
    "wrist": ((14, 15, 16), (17, 18, 19)),
}
_SUBJECT = re.compile(r"mHealth_subject(\d+)\.log")


def _placements(placement: str | Sequence[str]) -> list[str]:
    chosen = [placement] if isinstance(placement, str) else list(placement)
    unknown = [p for p in chosen if p not in SENSOR_COLUMNS]
    if unknown or not chosen:
        raise ValueError(
            f"unknown MHEALTH placement {unknown or chosen}; choose from {sorted(SENSOR_COLUMNS)}"
        )
    return chosen


def load_file(path: str | Path, *, placement: str | Sequence[str] = "wrist") -> list[Recording]:
    """One subject file as one recording per requested placement."""
    path = Path(path)
    chosen = _placements(placement)
    table = read_table(path, COLUMNS, what="MHEALTH log file")
    bad = np.argwhere(np.isnan(table))
    if len(bad):
        raise ValueError(
            f"{path} has {len(bad)} NaN values (first at line {bad[0][0] + 1}, column {bad[0][1] + 1}); "
            "MHEALTH logs have no missing samples, so the file is damaged"
        )
    match = _SUBJECT.fullmatch(path.name)
    subject = f"{NAME}:{match.group(1) if match else path.stem}"
    labels, names = map_codes(
        table[:, LABEL_COLUMN].astype(np.int64), ACTIVITY_MAP, source=str(path), null_codes={NULL}
    )
    recordings = []
    for name in chosen:
        acc_columns, gyro_columns = SENSOR_COLUMNS[name]
        parts = [table[:, acc_columns] / STANDARD_GRAVITY]
        if gyro_columns:
            parts.append(np.deg2rad(table[:, gyro_columns]))
        recordings.append(
            Recording(
                signal=np.concatenate(parts, axis=1),
                labels=labels,
                activity_names=names,
                channel_names=ACC + GYRO if gyro_columns else ACC,
                sample_rate=SAMPLE_RATE,
                dataset=NAME,
                subject=subject,
                attributes={"placement": name},
                source=str(path),
            )
        )
    return recordings


def load(
    path: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    download: bool = False,
    placement: str | Sequence[str] = "wrist",
) -> list[Recording]:
    """MHEALTH recordings from a ``mHealth_subjectN.log`` file, the dataset folder, or the cache."""
    _placements(placement)
    if path is not None and Path(path).is_file():
        return load_file(path, placement=placement)
    root = ARCHIVE.root(path, cache_dir=cache_dir, download=download)
    files = sorted(root.glob("mHealth_subject*.log"), key=lambda f: (len(f.name), f.name))
    return [r for file in files for r in load_file(file, placement=placement)]
