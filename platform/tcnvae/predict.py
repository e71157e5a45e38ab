"""Predict activities in a recording with a final model (``searches/final_model.py``'s folder).

    python -m tcnvae.predict MODEL_DIR INPUT [--output OUT.csv] [--sample-rate HZ] [--top-k 3]

INPUT is a ``.npz`` in the arrays format (:mod:`tcnvae.data.sources.arrays`: ``signals``,
``channel_names``, ``sample_rate``, optionally ``offsets`` for several recordings; ``labels`` are not
needed and are ignored) or a ``.csv`` whose header names the channels (``acc_x, acc_y, acc_z, gyro_x,
...``: acc in g, gyro in rad/s) with ``--sample-rate`` or a ``time`` column in seconds. The recording
goes through the training pipeline's own steps (channel selection with body acceleration derived
from total acceleration when the model needs it, anti-aliased resampling to the model's rate,
windows of the model's length and hop, the model's training standardisation), and each window gets a
row: recording, window, start and end time in seconds, the predicted activity and its probability,
then the next ``top_k - 1`` activities and theirs. Without ``--output`` the CSV goes to stdout.

Checked first, each with the fix in its message: channels the model needs and the input lacks,
acceleration that looks like m/s² (the model wants g), angular velocity that looks like deg/s (the
model wants rad/s), a ``--sample-rate`` the CSV's time column contradicts, a recording shorter than a
window. A rate below the model's is resampled up with a warning (the model never saw what the
recording lacks). The same from Python::

    from tcnvae.predict import Predictor
    predictions = Predictor.load("results/<experiment>/final").predict("recording.npz")
    predictions.write_csv("predicted.csv")     # or predictions.rows: one dict per window
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tcnvae.checkpoints import atomic_write
from tcnvae.data.harmonise import channel_set_names, resample, select_channels, window_starts, window_windowset
from tcnvae.data.normalise import Standardiser
from tcnvae.data.recordings import ACC, BODY_ACC, GYRO, STANDARD_GRAVITY, Recording
from tcnvae.data.sources import load_source
from tcnvae.data.sources.parsing import read_npz
from tcnvae.data.taxonomy import ACTIVITIES
from tcnvae.data.windows import WindowSet
from tcnvae.evaluate import Ensemble, InferenceModel, activity_probabilities
from tcnvae.final_model import WEIGHTS_FILE, load_weights, read_card
from tcnvae.model import TCNVAE

TIME_COLUMNS = ("time", "time_s", "timestamp")
"""CSV columns read as sample times in seconds (the first one present)."""
RATE_TOLERANCE = 0.02
"""Relative disagreement allowed between --sample-rate and the rate of a CSV's time column."""
ACC_MS2_MEDIAN = (4.0, 20.0)
"""Median |total acceleration| in this range means m/s² (in g it is about 1: gravity)."""
BODY_ACC_MS2_P99 = 8.0
GYRO_DEGREES_P99 = 20.0
"""99th percentile |angular velocity| above this many rad/s (over 1100 deg/s) means deg/s."""


class PredictWarning(UserWarning):
    """The input can be predicted, but not as well as the model was tested."""


@dataclass
class Predictions:
    """One row per window (see the module docstring), and the warnings the input raised."""

    rows: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(self.rows[0]) if self.rows else ["window"])
        writer.writeheader()
        writer.writerows(self.rows)
        return buffer.getvalue()

    def write_csv(self, path: str | Path) -> None:
        text = self.to_csv()
        atomic_write(path, lambda stream: stream.write(text.encode()))


