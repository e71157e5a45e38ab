"""The classical baseline every search is measured against: a random forest on per-window statistics.

A deep model that cannot beat a forest on a few dozen statistics per channel has not earned its
cost, so every search fits one on *the same* training windows its trials train on (the
:class:`~tcnvae.data.pipeline.PreparedData` of the trial config: same datasets, channels, split and
training-side standardisation) and scores it on the same validation and test subjects.

Features (:func:`window_features`), per channel over the window's time axis:

- mean, standard deviation, minimum, maximum, and the 10/25/50/75/90th percentiles (level and spread:
  posture shows in the gravity components' means, movement intensity in the spread);
- energy (mean square) and the mean absolute first difference (how jerky the signal is);
- dominant frequency in Hz (the largest non-DC FFT peak: step and stair cadence) and spectral entropy
  (a periodic gait is a few peaks, sitting still is flat noise);

and across channels, the Pearson correlation of every channel pair within the window (how axes move
together, e.g. up-and-forward on stairs). Plain numpy, vectorised over windows.

Deterministic: the forest is seeded with the config's ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from tcnvae.checkpoints import write_json
from tcnvae.data.metrics import classification_report, per_class_f1
from tcnvae.data.pipeline import PreparedData, prepare
from tcnvae.data.windows import WindowSet
from tcnvae.evaluate import restrict_probabilities
from tcnvae.tuning.config import data_config, validate_config
from tcnvae.tuning.metrics import VAL_ACCURACY, VAL_MACRO_F1

NAME = "random forest"
PERCENTILES = (10, 25, 50, 75, 90)
# More trees scored no better on UCI-HAR and HAPT; fewer scored lower (docs/results.md, "Smaller measurements").
N_ESTIMATORS = 200
N_JOBS = 2  # the driver runs it after the trials have finished, so both cores of a laptop are free
RESULT_FILE = "baseline.json"


def feature_names(channel_names: list[str]) -> list[str]:
    """Column names of :func:`window_features`, in its order."""
    per_channel = ["mean", "std", "min", "max", *(f"p{q}" for q in PERCENTILES), "energy", "mean_abs_diff",
                   "dominant_hz", "spectral_entropy"]
    names = [f"{channel}:{stat}" for stat in per_channel for channel in channel_names]
    upper = np.triu_indices(len(channel_names), k=1)
    return names + [f"corr:{channel_names[a]}:{channel_names[b]}" for a, b in zip(*upper)]


def window_features(signals: np.ndarray, sample_rate: float) -> np.ndarray:
    """(windows, features) statistics of ``signals`` shaped (windows, time, channels); see the module doc."""
    signals = np.asarray(signals, dtype=np.float64)
    if signals.ndim != 3 or signals.shape[1] < 2:
        raise ValueError(f"signals must be (windows, time >= 2, channels), got shape {signals.shape}")
    windows, length, channels = signals.shape
    mean = signals.mean(axis=1)
    std = signals.std(axis=1)
    centred = signals - mean[:, None, :]
    spectrum = np.abs(np.fft.rfft(centred, axis=1)[:, 1:, :]) ** 2  # DC left out: it is the mean
    frequencies = np.fft.rfftfreq(length, d=1.0 / sample_rate)[1:]
    power = spectrum / np.maximum(spectrum.sum(axis=1, keepdims=True), 1e-12)
    # Normalised to [0, 1]; 0·log 0 counts as 0, so a constant channel (no spectrum at all) scores 0.
    entropy = -(power * np.log(np.where(power > 0, power, 1.0))).sum(axis=1) / math.log(max(power.shape[1], 2))
    # Correlation of every channel pair; a constant channel correlates 0 with everything.
    unit = centred / np.where(std > 1e-12, std, np.inf)[:, None, :]
    correlation = np.einsum("ntc,ntd->ncd", unit, unit) / length
    upper = np.triu_indices(channels, k=1)
    columns = [
        mean, std, signals.min(axis=1), signals.max(axis=1),
        *np.percentile(signals, PERCENTILES, axis=1),
        (signals ** 2).mean(axis=1),
        np.abs(np.diff(signals, axis=1)).mean(axis=1),
        frequencies[spectrum.argmax(axis=1)],
        entropy,
    ]
    return np.concatenate([*columns, correlation[:, upper[0], upper[1]].reshape(windows, -1)], axis=1)


@dataclass
class BaselineResult:
    """The forest's accuracy and macro-F1 on the validation and test subjects (NaN for an empty side), and
    its F1 per activity on the test subjects (the activities that occur there), to read beside the model's."""

    val: dict[str, float]
    test: dict[str, float]
    train_windows: int
    features: int
    test_per_activity_f1: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"model": NAME, "features": self.features, "train_windows": self.train_windows,
                "val": self.val, "test": self.test, "test_per_activity_f1": self.test_per_activity_f1}


