"""Turn recordings and pre-windowed sets from different sources into windows that can be pooled.

Pooling needs one sample rate, one channel set and one window length. Sources differ in all three
(UCI-HAR ships 128-sample windows at 50 Hz, PAMAP2 records at 100 Hz, WISDM at 20 Hz, some sources
have no gyroscope), so every source goes through the same steps here: derive missing derived channels
(body acceleration), select the channel set, resample, then cut windows that never cross a recording
boundary and whose label is trustworthy (purity threshold).

Filtering and resampling are scipy.signal's: the gravity split is a zero-phase Butterworth
(``butter(..., output="sos")`` run forwards and backwards by ``sosfiltfilt``), and a rate change is
polyphase resampling (``resample_poly``), whose FIR low-pass also removes what the new rate cannot
represent. Edges are mirrored ("even"/"reflect" extension) rather than extrapolated, so a recording that
ends mid-step does not bend the gravity estimate or the last resampled samples.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from fractions import Fraction

import numpy as np
from scipy.signal import butter, firwin, resample_poly, sosfiltfilt

from tcnvae.data.recordings import ACC, BODY_ACC, GYRO, UNLABELLED, Recording
from tcnvae.data.taxonomy import label_space
from tcnvae.data.windows import WindowSet

logger = logging.getLogger(__name__)

CHANNEL_SETS: dict[str, list[str]] = {
    "acc": ACC,
    "acc_gyro": ACC + GYRO,
    "uci9": BODY_ACC + GYRO + ACC,  # UCI-HAR's order: body acc, gyro, total acc
}
GRAVITY_CUTOFF_HZ = 0.3  # UCI-HAR's gravity/body split
GRAVITY_FILTER_ORDER = 3
# Mirror padding of the gravity filter: its impulse response has decayed after a few periods of the
# cutoff (500 samples at 50 Hz). A signal shorter than that is mirrored as far as it reaches.
GRAVITY_PAD_PERIODS = 3
# A rate change is the fraction up/down nearest to target/source with down <= 10 000: the new rate
# is within 0.01 % of the one asked for, and exact for any two rates given in 0.01 Hz up to 100 Hz.
MAX_RATE_DENOMINATOR = 10_000
RESAMPLE_KAISER_BETA = 5.0  # resample_poly's default window
SHORT_SHOWN = 10  # recordings named in the warning about those shorter than a window


def separate_gravity(
    acc: np.ndarray, sample_rate: float, cutoff_hz: float = GRAVITY_CUTOFF_HZ
) -> tuple[np.ndarray, np.ndarray]:
    """Split total acceleration (..., time, 3) into (body, gravity) with UCI-HAR's 0.3 Hz low-pass.

    Gravity changes only as slowly as the sensor's orientation, so the low-pass part is gravity and
    the rest is body motion. Works on a recording (T, 3) or a stack of windows (N, T, 3).
    """
    acc = np.asarray(acc)
    if acc.ndim < 2 or acc.shape[-1] != 3:
        raise ValueError(f"acceleration must be (..., time, 3), got shape {acc.shape}")
    if sample_rate <= 0 or not 0 < cutoff_hz < sample_rate / 2:
        raise ValueError(
            f"cutoff {cutoff_hz} Hz must lie in (0, {sample_rate / 2}) for sample rate {sample_rate} Hz"
        )
    length = acc.shape[-2]
    pad = int(np.ceil(GRAVITY_PAD_PERIODS * sample_rate / cutoff_hz))
    sos = butter(GRAVITY_FILTER_ORDER, cutoff_hz, fs=sample_rate, output="sos")
    gravity = sosfiltfilt(
        sos, acc.astype(np.float64), axis=-2, padtype="even", padlen=min(pad, max(length - 1, 0))
    )
    return (acc - gravity).astype(np.float32), gravity.astype(np.float32)


def channel_set_names(channel_set: str | Sequence[str]) -> list[str]:
    """The channel names of a named channel set, or the given list of names."""
    if isinstance(channel_set, str):
        if channel_set not in CHANNEL_SETS:
            raise ValueError(
                f"unknown channel set {channel_set!r}; known: {', '.join(CHANNEL_SETS)} "
                "(or pass a list of channel names)"
            )
        return list(CHANNEL_SETS[channel_set])
    names = list(channel_set)
    if not names:
        raise ValueError("a channel set needs at least one channel")
    return names


def _select(
    signal: np.ndarray,
    channel_names: list[str],
    channel_set: str | Sequence[str],
    sample_rate: float,
    dataset: str,
) -> np.ndarray:
    """Channels ``channel_set`` of ``signal`` (..., T, C), deriving body acceleration if it is missing."""
    wanted = channel_set_names(channel_set)
    available = list(channel_names)
    derivable = set(BODY_ACC) if set(ACC) <= set(available) else set()
    missing = [c for c in wanted if c not in available and c not in derivable]
    if missing:
        raise ValueError(
            f"dataset {dataset} has channels {available}, channel set {channel_set!r} needs "
            f"{', '.join(missing)}; channel_set accepts a named set ({', '.join(CHANNEL_SETS)}) or a "
            f"list of channel names the data has, e.g. --set channel_set='{json.dumps(available)}'"
        )
    columns = {name: signal[..., i] for i, name in enumerate(available)}
    if any(c not in available for c in wanted):
        acc = np.stack([columns[c] for c in ACC], axis=-1)
        body, _ = separate_gravity(acc, sample_rate)
        columns.update({name: body[..., i] for i, name in enumerate(BODY_ACC)})
    return np.stack([columns[c] for c in wanted], axis=-1).astype(np.float32)


def select_channels(recording: Recording, channel_set: str | Sequence[str]) -> Recording:
    """The recording restricted to ``channel_set`` (a name in CHANNEL_SETS or a list of names)."""
    names = channel_set_names(channel_set)
    signal = _select(
        recording.signal, recording.channel_names, channel_set, recording.sample_rate, recording.dataset
    )
    return replace(recording, signal=signal, channel_names=names)


def _rate_ratio(source_rate: float, target_rate: float) -> Fraction:
    """target/source as the nearest fraction up/down with down <= MAX_RATE_DENOMINATOR."""
    exact = target_rate / source_rate
    ratio = Fraction(exact).limit_denominator(MAX_RATE_DENOMINATOR)
    if abs(ratio - exact) > exact / MAX_RATE_DENOMINATOR:  # a ratio past 1 : 10 000 has no close fraction
        raise ValueError(
            f"resampling from {source_rate} Hz to {target_rate} Hz divides the rate by more than "
            f"{MAX_RATE_DENOMINATOR}; check both rates (Hz, not ms or kHz)"
        )
    return ratio


def _interpolation_filter(up: int, down: int) -> np.ndarray:
    """resample_poly's own low-pass (a Kaiser-windowed sinc at the lower of the two Nyquist
    frequencies, 10 periods each side), with each of its ``up`` polyphase branches scaled to unit
    gain at 0 Hz.

    resample_poly normalises only the whole filter, which leaves each output phase's gain off by up
    to 1.5e-3: gravity (1 g) would come out rippled by 1.5 mg, and doubling the rate would not keep
    the original samples. Scaled per branch, a constant passes unchanged and the branch that lands on
    the original sample times is the identity.
    """
    half = 10 * max(up, down)
    taps = firwin(2 * half + 1, 1 / max(up, down), window=("kaiser", RESAMPLE_KAISER_BETA))
    for branch in range(up):
        taps[branch::up] /= taps[branch::up].sum()
    return taps / up  # resample_poly multiplies the taps by up


def _resample_along_time(
    signal: np.ndarray, source_rate: float, target_rate: float, axis: int
) -> tuple[np.ndarray, np.ndarray]:
    """Polyphase resampling along ``axis``; anti-aliased when the rate drops, edges mirrored.

    Returns the resampled signal (the same duration: the last new sample lies within the last source
    period) and, for each new sample, the nearest source sample (for labels).
    """
    ratio = _rate_ratio(source_rate, target_rate)
    up, down = ratio.numerator, ratio.denominator
    length = signal.shape[axis]
    if up == down:  # rates within the ratio's tolerance: nothing to do
        return signal.astype(np.float32), np.arange(length)
    count = length * up // down
    resampled = resample_poly(
        signal.astype(np.float64), up, down, axis=axis,
        window=_interpolation_filter(up, down), padtype="reflect",
    )
    resampled = np.take(resampled, np.arange(count), axis=axis)
    nearest = np.clip(np.rint(np.arange(count) * down / up).astype(np.int64), 0, max(length - 1, 0))
    return resampled.astype(np.float32), nearest


def resample(recording: Recording, rate: float) -> Recording:
    """The recording at ``rate`` Hz: signals interpolated (anti-aliased), labels of the nearest sample."""
    if rate <= 0:
        raise ValueError(f"target sample rate must be positive, got {rate}")
    if rate == recording.sample_rate:
        return recording
    signal, nearest = _resample_along_time(recording.signal, recording.sample_rate, rate, axis=0)
    return replace(recording, signal=signal, labels=recording.labels[nearest], sample_rate=rate)


def window_starts(length: int, window: int, step: int) -> np.ndarray:
    """Start samples of the windows of ``window`` samples every ``step`` in ``length`` (training and predict)."""
    if length < window:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, length - window + 1, step, dtype=np.int64)


def _window_labels(
    labels: np.ndarray, starts: np.ndarray, window: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Majority label of each window among labelled samples, and its share of the whole window."""
    one_hot = np.zeros((len(labels) + 1, num_classes), dtype=np.int32)
    labelled = labels != UNLABELLED
    one_hot[1:][labelled, labels[labelled]] = 1
    cumulative = np.cumsum(one_hot, axis=0)
    counts = cumulative[starts + window] - cumulative[starts]
    majority = counts.argmax(axis=1)
    share = counts[np.arange(len(starts)), majority] / window
    return majority, share


