"""Seeded augmentations of training batches (B, T, C): noise, gain, sensor rotation, time warping.

Each one imitates a real nuisance the model should be robust to: sensor noise, per-axis gain error,
a device worn at a slightly different angle, a person moving a little faster or slower. Rotation and
gain act on physical units, so when the batch is standardised the augmenter undoes the
standardisation first (given the training mean and std) and redoes it afterwards; a rotation then
turns each sensor's xyz triple (acc, body acc, gyro alike, by the same rotation per window) exactly as
turning the device would. Noise is in units of each channel's training std.

Rotation may be ``"sphere"``: every window turned to an orientation drawn uniformly over all of them
(Haar measure on SO(3), from a uniformly random unit quaternion), so gravity lands anywhere on the sphere
with equal chance. An angle of 180 is not that: it draws the angle uniformly, which leaves gravity within
30° of where it was in about a quarter of windows (uniform orientations: one in fifteen).

Rotation may be ``"auto"``: :data:`AUTO_ROTATION_DEG` where the channels hold xyz triples, none where
they do not (a channel subset such as ``["acc_x", "acc_y"]`` has no sensor to turn). An explicit angle on
channels without a triple is an error (:meth:`Augmentation.for_channels`), raised when the data config
is checked, before any training starts.

Randomness comes only from the ``torch.Generator`` passed in, so a loader seeding one per epoch makes
augmented epochs reproducible.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import torch

AUTO = "auto"
SPHERE = "sphere"
ROTATION_WORDS = (AUTO, SPHERE)
AUTO_ROTATION_DEG = 15.0
"""What ``rotation_deg="auto"`` turns on where there are xyz triples: a device worn up to 15° off.
Measured on HAPT by subject and UCI-HAR official (docs/results.md, "Rotation and weight averaging")."""


@dataclass
class Augmentation:
    """Which augmentations to apply and how strongly; all zero (the default) means none."""

    noise_std: float = 0.0  # Gaussian noise, in units of each channel's training std
    scale_std: float = 0.0  # spread of a per-window, per-channel gain around 1
    rotation_deg: float | str = 0.0  # largest angle of the random rotation of each window, AUTO or SPHERE
    time_warp: float = 0.0  # largest relative change of playback speed within a window

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "rotation_deg" and value in ROTATION_WORDS:
                continue
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                also = f", {AUTO!r} or {SPHERE!r}" if item.name == "rotation_deg" else ""
                raise ValueError(f"augmentation {item.name} must be a finite number >= 0{also}, got {value!r}")
        if self.rotation_deg not in ROTATION_WORDS and self.rotation_deg > 180:
            raise ValueError(f"rotation_deg must be at most 180 (or {SPHERE!r}: uniformly random orientations), "
                             f"got {self.rotation_deg}")
        if self.time_warp >= 1:
            raise ValueError(f"time_warp must be below 1 (speed stays positive), got {self.time_warp}")

    @property
    def active(self) -> bool:
        """Whether anything may be applied (an ``"auto"`` rotation counts: the channels decide)."""
        return any(getattr(self, item.name) in ROTATION_WORDS or getattr(self, item.name) > 0 for item in fields(self))

    def for_channels(self, channel_names: list[str]) -> Augmentation:
        """These settings for data with ``channel_names``: an ``"auto"`` rotation resolved to
        :data:`AUTO_ROTATION_DEG` or 0 by whether they hold an xyz triple; an explicit rotation on
        channels without one raises a ValueError naming the fix."""
        triples = xyz_triples(list(channel_names))
        if self.rotation_deg == AUTO:
            return replace(self, rotation_deg=AUTO_ROTATION_DEG if triples else 0.0)
        if (self.rotation_deg == SPHERE or self.rotation_deg > 0) and not triples:
            angle = self.rotation_deg if self.rotation_deg == SPHERE else f"{self.rotation_deg:g}"
            raise ValueError(f"augment rotation_deg={angle} needs xyz channel triples (e.g. acc_x, "
                             f"acc_y, acc_z), and channels {list(channel_names)} have none: set it to 0 or "
                             f"{AUTO!r} (rotates only data that has triples), or use a channel set with whole triples")
        return self

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> Augmentation:
        values = dict(values or {})
        unknown = sorted(set(values) - {item.name for item in fields(cls)})
        if unknown:
            raise ValueError(
                f"unknown augmentation options {unknown}; known: {[item.name for item in fields(cls)]}"
            )
        return cls(**values)

    def build(
        self,
        channel_names: list[str],
        mean: np.ndarray | list[float] | None = None,
        std: np.ndarray | list[float] | None = None,
    ) -> BatchAugmenter:
        """An augmenter for batches with ``channel_names``, standardised by ``mean``/``std`` if given."""
        return BatchAugmenter(self, channel_names, mean, std)


def xyz_triples(channel_names: list[str]) -> list[list[int]]:
    """Indices of channel triples ``<sensor>_x, <sensor>_y, <sensor>_z`` (one physical sensor each)."""
    triples = []
    for i, name in enumerate(channel_names):
        if name.endswith("_x"):
            stem = name[:-2]
            if f"{stem}_y" in channel_names and f"{stem}_z" in channel_names:
                triples.append([i, channel_names.index(f"{stem}_y"), channel_names.index(f"{stem}_z")])
    return triples


def random_rotations(
    count: int, max_deg: float, generator: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(count, 3, 3) rotations about uniformly random axes by angles uniform in [-max_deg, max_deg]."""
    axis = torch.randn(count, 3, generator=generator, device=device)
    axis = axis / axis.norm(dim=1, keepdim=True).clamp_min(1e-12)
    angle = (torch.rand(count, generator=generator, device=device) * 2 - 1) * math.radians(max_deg)
    x, y, z = axis.unbind(1)
    zero = torch.zeros_like(x)
    cross = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=1).reshape(count, 3, 3)
    eye = torch.eye(3, device=device).expand(count, 3, 3)
    sin, cos = angle.sin()[:, None, None], angle.cos()[:, None, None]
    return eye + sin * cross + (1 - cos) * (cross @ cross)  # Rodrigues' formula


