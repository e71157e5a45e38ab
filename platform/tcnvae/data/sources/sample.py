"""The embedded sample: a small real multi-dataset set shipped inside the package, so the main job
(``searches/loss_weights.py``) runs on real people with no download and no ``../shared``.

Forty-five people, fifteen from each of three CC BY 4.0 data sets, with three devices and body positions
(their attribution and licence: ``tcnvae/data/embedded/ATTRIBUTION.txt``):

- ``hapt``: UCI HAPT (Reyes-Ortiz et al., 2016), a Samsung Galaxy S II on the **waist**, people 1–15;
- ``wisdm2019_phone``: WISDM 2019 (Weiss, 2019), a phone in the **trousers pocket**, people 1600, 1604,
  1606, 1609, 1611, 1612, 1615, 1617, 1618, 1622, 1624, 1626, 1630, 1631, 1632;
- ``wisdm2019_watch``: WISDM 2019, a watch on the dominant **wrist**, people 1601, 1602, 1603, 1605,
  1607, 1608, 1610, 1613, 1614, 1616, 1619, 1620, 1621, 1623, 1625. WISDM 2019 recorded phone and
  watch on the same people at the same time, so the two groups are disjoint: nobody is seen through
  one device and tested through the other.

The four activities the three share: ``walking``, ``stairs`` (HAPT's up and down merged, as WISDM 2019
does not tell them apart), ``sitting``, ``standing``; at most :data:`MAX_SECONDS_PER_ACTIVITY` of each
person's each activity. Channels acc_x..z (g, gravity included) and gyro_x..z (rad/s) in the canonical
units and signs of the :mod:`.hapt` and :mod:`.wisdm2019` sources, which read the originals; 20 Hz
(WISDM 2019's nominal rate, its samples as the source gives them; HAPT resampled from 50 Hz), stored
as float16 (a relative rounding of 0.05 %, far under the sensors' noise).

File (``tcnvae/data/embedded/sample.npz``) in the :mod:`.arrays` source's layout: ``signals`` (T, 6)
float16, ``labels`` (T,) codes into ``label_names``, ``offsets`` (R+1,), one recording per labelled
stretch of one activity, with its ``subjects`` (R,) and ``datasets`` (R,); ``channel_names``,
``sample_rate``. Each recording is a :class:`~tcnvae.data.recordings.Recording` of its own dataset (so
with ``domain_by="dataset"`` there are three domains) and subject ``"<dataset>:<id>"``, with the
attributes ``placement`` and ``device``.

At 20 Hz the default 2.56 s window is 51 samples, under the default encoder's receptive field (57):
:data:`SETTINGS` are the rate and window length the sample is meant to be used with.

Rebuilt from the shared originals (``$TCNVAE_SHARED_DATA``, default ``../shared/data`` beside the
checkout) by ``python -m tcnvae.data.sources.sample [--shared DIR] [--output FILE]``: the same files
give the same arrays.
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from importlib.resources import files
from pathlib import Path

import numpy as np

from tcnvae.data.harmonise import resample
from tcnvae.data.recordings import ACC, GYRO, UNLABELLED, Recording
from tcnvae.data.sources import arrays, load_source

NAME = "sample"
SAMPLE_RATE = 20.0
ACTIVITIES = ["sitting", "standing", "walking", "stairs"]  # the taxonomy's order
ACTIVITY_MAP: dict[object, str] = dict(enumerate(ACTIVITIES))  # the file's codes
CHANNEL_NAMES = ACC + GYRO
DATA_FILE = "sample.npz"
# Windows long enough for the default encoder's receptive field at 20 Hz (2.56 s would be 51 samples),
# side by side without overlap: a quarter of the windows of the default 1.28 s step, which keeps the main
# job's default search within minutes on a laptop CPU (docs/results.md, "The main job on the sample").
SETTINGS = {"sample_rate": SAMPLE_RATE, "window_seconds": 5.12, "step_seconds": 5.12}

# Which people of which shared file; phone and watch are the same WISDM 2019 people, so split them.
PEOPLE = {
    "hapt": list(range(1, 16)),
    "wisdm2019_phone": [1600, 1604, 1606, 1609, 1611, 1612, 1615, 1617, 1618, 1622, 1624, 1626, 1630, 1631, 1632],
    "wisdm2019_watch": [1601, 1602, 1603, 1605, 1607, 1608, 1610, 1613, 1614, 1616, 1619, 1620, 1621, 1623, 1625],
}
SHARED_FILES = {
    "hapt": "hapt_raw.npz",
    "wisdm2019_phone": "wisdm2019_phone_raw.npz",
    "wisdm2019_watch": "wisdm2019_watch_raw.npz",
}
PLACEMENT = {"hapt": "waist", "wisdm2019_phone": "pocket", "wisdm2019_watch": "wrist"}
DEVICE = {"hapt": "phone", "wisdm2019_phone": "phone", "wisdm2019_watch": "watch"}
# Source activity → the sample's: HAPT tells stairs up from down, WISDM 2019 does not.
MERGED = {"ascending_stairs": "stairs", "descending_stairs": "stairs"}
MAX_SECONDS_PER_ACTIVITY = 80.0
# Shorter labelled stretches hold no window of the recommended length: not shipped, so not warned about.
MIN_STRETCH_SECONDS = SETTINGS["window_seconds"]


def data_file() -> Path:
    """The shipped ``sample.npz`` (inside the installed package)."""
    return Path(str(files("tcnvae.data").joinpath("embedded", DATA_FILE)))


def load(path: str | Path | None = None, *, cache_dir: str | Path | None = None,
         download: bool = False) -> list[Recording]:
    """The sample's recordings, read from the package (or from ``path``, a file :func:`build` made)."""
    del cache_dir  # shipped with the package: nothing to cache
    if download:
        raise ValueError("the sample source ships with the package; there is nothing to download")
    path = data_file() if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"embedded sample {path} not found: the package was installed without its data files; "
            "reinstall it (pip install -e .) or rebuild the file with python -m tcnvae.data.sources.sample"
        )
    with np.load(path, allow_pickle=False) as stored:
        fields = {key: stored[key] for key in stored.files}
    fields["signals"] = fields["signals"].astype(np.float32)
    recordings = arrays.load(fields)
    for recording in recordings:
        recording.attributes = {"placement": PLACEMENT[recording.dataset], "device": DEVICE[recording.dataset]}
        recording.source = f"{path.name} ({recording.dataset})"
    return recordings


