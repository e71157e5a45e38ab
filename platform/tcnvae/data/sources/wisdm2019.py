"""WISDM 2019 (Weiss, Fordham University; UCI dataset 507, CC BY 4.0): 51 people, 18 activities of
about 3 minutes each, recorded at once by a phone in the trousers pocket and a watch on the dominant
wrist, accelerometer and gyroscope each, nominally 20 Hz.

This module holds what both devices share; the sources are :mod:`.wisdm2019_phone` and
:mod:`.wisdm2019_watch` (one per device: they are different body positions and sensors, so pooling
or holding one out is a choice by name).

Two on-disk forms are read:

1. The official folder (``wisdm-dataset/``, as UCI ships it)::

       raw/<device>/accel/data_<subject>_accel_<device>.txt
       raw/<device>/gyro/data_<subject>_gyro_<device>.txt

   one sample per line, ``subject,activity letter,timestamp (ns),x,y,z;``. Accelerometer in m/s²
   (gravity included, Android's sign: about +9.8 on the axis pointing up at rest), gyroscope in
   rad/s. The two sensors are separate streams with their own timestamps, so each (subject,
   activity) block is put on one uniform grid whose step is the block's median accelerometer interval;
   every grid point takes the nearest sample of each stream within half a step (values untouched,
   nothing interpolated). A grid point without a sample of either stream ends a recording (a gap), and
   pieces shorter than ``min_seconds`` (1 s) are dropped, counted in the log. Only subjects with both
   files of the device are read (a lone file is logged).
2. The pre-extracted ``.npz`` made that same way (``wisdm2019_phone_raw.npz``,
   ``wisdm2019_watch_raw.npz``): ``signals`` (T, 6) acc xyz (m/s²) then gyro xyz (rad/s),
   ``labels`` (T,) code = ord(letter) − 65, ``offsets`` (R+1,), ``user`` (R,), and
   ``rec_sample_rate`` (R,) the measured rate of each recording (needed for ``measured_rate=True``).

Canonical form: acc_x..z in g (÷ 9.80665), gyro_x..z in rad/s, signs unchanged (the same Android
convention as HAPT's). ``sample_rate`` is the nominal 20 Hz, as the dataset documents it; the
devices' measured rates differ from it by well under 1 % (phone slower, watch faster), a time
stretch far below the differences between people's cadences. ``measured_rate=True`` gives each
recording its measured rate (rounded to 0.01 Hz) instead, so resampling keeps time exact, at the cost
of a polyphase resampling of every recording even to 20 Hz (many times slower to window).
Subject ``"<source>:<id>"``; attributes ``placement`` ("pocket" or "wrist") and ``device``
("phone" or "watch").

Sensor limits: both accelerometers clip at about ±2 g (±19.6 m/s²: fast jogging, kicking and
dribbling reach it), the watch gyroscope saturates near 35 rad/s. Clipped samples are kept as they
are (nothing can restore them); the share of acceleration samples at the limit is logged.

Activities (letter → canonical name; N is not used by the dataset): A walking → ``walking``,
B jogging → ``running``, C stairs → ``stairs`` (up and down are not told apart, so it is never
guessed into ascending or descending), D sitting → ``sitting``, E standing → ``standing``; the other
thirteen have no taxonomy counterpart and keep their own names: F ``typing``, G ``brushing_teeth``,
H ``eating_soup``, I ``eating_chips``, J ``eating_pasta``, K ``drinking``, L ``eating_sandwich``,
M ``kicking`` (a soccer ball), O ``playing_catch`` (a tennis ball), P ``dribbling`` (a basketball),
Q ``writing``, R ``clapping``, S ``folding_clothes``.
"""

from __future__ import annotations

import functools

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tcnvae.data.recordings import ACC, GYRO, STANDARD_GRAVITY, Recording
from tcnvae.data.sources.download import Archive
from tcnvae.data.sources.parsing import map_codes, read_npz

logger = logging.getLogger(__name__)