def uniform_rotations(count: int, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
    """(count, 3, 3) rotations uniformly distributed over all orientations (Haar measure): the rotations of
    unit quaternions drawn uniformly on the 3-sphere (a normalised 4-d Gaussian)."""
    quaternion = torch.randn(count, 4, generator=generator, device=device)
    w, x, y, z = (quaternion / quaternion.norm(dim=1, keepdim=True).clamp_min(1e-12)).unbind(1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], dim=1).reshape(count, 3, 3)


def time_warp(batch: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Replay each window at a smoothly varying speed within 1 ± ``strength``, same length."""
    count, length, channels = batch.shape
    device = batch.device
    t = torch.linspace(0, 1, length, device=device)
    cycles = 0.5 + 1.5 * torch.rand(count, 1, generator=generator, device=device)
    phase = 2 * math.pi * torch.rand(count, 1, generator=generator, device=device)
    speed = 1 + strength * torch.sin(2 * math.pi * cycles * t + phase)
    position = torch.cumsum(speed, dim=1) - speed[:, :1]
    position = position / position[:, -1:].clamp_min(1e-9) * (length - 1)
    left = position.floor().long().clamp(0, length - 2)
    frac = (position - left).unsqueeze(-1)
    index = left.unsqueeze(-1).expand(-1, -1, channels)
    return torch.gather(batch, 1, index) * (1 - frac) + torch.gather(batch, 1, index + 1) * frac


class BatchAugmenter:
    """Applies an :class:`Augmentation` to (B, T, C) batches; see the module docstring for units."""

    def __init__(
        self,
        config: Augmentation,
        channel_names: list[str],
        mean: np.ndarray | list[float] | None = None,
        std: np.ndarray | list[float] | None = None,
    ) -> None:
        self.config = config.for_channels(channel_names)
        self.channel_names = list(channel_names)
        self.triples = xyz_triples(self.channel_names)
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std (the training standardisation) or neither")
        channels = len(self.channel_names)
        self.mean = torch.zeros(channels) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        self.std = torch.ones(channels) if std is None else torch.as_tensor(std, dtype=torch.float32)
        if self.mean.shape != (channels,) or self.std.shape != (channels,):
            raise ValueError(f"mean and std must have {channels} entries, one per channel")

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if batch.ndim != 3 or batch.shape[2] != len(self.channel_names):
            raise ValueError(
                f"batch must be (B, T, {len(self.channel_names)}), got {tuple(batch.shape)}"
            )
        config, device = self.config, batch.device
        if not config.active or len(batch) == 0:  # resolved: no "auto" is left
            return batch
        mean, std = self.mean.to(device), self.std.to(device)
        physical = batch * std + mean
        if config.rotation_deg == SPHERE or config.rotation_deg > 0:
            rotation = (uniform_rotations(len(batch), generator, device) if config.rotation_deg == SPHERE else
                        random_rotations(len(batch), config.rotation_deg, generator, device))
            rotated = physical.clone()
            for triple in self.triples:
                rotated[:, :, triple] = physical[:, :, triple] @ rotation.transpose(1, 2)
            physical = rotated
        if config.scale_std > 0:
            gain = 1 + config.scale_std * torch.randn(
                len(batch), 1, batch.shape[2], generator=generator, device=device
            )
            physical = physical * gain
        if config.time_warp > 0:
            physical = time_warp(physical, config.time_warp, generator)
        out = (physical - mean) / std
        if config.noise_std > 0:
            out = out + config.noise_std * torch.randn(
                out.shape, generator=generator, device=device
            )
        return out
