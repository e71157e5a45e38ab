"""Predict activities in a recording with a final model (``searches/final_model.py``'s folder).

    python -m tcnvae.predict MODEL_DIR INPUT [--output OUT.csv] [--sample-rate HZ] [--top-k 3]
                             [--activities walking,sitting]

INPUT is a ``.npz`` in the arrays format (:mod:`tcnvae.data.sources.arrays`: ``signals``,
``channel_names``, ``sample_rate``, optionally ``offsets`` for several recordings; ``labels`` are not
needed and are ignored) or a ``.csv`` whose header names the channels (``acc_x, acc_y, acc_z, gyro_x,
...``: acc in g, gyro in rad/s) with ``--sample-rate`` or a ``time`` column in seconds. The recording
goes through the training pipeline's own steps (channel selection with body acceleration derived
from total acceleration when the model needs it, anti-aliased resampling to the model's rate,
windows of the model's length and hop, gravity alignment and magnitude channels if the model was
trained with them, the model's training standardisation), and each window gets a row: recording,
window, start and end time in seconds, the predicted activity and its probability, then the next
``top_k - 1`` activities and theirs. Without ``--output`` the CSV goes to stdout.

A model trained with ``normalise_by="dataset"`` (each dataset standardised by its own statistics) has
the input standardised by the input's own statistics first, all its windows together, as a held-out
dataset was in training: a short input (under :data:`OWN_STATISTICS_WINDOWS` windows) gets a warning,
since a few moments of one activity are poor statistics. ``--activities`` names the activities that can
occur (the card's ``activities_present`` when not given): the others' probabilities are set to 0 and
each row's renormalised over the named ones, so a model that knows "typing" does not answer it for a
phone in a pocket on the stairs; a name the model does not know is refused with the model's list.

Checked first, each with the fix in its message: that the model card and the weights belong together
(:func:`tcnvae.final_model.load_model_folder`), an ``--output`` that is a folder or cannot be written,
channels the model needs and the input lacks, acceleration that looks like m/s² (the model wants g),
angular velocity that looks like deg/s (the model wants rad/s), a CSV that is empty, has no rows, is
not UTF-8 or not comma-separated, a time column that falls or repeats, is not in seconds (milliseconds,
say) or has gaps (the rows are read as evenly sampled), a ``--sample-rate`` the time column
contradicts, a recording shorter than a window. A rate below the model's is resampled up with a
warning (the model never saw what the recording lacks). The same from Python::

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

from tcnvae.checkpoints import atomic_write, check_writable_folder
from tcnvae.data.checks import check_sample_rate, check_units
from tcnvae.data.harmonise import channel_set_names, resample, select_channels, window_starts, window_windowset
from tcnvae.data.normalise import Standardiser
from tcnvae.data.recordings import ACC, BODY_ACC, GYRO, Recording
from tcnvae.data.sources import load_source
from tcnvae.data.sources.parsing import read_npz
from tcnvae.data.taxonomy import ACTIVITIES
from tcnvae.data.windows import WindowSet
from tcnvae.data.orientation import orient
from tcnvae.evaluate import (Ensemble, InferenceModel, activity_probabilities, check_activities_present,
                             restrict_probabilities)
from tcnvae.final_model import ModelCardWarning, load_model_folder
from tcnvae.model import TCNVAE

TIME_COLUMNS = ("time", "time_s", "timestamp")
"""CSV columns read as sample times in seconds (the first one present)."""
RATE_TOLERANCE = 0.02
"""Relative disagreement allowed between --sample-rate and the rate of a CSV's time column."""
LOWEST_RATE = 2.0
"""Hz. A time column stepping slower is not in seconds: activity sensors sample at tens of Hz, and
milliseconds read as seconds make even a 1 kHz recording step at 1 Hz."""
TIME_UNITS = (("milliseconds", 1e3), ("microseconds", 1e6), ("nanoseconds", 1e9))
"""Units a time column that is not in seconds may be in, tried in this order (per second)."""
GAP_STEPS = 10
OWN_STATISTICS_WINDOWS = 50
"""normalise_by="dataset": an input of fewer windows (about a minute at the usual hop) is standardised by
statistics of too little movement to stand for a dataset's, and is warned about."""
"""A time-column step longer than this many typical steps is a gap (samples lost or a pause in
recording); smaller irregularities are a phone's ordinary jitter."""


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
    if path.is_dir():
        raise ValueError(f"input {path} is a folder; give a recording file (.npz or .csv)")
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
    header, values = _read_table(path)
    channels = [name for name in header if name in ACC + BODY_ACC + GYRO]
    if not channels:
        raise ValueError(f"{path}: no channel columns in the header {header}; name them "
                         f"{', '.join(ACC + GYRO)} (acc in g, gyro in rad/s), or {', '.join(BODY_ACC)}")
    time_column = next((name for name in TIME_COLUMNS if name in header), None)
    if time_column is not None:
        measured = _time_column_rate(values[:, header.index(time_column)], time_column, path)
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