def window_recordings(
    recordings: Sequence[Recording],
    window_seconds: float,
    step_seconds: float,
    sample_rate: float,
    channel_set: str | Sequence[str],
    min_purity: float = 0.8,
) -> WindowSet:
    """Cut recordings into windows at ``sample_rate`` Hz with ``channel_set``.

    A window's label is the majority among its labelled samples, kept only if that label covers at
    least ``min_purity`` of the window (unlabelled samples count against purity, so they never decide
    a label). Windows stay inside one recording. Dropped windows are counted in the log.
    """
    if not recordings:
        raise ValueError("window_recordings needs at least one recording")
    if not 0 < min_purity <= 1:
        raise ValueError(f"min_purity must lie in (0, 1], got {min_purity}")
    window = int(round(window_seconds * sample_rate))
    step = int(round(step_seconds * sample_rate))
    if window < 1 or step < 1:
        raise ValueError(
            f"window {window_seconds} s and step {step_seconds} s at {sample_rate} Hz give "
            f"{window} and {step} samples; both must be at least one sample"
        )
    names = label_space(a for r in recordings for a in r.activity_names)
    channel_names = channel_set_names(channel_set)
    attribute_keys = set.intersection(*(set(r.attributes) for r in recordings))
    pieces: dict[str, list[np.ndarray]] = {"signals": [], "activity": [], "dataset": [], "subject": []}
    pieces.update({f"attr:{k}": [] for k in attribute_keys})
    dropped_impure = total = 0
    short = []
    for index, recording in enumerate(recordings):
        prepared = resample(select_channels(recording, channel_set), sample_rate)
        starts = window_starts(len(prepared), window, step)
        if len(starts) == 0:
            short.append(f"{recording.dataset} recording {index} ({recording.subject}): {len(prepared)} samples "
                         f"({len(prepared) / sample_rate:.2f} s)")
            continue
        remap = np.array([names.index(a) for a in prepared.activity_names], dtype=np.int64)
        majority, share = _window_labels(
            prepared.labels, starts, window, len(prepared.activity_names)
        )
        keep = share >= min_purity - 1e-9
        total += len(starts)
        dropped_impure += int((~keep).sum())
        starts, majority = starts[keep], majority[keep]
        offsets = starts[:, None] + np.arange(window)[None, :]
        pieces["signals"].append(prepared.signal[offsets])
        pieces["activity"].append(remap[majority])
        pieces["dataset"].append(np.full(len(starts), prepared.dataset))
        pieces["subject"].append(np.full(len(starts), prepared.subject))
        for key in attribute_keys:
            pieces[f"attr:{key}"].append(np.full(len(starts), prepared.attributes[key]))
    datasets = sorted({r.dataset for r in recordings})
    logger.info(
        "windowed %d recordings of %s: %d windows kept, %d dropped below purity %.2f, "
        "%d recordings shorter than one window (%d samples)",
        len(recordings), ", ".join(datasets), total - dropped_impure, dropped_impure, min_purity,
        len(short), window,
    )
    if short:
        logger.warning("%d recordings shorter than one window (%d samples, %g s) dropped: %s", len(short), window,
                       window / sample_rate, "; ".join(short[:SHORT_SHOWN])
                       + (f"; and {len(short) - SHORT_SHOWN} more" if len(short) > SHORT_SHOWN else ""))
    if total == dropped_impure:
        raise ValueError(
            f"no windows of {window} samples with purity >= {min_purity} in the recordings of "
            f"{', '.join(datasets)}"
        )
    return WindowSet(
        signals=np.concatenate(pieces["signals"]),
        activity=np.concatenate(pieces["activity"]),
        activity_names=names,
        dataset=np.concatenate(pieces["dataset"]),
        subject=np.concatenate(pieces["subject"]),
        channel_names=channel_names,
        sample_rate=sample_rate,
        attributes={k: np.concatenate(pieces[f"attr:{k}"]) for k in attribute_keys},
    )


