"""Harmonisation: gravity separation, resampling, channel selection and windowing."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tcnvae.data import (
    ACC,
    BODY_ACC,
    GYRO,
    UNLABELLED,
    Recording,
    WindowSet,
    resample,
    select_channels,
    separate_gravity,
    window_recordings,
    window_windowset,
)


def _recording(signal, labels, *, channels=None, rate=50.0, names=("sitting", "walking"), dataset="toy",
               subject="toy:1"):
    return Recording(
        signal=np.asarray(signal, dtype=np.float32),
        labels=np.asarray(labels),
        activity_names=list(names),
        channel_names=channels or ACC + GYRO,
        sample_rate=rate,
        dataset=dataset,
        subject=subject,
    )


def _dominant_frequency(x: np.ndarray, rate: float) -> float:
    spectrum = np.abs(np.fft.rfft(x - x.mean()))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()])


def test_gravity_separation_recovers_a_constant_gravity_under_body_motion():
    rate = 50.0
    t = np.arange(int(30 * rate)) / rate
    gravity = np.array([0.1, -0.2, 0.97])
    motion = 0.3 * np.sin(2 * np.pi * 2.0 * t)[:, None] * np.array([1.0, 0.5, -0.8])
    body, estimate = separate_gravity(gravity + motion, rate)
    inner = slice(int(3 * rate), -int(3 * rate))  # the filter needs a few seconds to settle at the ends
    assert np.abs(estimate[inner] - gravity).max() < 0.002
    assert np.abs(body[inner] - motion[inner]).max() < 0.002
    assert np.abs(estimate - gravity).max() < 0.05


def test_gravity_separation_follows_a_slow_change_of_orientation():
    rate = 50.0
    t = np.arange(int(60 * rate)) / rate
    angle = np.radians(60) * np.clip((t - 20) / 20, 0, 1)  # tilts by 60° over 20 s
    gravity = np.stack([np.sin(angle), np.zeros_like(t), np.cos(angle)], axis=1)
    _, estimate = separate_gravity(gravity, rate)
    assert np.abs(estimate - gravity).max() < 0.02


def test_gravity_filter_matches_scipy_filtfilt_away_from_the_edges():
    signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(0)
    acc = rng.normal(size=(5000, 3)).cumsum(axis=0) * 0.01 + rng.normal(size=(5000, 3))
    b, a = signal.butter(3, 0.3 / 25.0)
    reference = signal.filtfilt(b, a, acc, axis=0)
    _, gravity = separate_gravity(acc, 50.0)
    np.testing.assert_allclose(gravity[1000:-1000], reference[1000:-1000], atol=1e-4)


def test_gravity_separation_rejects_impossible_input():
    with pytest.raises(ValueError, match="time, 3"):
        separate_gravity(np.zeros((100, 2)), 50.0)
    with pytest.raises(ValueError, match="cutoff"):
        separate_gravity(np.zeros((100, 3)), 0.5)


@pytest.mark.parametrize("source_rate,target_rate", [(100.0, 50.0), (20.0, 50.0), (32.0, 50.0)])
def test_resampling_keeps_a_sine_at_its_frequency_and_the_duration(source_rate, target_rate):
    t = np.arange(int(20 * source_rate)) / source_rate
    sine = np.sin(2 * np.pi * 3.0 * t)
    recording = _recording(np.repeat(sine[:, None], 6, axis=1), np.zeros(len(t)), rate=source_rate)
    out = resample(recording, target_rate)
    assert out.sample_rate == target_rate
    assert len(out) == int(20 * target_rate)
    assert _dominant_frequency(out.signal[:, 0], target_rate) == pytest.approx(3.0, abs=0.06)
    assert np.abs(out.signal[:, 0]).max() == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("source_rate", [20.0, 32.0, 100.0, 29.97])
def test_resampling_passes_gravity_unchanged_and_follows_rates_that_are_no_simple_ratio(source_rate):
    """A constant (gravity) stays exact in every output phase; 29.97 -> 50 Hz is the fraction 5000/2997."""
    length = int(20 * source_rate)
    signal = np.tile([0.1, -0.2, 0.97, 0.0, 0.0, 0.0], (length, 1))
    t = np.arange(length) / source_rate
    signal[:, 3] = np.sin(2 * np.pi * 3.0 * t)
    labels = (t >= 7.0).astype(int)
    out = resample(_recording(signal, labels, rate=source_rate), 50.0)
    assert len(out) == int(length * 50.0 / source_rate + 1e-9)
    np.testing.assert_allclose(out.signal[:, :3], np.tile([0.1, -0.2, 0.97], (len(out), 1)), atol=1e-6)
    assert _dominant_frequency(out.signal[:, 3], 50.0) == pytest.approx(3.0, abs=0.06)
    switch = np.flatnonzero(np.diff(out.labels))[0] + 1
    assert switch / 50.0 == pytest.approx(7.0, abs=1 / source_rate)


def test_short_recordings_are_split_and_resampled_and_impossible_rates_refused():
    """Shorter than the gravity filter's mirror padding (500 samples at 50 Hz): mirrored as far as it reaches."""
    t = np.arange(100) / 50.0
    acc = np.array([0.0, 0.0, 1.0]) + 0.2 * np.sin(2 * np.pi * 2.0 * t)[:, None] * np.array([1.0, 0.0, 0.0])
    body, gravity = separate_gravity(acc, 50.0)
    np.testing.assert_allclose(gravity[:, 1:], [[0.0, 1.0]] * 100, atol=1e-6)
    assert np.abs(gravity[:, 0]).max() < 0.05 and np.isfinite(body).all()
    assert len(resample(_recording(np.ones((3, 6)), np.zeros(3), rate=20.0), 50.0)) == 7
    with pytest.raises(ValueError, match="from 1000000.0 Hz to 50.0 Hz divides the rate by more than 10000; check both rates"):
        resample(_recording(np.ones((10, 6)), np.zeros(10), rate=1e6), 50.0)


