"""HuGaDB v1 (Chereshnev & Kertész-Farkas, AIST 2017): 18 people, IMUs on both legs, 12 activities
annotated per sample, about 58.82 Hz. **No licence is stated: use it, never redistribute it.**

On-disk forms:

1. The official files ``HuGaDB_v1_<activity>_<participant>_<counter>.txt`` (one recording each;
   ``path`` is a file or a folder holding them): lines starting with ``#`` (``#Activity``,
   ``#ActivityID``, ``#Date``), one line of column names, then one sample per line, 39 tab-separated
   integers: accelerometer and gyroscope xyz of six IMUs — right foot, shin, thigh, then left foot,
   shin, thigh (``acc_rf_x`` .. ``gyro_lt_z``) — the two EMG channels and ``act``, the activity code.
   Raw int16: acceleration × 2/32768 is in g (±2 g range), angular velocity × 2000/32768 in deg/s
   (±2000 deg/s). No timestamps: the rate, 58.82 Hz, is the README's samples over seconds.
2. The pre-extracted ``hugadb_raw.npz``: ``signals`` (T, 12) left shin acc (g), gyro (deg/s), then
   left thigh acc, gyro; ``labels`` (T,) the act code; ``offsets`` (R+1,); ``user`` (R,);
   ``recording_names`` (R,) the original file names. (Its ``gyro_suspect`` flags are not used: see
   below.)

``placement`` picks the IMU(s): ``"thigh"`` (default: the position nearest a trousers-pocket phone)
or ``"shin"`` (near the ankle) of the left leg — the two the ``.npz`` holds; from the official files
also ``"foot"``, or ``"right_thigh"``, ``"right_shin"``, ``"right_foot"``. Several placements give
one recording per IMU per file, of the same subject ``"hugadb:<participant>"``; attributes
``placement`` (``thigh``, ``shin``, ``foot``), ``side`` (``left``/``right``), ``device="imu"`` and
``gyro`` (the check below: ``sound``, ``amplified``, ``undetermined``, or ``omitted``).

Canonical form: acc_x..z in g, gyro_x..z in rad/s (from deg/s); signs as the IMU gives them (a MEMS
accelerometer reports specific force, +1 g on the axis pointing up at rest, as phones do; standing, the
leg-long x axis reads about -0.98 g). The accelerometers clip at
±2 g (running and stairs most): clipped samples are kept as they are, their share is logged.

**The corrupted gyroscopes.** The authors report that part of the gyroscope data was "amplified 10
times, which led to clipping". Every recording's gyroscope is checked per IMU against its own
accelerometer (:mod:`tcnvae.data.sources.gyro_check`): during gait activities the gravity direction
must turn exactly as fast as the gyroscope says (ratio ≈ 1), and while sitting or standing a sound
gyroscope reads a few deg/s of noise. On the shared copy the two signatures agree wherever both can
be measured, and the files they find amplified are those of the participants the README names. A
file neither signature can judge (cycling, sitting in a car, elevator rides, gait too clipped to
measure) takes the majority verdict of the same participant's other files of that IMU. The
amplification both signatures measure is clearly below 10 (consistent with a ±250 deg/s range read as
±2000, i.e. × 8, but not pinned down), and the amplified signal is clipped at a true ±200-250 deg/s
that walking exceeds, so no gyroscope is "repaired" by a factor (figures and evidence:
docs/datasets.md). ``gyro`` chooses what happens instead:

- ``"exclude"`` (default): recordings whose gyroscope is amplified or undetermined are left out
  (counted in the log): acc + gyro that can be trusted, from fewer people (about half the samples);
- ``"omit"``: every recording, gyroscope channels dropped (acc_x..z only: use ``channel_set="acc"``;
  every person kept);
- ``"keep"``: every recording as recorded, amplified gyroscopes included, marked by the ``gyro``
  attribute (to study the corruption, not to train on).

Activities (code → canonical name): 1 walking → ``walking``, 2 running → ``running``, 3 going up →
``ascending_stairs``, 4 going down → ``descending_stairs``, 5 sitting → ``sitting``, 6 sitting down
and 7 standing up → ``postural_transition`` (as HAPT's transitions), 8 standing → ``standing``,
9 bicycling → ``cycling``; without a taxonomy name: 10 up by elevator → ``elevator_up``, 11 down by
elevator → ``elevator_down``, 12 sitting in a car → ``sitting_in_car`` (seated, but with the car's
vibration and accelerations).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tcnvae.data.recordings import ACC, GYRO, Recording
from tcnvae.data.sources import gyro_check
from tcnvae.data.sources.parsing import map_codes, read_npz

logger = logging.getLogger(__name__)

NAME = "hugadb"
SAMPLE_RATE = 58.82
ACTIVITY_MAP = {
    1: "walking",
    2: "running",
    3: "ascending_stairs",
    4: "descending_stairs",
    5: "sitting",
    6: "postural_transition",
    7: "postural_transition",
    8: "standing",
    9: "cycling",
    10: "elevator_up",
    11: "elevator_down",
    12: "sitting_in_car",
}
GAIT_CODES = (1, 2, 3, 4, 6, 7)  # leg swings and sit/stand movements tilt the sensor: kinematic check
POSTURE_CODES = (5, 8)  # sitting, standing: rest noise
ACC_RANGE_G = 2.0
GYRO_RANGE_DPS = 2000.0
RAW_FULL_SCALE = 32768
GYRO_POLICIES = ("exclude", "omit", "keep")
# placement option -> (side, body position, column-name infix of the official files)
PLACEMENTS = {
    "thigh": ("left", "thigh", "lt"),
    "shin": ("left", "shin", "ls"),
    "foot": ("left", "foot", "lf"),
    "right_thigh": ("right", "thigh", "rt"),
    "right_shin": ("right", "shin", "rs"),
    "right_foot": ("right", "foot", "rf"),
}
NPZ_PLACEMENTS = {"shin": 0, "thigh": 6}  # first column of each IMU in the .npz
_FILE = re.compile(r"HuGaDB_v\d+_(.+)_(\d+)_(\d+)\.txt")


def _placements(placement: str | Sequence[str]) -> list[str]:
    chosen = [placement] if isinstance(placement, str) else list(placement)
    unknown = [p for p in chosen if p not in PLACEMENTS]
    if unknown or not chosen:
        raise ValueError(f"unknown HuGaDB placement {unknown or chosen}; choose from {sorted(PLACEMENTS)}")
    return chosen


def _check_policy(gyro: str) -> None:
    if gyro not in GYRO_POLICIES:
        raise ValueError(f"unknown HuGaDB gyro handling {gyro!r}; choose from {', '.join(GYRO_POLICIES)}")


class _Imu:
    """One IMU of one file, and the verdict on its gyroscope (gyro_check, or "omitted")."""

    def __init__(self, acc: np.ndarray, gyro_dps: np.ndarray, codes: np.ndarray, participant: int,
                 placement: str, source: str, gyro: str) -> None:
        self.acc, self.gyro_dps, self.codes = acc, gyro_dps, codes
        self.participant, self.placement, self.source = participant, placement, source
        if gyro == "omit":  # the gyroscope is dropped: nothing to judge
            self.verdict = "omitted"
            return
        ratio, noise = gyro_check.gyro_scale_signatures(
            acc, gyro_dps, SAMPLE_RATE, acc_full_scale=ACC_RANGE_G, gyro_full_scale=GYRO_RANGE_DPS,
            gait=np.isin(codes, GAIT_CODES), posture=np.isin(codes, POSTURE_CODES),
        )
        self.verdict = gyro_check.classify(ratio, noise)


def _settle_undetermined(imus: list[_Imu]) -> None:
    """Undetermined verdicts take the majority verdict of the participant's other files of that IMU."""
    votes: dict[tuple[int, str], Counter] = {}
    for imu in imus:
        if imu.verdict != gyro_check.UNDETERMINED:
            votes.setdefault((imu.participant, imu.placement), Counter())[imu.verdict] += 1
    for imu in imus:
        counts = votes.get((imu.participant, imu.placement))
        if imu.verdict == gyro_check.UNDETERMINED and counts:
            (first, n), *rest = counts.most_common()
            if not rest or rest[0][1] < n:
                imu.verdict = first