def _stretches(recording: Recording) -> list[tuple[str, np.ndarray]]:
    """The recording's labelled stretches of the sample's activities: (activity, signal) in time order."""
    names = [MERGED.get(name, name) for name in recording.activity_names]
    codes = np.array([ACTIVITIES.index(name) if name in ACTIVITIES else UNLABELLED for name in names])
    labels = np.where(recording.labels == UNLABELLED, UNLABELLED, codes[recording.labels])
    edges = np.flatnonzero(np.diff(labels)) + 1
    minimum = MIN_STRETCH_SECONDS * recording.sample_rate
    return [(ACTIVITIES[labels[start]], recording.signal[start:end])
            for start, end in zip(np.r_[0, edges], np.r_[edges, len(labels)])
            if labels[start] != UNLABELLED and end - start >= minimum]


def cut(recordings: list[Recording]) -> dict[str, np.ndarray]:
    """The sample's arrays from one dataset's canonical recordings (chosen people only): at
    :data:`SAMPLE_RATE`, its activities' labelled stretches, each person's each activity capped
    at :data:`MAX_SECONDS_PER_ACTIVITY` (the first stretches, in recording order)."""
    kept: dict[str, list] = {"signals": [], "labels": [], "subjects": [], "datasets": []}
    used: dict[tuple[str, str], int] = defaultdict(int)
    cap = int(MAX_SECONDS_PER_ACTIVITY * SAMPLE_RATE)
    minimum = int(MIN_STRETCH_SECONDS * SAMPLE_RATE)
    for recording in recordings:
        for activity, signal in _stretches(resample(recording, SAMPLE_RATE)):
            left = cap - used[recording.subject, activity]
            if left < minimum:
                continue
            signal = signal[:left]
            used[recording.subject, activity] += len(signal)
            kept["signals"].append(signal)
            kept["labels"].append(np.full(len(signal), ACTIVITIES.index(activity), dtype=np.int8))
            kept["subjects"].append(recording.subject.partition(":")[2])
            kept["datasets"].append(recording.dataset)
    return kept


def build(shared: str | Path, output: str | Path) -> Path:
    """Write the sample to ``output`` from the shared originals in folder ``shared`` (read through
    the :mod:`.hapt` and :mod:`.wisdm2019` sources, so units and signs are theirs)."""
    pieces: dict[str, list] = {"signals": [], "labels": [], "subjects": [], "datasets": []}
    for dataset, people in PEOPLE.items():
        chosen = {f"{dataset}:{person}" for person in people}
        recordings = [r for r in load_source(dataset, Path(shared) / SHARED_FILES[dataset]) if r.subject in chosen]
        missing = sorted(chosen - {r.subject for r in recordings})
        if missing:
            raise ValueError(f"{SHARED_FILES[dataset]} in {shared} lacks {missing}")
        for key, values in cut(recordings).items():
            pieces[key].extend(values)
    lengths = [len(signal) for signal in pieces["signals"]]
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        output,
        signals=np.concatenate(pieces["signals"]).astype(np.float16),
        labels=np.concatenate(pieces["labels"]),
        label_names=np.array(ACTIVITIES),
        offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
        subjects=np.array(pieces["subjects"]),
        datasets=np.array(pieces["datasets"]),
        channel_names=np.array(CHANNEL_NAMES),
        sample_rate=np.array(SAMPLE_RATE),
    )
    return output


def _default_shared() -> Path:
    beside_checkout = Path(__file__).resolve().parents[4].parent / "shared" / "data"
    return Path(os.environ.get("TCNVAE_SHARED_DATA", beside_checkout))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rebuild the embedded sample from the shared originals.")
    parser.add_argument("--shared", type=Path, default=_default_shared(),
                        help="folder of hapt_raw.npz and wisdm2019_{phone,watch}_raw.npz "
                             "(default: $TCNVAE_SHARED_DATA, else ../shared/data beside the checkout)")
    parser.add_argument("--output", type=Path, default=None,
                        help="where to write it (default: the package's own file)")
    args = parser.parse_args(argv)
    missing = [name for name in SHARED_FILES.values() if not (args.shared / name).is_file()]
    if missing:
        parser.error(f"{args.shared} lacks {', '.join(missing)}; give the folder with --shared")
    output = build(args.shared, args.output or Path(__file__).resolve().parents[1] / "embedded" / DATA_FILE)
    print(f"{output}: {output.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