def read_recording(path: str | Path, sample_rate: float | None = None) -> list[Recording] | WindowSet:
    """A ``.npz`` (arrays format) or ``.csv`` recording as the arrays source returns it, labels ignored."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input {path} does not exist")
    if path.suffix == ".npz":
        return _read_npz(path, sample_rate)
    if path.suffix == ".csv":
        return _read_csv(path, sample_rate)
    raise ValueError(f"input {path}: expected a .npz (arrays format) or a .csv with named channel columns")


def _read_npz(path: Path, sample_rate: float | None) -> list[Recording] | WindowSet:
    # Read once, by the data layer's reader: a torn or non-zip file, or a pickled array, gets its message.
    arrays = read_npz(path, None, what="input")
    if "signals" not in arrays:
        raise ValueError(f"{path} has no 'signals' array (it has {sorted(arrays)}); see tcnvae.data.sources.arrays")
    shape = np.shape(arrays["signals"])
    channels_first = "layout" in arrays and str(arrays["layout"]) == "channels_first"
    if len(shape) == 3:
        # The arrays source insists on a label per window; any known name does, it is never read.
        labels = np.full(shape[0], ACTIVITIES[0])
    else:
        labels = np.full(shape[-1] if channels_first else shape[0], "")  # "" = unlabelled sample
    subjects = None if "subjects" in arrays else "unknown"  # one subject: nothing is split here
    return load_source("arrays", arrays, labels=labels, sample_rate=sample_rate, subjects=subjects)


def _read_csv(path: Path, sample_rate: float | None) -> list[Recording]:
    with open(path, newline="") as stream:
        header = [name.strip() for name in next(csv.reader(stream), [])]
    try:
        values = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=np.float64)
    except ValueError as error:
        raise ValueError(f"{path}: every row after the header must be numbers: {error}") from None
    if values.shape[1] != len(header):
        raise ValueError(f"{path}: the header names {len(header)} columns, the rows have {values.shape[1]}")
    channels = [name for name in header if name in ACC + BODY_ACC + GYRO]
    if not channels:
        raise ValueError(f"{path}: no channel columns in the header {header}; name them "
                         f"{', '.join(ACC + GYRO)} (acc in g, gyro in rad/s), or {', '.join(BODY_ACC)}")
    time_column = next((name for name in TIME_COLUMNS if name in header), None)
    if time_column is not None:
        steps = np.diff(values[:, header.index(time_column)])
        if len(steps) == 0 or not np.median(steps) > 0:
            raise ValueError(f"{path}: column {time_column!r} must rise (sample times in seconds)")
        measured = round(float(1 / np.median(steps)), 6)  # 1/0.02 is 49.99999999 in floating point
        if sample_rate is None:
            sample_rate = measured
        elif abs(measured - sample_rate) > RATE_TOLERANCE * sample_rate:
            raise ValueError(f"--sample-rate {sample_rate:g} Hz, but the {time_column!r} column of {path} steps at "
                             f"{measured:.4g} Hz; give the recording's true rate (or leave --sample-rate out)")
    if sample_rate is None:
        raise ValueError(f"{path}: give the sample rate with --sample-rate HZ, or a {TIME_COLUMNS[0]!r} column "
                         "in seconds")
    return load_source("arrays", signals=values[:, [header.index(name) for name in channels]],
                       labels=np.full(len(values), ""), channel_names=channels, sample_rate=sample_rate,
                       subjects="unknown")


def check_units(channel_names: Sequence[str], signal: np.ndarray, where: str) -> None:
    """Refuse acceleration in m/s² and angular velocity in deg/s, naming the conversion."""
    column = {name: signal[..., i].reshape(-1) for i, name in enumerate(channel_names)}
    if all(name in column for name in ACC):
        median = float(np.median(np.sqrt(sum(column[name] ** 2 for name in ACC))))
        if ACC_MS2_MEDIAN[0] < median < ACC_MS2_MEDIAN[1]:
            raise ValueError(f"{where}: acc_x/y/z look like m/s² (median magnitude {median:.2f}, gravity is 9.81 m/s²); "
                             f"the model expects g: divide them by {STANDARD_GRAVITY}")
    for names, limit, wrong, fix in (
            (BODY_ACC, BODY_ACC_MS2_P99, "m/s², not g", f"divide them by {STANDARD_GRAVITY}"),
            (GYRO, GYRO_DEGREES_P99, "deg/s, not rad/s", f"multiply them by pi/180 = {np.pi / 180:.6f}")):
        present = [name for name in names if name in column]
        if not present:
            continue
        p99 = float(np.percentile(np.abs(np.concatenate([column[name] for name in present])), 99))
        if p99 > limit:
            raise ValueError(f"{where}: {', '.join(present)} reach {p99:.1f} (99th percentile), which is {wrong}; {fix}")


class Predictor:
    """A final model ready to label recordings; :meth:`load` a model folder, then :meth:`predict`."""

    def __init__(self, card: dict[str, Any], model: TCNVAE | Ensemble):
        self.card = card
        self.activities: list[str] = card["activities"]
        self.channels = channel_set_names(card["channel_set"])
        self.sample_rate = float(card["sample_rate"])
        self.window_length = int(card["window_length"])
        self.hop = int(round(card["hop_seconds"] * self.sample_rate))  # as window_recordings rounds it
        self.model = InferenceModel(model, Standardiser.from_state_dict(card["normaliser"])).eval()

    @classmethod
    def load(cls, model_dir: str | Path) -> Predictor:
        card = read_card(model_dir)
        return cls(card, load_weights(Path(model_dir) / WEIGHTS_FILE))

    def predict(self, recording: str | Path | Recording | Sequence[Recording] | WindowSet, *,
                sample_rate: float | None = None, top_k: int = 3, unit_check: bool = True) -> Predictions:
        """Predictions for a file (.npz or .csv), a :class:`Recording` or a list of them, or a WindowSet.

        ``sample_rate`` overrides a file's; ``unit_check=False`` skips the unit checks (for data whose
        ranges are unusual but whose units are right).
        """
        if not 1 <= top_k <= len(self.activities):
            raise ValueError(f"top_k must lie in [1, {len(self.activities)}] (the model's activities), got {top_k}")
        if isinstance(recording, (str, Path)):
            recording = read_recording(recording, sample_rate)
        if isinstance(recording, Recording):
            recording = [recording]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PredictWarning)
            if isinstance(recording, WindowSet):
                windows, places = self._windowset(recording, unit_check)
            else:
                windows, places = self._recordings(list(recording), unit_check)
        probabilities = activity_probabilities(self.model, windows)
        ranked = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
        rows = []
        for place, order, row_probabilities in zip(places, ranked, probabilities):
            row = dict(place)
            for k, index in enumerate(order, start=1):
                suffix = "" if k == 1 else f"_{k}"
                row[f"activity{suffix}"] = self.activities[index]
                row[f"probability{suffix}"] = round(float(row_probabilities[index]), 6)
            rows.append(row)
        messages = [str(warning.message) for warning in caught if issubclass(warning.category, PredictWarning)]
        for message in messages:
            warnings.warn(message, PredictWarning, stacklevel=2)
        return Predictions(rows, messages)

    def _check(self, channel_names: Sequence[str], rate: float, where: str) -> None:
        derivable = set(BODY_ACC) if set(ACC) <= set(channel_names) else set()
        missing = [name for name in self.channels if name not in channel_names and name not in derivable]
        if missing:
            raise ValueError(f"{where} lacks channels {missing} that the model reads ({', '.join(self.channels)}); "
                             f"it has {list(channel_names)}. Name the columns as these channels, or train a model "
                             "on the channels you have (--set channel_set=acc, or a list of channel names)")
        if rate < self.sample_rate:
            warnings.warn(f"{where} is sampled at {rate:g} Hz and is resampled up to the model's {self.sample_rate:g} Hz; "
                          f"it holds nothing above {rate / 2:g} Hz, which the model was trained to see",
                          PredictWarning, stacklevel=3)

    def _recordings(self, recordings: list[Recording], unit_check: bool) -> tuple[np.ndarray, list[dict[str, Any]]]:
        pieces, places = [], []
        for number, recording in enumerate(recordings):
            where = f"recording {number}"
            self._check(recording.channel_names, recording.sample_rate, where)
            if unit_check:
                check_units(recording.channel_names, recording.signal, where)
            prepared = resample(select_channels(recording, self.channels), self.sample_rate)
            starts = window_starts(len(prepared), self.window_length, self.hop)
            if len(starts) == 0:
                warnings.warn(f"{where} lasts {len(recording) / recording.sample_rate:.2f} s, shorter than one "
                              f"window ({self.window_length / self.sample_rate:g} s): no predictions for it",
                              PredictWarning, stacklevel=3)
                continue
            pieces.append(prepared.signal[starts[:, None] + np.arange(self.window_length)[None, :]])
            places += [{"recording": number, "window": w, "start_s": round(start / self.sample_rate, 4),
                        "end_s": round((start + self.window_length) / self.sample_rate, 4)}
                       for w, start in enumerate(starts.tolist())]
        if not pieces:
            raise ValueError(f"no recording is as long as one window ({self.window_length / self.sample_rate:g} s)")
        return np.concatenate(pieces), places

    def _windowset(self, windows: WindowSet, unit_check: bool) -> tuple[np.ndarray, list[dict[str, Any]]]:
        self._check(windows.channel_names, windows.sample_rate, "the input windows")
        if unit_check:
            check_units(windows.channel_names, windows.signals, "the input windows")
        harmonised = window_windowset(windows, self.sample_rate, self.window_length, self.channels)
        # Pre-windowed input has no time line: each window is its own, numbered in input order.
        places = [{"recording": "", "window": w, "start_s": "", "end_s": ""} for w in range(len(harmonised))]
        return harmonised.signals, places


def main(argv: list[str] | None = None) -> Predictions:
    parser = argparse.ArgumentParser(prog="python -m tcnvae.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path, help="a final model folder (searches/final_model.py)")
    parser.add_argument("input", type=Path, help="a recording: .npz (arrays format) or .csv with named columns")
    parser.add_argument("--output", type=Path, default=None, help="CSV to write (default: stdout)")
    parser.add_argument("--sample-rate", type=float, default=None, help="Hz; required for a CSV without a time column")
    parser.add_argument("--top-k", type=int, default=3, help="activities listed per window, best first (default: 3)")
    parser.add_argument("--no-unit-check", action="store_true",
                        help="skip the m/s² and deg/s checks (your units are right but your ranges unusual)")
    args = parser.parse_args(argv)
    try:
        predictor = Predictor.load(args.model_dir)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PredictWarning)  # printed below, once each
            predictions = predictor.predict(args.input, sample_rate=args.sample_rate, top_k=args.top_k,
                                            unit_check=not args.no_unit_check)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    for message in predictions.warnings:
        print(f"warning: {message}", file=sys.stderr)
    if args.output is None:
        sys.stdout.write(predictions.to_csv())
    else:
        predictions.write_csv(args.output)
        counts: dict[str, int] = {}
        for row in predictions.rows:
            counts[row["activity"]] = counts.get(row["activity"], 0) + 1
        print(f"predict: {len(predictions.rows)} windows -> {args.output} ("
              + ", ".join(f"{name} {count}" for name, count in sorted(counts.items(), key=lambda kv: -kv[1])) + ")")
    return predictions


if __name__ == "__main__":
    main(sys.argv[1:])