def _recordings(imus: list[_Imu], gyro: str) -> list[Recording]:
    """Recordings of checked IMUs under the ``gyro`` policy, with counts logged."""
    _settle_undetermined(imus)
    verdicts = Counter((imu.placement, imu.verdict) for imu in imus)
    kept = [imu for imu in imus if gyro != "exclude" or imu.verdict == gyro_check.SOUND]
    if not kept:
        raise ValueError(
            f"hugadb: none of the {len(imus)} recordings has a gyroscope verified sound; "
            "use gyro='omit' (accelerometer only) or gyro='keep'"
        )
    acc = np.concatenate([imu.acc for imu in kept])
    logger.info(
        "hugadb: gyroscope verdicts %s; gyro=%r keeps %d of %d recordings (%d of %d samples) of %d people; "
        "%.2f%% of kept samples have an accelerometer axis at its ±%g g limit (clipped)",
        dict(sorted(verdicts.items())), gyro, len(kept), len(imus), len(acc), sum(len(i.acc) for i in imus),
        len({imu.participant for imu in kept}),
        100 * float((np.abs(acc) >= 0.999 * ACC_RANGE_G).any(axis=1).mean()), ACC_RANGE_G,
    )
    recordings = []
    for imu in kept:
        side, position, _ = PLACEMENTS[imu.placement]
        labels, names = map_codes(imu.codes, ACTIVITY_MAP, source=imu.source)
        omit = gyro == "omit"
        recordings.append(Recording(
            signal=imu.acc if omit else np.concatenate([imu.acc, np.deg2rad(imu.gyro_dps)], axis=1),
            labels=labels,
            activity_names=names,
            channel_names=ACC if omit else ACC + GYRO,
            sample_rate=SAMPLE_RATE,
            dataset=NAME,
            subject=f"{NAME}:{imu.participant}",
            attributes={"placement": position, "side": side, "device": "imu", "gyro": imu.verdict},
            source=imu.source,
        ))
    return recordings


