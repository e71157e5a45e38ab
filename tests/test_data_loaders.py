"""WindowLoader batching and sampling, and the batch augmentations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tcnvae.data import Augmentation, WindowLoader
from tcnvae.data.augment import AUTO_ROTATION_DEG
from tcnvae.data.pipeline import DataConfig
from tcnvae.tuning.config import validate_config


def _loader(num_windows=200, num_classes=4, num_domains=4, **options) -> WindowLoader:
    """Windows whose first value is their index, so batches can be traced back."""
    rng = np.random.default_rng(0)
    signals = np.zeros((num_windows, 8, 6), dtype=np.float32)
    signals[:, 0, 0] = np.arange(num_windows)
    # deliberately unbalanced: class 0 and domain 0 are the majority
    activity = np.minimum(rng.geometric(0.5, num_windows) - 1, num_classes - 1)
    domain = np.minimum(rng.geometric(0.4, num_windows) - 1, num_domains - 1)
    names = [f"domain_{i}" for i in range(num_domains)]
    return WindowLoader(signals, activity, domain, domain_names=names, **options)


def _indices(batch) -> np.ndarray:
    return batch[0][:, 0, 0].long().numpy()


def test_in_order_loading_visits_every_window_once_with_the_right_types():
    loader = _loader(num_windows=100, batch_size=32)
    batches = list(loader)
    assert len(loader) == len(batches) == 4
    assert [len(b[0]) for b in batches] == [32, 32, 32, 4]
    np.testing.assert_array_equal(np.concatenate([_indices(b) for b in batches]), np.arange(100))
    data, activity, domain = batches[0]
    assert data.dtype == torch.float32 and data.shape == (32, 8, 6)
    assert activity.dtype == torch.int64 and domain.dtype == torch.int64
    np.testing.assert_array_equal(activity.numpy(), loader.activity[:32])
    assert len(_loader(num_windows=100, batch_size=32, drop_last=True)) == 3


def test_shuffling_is_reproducible_per_epoch_and_differs_between_epochs():
    loader = _loader(batch_size=50, shuffle=True, seed=7)
    first = np.concatenate([_indices(b) for b in loader])
    second = np.concatenate([_indices(b) for b in loader])
    loader.set_epoch(0)
    replay = np.concatenate([_indices(b) for b in loader])
    assert sorted(first) == list(range(200))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, replay)
    other_seed = _loader(batch_size=50, shuffle=True, seed=8)
    assert not np.array_equal(first, np.concatenate([_indices(b) for b in other_seed]))


def test_domain_balanced_batches_carry_every_domain():
    loader = _loader(batch_size=16, sampling="domain_balanced", shuffle=True)
    for batch in loader:
        assert np.bincount(batch[2].numpy(), minlength=4).tolist() == [4, 4, 4, 4]
    with pytest.raises(ValueError, match="cannot carry all 4 domains"):
        list(_loader(batch_size=3, sampling="domain_balanced"))


def test_class_balanced_batches_are_near_uniform():
    loader = _loader(batch_size=30, sampling="class_balanced", shuffle=True)
    assert np.bincount(loader.activity).max() > 3 * np.bincount(loader.activity).min()
    for batch in loader:
        counts = np.bincount(batch[1].numpy(), minlength=4)
        assert counts.sum() == 30 and counts.max() - counts.min() <= 2


def test_domain_weights_set_the_share_of_each_domain():
    loader = _loader(num_windows=2000, batch_size=40, shuffle=True)
    loader.set_domain_weights({"domain_0": 0.5, "domain_1": 0.3, "domain_2": 0.2})
    domains = np.concatenate([b[2].numpy() for epoch in range(3) for b in loader])
    share = np.bincount(domains, minlength=4) / len(domains)
    np.testing.assert_allclose(share, [0.5, 0.3, 0.2, 0.0], atol=0.01)
    loader.set_domain_weights(None)
    assert len(np.unique(np.concatenate([b[2].numpy() for b in loader]))) == 4
    with pytest.raises(ValueError, match="unknown domains"):
        loader.set_domain_weights({"elsewhere": 1.0})
    with pytest.raises(ValueError, match="not all 0"):
        loader.set_domain_weights({"domain_0": 0.0})


def test_class_balance_and_domain_weights_combine():
    loader = _loader(num_windows=2000, batch_size=40, sampling="class_balanced", shuffle=True)
    loader.set_domain_weights({"domain_0": 0.75, "domain_3": 0.25})
    batches = list(loader)
    activity = np.concatenate([b[1].numpy() for b in batches])
    domain = np.concatenate([b[2].numpy() for b in batches])
    np.testing.assert_allclose(np.bincount(activity, minlength=4) / len(activity), 0.25, atol=0.01)
    assert set(domain.tolist()) == {0, 3}
    assert (domain == 0).mean() == pytest.approx(0.75, abs=0.03)


def test_subsets_and_sample_weights_choose_the_windows_drawn():
    loader = _loader(batch_size=16, shuffle=True)
    loader.set_subset(np.arange(40))
    assert len(loader) == 3
    assert set(np.concatenate([_indices(b) for b in loader]).tolist()) == set(range(40))
    loader.set_subset(None)
    weights = np.zeros(200)
    weights[:10], weights[10:20] = 1.0, 3.0
    loader.set_sample_weights(weights)
    drawn = np.concatenate([_indices(b) for epoch in range(20) for b in loader])
    assert set(drawn.tolist()) <= set(range(20))
    assert (drawn >= 10).mean() == pytest.approx(0.75, abs=0.05)
    with pytest.raises(ValueError, match="shape"):
        loader.set_sample_weights(np.ones(3))


def test_bad_loader_options_are_refused():
    with pytest.raises(ValueError, match="sampling"):
        _loader(sampling="random")
    with pytest.raises(ValueError, match="batch_size"):
        _loader(batch_size=0)


def _triple_norms(batch: torch.Tensor) -> torch.Tensor:
    return torch.stack([batch[..., 0:3].norm(dim=-1), batch[..., 3:6].norm(dim=-1)], dim=-1)


def test_rotation_turns_each_sensor_rigidly_in_physical_units():
    names = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
    generator = torch.Generator().manual_seed(0)
    physical = torch.randn(16, 32, 6) + torch.tensor([0, 0, 1.0, 0, 0, 0])
    mean, std = physical.mean(dim=(0, 1)), physical.std(dim=(0, 1))
    augmenter = Augmentation(rotation_deg=30).build(names, mean.numpy(), std.numpy())
    out = augmenter((physical - mean) / std, generator) * std + mean
    torch.testing.assert_close(_triple_norms(out), _triple_norms(physical), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(out, physical, atol=1e-3)
    cosine = torch.nn.functional.cosine_similarity(out[..., :3], physical[..., :3], dim=-1)
    assert cosine.min() > np.cos(np.radians(30)) - 1e-4


def test_augmentation_is_seeded_and_keeps_shapes():
    names = ["acc_x", "acc_y", "acc_z"]
    config = Augmentation(noise_std=0.1, scale_std=0.1, rotation_deg=10, time_warp=0.2)
    batch = torch.randn(8, 64, 3)
    first = config.build(names)(batch, torch.Generator().manual_seed(1))
    again = config.build(names)(batch, torch.Generator().manual_seed(1))
    other = config.build(names)(batch, torch.Generator().manual_seed(2))
    assert first.shape == batch.shape
    torch.testing.assert_close(first, again)
    assert not torch.allclose(first, other)


def test_time_warp_keeps_a_constant_signal_and_the_ends():
    ramp = torch.linspace(0, 1, 50).repeat(4, 1)[..., None].repeat(1, 1, 3)
    out = Augmentation(time_warp=0.5).build(["a", "b", "c"])(ramp, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[:, [0, -1]], ramp[:, [0, -1]])
    assert (out.diff(dim=1) >= -1e-6).all()  # time still runs forwards
    assert not torch.allclose(out, ramp, atol=1e-3)


def test_augmentation_options_are_checked():
    with pytest.raises(ValueError, match="noise_std"):
        Augmentation(noise_std=-1)
    with pytest.raises(ValueError, match="unknown augmentation"):
        Augmentation.from_dict({"flip": 1})
    with pytest.raises(ValueError, match="xyz channel triples"):
        Augmentation(rotation_deg=5).build(["heart_rate"])


def test_auto_rotation_turns_data_with_xyz_triples_and_leaves_other_data_alone():
    auto = Augmentation(rotation_deg="auto")
    assert auto.for_channels(["acc_x", "acc_y", "acc_z"]).rotation_deg == AUTO_ROTATION_DEG
    assert auto.for_channels(["acc_x", "acc_y"]).rotation_deg == 0
    batch = torch.randn(4, 32, 2)
    torch.testing.assert_close(auto.build(["acc_x", "acc_y"])(batch, torch.Generator().manual_seed(0)), batch)
    with pytest.raises(ValueError, match="none: set it to 0 or 'auto'"):
        Augmentation(rotation_deg=15).for_channels(["acc_x", "acc_y"])
    # Checked with the data config, before any data is loaded or any trial starts.
    DataConfig(channel_set=["acc_x", "acc_y"], augmentation={"rotation_deg": "auto"}).validate()
    with pytest.raises(ValueError, match="xyz channel triples"):
        DataConfig(channel_set=["acc_x", "acc_y"], augmentation={"rotation_deg": 15}).validate()
    with pytest.raises(ValueError, match="invalid trial config: augment rotation_deg=15 needs xyz channel triples"):
        validate_config({"channel_set": ["acc_x", "acc_y"], "augment_rotation_deg": 15})
    with pytest.raises(ValueError, match="rotation_deg"):
        Augmentation(rotation_deg="sometimes")


def test_the_loader_augments_training_batches_reproducibly():
    augment = Augmentation(noise_std=0.5).build([f"c{i}" for i in range(6)])
    loader = _loader(batch_size=50, augment=augment, seed=3)
    first = torch.cat([b[0] for b in loader])
    loader.set_epoch(0)
    replay = torch.cat([b[0] for b in loader])
    torch.testing.assert_close(first, replay)
    assert not torch.allclose(first, torch.cat([b[0] for b in loader]))