def _read_table(path: Path) -> tuple[list[str], np.ndarray]:
    """The header and the rows of numbers of a comma-separated UTF-8 file; anything else is refused,
    saying what the file is instead."""
    try:
        # utf-8-sig: the byte-order mark a spreadsheet may write is no part of the first column's name.
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = error.object.count(b"\n", 0, error.start) + 1
        raise ValueError(f"{path} is not UTF-8 text (byte 0x{error.object[error.start]:02x} on line {line}); "
                         "save it as UTF-8 (or plain ASCII) comma-separated values") from None
    lines = text.splitlines()
    if not text.strip():
        raise ValueError(f"{path} is empty: give a header naming the channels, then one row of numbers per sample")
    header = [name.strip() for name in next(csv.reader(lines[:1]), [])]
    for separator, called in ((";", "semicolons"), ("\t", "tabs")):
        if len(header) == 1 and separator in lines[0]:
            raise ValueError(f"{path} is separated by {called}, not commas (its header reads {lines[0][:80]!r}); "
                             "save it as comma-separated values, with '.' as the decimal point")
    if not any(line.strip() for line in lines[1:]):
        raise ValueError(f"{path} has a header ({', '.join(header)}) but no rows: give one row of numbers per sample")
    try:
        values = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1, ndmin=2, dtype=np.float64)
    except ValueError as error:
        raise ValueError(f"{path}: every row after the header must be numbers: {error}") from None
    if values.shape[1] != len(header):
        raise ValueError(f"{path}: the header names {len(header)} columns, the rows have {values.shape[1]}")
    return header, values