def load_npz(
    path: str | Path, *, placement: str | Sequence[str] = "thigh", gyro: str = "exclude"
) -> list[Recording]:
    """Recordings of the pre-extracted file (module docstring, form 2)."""
    path = Path(path)
    chosen = _placements(placement)
    _check_policy(gyro)
    missing = [p for p in chosen if p not in NPZ_PLACEMENTS]
    if missing:
        raise ValueError(f"{path} holds only the left shin and thigh IMUs; placement {missing} needs the "
                         "official HuGaDB_v1_*.txt files")
    arrays = read_npz(path, ("signals", "labels", "offsets", "user"), what="HuGaDB recordings file")
    signals, codes = arrays["signals"], arrays["labels"].astype(np.int64)
    offsets, users = arrays["offsets"].astype(np.int64), arrays["user"]
    if signals.ndim != 2 or signals.shape[1] != 12 or codes.shape != (len(signals),):
        raise ValueError(f"{path}: signals {signals.shape} and labels {codes.shape} must be (T, 12) and (T,)")
    if (offsets.shape != (len(users) + 1,) or offsets[0] != 0 or offsets[-1] != len(signals)
            or np.any(np.diff(offsets) <= 0)):
        raise ValueError(f"{path}: offsets must rise strictly from 0 to {len(signals)} with one more entry "
                         f"than user ({len(users)})")
    imus = [
        _Imu(signals[a:b, first:first + 3], signals[a:b, first + 3:first + 6], codes[a:b], int(user), name,
             f"{path} recording {r} ({name})", gyro)
        for name in chosen
        for first in [NPZ_PLACEMENTS[name]]
        for r, (a, b, user) in enumerate(zip(offsets[:-1], offsets[1:], users))
    ]
    return _recordings(imus, gyro)