def test_downsampling_removes_what_the_new_rate_cannot_represent():
    rate = 100.0
    t = np.arange(int(20 * rate)) / rate
    fast = np.sin(2 * np.pi * 15.0 * t)  # above the 10 Hz Nyquist frequency of 20 Hz
    recording = _recording(np.repeat(fast[:, None], 6, axis=1), np.zeros(len(t)), rate=rate)
    out = resample(recording, 20.0)
    assert np.abs(out.signal[40:-40]).max() < 0.1


def test_resampled_labels_change_at_the_same_time():
    rate = 100.0
    labels = np.repeat([0, 1], 500)  # switch at 5.0 s
    recording = _recording(np.zeros((1000, 6)), labels, rate=rate)
    out = resample(recording, 50.0)
    switch = np.flatnonzero(np.diff(out.labels))[0] + 1
    assert switch / 50.0 == pytest.approx(5.0, abs=0.02)


def test_channel_selection_names_what_a_dataset_lacks():
    acc_only = _recording(np.zeros((200, 3)), np.zeros(200), channels=ACC, dataset="wisdm")
    with pytest.raises(ValueError, match=r"dataset wisdm has channels .*acc_gyro.* needs gyro_x"):
        select_channels(acc_only, "acc_gyro")
    with pytest.raises(ValueError, match="unknown channel set"):
        select_channels(acc_only, "magnetometer")


def test_channel_selection_derives_body_acceleration_in_uci_order():
    rate = 50.0
    t = np.arange(int(30 * rate)) / rate
    motion = 0.2 * np.sin(2 * np.pi * 1.5 * t)
    signal = np.zeros((len(t), 6))
    signal[:, 2] = 1.0 + motion
    signal[:, 3] = 0.5
    out = select_channels(_recording(signal, np.zeros(len(t))), "uci9")
    assert out.channel_names == BODY_ACC + GYRO + ACC
    inner = slice(int(3 * rate), -int(3 * rate))
    np.testing.assert_allclose(out.signal[inner, 2], motion[inner], atol=0.002)  # body_acc_z
    np.testing.assert_allclose(out.signal[:, 3], 0.5)  # gyro_x
    np.testing.assert_allclose(out.signal[:, 8], 1.0 + motion, atol=1e-6)  # acc_z


def test_windows_take_the_majority_label_and_respect_the_purity_threshold(caplog):
    labels = np.repeat([0, 1], 100)  # sitting then walking
    recording = _recording(np.zeros((200, 6)), labels)
    # 50-sample windows every 10 samples start at 0..150; the window at s holds max(100-s, s-50) of
    # one label when it straddles the switch at 100.
    with caplog.at_level(logging.INFO, logger="tcnvae.data.harmonise"):
        strict = window_recordings([recording], 1.0, 0.2, 50.0, "acc_gyro", min_purity=1.0)
    starts = np.arange(0, 151, 10)
    pure = (starts + 50 <= 100) | (starts >= 100)
    assert len(strict) == pure.sum()
    assert "dropped below purity" in caplog.text
    loose = window_recordings([recording], 1.0, 0.2, 50.0, "acc_gyro", min_purity=0.8)
    share = np.maximum(np.clip(100 - starts, 0, 50), np.clip(starts + 50 - 100, 0, 50)) / 50
    assert len(loose) == (share >= 0.8).sum()
    majority = np.where(np.clip(100 - starts, 0, 50) >= 25, "sitting", "walking")[share >= 0.8]
    assert [loose.activity_names[a] for a in loose.activity] == majority.tolist()


def test_unlabelled_samples_never_decide_a_label():
    labels = np.full(100, UNLABELLED)
    labels[:30] = 1  # 30 % walking, the rest unlabelled
    recording = _recording(np.zeros((100, 6)), labels)
    kept = window_recordings([recording], 2.0, 2.0, 50.0, "acc_gyro", min_purity=0.3)
    assert kept.activity_names == ["sitting", "walking"] and kept.activity.tolist() == [1]
    with pytest.raises(ValueError, match="no windows"):
        window_recordings([recording], 2.0, 2.0, 50.0, "acc_gyro", min_purity=0.5)