def _time_column_rate(times: np.ndarray, column: str, path: Path) -> float:
    """The sample rate a CSV's time column steps at; refused: times that do not rise, times not in
    seconds, gaps. Rows are named by their line in the file (the header is line 1)."""
    steps = np.diff(times)
    falling = np.flatnonzero(~(steps > 0))  # NaN included
    if len(steps) == 0 or len(falling):
        places = ", ".join(f"line {i + 3} ({times[i + 1]:g} after {times[i]:g})" for i in falling[:3])
        more = ", ..." if len(falling) > 3 else ""
        raise ValueError(f"{path}: column {column!r} must rise (sample times in seconds)"
                         + (f", but falls or repeats at {len(falling)} rows: {places}{more}; sort the rows by time "
                            "and drop repeated ones" if len(falling) else ""))
    typical = float(np.median(steps))
    rate = 1 / typical
    if rate < LOWEST_RATE:
        unit = next(((name, factor) for name, factor in TIME_UNITS if rate * factor >= LOWEST_RATE), None)
        guess = (f"it looks like {unit[0]}: divide the column by {unit[1]:g}" if unit else
                 "it is no time in seconds")
        raise ValueError(f"{path}: column {column!r} steps by {typical:g} (median), {rate:.3g} Hz if seconds, "
                         f"slower than any activity sensor; {guess}, or drop it and give --sample-rate HZ")
    gaps = np.flatnonzero(steps > GAP_STEPS * typical)
    if len(gaps):
        places = ", ".join(f"{steps[i]:.3g} s before line {i + 3} ({times[i]:g} to {times[i + 1]:g})" for i in gaps[:3])
        raise ValueError(f"{path}: column {column!r} has {len(gaps)} gaps of over {GAP_STEPS} samples: {places}"
                         f"{', ...' if len(gaps) > 3 else ''}. The rows are read as one evenly sampled recording, so "
                         "windows would join moments apart and every later time would be wrong: split the file at "
                         "the gaps, one file per unbroken stretch")
    return round(rate, 6)  # 1/0.02 is 49.99999999 in floating point


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
        # Cards written before these settings existed had them off.
        self.gravity_align = bool(card.get("gravity_align", False))
        self.magnitude_channels = bool(card.get("magnitude_channels", False))
        self.normalise_by = card.get("normalise_by", "pooled")
        self.activities_present: list[str] | None = card.get("activities_present")

    @classmethod
    def load(cls, model_dir: str | Path) -> Predictor:
        """A model folder's card and weights, refused unless they belong together (see
        :func:`tcnvae.final_model.load_model_folder`)."""
        return cls(*load_model_folder(model_dir))

    def predict(self, recording: str | Path | Recording | Sequence[Recording] | WindowSet, *,
                sample_rate: float | None = None, top_k: int = 3, unit_check: bool = True,
                activities: Sequence[str] | None = None) -> Predictions:
        """Predictions for a file (.npz or .csv), a :class:`Recording` or a list of them, or a WindowSet.

        ``sample_rate`` overrides a file's; ``unit_check=False`` skips the unit checks (for data whose
        ranges are unusual but whose units are right); ``activities``: the only activities predicted
        (default: the card's ``activities_present``, else all), at most ``top_k`` of them listed.
        """
        if not 1 <= top_k <= len(self.activities):
            raise ValueError(f"top_k must lie in [1, {len(self.activities)}] (the model's activities), got {top_k}")
        present = self.activities_present if activities is None else list(activities)
        if present is not None:
            top_k = min(top_k, len(check_activities_present(present, self.activities)))
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
            windows = self._model_input(windows)
        probabilities = restrict_probabilities(activity_probabilities(self.model, windows), self.activities, present)
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

    def _model_input(self, windows: np.ndarray) -> np.ndarray:
        """Windows of the channel set as the model's training made its input (before its standardisation):
        gravity-aligned, magnitudes added, standardised by their own statistics (module docstring)."""
        windows, _ = orient(windows, self.channels, gravity_align=self.gravity_align,
                            magnitude_channels=self.magnitude_channels)
        if self.normalise_by != "dataset":
            return windows
        if len(windows) < OWN_STATISTICS_WINDOWS:
            warnings.warn(f"the model standardises each dataset by its own statistics (normalise_by=dataset), and the "
                          f"input has {len(windows)} windows (under {OWN_STATISTICS_WINDOWS}): its statistics stand "
                          "for little movement, and the predictions may shift; give a longer recording of varied "
                          "activity", PredictWarning, stacklevel=3)
        return Standardiser.fit(windows).transform(windows)

    def _check(self, channel_names: Sequence[str], rate: float, where: str) -> None:
        derivable = set(BODY_ACC) if set(ACC) <= set(channel_names) else set()
        missing = [name for name in self.channels if name not in channel_names and name not in derivable]
        if missing:
            raise ValueError(f"{where} lacks channels {missing} that the model reads ({', '.join(self.channels)}); "
                             f"it has {list(channel_names)}. Name the columns as these channels, or train a model "
                             "on the channels you have (--set channel_set=acc, or a list of channel names)")
        check_sample_rate(rate, where, self.sample_rate)
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


def check_output_file(path: str | Path) -> Path:
    """``path`` if predictions can be written there; refused before the model runs: a folder, or a
    place this process cannot write to."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--output {path} is a folder; give the CSV file to write, e.g. {path / 'predicted.csv'}")
    check_writable_folder(path.parent, "--output's folder")
    return path


def main(argv: list[str] | None = None) -> Predictions:
    parser = argparse.ArgumentParser(prog="python -m tcnvae.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path, help="a final model folder (searches/final_model.py)")
    parser.add_argument("input", type=Path, help="a recording: .npz (arrays format) or .csv with named columns")
    parser.add_argument("--output", type=Path, default=None, help="CSV to write (default: stdout)")
    parser.add_argument("--sample-rate", type=float, default=None, help="Hz; required for a CSV without a time column")
    parser.add_argument("--top-k", type=int, default=3, help="activities listed per window, best first (default: 3)")
    parser.add_argument("--activities", default=None,
                        help="comma-separated activities that can occur (e.g. walking,sitting): the others are never "
                             "predicted (default: the model card's activities_present, else all)")
    parser.add_argument("--no-unit-check", action="store_true",
                        help="skip the m/s² and deg/s checks (your units are right but your ranges unusual)")
    args = parser.parse_args(argv)
    try:
        if args.output is not None:
            check_output_file(args.output)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ModelCardWarning)
            predictor = Predictor.load(args.model_dir)
        for warning in caught:
            print(f"warning: {warning.message}", file=sys.stderr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PredictWarning)  # printed below, once each
            predictions = predictor.predict(args.input, sample_rate=args.sample_rate, top_k=args.top_k,
                                            unit_check=not args.no_unit_check,
                                            activities=None if args.activities is None else
                                            [name.strip() for name in args.activities.split(",") if name.strip()])
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
