"""Is a gyroscope's scale right? A check against the accelerometer of the same IMU, for data whose
gyroscope may be amplified (HuGaDB: the authors report part of it "amplified 10 times").

Two signatures, each computed from one recording's own samples, so the check needs no list of bad
files and works on any copy of the data:

- **kinematic scale**: while the sensor tilts, the gravity direction ĝ measured by the (low-passed)
  accelerometer turns at exactly the angular speed the gyroscope measures about axes perpendicular to
  gravity: ``|dĝ/dt| = |ĝ × ω|`` for a correctly scaled gyroscope, as long as the low-passed
  acceleration is mostly gravity. That holds in gait (leg swings, sitting down, standing up), not in
  pedalling, whose steady centripetal acceleration bends ĝ, so the caller marks the samples to use.
  The ratio of the two medians over those samples, where ĝ turns, is about 1 for a sound gyroscope
  and the inverse of the amplification for an amplified one (samples near gyroscope full scale or
  accelerometer clipping are left out: clipping breaks the identity);
- **rest noise**: while the sensor is still in a posture the caller marks, a sound gyroscope reads its
  noise (a few deg/s at most); an amplified one reads that noise amplified.

The thresholds were set on HuGaDB, where the two signatures separate sound from amplified recordings
with a margin (figures in docs/datasets.md).

A recording is ``"amplified"`` when either signature says so, ``"sound"`` when one says sound and
none says amplified, and ``"undetermined"`` otherwise: neither measurable (too short, or too little
gait or stillness) or a value between the two bounds.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfiltfilt

SOUND, AMPLIFIED, UNDETERMINED = "sound", "amplified", "undetermined"
LOWPASS_HZ = 2.0  # keeps posture changes, drops most of the impact acceleration that bends ĝ
MOVING_RAD_S = 0.5  # gravity direction turning faster than this: a tilting sensor
STILL_RAD_S = 0.05
MIN_SECONDS = 2.0  # of moving (or still) samples for a signature to count
AMPLIFIED_BELOW = 0.35  # kinematic ratio: sound near 1, amplified near 1/amplification
SOUND_ABOVE = 0.5
# median |ω| at rest: sound gyroscopes read a few deg/s, amplified ones more; between the two bounds
# the noise alone decides nothing
REST_NOISE_SOUND_DPS = 2.5
REST_NOISE_AMPLIFIED_DPS = 3.7
CLIP_GUARD_S = 0.25  # samples this close to a clipped one are not used


def _near(mask: np.ndarray, radius: int) -> np.ndarray:
    """Samples within ``radius`` of a true sample of ``mask``."""
    kernel = np.ones(2 * radius + 1)
    return np.convolve(mask.astype(float), kernel, "same") > 0


def gyro_scale_signatures(
    acc_g: np.ndarray, gyro_dps: np.ndarray, sample_rate: float, *, acc_full_scale: float,
    gyro_full_scale: float, gait: np.ndarray, posture: np.ndarray,
) -> tuple[float, float]:
    """(kinematic ratio, rest noise in deg/s) of one recording; NaN where not measurable.

    ``gait`` marks the samples whose activity tilts the sensor by walking-like leg swings (where the
    kinematic identity is measured), ``posture`` those of still postures (where rest noise is).
    """
    length = len(acc_g)
    pad = min(length - 1, int(3 * sample_rate / LOWPASS_HZ))
    if length < MIN_SECONDS * sample_rate or pad < 1:
        return float("nan"), float("nan")
    sos = butter(2, LOWPASS_HZ, fs=sample_rate, output="sos")
    acc = sosfiltfilt(sos, acc_g.astype(np.float64), axis=0, padlen=pad)
    omega = sosfiltfilt(sos, np.deg2rad(gyro_dps.astype(np.float64)), axis=0, padlen=pad)
    norm = np.linalg.norm(acc, axis=1, keepdims=True)
    direction = acc / np.where(norm > 0, norm, 1.0)
    turning = np.linalg.norm(np.gradient(direction, axis=0), axis=1) * sample_rate
    perpendicular = np.linalg.norm(np.cross(direction, omega), axis=1)
    clipped = (np.abs(gyro_dps) >= 0.999 * gyro_full_scale).any(axis=1) | (
        np.abs(acc_g) >= 0.999 * acc_full_scale
    ).any(axis=1)
    usable = ~_near(clipped, int(CLIP_GUARD_S * sample_rate))
    needed = MIN_SECONDS * sample_rate
    moving = usable & gait & (turning > MOVING_RAD_S)
    ratio = (
        float(np.median(turning[moving]) / max(np.median(perpendicular[moving]), 1e-12))
        if moving.sum() >= needed else float("nan")
    )
    still = usable & posture & (turning < STILL_RAD_S)
    noise = (
        float(np.median(np.linalg.norm(gyro_dps[still], axis=1)))
        if still.sum() >= needed else float("nan")
    )
    return ratio, noise


def classify(ratio: float, noise: float) -> str:
    """SOUND, AMPLIFIED or UNDETERMINED from the two signatures (module docstring)."""
    if ratio < AMPLIFIED_BELOW or noise > REST_NOISE_AMPLIFIED_DPS:
        return AMPLIFIED
    if ratio > SOUND_ABOVE or noise < REST_NOISE_SOUND_DPS:
        return SOUND
    return UNDETERMINED
