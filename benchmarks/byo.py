"""Bring your own data, end to end, as a user would run it: arrays file → search → final model → predict.

From the raw HAPT recordings (../shared/data/hapt_raw.npz, or $TCNVAE_SHARED_DATA) it writes a data
set in the arrays format whose six activities carry names outside the taxonomy (walking → "stroll",
sitting → "perch", ...; postural transitions left unlabelled), holding one subject out entirely. Then,
each as its own command:

    python searches/loss_weights.py --data arrays --data-path arrays=<dir>/mylab.npz ...   (small budget)
    python searches/final_model.py <dir>/search/byo
    python -m tcnvae.predict <dir>/search/byo/final <dir>/held_out.npz --output <dir>/predicted.csv

and prints, last:

    byo: trials_ok=N/N test_macro_f1=F predict_windows=W seconds=S

``test_macro_f1`` is the final model's, on the search's test subjects, scored once. New activity names
need the platform to accept names outside the taxonomy; ``--taxonomy-names`` keeps HAPT's own
(walking, sitting, ...) instead.

    python benchmarks/byo.py [--subjects 12] [--num-samples 4] [--max-epochs 4] [--taxonomy-names]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TCNVAE_SHARED_DATA", ROOT.parent / "shared" / "data"))

# HAPT codes 1-6 → (a new name outside the taxonomy, the taxonomy's name); codes 7-12 are transitions.
ACTIVITIES = {1: ("stroll", "walking"), 2: ("climb", "ascending_stairs"), 3: ("descend", "descending_stairs"),
              4: ("perch", "sitting"), 5: ("upright", "standing"), 6: ("recline", "lying")}
CHANNELS = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]  # HAPT: acc in g, gyro in rad/s
SAMPLE_RATE = 50.0


def write_arrays(hapt: Path, folder: Path, subjects: int, taxonomy_names: bool) -> tuple[Path, Path]:
    """(the data set of ``subjects`` subjects, the held-out subject's raw recording without labels)."""
    with np.load(hapt) as archive:
        signals, labels, offsets, users = (archive[key] for key in ("signals", "labels", "offsets", "user"))
    chosen = sorted(set(users.tolist()))[:subjects + 1]
    held_out = chosen[-1]
    codes = np.full(len(labels), -1, dtype=np.int64)  # -1: unlabelled (and the transitions)
    for index, code in enumerate(sorted(ACTIVITIES)):
        codes[labels == code] = index
    names = np.array([ACTIVITIES[code][1 if taxonomy_names else 0] for code in sorted(ACTIVITIES)])
    kept = [r for r, user in enumerate(users.tolist()) if user in chosen[:-1]]
    pieces = [slice(offsets[r], offsets[r + 1]) for r in kept]
    dataset = folder / "mylab.npz"
    np.savez(dataset, signals=np.concatenate([signals[p] for p in pieces]),
             labels=np.concatenate([codes[p] for p in pieces]), label_names=names,
             offsets=np.cumsum([0] + [p.stop - p.start for p in pieces]), subjects=users[kept].astype(str),
             datasets="mylab", channel_names=np.array(CHANNELS), sample_rate=SAMPLE_RATE)
    first = next(r for r, user in enumerate(users.tolist()) if user == held_out)
    recording = folder / "held_out.npz"
    np.savez(recording, signals=signals[offsets[first]:offsets[first + 1]], channel_names=np.array(CHANNELS),
             sample_rate=SAMPLE_RATE)
    print(f"byo: {len(kept)} recordings of {subjects} subjects -> {dataset}; held-out subject {held_out} -> {recording}")
    return dataset, recording


def run(command: list[str]) -> None:
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=12, help="subjects in the data set (default: 12 of 30)")
    parser.add_argument("--num-samples", type=int, default=4, help="trials of the search (default: 4)")
    parser.add_argument("--max-epochs", type=int, default=4, help="epochs of an unstopped trial (default: 4)")
    parser.add_argument("--taxonomy-names", action="store_true",
                        help="keep HAPT's taxonomy names instead of new ones")
    parser.add_argument("--folder", type=Path, default=None, help="where to write everything (default: a temporary folder)")
    args = parser.parse_args(argv)
    hapt = SHARED_DATA / "hapt_raw.npz"
    if not hapt.is_file():
        parser.error(f"{hapt} not found; set TCNVAE_SHARED_DATA to the folder holding hapt_raw.npz")
    if not 3 <= args.subjects <= 29:
        parser.error(f"--subjects {args.subjects}: expected 3..29 (one more is held out)")
    folder = args.folder or Path(tempfile.mkdtemp(prefix="byo-"))
    folder.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    dataset, recording = write_arrays(hapt, folder, args.subjects, args.taxonomy_names)
    experiment = folder / "search" / "byo"
    run([sys.executable, "searches/loss_weights.py", "--data", "arrays", "--data-path", f"arrays={dataset}",
         "--num-samples", str(args.num_samples), "--max-epochs", str(args.max_epochs),
         "--storage-path", str(experiment.parent), "--name", experiment.name])
    with open(experiment / "leaderboard.csv", newline="") as stream:
        trials = list(csv.DictReader(stream))
    ok = sum(row["status"] != "error" for row in trials)
    run([sys.executable, "searches/final_model.py", str(experiment)])
    card = json.loads((experiment / "final" / "model.json").read_text())
    predicted = folder / "predicted.csv"
    run([sys.executable, "-m", "tcnvae.predict", str(experiment / "final"), str(recording), "--output", str(predicted)])
    with open(predicted, newline="") as stream:
        windows = sum(1 for _ in csv.DictReader(stream))
    seconds = time.perf_counter() - start

    print(f"byo: activities {card['activities']}; everything in {folder}")
    line = (f"byo: trials_ok={ok}/{len(trials)} test_macro_f1={card['test']['macro_f1']:.4f} "
            f"predict_windows={windows} seconds={seconds:.0f}")
    print(line)
    return line


if __name__ == "__main__":
    main()
