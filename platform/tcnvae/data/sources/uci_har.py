"""UCI-HAR (Anguita et al., 2013): 30 people with a waist-worn smartphone, 6 activities, 50 Hz.

UCI-HAR ships only windows (2.56 s = 128 samples, 50 % overlap), not continuous signals, so this source
returns a :class:`WindowSet` directly; HAPT is the continuous re-release of the same study. Overlapping
windows of one person are near-copies, which is why splits must be by subject (see
``OFFICIAL_TEST_SUBJECTS`` for the authors' split).

On-disk format of the official archive (folder ``UCI HAR Dataset``)::

    {train,test}/Inertial Signals/{body_acc,body_gyro,total_acc}_{x,y,z}_{train,test}.txt
        one window per line: 128 space-separated floats. total_acc in g (gravity included);
        body_acc = total_acc minus a 0.3 Hz Butterworth gravity estimate, in g; body_gyro in rad/s.
    {train,test}/subject_{train,test}.txt   one subject id (1..30) per window
    {train,test}/y_{train,test}.txt         one activity code per window:
        1 WALKING, 2 WALKING_UPSTAIRS, 3 WALKING_DOWNSTAIRS, 4 SITTING, 5 STANDING, 6 LAYING

Pre-extracted form (``.npz``, e.g. ``uci_har_windows.npz``): ``x`` (N, 9, 128) float32 channel-first
in the order body_acc xyz, body_gyro xyz, total_acc xyz; ``y`` (N,) activity code minus one (0..5);
``subject`` (N,).

Channels become body_acc_x..z, gyro_x..z, acc_x..z (UCI's "total_acc" is our total acceleration
``acc``). Windows carry the attribute ``placement = "waist"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tcnvae.data.recordings import ACC, BODY_ACC, GYRO
from tcnvae.data.sources.download import Archive
from tcnvae.data.sources.parsing import read_npz, read_table
from tcnvae.data.taxonomy import label_space
from tcnvae.data.windows import WindowSet

NAME = "uci_har"
SAMPLE_RATE = 50.0
WINDOW_LENGTH = 128
ACTIVITY_MAP = {
    1: "walking",
    2: "ascending_stairs",
    3: "descending_stairs",
    4: "sitting",
    5: "standing",
    6: "lying",
}
OFFICIAL_TEST_SUBJECTS = tuple(f"{NAME}:{s}" for s in (2, 4, 9, 10, 12, 13, 18, 20, 24))
SPLITS = ("train", "test")
# (file prefix in the archive, canonical channel names), in the npz's channel order
SIGNALS = (("body_acc", BODY_ACC), ("body_gyro", GYRO), ("total_acc", ACC))
CHANNEL_NAMES = [name for _, names in SIGNALS for name in names]
PLACEMENT = "waist"
ARCHIVE = Archive(
    NAME,
    "https://archive.ics.uci.edu/static/public/240/human+activity+recognition+using+smartphones.zip",
    ("train/Inertial Signals", "test/Inertial Signals"),
    "the extracted 'UCI HAR Dataset' folder ({train,test}/Inertial Signals/*.txt)",
)


def _window_set(
    signals: np.ndarray, codes: np.ndarray, subjects: np.ndarray, source: str
) -> WindowSet:
    unknown = sorted(set(np.unique(codes).tolist()) - set(ACTIVITY_MAP))
    if unknown:
        raise ValueError(
            f"{source}: activity codes {unknown} are not UCI-HAR codes {sorted(ACTIVITY_MAP)}"
        )
    names = label_space(ACTIVITY_MAP.values())
    lookup = np.zeros(max(ACTIVITY_MAP) + 1, dtype=np.int64)
    for code, name in ACTIVITY_MAP.items():
        lookup[code] = names.index(name)
    n = len(codes)
    return WindowSet(
        signals=signals,
        activity=lookup[codes],
        activity_names=names,
        dataset=np.full(n, NAME),
        subject=np.char.add(f"{NAME}:", subjects.astype(np.int64).astype(str)),
        channel_names=CHANNEL_NAMES,
        sample_rate=SAMPLE_RATE,
        attributes={"placement": np.full(n, PLACEMENT)},
    )


def load_npz(path: str | Path) -> WindowSet:
    """The pre-extracted windows file (keys x, y, subject; see the module docstring)."""
    path = Path(path)
    arrays = read_npz(path, ("x", "y", "subject"), what="UCI-HAR windows file")
    x, y, subject = arrays["x"], arrays["y"], arrays["subject"]
    expected = (len(CHANNEL_NAMES), WINDOW_LENGTH)
    if x.ndim != 3 or x.shape[1:] != expected:
        raise ValueError(
            f"{path}: x has shape {x.shape}, expected (N, {expected[0]}, {expected[1]})"
        )
    if y.shape != (len(x),) or subject.shape != (len(x),):
        raise ValueError(
            f"{path}: y {y.shape} and subject {subject.shape} must both be ({len(x)},)"
        )
    valid = sorted(code - 1 for code in ACTIVITY_MAP)
    unknown = sorted(set(np.unique(y).tolist()) - set(valid))
    if unknown:  # in the file's own terms: y holds the activity code minus one
        raise ValueError(f"{path}: y values {unknown} are not UCI-HAR activities; y holds the activity "
                         f"code minus one, {valid[0]}..{valid[-1]}")
    return _window_set(np.transpose(x, (0, 2, 1)), y.astype(np.int64) + 1, subject, str(path))


def _read_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    folder = root / split
    labels_file = folder / f"y_{split}.txt"
    codes = read_table(labels_file, 1, what="UCI-HAR label file")[:, 0].astype(np.int64)
    subjects_file = folder / f"subject_{split}.txt"
    subjects = read_table(subjects_file, 1, what="UCI-HAR subject file")[:, 0]
    if len(subjects) != len(codes):
        raise ValueError(
            f"{subjects_file} has {len(subjects)} rows but {labels_file} has {len(codes)}"
        )
    channels = []
    for prefix, _ in SIGNALS:
        for axis in "xyz":
            signal_file = folder / "Inertial Signals" / f"{prefix}_{axis}_{split}.txt"
            channel = read_table(signal_file, WINDOW_LENGTH, what="UCI-HAR signal file")
            if len(channel) != len(codes):
                raise ValueError(
                    f"{signal_file} has {len(channel)} windows but {labels_file} has {len(codes)}"
                )
            channels.append(channel.astype(np.float32))
    return np.stack(channels, axis=-1), codes, subjects


def load(
    path: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    download: bool = False,
    splits: tuple[str, ...] = SPLITS,
) -> WindowSet:
    """UCI-HAR windows from a ``.npz`` file, the extracted archive folder, or the cache.

    ``splits`` selects the archive's train/test parts (the npz holds both; split it by subject with
    ``OFFICIAL_TEST_SUBJECTS`` instead).
    """
    if path is not None and Path(path).suffix == ".npz":
        return load_npz(path)
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown or not splits:
        raise ValueError(f"splits must be a non-empty subset of {SPLITS}, got {splits}")
    root = ARCHIVE.root(path, cache_dir=cache_dir, download=download)
    parts = [_read_split(root, split) for split in splits]
    signals, codes, subjects = (np.concatenate(column) for column in zip(*parts))
    return _window_set(signals, codes, subjects, str(root))