def test_windows_never_straddle_two_recordings():
    first = _recording(np.ones((130, 6)), np.zeros(130), subject="toy:1")
    second = _recording(2 * np.ones((130, 6)), np.ones(130), subject="toy:2")
    windows = window_recordings([first, second], 1.0, 0.1, 50.0, "acc_gyro")
    assert len(windows) == 2 * (1 + (130 - 50) // 5)
    assert (windows.signals.min(axis=(1, 2)) == windows.signals.max(axis=(1, 2))).all()
    level = windows.signals[:, 0, 0]
    assert set(windows.subject[level == 1]) == {"toy:1"} and set(windows.subject[level == 2]) == {"toy:2"}


def test_recordings_with_different_label_spaces_pool_by_name():
    sitting = _recording(np.zeros((100, 6)), np.zeros(100), names=["sitting"], subject="toy:1")
    running = _recording(np.zeros((100, 6)), np.zeros(100), names=["running"], subject="toy:2")
    windows = window_recordings([sitting, running], 1.0, 1.0, 50.0, "acc")
    assert windows.activity_names == ["sitting", "running"]
    assert windows.class_counts() == {"sitting": 2, "running": 2}
    assert windows.channel_names == ACC


def _uci_like(rate: float, length: int) -> WindowSet:
    rng = np.random.default_rng(1)
    return WindowSet(
        signals=rng.normal(size=(5, length, 9)),
        activity=np.arange(5) % 2,
        activity_names=["sitting", "walking"],
        dataset=np.full(5, "uci_har"),
        subject=np.array(["uci_har:1"] * 5),
        channel_names=BODY_ACC + GYRO + ACC,
        sample_rate=rate,
    )


def test_prewindowed_sets_get_the_common_channels_and_length():
    uci = _uci_like(50.0, 128)
    same = window_windowset(uci, 50.0, 128, "acc_gyro")
    assert same.channel_names == ACC + GYRO
    np.testing.assert_array_equal(same.signals, uci.signals[:, :, [6, 7, 8, 3, 4, 5]])
    cropped = window_windowset(uci, 50.0, 100, "acc")
    np.testing.assert_array_equal(cropped.signals, uci.signals[:, 14:114, 6:9])
    doubled = window_windowset(uci, 100.0, 256, "acc")
    assert doubled.signals.shape == (5, 256, 3) and doubled.sample_rate == 100.0
    np.testing.assert_allclose(doubled.signals[:, ::2], uci.signals[:, :, 6:9], atol=1e-6)


def test_prewindowed_sets_too_short_for_the_window_are_refused():
    with pytest.raises(ValueError, match="shorter than the requested 256"):
        window_windowset(_uci_like(50.0, 128), 50.0, 256, "acc")


def _uci_har_stretches(windows: WindowSet) -> list[np.ndarray]:
    """UCI-HAR's half-overlapping windows chained back into the continuous stretches they were cut from."""
    signals = windows.signals
    half = signals.shape[1] // 2
    starting_with = {signals[i, :half, 6].tobytes(): i for i in range(len(signals))}
    following = [starting_with.get(signals[i, half:, 6].tobytes(), -1) for i in range(len(signals))]
    first = np.ones(len(signals), dtype=bool)
    first[[f for f in following if f >= 0]] = False
    stretches = []
    for start in np.flatnonzero(first):
        chain = [start]
        while following[chain[-1]] >= 0:
            chain.append(following[chain[-1]])
        stretches.append(np.concatenate([signals[start, :half]] + [signals[i, half:] for i in chain]))
    return stretches


@pytest.mark.real_data
def test_gravity_separation_reproduces_uci_har_body_acceleration(uci_har_windowset):
    """The split of UCI-HAR's total acceleration gives UCI-HAR's own body acceleration.

    Not exactly: UCI-HAR also median- and 20 Hz low-pass-filtered it, and split whole recordings where
    these stretches start and end at an activity's edge. Measured (FFT |H|^2 and sosfiltfilt alike):
    inside the stretches corr 0.9982/0.9843/0.9812 and 17.0 mg rms; over every sample 26.7 mg, where
    filtfilt's default short odd padding gives 33.0 mg.
    """
    stretches = _uci_har_stretches(uci_har_windowset)
    assert sum(len(s) for s in stretches) == 64 * (len(uci_har_windowset) + len(stretches))
    body = [separate_gravity(s[:, 6:9], 50.0)[0] for s in stretches]
    error = np.concatenate([b - s[:, :3] for b, s in zip(body, stretches)])
    assert np.sqrt((error**2).mean()) < 0.0275
    inner = slice(150, -150)  # 3 s from the stretches' edges
    estimate = np.concatenate([b[inner] for b in body])
    reference = np.concatenate([s[inner, :3] for s in stretches])
    correlation = [np.corrcoef(estimate[:, k], reference[:, k])[0, 1] for k in range(3)]
    assert all(c > bound for c, bound in zip(correlation, (0.998, 0.984, 0.981)))  # x, y, z
    assert np.sqrt(((estimate - reference) ** 2).mean()) < 0.0175