NOMINAL_RATE = 20.0
ACTIVITY_MAP = {
    "A": "walking",
    "B": "running",
    "C": "stairs",
    "D": "sitting",
    "E": "standing",
    "F": "typing",
    "G": "brushing_teeth",
    "H": "eating_soup",
    "I": "eating_chips",
    "J": "eating_pasta",
    "K": "drinking",
    "L": "eating_sandwich",
    "M": "kicking",
    "O": "playing_catch",
    "P": "dribbling",
    "Q": "writing",
    "R": "clapping",
    "S": "folding_clothes",
}
CHANNEL_NAMES = ACC + GYRO
ACC_RANGE_G = 2.0
ARCHIVE = Archive(
    "wisdm2019",
    "https://archive.ics.uci.edu/static/public/507/"
    "wisdm+smartphone+and+smartwatch+activity+and+biometrics+dataset.zip",
    ("raw/phone/accel/data_*_accel_phone.txt", "raw/watch/accel/data_*_accel_watch.txt"),
    "WISDM 2019 folder wisdm-dataset (raw/<phone|watch>/<accel|gyro>/data_<subject>_<sensor>_<device>.txt)",
)
MIN_SECONDS = 1.0
RATE_DECIMALS = 2
TIMESTAMP_UNIT_S = 1e-9
_FILE = re.compile(r"data_(\d+)_(accel|gyro)_(phone|watch)\.txt")


@dataclass(frozen=True)
class Device:
    """One of the two devices: the source named after it, and where it was worn."""

    source: str
    device: str
    placement: str


PHONE = Device("wisdm2019_phone", "phone", "pocket")
WATCH = Device("wisdm2019_watch", "watch", "wrist")


def _letters(codes: np.ndarray) -> np.ndarray:
    """The .npz's codes (ord(letter) − 65) as the dataset's activity letters."""
    return np.array([chr(65 + int(c)) for c in range(int(codes.max()) + 1)])[codes]


def _recording(
    device: Device, acc_ms2: np.ndarray, gyro: np.ndarray, letters: np.ndarray, subject: int,
    rate: float, source: str,
) -> Recording:
    labels, names = map_codes(letters, ACTIVITY_MAP, source=source)
    return Recording(
        signal=np.concatenate([acc_ms2 / STANDARD_GRAVITY, gyro], axis=1),
        labels=labels,
        activity_names=names,
        channel_names=CHANNEL_NAMES,
        sample_rate=round(float(rate), RATE_DECIMALS),
        dataset=device.source,
        subject=f"{device.source}:{subject}",
        attributes={"placement": device.placement, "device": device.device},
        source=source,
    )


def _log_clipping(device: Device, recordings: list[Recording]) -> None:
    acc = np.concatenate([r.signal[:, :3] for r in recordings])
    clipped = float((np.abs(acc) >= 0.98 * ACC_RANGE_G).any(axis=1).mean())
    logger.info(
        "%s: %d recordings of %d people; %.2f%% of samples have an accelerometer axis at its ±%g g "
        "limit (clipped)", device.source, len(recordings), len({r.subject for r in recordings}),
        100 * clipped, ACC_RANGE_G,
    )


def load_npz(device: Device, path: str | Path, *, measured_rate: bool = False) -> list[Recording]:
    """Recordings of the pre-extracted file (module docstring, form 2)."""
    path = Path(path)
    keys = ("signals", "labels", "offsets", "user") + (("rec_sample_rate",) if measured_rate else ())
    arrays = read_npz(path, keys, what=f"{device.source} recordings file")
    signals, codes = arrays["signals"], arrays["labels"].astype(np.int64)
    offsets, users = arrays["offsets"].astype(np.int64), arrays["user"]
    rates = arrays["rec_sample_rate"] if measured_rate else np.full(len(users), NOMINAL_RATE)
    if signals.ndim != 2 or signals.shape[1] != len(CHANNEL_NAMES) or codes.shape != (len(signals),):
        raise ValueError(f"{path}: signals {signals.shape} and labels {codes.shape} must be (T, 6) and (T,)")
    if (offsets.shape != (len(users) + 1,) or rates.shape != users.shape or offsets[0] != 0
            or offsets[-1] != len(signals) or np.any(np.diff(offsets) <= 0)):
        raise ValueError(
            f"{path}: offsets must rise strictly from 0 to {len(signals)} with one more entry than user "
            f"({len(users)}) and rec_sample_rate ({len(rates)})"
        )
    if codes.min() < 0 or codes.max() > ord("S") - 65:
        raise ValueError(f"{path}: labels must be activity codes 0..18 (ord(letter) - 65), got "
                         f"{codes.min()}..{codes.max()}")
    letters = _letters(codes)
    recordings = [
        _recording(device, signals[a:b, :3], signals[a:b, 3:], letters[a:b], int(user), rate,
                   f"{path} recording {r}")
        for r, (a, b, user, rate) in enumerate(zip(offsets[:-1], offsets[1:], users, rates))
    ]
    _log_clipping(device, recordings)
    return recordings


