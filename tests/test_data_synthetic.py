"""The synthetic source: deterministic, plausible physics, and a real domain shift."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tcnvae.data import ACC, GYRO, UNLABELLED, WindowSet, load_source
from tcnvae.data.sources import synthetic


def _small(**options):
    return load_source("synthetic", num_domains=2, subjects_per_domain=2, seconds_per_activity=8, **options)


def test_the_same_seed_gives_the_same_data_and_another_seed_other_data():
    first, again, other = _small(seed=3), _small(seed=3), _small(seed=4)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.signal, b.signal)
        np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.allclose(first[0].signal[:500], other[0].signal[:500])


def test_domains_look_like_datasets():
    recordings = load_source("synthetic", subjects_per_domain=2, seconds_per_activity=5)
    domains = sorted({r.dataset for r in recordings})
    assert domains == ["synthetic_a", "synthetic_b", "synthetic_c", "synthetic_d"]
    assert {r.subject for r in recordings if r.dataset == "synthetic_b"} == {"synthetic_b:1", "synthetic_b:2"}
    rates = {r.dataset: r.sample_rate for r in recordings}
    assert len(set(rates.values())) == 4  # each domain has its own native rate
    assert all(r.channel_names == ACC + GYRO for r in recordings)
    assert len({r.attributes["placement"] for r in recordings}) == 4
    # adding domains leaves the existing ones unchanged
    two = load_source("synthetic", num_domains=2, subjects_per_domain=2, seconds_per_activity=5)
    np.testing.assert_array_equal(two[0].signal, recordings[0].signal)


def _segments(recording, activity):
    index = recording.activity_names.index(activity)
    return recording.signal[recording.labels == index]


def test_postures_are_gravity_at_posture_specific_angles():
    recordings = [r for r in _small(seed=1) if r.dataset == "synthetic_a"]
    for recording in recordings:
        means = {a: _segments(recording, a)[:, :3].mean(axis=0) for a in ("lying", "sitting", "standing")}
        for activity, mean in means.items():
            assert np.linalg.norm(mean) == pytest.approx(1.0, abs=0.12), activity
            gyro = _segments(recording, activity)[:, 3:]
            assert gyro.std(axis=0).max() < 0.15, activity
        lying, standing = (means[a] / np.linalg.norm(means[a]) for a in ("lying", "standing"))
        assert np.degrees(np.arccos(lying @ standing)) > 50  # lying turns gravity by most of a right angle


def _dominant_frequency(x: np.ndarray, rate: float) -> float:
    """Dominant frequency of the acceleration magnitude, in 0.5-5 Hz."""
    magnitude = np.linalg.norm(x[:, :3], axis=1)
    spectrum = np.abs(np.fft.rfft(magnitude - magnitude.mean()))
    freqs = np.fft.rfftfreq(len(magnitude), 1 / rate)
    band = (freqs > 0.5) & (freqs < 5)
    return float(freqs[band][spectrum[band].argmax()])


def test_cadence_is_activity_specific():
    recordings = _small(seed=2)
    for recording in recordings:
        walking = _dominant_frequency(_segments(recording, "walking"), recording.sample_rate)
        running = _dominant_frequency(_segments(recording, "running"), recording.sample_rate)
        assert 1.4 < walking < 2.3 and 2.2 < running < 3.3
        assert running > walking + 0.4


def test_the_gyroscope_moves_with_the_body():
    for recording in _small(seed=5):
        energy = {
            a: _segments(recording, a)[:, 3:].std(axis=0).sum() for a in ("standing", "walking", "running")
        }
        assert energy["standing"] < energy["walking"] < energy["running"]


def test_transitions_are_labelled_only_when_asked_for():
    default = _small()[0]
    assert (default.labels == UNLABELLED).any()
    assert "postural_transition" not in default.activity_names
    with_transitions = _small(activities=["lying", "sitting", "standing", "postural_transition"])[0]
    index = with_transitions.activity_names.index("postural_transition")
    assert (with_transitions.labels == index).sum() > 0


def test_unsupported_activities_and_sizes_are_refused():
    with pytest.raises(ValueError, match="ironing"):
        synthetic.load(activities=["walking", "ironing"])
    with pytest.raises(ValueError, match="num_domains"):
        synthetic.load(num_domains=0)


def _features(windows: WindowSet) -> np.ndarray:
    x = windows.signals
    spectrum = np.abs(np.fft.rfft(x - x.mean(axis=1, keepdims=True), axis=1)).sum(axis=2)
    return np.concatenate([x.mean(axis=1), x.std(axis=1), np.log(spectrum[:, 1:20] + 1e-3)], axis=1)


def _accuracy(features, labels, train, test) -> float:
    mean, std = features[train].mean(axis=0), features[train].std(axis=0) + 1e-6
    model = LogisticRegression(max_iter=1000).fit((features[train] - mean) / std, labels[train])
    return float((model.predict((features[test] - mean) / std) == labels[test]).mean())


def test_activities_are_learnable_but_not_trivially(synthetic_windows):
    features = _features(synthetic_windows)
    number = np.array([int(s.split(":")[1]) for s in synthetic_windows.subject])
    accuracy = _accuracy(features, synthetic_windows.activity, number <= 4, number > 4)
    chance = 1 / len(synthetic_windows.activity_names)
    assert 5 * chance < accuracy < 0.98


def test_a_model_trained_on_some_domains_loses_accuracy_on_a_held_out_domain(synthetic_windows):
    """The issue's domain-shift test: in-domain (unseen subjects) vs a domain never trained on."""
    features = _features(synthetic_windows)
    labels = synthetic_windows.activity
    number = np.array([int(s.split(":")[1]) for s in synthetic_windows.subject])
    margins = []
    for target in sorted(set(synthetic_windows.dataset)):
        others = synthetic_windows.dataset != target
        in_domain = _accuracy(features, labels, others & (number <= 4), others & (number > 4))
        held_out = _accuracy(features, labels, others & (number <= 4), ~others)
        margins.append(in_domain - held_out)
    assert min(margins) > 0.1 and np.mean(margins) > 0.15, margins