def window_windowset(
    windows: WindowSet, sample_rate: float, window_length: int, channel_set: str | Sequence[str]
) -> WindowSet:
    """Bring a pre-windowed set (e.g. UCI-HAR's 128 samples at 50 Hz) to the common rate, length, channels.

    Windows are resampled, then centre-cropped to ``window_length``; a window shorter than that after
    resampling cannot be completed without inventing data, so that is an error. Body acceleration,
    if needed and absent, is derived window by window, which is rougher than from a whole recording
    (a 2.56 s window is shorter than the gravity filter's settling time).
    """
    datasets = ", ".join(sorted(set(windows.dataset.tolist()))) or "(empty)"
    signals = _select(
        windows.signals, windows.channel_names, channel_set, windows.sample_rate, datasets
    )
    if windows.sample_rate != sample_rate:
        signals, _ = _resample_along_time(signals, windows.sample_rate, sample_rate, axis=1)
    length = signals.shape[1]
    if length < window_length:
        raise ValueError(
            f"windows of {datasets} span {windows.window_length} samples at {windows.sample_rate} Hz "
            f"({length} at {sample_rate} Hz), shorter than the requested {window_length}"
        )
    start = (length - window_length) // 2
    return replace(
        windows,
        signals=signals[:, start : start + window_length],
        channel_names=channel_set_names(channel_set),
        sample_rate=sample_rate,
    )
