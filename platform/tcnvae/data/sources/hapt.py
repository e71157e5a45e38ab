"""HAPT (Reyes-Ortiz et al., 2016): the continuous recordings behind UCI-HAR, with postural transitions.

30 people, waist-worn smartphone, 61 experiments, 50 Hz; labelled segments cover about 73 % of the
samples. The six basic activities are the UCI-HAR ones; the six transitions (stand-to-sit, ...) are
pooled into the canonical ``postural_transition`` (``include_transitions=False`` leaves them unlabelled).

On-disk format of the official archive::

    RawData/acc_expXX_userYY.txt    one sample per line: "x y z" total acceleration in g
    RawData/gyro_expXX_userYY.txt   one sample per line: "x y z" angular velocity in rad/s
    RawData/labels.txt              one labelled segment per line: "exp user activity start end",
                                    1-based inclusive sample indices into that experiment's files
    activities: 1 WALKING, 2 WALKING_UPSTAIRS, 3 WALKING_DOWNSTAIRS, 4 SITTING, 5 STANDING, 6 LAYING,
                7 STAND_TO_SIT, 8 SIT_TO_STAND, 9 SIT_TO_LIE, 10 LIE_TO_SIT, 11 STAND_TO_LIE, 12 LIE_TO_STAND

Pre-extracted form (``.npz``, e.g. ``hapt_raw.npz``): ``signals`` (T, 6) float32 acc xyz (g) then gyro
xyz (rad/s); ``labels`` (T,) activity code per sample, -1 outside labelled segments; ``offsets`` (R+1,)
so recording r is ``signals[offsets[r]:offsets[r+1]]``; ``user`` (R,) its subject.

One Recording per experiment, channels acc_x..z, gyro_x..z, subject ``"hapt:<user>"``, attribute
``placement = "waist"``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from tcnvae.data.recordings import ACC, GYRO, UNLABELLED, Recording
from tcnvae.data.sources import uci_har
from tcnvae.data.sources.download import Archive
from tcnvae.data.sources.parsing import map_codes, read_npz, read_table

logger = logging.getLogger(__name__)

NAME = "hapt"
SAMPLE_RATE = 50.0
SAME_PEOPLE_AS = ("uci_har",)  # UCI-HAR's windows were cut from these recordings: hapt:7 is uci_har:7
ARCHIVE = Archive(
    NAME,
    "https://archive.ics.uci.edu/static/public/341/"
    "smartphone+based+recognition+of+human+activities+and+postural+transitions.zip",
    ("RawData/labels.txt",),
    "the extracted HAPT folder (RawData/acc_expXX_userYY.txt, RawData/labels.txt)",
)
BASIC_ACTIVITIES = uci_har.ACTIVITY_MAP  # the same study: codes 1..6 mean the same
TRANSITION_CODES = tuple(range(7, 13))
ACTIVITY_MAP = {**BASIC_ACTIVITIES, **{code: "postural_transition" for code in TRANSITION_CODES}}
CHANNEL_NAMES = ACC + GYRO
PLACEMENT = "waist"
_FILE_PATTERN = re.compile(r"acc_exp(\d+)_user(\d+)\.txt")


def _recording(
    signal: np.ndarray, codes: np.ndarray, user: int, source: str, include_transitions: bool
) -> Recording:
    activity_map = ACTIVITY_MAP if include_transitions else BASIC_ACTIVITIES
    null_codes = {UNLABELLED} if include_transitions else {UNLABELLED, *TRANSITION_CODES}
    labels, names = map_codes(codes, activity_map, source=source, null_codes=null_codes)
    return Recording(
        signal=signal,
        labels=labels,
        activity_names=names,
        channel_names=CHANNEL_NAMES,
        sample_rate=SAMPLE_RATE,
        dataset=NAME,
        subject=f"{NAME}:{user}",
        attributes={"placement": PLACEMENT},
        source=source,
    )


def _log_transitions(recordings_codes: list[np.ndarray], include_transitions: bool) -> None:
    if not include_transitions:
        dropped = sum(int(np.isin(c, TRANSITION_CODES).sum()) for c in recordings_codes)
        logger.info(
            "hapt: %d postural-transition samples left unlabelled (include_transitions=False)",
            dropped,
        )


def load_npz(path: str | Path, *, include_transitions: bool = True) -> list[Recording]:
    """Recordings from the pre-extracted file (keys signals, labels, offsets, user)."""
    path = Path(path)
    arrays = read_npz(path, ("signals", "labels", "offsets", "user"), what="HAPT recordings file")
    signals, codes = arrays["signals"], arrays["labels"].astype(np.int64)
    offsets, users = arrays["offsets"].astype(np.int64), arrays["user"]
    if (
        signals.ndim != 2
        or signals.shape[1] != len(CHANNEL_NAMES)
        or codes.shape != (len(signals),)
    ):
        raise ValueError(
            f"{path}: signals {signals.shape} and labels {codes.shape} must be (T, 6) and (T,)"
        )
    if (
        offsets.shape != (len(users) + 1,)
        or offsets[0] != 0
        or offsets[-1] != len(signals)
        or np.any(np.diff(offsets) <= 0)
    ):
        raise ValueError(
            f"{path}: offsets must rise strictly from 0 to {len(signals)} with one more entry than "
            f"user ({len(users)}), got {len(offsets)} entries from {offsets[0]} to {offsets[-1]}"
        )
    pieces = [slice(a, b) for a, b in zip(offsets[:-1], offsets[1:])]
    _log_transitions([codes[p] for p in pieces], include_transitions)
    return [
        _recording(signals[p], codes[p], int(user), f"{path} recording {r}", include_transitions)
        for r, (p, user) in enumerate(zip(pieces, users))
    ]


def _experiments(raw: Path) -> dict[int, tuple[int, Path]]:
    """experiment id -> (user id, accelerometer file)."""
    found = {}
    for acc_file in sorted(raw.glob("acc_exp*_user*.txt")):
        match = _FILE_PATTERN.fullmatch(acc_file.name)
        if match:
            found[int(match.group(1))] = (int(match.group(2)), acc_file)
    return found


def load_raw(root: Path, *, include_transitions: bool = True) -> list[Recording]:
    """Recordings from the archive's ``RawData`` folder under ``root``."""
    raw = root / "RawData"
    labels_file = raw / "labels.txt"
    segments = read_table(labels_file, 5, what="HAPT labels file").astype(np.int64)
    experiments = _experiments(raw)
    if not experiments:
        raise FileNotFoundError(f"no acc_expXX_userYY.txt files in {raw}")
    unknown = sorted(set(segments[:, 0].tolist()) - set(experiments))
    if unknown:
        raise FileNotFoundError(
            f"{labels_file} labels experiments {unknown} that have no acc_expXX_userYY.txt file in {raw}"
        )
    recordings, all_codes = [], []
    for experiment, (user, acc_file) in sorted(experiments.items()):
        gyro_file = acc_file.with_name(acc_file.name.replace("acc_", "gyro_", 1))
        acc = read_table(acc_file, 3, what="HAPT accelerometer file")
        gyro = read_table(gyro_file, 3, what="HAPT gyroscope file")
        if len(acc) != len(gyro):
            raise ValueError(f"{acc_file} has {len(acc)} samples but {gyro_file} has {len(gyro)}")
        codes = np.full(len(acc), UNLABELLED, dtype=np.int64)
        for line, (seg_experiment, seg_user, activity, start, end) in enumerate(
            segments.tolist(), 1
        ):
            if seg_experiment != experiment:
                continue
            if seg_user != user or not 1 <= start <= end <= len(acc):
                raise ValueError(
                    f"{labels_file} line {line}: segment {start}..{end} of experiment {experiment} "
                    f"(user {seg_user}) does not fit {acc_file.name} ({len(acc)} samples, user {user})"
                )
            codes[start - 1 : end] = activity
        all_codes.append(codes)
        signal = np.concatenate([acc, gyro], axis=1)
        recordings.append(_recording(signal, codes, user, str(acc_file), include_transitions))
    _log_transitions(all_codes, include_transitions)
    return recordings


def load(
    path: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    download: bool = False,
    include_transitions: bool = True,
) -> list[Recording]:
    """HAPT recordings from a ``.npz`` file, the extracted archive folder, or the cache."""
    if path is not None and Path(path).suffix == ".npz":
        return load_npz(path, include_transitions=include_transitions)
    root = ARCHIVE.root(path, cache_dir=cache_dir, download=download)
    return load_raw(root, include_transitions=include_transitions)
