"""The shared real-data files through the source loaders (skipped when ../shared/data is absent)."""

from __future__ import annotations

import numpy as np
import pytest

from tcnvae.data.recordings import ACC, BODY_ACC, GYRO, UNLABELLED
from tcnvae.data.sources import load_source, uci_har
from tcnvae.data.taxonomy import ACTIVITIES

pytestmark = pytest.mark.real_data


def test_uci_har_windows(shared_data_file):
    data = load_source("uci_har", shared_data_file("uci_har_windows.npz"))
    assert data.signals.shape == (10299, 128, 9)
    assert data.channel_names == BODY_ACC + GYRO + ACC
    assert data.class_counts() == {
        "lying": 1944,
        "sitting": 1777,
        "standing": 1906,
        "walking": 1722,
        "ascending_stairs": 1544,
        "descending_stairs": 1406,
    }
    assert len(set(data.subject)) == 30
    test = np.isin(data.subject, uci_har.OFFICIAL_TEST_SUBJECTS)
    assert test.sum() == 2947  # the official test split's size
    # total acceleration is in g: its magnitude averages about 1 when the body is still
    still = data.activity == data.activity_names.index("lying")
    magnitude = np.linalg.norm(data.signals[still][:, :, 6:], axis=2).mean()
    assert 0.9 < magnitude < 1.1


def test_hapt_recordings(shared_data_file):
    recordings = load_source("hapt", shared_data_file("hapt_raw.npz"))
    assert len(recordings) == 61
    assert len({r.subject for r in recordings}) == 30
    total = sum(len(r) for r in recordings)
    assert total == 1122772
    labels = np.concatenate([r.labels for r in recordings])
    names = recordings[0].activity_names
    assert set(names) <= set(ACTIVITIES) and "postural_transition" in names
    assert (labels != UNLABELLED).mean() == pytest.approx(0.7264, abs=1e-3)
    transition = names.index("postural_transition")
    assert (labels == transition).sum() == 67208
    assert all(r.channel_names == ACC + GYRO and r.sample_rate == 50.0 for r in recordings)

    without = load_source("hapt", shared_data_file("hapt_raw.npz"), include_transitions=False)
    kept = np.concatenate([r.labels for r in without])
    assert (kept != UNLABELLED).mean() == pytest.approx(0.6666, abs=1e-3)
