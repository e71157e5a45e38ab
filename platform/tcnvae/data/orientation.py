"""Inputs that do not depend on how a device is worn: gravity-aligned windows and magnitude channels.

Pooled datasets hold their phones and watches in different places and at different angles (a trousers
pocket, a wrist, a waist belt, a shin), so the same movement reaches each sensor's axes differently.
Two data settings remove part of that (docs/cross_dataset.md cites the literature):

- ``gravity_align``: each window is rotated so that its mean acceleration (gravity, for a window of
  ordinary movement) points along +z; every xyz triple of the window (acc, body_acc, gyro) turns by that
  same rotation, as turning the device would. What is left of the device's orientation is the heading,
  a turn about the vertical that gravity cannot show.
- ``magnitude_channels``: the norm of each xyz triple is added as a channel (``acc_mag``, ``gyro_mag``,
  ``body_acc_mag``), which no rotation changes.

Both act on windows in physical units, before standardisation, the same way in training
(:func:`tcnvae.data.pipeline.prepare`) and in prediction (:mod:`tcnvae.predict`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from tcnvae.data.augment import xyz_triples
from tcnvae.data.recordings import ACC

MAGNITUDE_SUFFIX = "_mag"
UP = np.array([0.0, 0.0, 1.0])
MIN_GRAVITY = 1e-6
"""A window whose mean acceleration is shorter than this (g) has no direction to align: left as it is."""


def magnitude_names(channel_names: Sequence[str]) -> list[str]:
    """The magnitude channels of ``channel_names``' xyz triples, in triple order (``acc_x`` … → ``acc_mag``)."""
    names = list(channel_names)
    return [names[triple[0]][:-2] + MAGNITUDE_SUFFIX for triple in xyz_triples(names)]


def input_channels(channel_names: Sequence[str], magnitude_channels: bool) -> list[str]:
    """The channels a model reads: ``channel_names``, then their magnitudes when asked for."""
    return list(channel_names) + (magnitude_names(channel_names) if magnitude_channels else [])


def check_orientation_settings(channel_names: Sequence[str], *, gravity_align: bool, magnitude_channels: bool) -> None:
    """Raise a ValueError naming the fix when the channels cannot carry these settings."""
    names = list(channel_names)
    if magnitude_channels and not xyz_triples(names):
        raise ValueError(f"magnitude_channels=True needs xyz channel triples (e.g. acc_x, acc_y, acc_z), and channels "
                         f"{names} have none: set it to False or use a channel set with whole triples")
    if gravity_align and not set(ACC) <= set(names):
        raise ValueError(f"gravity_align=True needs total acceleration {', '.join(ACC)} (gravity included) to find "
                         f"down, and channels {names} lack it: set it to False or use a channel set with acc "
                         "(e.g. acc_gyro)")


def gravity_rotations(acc: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotations taking each window's mean acceleration (``acc`` (N, T, 3)) to +z: the shortest
    turn that does it (about the axis perpendicular to both), so the heading is left as it was."""
    mean = acc.astype(np.float64).mean(axis=1)
    length = np.linalg.norm(mean, axis=1)
    direction = mean / np.maximum(length, MIN_GRAVITY)[:, None]
    axis = np.cross(direction, UP)
    sine = np.linalg.norm(axis, axis=1)
    angle = np.arctan2(sine, direction @ UP)
    # Upside down (gravity along -z) the axis is undefined: any horizontal axis turns it up; x is taken.
    axis = np.where((sine < 1e-12)[:, None], [[1.0, 0.0, 0.0]], axis / np.maximum(sine, 1e-12)[:, None])
    angle = np.where(length < MIN_GRAVITY, 0.0, angle)
    return Rotation.from_rotvec(axis * angle[:, None]).as_matrix()


def gravity_aligned(signals: np.ndarray, channel_names: Sequence[str]) -> np.ndarray:
    """Windows (N, T, C) with every xyz triple turned by the rotation that takes the window's mean
    acceleration to +z (:func:`gravity_rotations`)."""
    names = list(channel_names)
    acc = signals[..., [names.index(name) for name in ACC]]
    rotations = gravity_rotations(acc)
    aligned = signals.astype(np.float32, copy=True)
    for triple in xyz_triples(names):
        aligned[..., triple] = np.einsum("nij,ntj->nti", rotations, signals[..., triple].astype(np.float64))
    return aligned


def with_magnitudes(signals: np.ndarray, channel_names: Sequence[str]) -> np.ndarray:
    """Windows (..., T, C) with each xyz triple's norm appended, in :func:`magnitude_names` order."""
    norms = [np.linalg.norm(signals[..., triple], axis=-1) for triple in xyz_triples(list(channel_names))]
    return np.concatenate([signals, np.stack(norms, axis=-1)], axis=-1).astype(np.float32)


def orient(signals: np.ndarray, channel_names: Sequence[str], *, gravity_align: bool = False,
           magnitude_channels: bool = False) -> tuple[np.ndarray, list[str]]:
    """Windows (N, T, C) in physical units as the settings ask (gravity-aligned, then magnitudes appended),
    and their channel names."""
    check_orientation_settings(channel_names, gravity_align=gravity_align, magnitude_channels=magnitude_channels)
    if gravity_align and len(signals):
        signals = gravity_aligned(signals, channel_names)
    if magnitude_channels:
        signals = with_magnitudes(signals, channel_names)
    return signals, input_channels(channel_names, magnitude_channels)