def _report(forest: RandomForestClassifier, windows: WindowSet, num_classes: int,
            activities_present: Sequence[str] | None = None) -> dict[str, Any] | None:
    if len(windows) == 0:
        return None
    probabilities = forest.predict_proba(window_features(windows.signals, windows.sample_rate))
    names = np.asarray(windows.activity_names)[forest.classes_]
    restricted = restrict_probabilities(probabilities, list(names), activities_present)
    return classification_report(windows.activity, forest.classes_[restricted.argmax(axis=1)], num_classes)


def _scores(report: Mapping[str, Any] | None) -> dict[str, float]:
    if report is None:
        return {"accuracy": math.nan, "macro_f1": math.nan}
    return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}


def fit_forest(train: WindowSet, seed: int = 0) -> RandomForestClassifier:
    """The seeded forest, fitted on the statistics of ``train``'s windows."""
    forest = RandomForestClassifier(n_estimators=N_ESTIMATORS, random_state=seed, n_jobs=N_JOBS)
    return forest.fit(window_features(train.signals, train.sample_rate), train.activity)


def evaluate_baseline(data: PreparedData, seed: int = 0,
                      activities_present: Sequence[str] | None = None) -> BaselineResult:
    """Fit on ``data.train``; score on ``data.val`` and ``data.test``. ``activities_present``: the test's
    predictions are restricted to these activities, as the model's are (:func:`tcnvae.evaluate.score`)."""
    forest = fit_forest(data.train, seed)
    test = _report(forest, data.test, data.num_activities, activities_present)
    return BaselineResult(val=_scores(_report(forest, data.val, data.num_activities)), test=_scores(test),
                          train_windows=len(data.train), features=forest.n_features_in_,
                          test_per_activity_f1={} if test is None else
                          per_class_f1(test["confusion"], data.test.activity_names))


def baseline_for_config(config: Mapping[str, Any]) -> BaselineResult:
    """The baseline on the data a trial with ``config`` sees (its datasets, channels, split and seed)."""
    config = validate_config(config)
    return evaluate_baseline(prepare(data_config(config)), config["seed"])


def _pair(scores: Mapping[str, float]) -> str:
    return f"accuracy {scores['accuracy']:.4f} macro-F1 {scores['macro_f1']:.4f}"


def summary_lines(baseline: BaselineResult, best: Mapping[str, Any]) -> list[str]:
    """What a search summary prints: the baseline's scores, and a plain verdict against the best trial
    on validation (accuracy and macro-F1, which every trial reports whatever its objective)."""
    lines = [f"baseline ({NAME}): val {_pair(baseline.val)}, test {_pair(baseline.test)}"]
    trial = {"accuracy": float(best[VAL_ACCURACY]), "macro_f1": float(best[VAL_MACRO_F1])}
    if math.isnan(baseline.val["accuracy"]):
        return lines + ["  (no validation windows: the best trial cannot be compared with the baseline)"]
    behind = [key for key in trial if not trial[key] > baseline.val[key]]
    if behind:
        lines.append(f"  WARNING: the best trial does NOT beat the {NAME} baseline on validation "
                     f"(trial {_pair(trial)} vs baseline {_pair(baseline.val)}); try a larger model, more "
                     "epochs, augmentation (--set augment_rotation_deg=auto ...) or searches/architecture.py")
    else:
        lines.append(f"  the best trial beats the baseline on validation by "
                     f"{100 * (trial['accuracy'] - baseline.val['accuracy']):.1f} accuracy and "
                     f"{100 * (trial['macro_f1'] - baseline.val['macro_f1']):.1f} macro-F1 points")
    return lines


def leaderboard_columns(baseline: BaselineResult) -> dict[str, float]:
    """The baseline's scores as leaderboard columns, the same on every row: each trial reads against them."""
    return {f"baseline {side}/{metric}": scores[metric]
            for side, scores in (("val", baseline.val), ("test", baseline.test)) for metric in ("accuracy", "macro_f1")}


def compare_with_search(best: Mapping[str, Any], experiment: str | Path) -> BaselineResult:
    """Fit the baseline on the best trial's data, write ``baseline.json`` into the experiment folder
    and print its scores beside the best trial (the search summary's one call into this module)."""
    baseline = baseline_for_config(best["result"].config)
    write_json(baseline.to_dict(), Path(experiment) / RESULT_FILE)
    print("\n" + "\n".join(summary_lines(baseline, best)))
    return baseline