def read_stream(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(subject, activity letter, timestamp in ns, xyz) columns of one raw ``data_*.txt`` file."""
    import pandas as pd  # only the raw text layout needs it

    try:
        table = pd.read_csv(path, header=None, names=["subject", "activity", "t", "x", "y", "z"],
                            dtype={"activity": str, "z": str})
        z = table["z"].str.rstrip(";").astype(np.float64).to_numpy()
        columns = (table["subject"].to_numpy(np.int64), table["activity"].str.strip().to_numpy(str),
                   table["t"].to_numpy(np.int64), np.column_stack([table["x"].to_numpy(np.float64),
                                                                    table["y"].to_numpy(np.float64), z]))
    except (ValueError, TypeError, AttributeError) as error:
        raise ValueError(
            f"WISDM 2019 file {path} is malformed ({error}); every line must read "
            "'subject,activity letter,timestamp,x,y,z;'"
        ) from None
    if len(z) == 0:
        raise ValueError(f"WISDM 2019 file {path} is empty")
    if not np.isfinite(columns[3]).all():
        raise ValueError(f"WISDM 2019 file {path} holds non-numeric or infinite x, y or z values")
    unknown = sorted(set(columns[1].tolist()) - set(ACTIVITY_MAP))
    if unknown:
        raise ValueError(f"WISDM 2019 file {path} has activity letters {unknown}; known: A..S without N")
    return columns


def _nearest(times: np.ndarray, grid: np.ndarray, half_step: float) -> np.ndarray:
    """Index of the sample nearest each grid point, -1 where none lies within ``half_step``."""
    right = np.clip(np.searchsorted(times, grid), 1, len(times) - 1)
    left = right - 1
    index = np.where(np.abs(times[left] - grid) <= np.abs(times[right] - grid), left, right)
    return np.where(np.abs(times[index] - grid) <= half_step, index, -1)


def align_block(
    acc_t: np.ndarray, acc: np.ndarray, gyro_t: np.ndarray, gyro: np.ndarray, min_samples: int
) -> tuple[float, list[np.ndarray]]:
    """One (subject, activity) block's streams on one grid: (rate in Hz, [(n, 6) pieces between gaps])."""
    acc_order, gyro_order = np.argsort(acc_t, kind="stable"), np.argsort(gyro_t, kind="stable")
    acc_t, acc, gyro_t, gyro = acc_t[acc_order], acc[acc_order], gyro_t[gyro_order], gyro[gyro_order]
    if len(acc_t) < 2 or len(gyro_t) < 2:
        return NOMINAL_RATE, []
    step = float(np.median(np.diff(acc_t)))
    # the streams' common span, give or take the half step a sample may lie off its grid point
    start, stop = max(acc_t[0], gyro_t[0]), min(acc_t[-1], gyro_t[-1]) + step / 2
    if step <= 0 or stop <= start:
        return NOMINAL_RATE, []
    grid = start + step * np.arange(int((stop - start) // step) + 1)
    acc_index, gyro_index = _nearest(acc_t, grid, step / 2), _nearest(gyro_t, grid, step / 2)
    present = (acc_index >= 0) & (gyro_index >= 0)
    padded = np.concatenate([[0], present.astype(np.int8), [0]])
    runs = np.flatnonzero(np.diff(padded)).reshape(-1, 2)
    pieces = [
        np.concatenate([acc[acc_index[a:b]], gyro[gyro_index[a:b]]], axis=1)
        for a, b in runs.tolist() if b - a >= min_samples
    ]
    return 1.0 / (step * TIMESTAMP_UNIT_S), pieces


def _device_files(root: Path, device: Device) -> dict[int, dict[str, Path]]:
    found: dict[int, dict[str, Path]] = {}
    for sensor in ("accel", "gyro"):
        for file in sorted((root / "raw" / device.device / sensor).glob(f"data_*_{sensor}_{device.device}.txt")):
            match = _FILE.fullmatch(file.name)
            if match:
                found.setdefault(int(match.group(1)), {})[sensor] = file
    return found


def load_raw(
    device: Device, root: Path, *, min_seconds: float = MIN_SECONDS, measured_rate: bool = False
) -> list[Recording]:
    """Recordings of the official folder (module docstring, form 1)."""
    files = _device_files(root, device)
    lone = sorted(subject for subject, pair in files.items() if len(pair) < 2)
    if lone:
        logger.warning("%s: subjects %s have only one of accel/gyro files in %s and are left out",
                       device.source, lone, root / "raw" / device.device)
    subjects = sorted(subject for subject, pair in files.items() if len(pair) == 2)
    if not subjects:
        raise FileNotFoundError(
            f"{device.source}: no subject has both raw/{device.device}/accel/data_<id>_accel_{device.device}.txt "
            f"and raw/{device.device}/gyro/data_<id>_gyro_{device.device}.txt under {root}"
        )
    recordings, short = [], 0
    for subject in subjects:
        acc_s, acc_a, acc_t, acc = read_stream(files[subject]["accel"])
        gyro_s, gyro_a, gyro_t, gyro = read_stream(files[subject]["gyro"])
        for name, ids in (("accel", acc_s), ("gyro", gyro_s)):
            if (ids != subject).any():
                raise ValueError(f"{files[subject][name]} holds rows of subjects "
                                 f"{sorted(set(ids.tolist()) - {subject})} besides {subject}")
        unmatched = sorted(set(acc_a.tolist()) ^ set(gyro_a.tolist()))
        if unmatched:
            logger.warning("%s: subject %d has activities %s in only one of its accel/gyro files; left out",
                           device.source, subject, unmatched)
        for letter in sorted(set(acc_a.tolist()) & set(gyro_a.tolist())):
            in_acc, in_gyro = acc_a == letter, gyro_a == letter
            rate, pieces = align_block(acc_t[in_acc], acc[in_acc], gyro_t[in_gyro], gyro[in_gyro],
                                       int(np.ceil(min_seconds * NOMINAL_RATE)))
            short += int(len(pieces) == 0)
            for number, piece in enumerate(pieces):
                recordings.append(_recording(
                    device, piece[:, :3], piece[:, 3:], np.full(len(piece), letter), subject,
                    rate if measured_rate else NOMINAL_RATE,
                    f"{files[subject]['accel']} activity {letter} piece {number + 1}",
                ))
    if short:
        logger.info("%s: %d subject-activity blocks gave no piece of at least %g s", device.source, short,
                    min_seconds)
    if not recordings:
        raise ValueError(f"{device.source}: no recording of at least {min_seconds} s under {root}")
    _log_clipping(device, recordings)
    return recordings


def load_device(
    device: Device,
    path: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    download: bool = False,
    min_seconds: float = MIN_SECONDS,
    measured_rate: bool = False,
) -> list[Recording]:
    """One device's recordings from its ``.npz`` file, the official folder, or the cache."""
    if min_seconds <= 0:
        raise ValueError(f"min_seconds must be positive, got {min_seconds}")
    if measured_rate not in (True, False):
        raise ValueError(f"measured_rate must be true or false, got {measured_rate!r}")
    if path is not None and Path(path).suffix == ".npz":
        return load_npz(device, path, measured_rate=measured_rate)
    root = ARCHIVE.root(path, cache_dir=cache_dir, download=download)
    return load_raw(device, root, min_seconds=min_seconds, measured_rate=measured_rate)


def loader(device: Device) -> Callable[..., list[Recording]]:
    """The source-protocol ``load`` of one device (what its module exports)."""
    return functools.partial(load_device, device)