def read_file(path: Path) -> tuple[list[str], np.ndarray]:
    """(column names, (rows, columns) int array) of one official ``HuGaDB_v1_*.txt`` file."""
    with open(path, encoding="utf-8", errors="replace") as stream:
        lines = [line for line in stream if line.strip() and not line.startswith("#")]
    if not lines:
        raise ValueError(f"HuGaDB file {path} has no column-name line and no samples")
    columns = lines[0].split()
    if "act" not in columns:
        raise ValueError(f"HuGaDB file {path}: the first line after the '#' lines must name the columns "
                         f"(acc_rf_x ... act), got {lines[0][:80]!r}")
    try:
        table = np.loadtxt(lines[1:], dtype=np.int64, ndmin=2)
    except ValueError as error:
        raise ValueError(f"HuGaDB file {path} is malformed or truncated ({error}); expected "
                         f"{len(columns)} tab-separated integers per line") from None
    if table.shape[0] == 0 or table.shape[1] != len(columns):
        raise ValueError(f"HuGaDB file {path}: {table.shape[0]} samples of {table.shape[1]} columns, "
                         f"expected at least one of {len(columns)}")
    return columns, table


def load_files(files: Sequence[Path], *, placement: str | Sequence[str] = "thigh",
               gyro: str = "exclude") -> list[Recording]:
    """Recordings of official files (module docstring, form 1)."""
    chosen = _placements(placement)
    _check_policy(gyro)
    imus = []
    for file in files:
        match = _FILE.fullmatch(file.name)
        if match is None:
            raise ValueError(
                f"{file}: not a HuGaDB file name (HuGaDB_v1_<activity>_<participant>_<counter>.txt)"
            )
        columns, table = read_file(file)
        codes = table[:, columns.index("act")]
        for name in chosen:
            infix = PLACEMENTS[name][2]
            wanted = [f"{kind}_{infix}_{axis}" for kind in ("acc", "gyro") for axis in "xyz"]
            absent = [c for c in wanted if c not in columns]
            if absent:
                raise ValueError(f"HuGaDB file {file} lacks columns {absent}")
            raw = table[:, [columns.index(c) for c in wanted]].astype(np.float64)
            acc, gyro_dps = raw[:, :3] * ACC_RANGE_G / RAW_FULL_SCALE, raw[:, 3:] * GYRO_RANGE_DPS / RAW_FULL_SCALE
            imus.append(_Imu(acc, gyro_dps, codes, int(match.group(2)), name, f"{file} ({name})", gyro))
    return _recordings(imus, gyro)


def load(
    path: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    download: bool = False,
    placement: str | Sequence[str] = "thigh",
    gyro: str = "exclude",
) -> list[Recording]:
    """HuGaDB recordings from ``hugadb_raw.npz``, one official file, or a folder of them.

    HuGaDB has no licence, so nothing is downloaded or cached: ``path`` is required (``cache_dir``
    and ``download`` are accepted for the source protocol, and ignored).
    """
    _placements(placement)
    _check_policy(gyro)
    if path is None:
        raise FileNotFoundError(
            "hugadb: pass path=<hugadb_raw.npz, or the folder of HuGaDB_v1_*.txt files> (e.g. --data-path "
            "hugadb=PATH); HuGaDB states no licence, so it is never downloaded: get it from "
            "github.com/romanchereshnev/HuGaDB"
        )
    path = Path(path).expanduser()
    if path.suffix == ".npz":
        return load_npz(path, placement=placement, gyro=gyro)
    if path.is_file():
        return load_files([path], placement=placement, gyro=gyro)
    if not path.is_dir():
        raise FileNotFoundError(f"hugadb: {path} does not exist; expected hugadb_raw.npz or a folder of "
                                "HuGaDB_v1_*.txt files")
    files = sorted(path.rglob("HuGaDB_v*_*.txt"))
    if not files:
        raise FileNotFoundError(f"hugadb: no HuGaDB_v1_<activity>_<participant>_<counter>.txt files in {path}")
    return load_files(files, placement=placement, gyro=gyro)
