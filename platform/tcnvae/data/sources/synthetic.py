"""The built-in data set: plausible inertial recordings from a small generative model of movement.

It exists so that the whole platform (windowing, splits, training, search, curricula) runs and is
tested without downloads, on data that behaves like the real thing where it matters:

- Static postures (lying, sitting, standing) are gravity seen at a posture-specific trunk angle, with
  slow sway and sensor noise; sitting and standing differ by a few degrees, as for a waist sensor.
- Locomotion (walking, stairs, running, cycling, nordic walking, rope jumping) is periodic motion at an
  activity-specific cadence with harmonics for heel strikes, stride-rate sway, and trunk rotations whose
  angular velocity is what the gyroscope reads, so acceleration and gyro describe one movement.
- Subjects vary in cadence, amplitude, posture angles and gait signature (harmonic phases).
- Domains stand in for datasets and differ as datasets do: sensor placement (a 3D rotation and a
  motion gain), native sampling rate, per-axis gain, bias and noise level. A classifier that leans on
  axis-specific features learnt on some domains loses accuracy on another, which is the shift the
  adversarial domain head of the model is there to remove.

Recordings are one per subject: every activity once, in random order, joined by 2 s transitions that
are labelled ``postural_transition`` between two static postures (when that activity is requested)
and unlabelled otherwise. ``Recording.dataset`` is the domain name ("synthetic_a", ...), so
"domain = dataset" works as for real data; subjects are "synthetic_a:3".

Body frame: x forward, y left, z up. The accelerometer reads specific force in g (+1 g along z when
upright and still); the gyroscope reads the body's angular velocity in rad/s.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

import numpy as np

from tcnvae.data.recordings import ACC, GYRO, UNLABELLED, Recording
from tcnvae.data.taxonomy import label_space

NAME = "synthetic"
SAMPLE_RATE = 50.0  # nominal; each domain records at its own native rate (DOMAIN_RATES)

DEFAULT_ACTIVITIES = [
    "lying",
    "sitting",
    "standing",
    "walking",
    "ascending_stairs",
    "descending_stairs",
    "running",
    "cycling",
]
DOMAIN_RATES = (50.0, 100.0, 20.0, 32.0)
TRANSITION_SECONDS = 2.0
FADE_SECONDS = 0.5  # movement ramps up at the start of an activity and down at its end


@dataclass(frozen=True)
class Motion:
    """Posture and periodic movement of one activity, before subject and domain variation.

    ``acc`` and ``rotation`` list (harmonic of the cadence, axis, amplitude): linear acceleration in g
    along body axes (0 forward, 1 left, 2 up), and trunk rotation in degrees about them (roll, pitch,
    yaw). Harmonic 0.5 is stride rate (left-right alternation), 1 step rate, higher ones impacts.
    """

    pitch_deg: float  # trunk lean, positive forward
    pitch_spread_deg: float  # across subjects
    cadence_hz: float
    acc: tuple[tuple[float, int, float], ...] = ()
    rotation: tuple[tuple[float, int, float], ...] = ()
    sway_deg: float = 0.0  # slow postural sway
    vibration_g: float = 0.0  # broadband, e.g. road vibration on a bike
    roll_spread_deg: float = 3.0


MOTIONS: dict[str, Motion] = {
    "lying": Motion(-84.0, 5.0, 0.0, sway_deg=0.3, roll_spread_deg=35.0),
    "sitting": Motion(-12.0, 6.0, 0.0, sway_deg=0.5),
    "standing": Motion(-2.0, 4.0, 0.0, sway_deg=0.8),
    "walking": Motion(
        3.0, 3.0, 1.85,
        acc=((1, 2, 0.22), (2, 2, 0.08), (3, 2, 0.03), (1, 0, 0.12), (2, 0, 0.05), (0.5, 1, 0.08)),
        rotation=((0.5, 0, 3.0), (1, 1, 2.0), (0.5, 2, 4.0)),
    ),
    "ascending_stairs": Motion(
        9.0, 4.0, 1.45,
        acc=((1, 2, 0.18), (2, 2, 0.10), (3, 2, 0.02), (1, 0, 0.10), (2, 0, 0.03), (0.5, 1, 0.10)),
        rotation=((0.5, 0, 4.0), (1, 1, 3.0), (0.5, 1, 1.5), (0.5, 2, 3.0)),
    ),
    "descending_stairs": Motion(
        -2.0, 4.0, 1.75,
        acc=(
            (1, 2, 0.28), (2, 2, 0.14), (3, 2, 0.08), (4, 2, 0.04),
            (1, 0, 0.10), (2, 0, 0.05), (0.5, 1, 0.10),
        ),
        rotation=((0.5, 0, 3.5), (1, 1, 2.5), (0.5, 2, 3.5)),
    ),
    "running": Motion(
        8.0, 3.0, 2.7,
        acc=((1, 2, 0.90), (2, 2, 0.35), (3, 2, 0.15), (1, 0, 0.30), (2, 0, 0.10), (0.5, 1, 0.20)),
        rotation=((0.5, 0, 6.0), (1, 1, 4.0), (0.5, 2, 8.0)),
    ),
    "cycling": Motion(
        20.0, 6.0, 1.15,
        acc=((1, 2, 0.04), (2, 2, 0.03), (1, 0, 0.03), (1, 1, 0.06)),
        rotation=((1, 0, 4.0), (1, 1, 1.0), (1, 2, 2.5)),
        vibration_g=0.04,
    ),
    "nordic_walking": Motion(
        6.0, 3.0, 1.9,
        acc=((1, 2, 0.28), (2, 2, 0.10), (1, 0, 0.20), (2, 0, 0.06), (0.5, 1, 0.12)),
        rotation=((0.5, 0, 5.0), (1, 1, 3.0), (0.5, 2, 9.0)),
    ),
    "rope_jumping": Motion(
        0.0, 3.0, 2.3,
        acc=((1, 2, 1.30), (2, 2, 0.60), (3, 2, 0.30), (1, 0, 0.10), (1, 1, 0.05)),
        rotation=((1, 1, 3.0), (1, 0, 2.0)),
    ),
}
STATIC = {name for name, motion in MOTIONS.items() if motion.cadence_hz == 0.0}
SUPPORTED = label_space(list(MOTIONS) + ["postural_transition"])

# Where the sensor sits: rotation from body to sensor axes (roll, pitch, yaw in degrees) and how much
# of the trunk's movement reaches it (limbs swing more than the waist).
PLACEMENTS: tuple[tuple[str, tuple[float, float, float], float], ...] = (
    ("waist", (0.0, 0.0, 0.0), 1.0),
    ("chest", (0.0, 25.0, 90.0), 0.85),
    ("pocket", (90.0, 0.0, 30.0), 1.35),
    ("wrist", (-70.0, 40.0, 160.0), 1.5),
)


@dataclass(frozen=True)
class Domain:
    """A synthetic 'dataset': one placement and one device, shared by all its subjects."""

    name: str
    placement: str
    sample_rate: float
    rotation: np.ndarray  # (3, 3), body axes -> sensor axes
    motion_gain: float
    gain: np.ndarray  # (6,) per-axis gain, acc then gyro
    bias: np.ndarray  # (6,) g and rad/s
    noise: np.ndarray  # (6,) standard deviation, g and rad/s


def _rotation(roll_deg: float, pitch_deg: float, yaw_deg: float) -> np.ndarray:
    r, p, y = np.radians([roll_deg, pitch_deg, yaw_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(r), -np.sin(r)], [0, np.sin(r), np.cos(r)]])
    ry = np.array([[np.cos(p), 0, np.sin(p)], [0, 1, 0], [-np.sin(p), 0, np.cos(p)]])
    rz = np.array([[np.cos(y), -np.sin(y), 0], [np.sin(y), np.cos(y), 0], [0, 0, 1]])
    return rz @ ry @ rx


def domain_name(index: int) -> str:
    """"synthetic_a", "synthetic_b", ..., "synthetic_z", "synthetic_aa", ..."""
    letters = string.ascii_lowercase
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = letters[rest] + name
    return f"{NAME}_{name}"


def make_domain(seed: int, index: int) -> Domain:
    """Domain ``index`` under ``seed``: independent of how many domains are generated."""
    rng = np.random.default_rng([seed, 1, index])
    placement, angles, motion_gain = PLACEMENTS[index % len(PLACEMENTS)]
    mounting = _rotation(*rng.normal(0.0, 8.0, size=3))  # no two devices sit exactly alike
    acc_noise, gyro_noise = rng.uniform([0.01, 0.01], [0.05, 0.06])
    return Domain(
        name=domain_name(index),
        placement=placement,
        sample_rate=DOMAIN_RATES[index % len(DOMAIN_RATES)],
        rotation=mounting @ _rotation(*angles),
        motion_gain=motion_gain,
        gain=rng.normal(1.0, 0.04, size=6),
        bias=np.concatenate([rng.normal(0, 0.03, 3), rng.normal(0, 0.02, 3)]),
        noise=np.array([acc_noise] * 3 + [gyro_noise] * 3),
    )


def _slow_wave(rng: np.random.Generator, t: np.ndarray, max_hz: float) -> np.ndarray:
    """A smooth random curve of unit-ish amplitude: a few slow sinusoids of random phase."""
    freqs = rng.uniform(0.05, max_hz, size=3)
    phases = rng.uniform(0, 2 * np.pi, size=3)
    return np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None]).sum(0) / np.sqrt(1.5)


@dataclass(frozen=True)
class Subject:
    """How one person moves: their departures from the activity templates in MOTIONS."""

    cadence: float  # factor on every activity's cadence
    amplitude: float  # factor on movement amplitude
    pitch_offset: dict[str, float]  # per activity, degrees
    roll_offset: dict[str, float]
    phases: dict[str, np.ndarray]  # gait signature: a phase per harmonic component
    component_gain: dict[str, np.ndarray]


def _make_subject(rng: np.random.Generator, moving: list[str]) -> Subject:
    return Subject(
        cadence=float(rng.normal(1.0, 0.07)),
        amplitude=float(rng.lognormal(0.0, 0.15)),
        pitch_offset={a: float(rng.normal(0, MOTIONS[a].pitch_spread_deg)) for a in moving},
        roll_offset={a: float(rng.normal(0, MOTIONS[a].roll_spread_deg)) for a in moving},
        phases={
            a: rng.uniform(0, 2 * np.pi, len(MOTIONS[a].acc) + len(MOTIONS[a].rotation)) for a in moving
        },
        component_gain={
            a: rng.lognormal(0.0, 0.2, len(MOTIONS[a].acc) + len(MOTIONS[a].rotation)) for a in moving
        },
    )


def _activity_segment(
    rng: np.random.Generator, activity: str, subject: Subject, t: np.ndarray, motion_gain: float
) -> tuple[np.ndarray, np.ndarray]:
    """Trunk angles (T, 3) in radians and linear acceleration (T, 3) in g for one activity."""
    motion = MOTIONS[activity]
    angles = np.zeros((len(t), 3))
    linear = np.zeros((len(t), 3))
    angles[:, 0] = subject.roll_offset[activity] + motion.sway_deg * _slow_wave(rng, t, 0.5)
    angles[:, 1] = (
        motion.pitch_deg + subject.pitch_offset[activity] + motion.sway_deg * _slow_wave(rng, t, 0.5)
    )
    angles[:, 2] = motion.sway_deg * _slow_wave(rng, t, 0.3)
    if motion.cadence_hz:
        cadence = motion.cadence_hz * subject.cadence * (1 + 0.03 * _slow_wave(rng, t, 0.2))
        phase = 2 * np.pi * np.cumsum(cadence) * (t[1] - t[0] if len(t) > 1 else 0.0)
        phase += rng.uniform(0, 2 * np.pi)
        fade = np.clip(np.minimum(t - t[0], t[-1] - t) / FADE_SECONDS, 0, 1)
        envelope = subject.amplitude * motion_gain * fade * (1 + 0.1 * _slow_wave(rng, t, 0.3))
        offsets = subject.phases[activity]
        gains = subject.component_gain[activity]
        for i, (harmonic, axis, amplitude) in enumerate(motion.acc):
            wave = np.sin(harmonic * phase + offsets[i])
            linear[:, axis] += gains[i] * amplitude * envelope * wave
        for j, (harmonic, axis, amplitude) in enumerate(motion.rotation, start=len(motion.acc)):
            wave = np.sin(harmonic * phase + offsets[j])
            angles[:, axis] += gains[j] * amplitude * envelope * wave
    if motion.vibration_g:
        linear += rng.normal(0, motion.vibration_g * motion_gain, size=linear.shape)
    return np.radians(angles), linear


def _transition(
    rng: np.random.Generator, start: np.ndarray, end: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth change of trunk angle from ``start`` to ``end`` with a push of body acceleration."""
    progress = (1 - np.cos(np.pi * (t - t[0]) / max(t[-1] - t[0], 1e-9))) / 2
    angles = start[None, :] + (end - start)[None, :] * progress[:, None]
    push = np.sin(np.pi * progress)[:, None] * rng.normal(0, 0.12, size=3)[None, :]
    return angles, push


def _sensor_readings(angles: np.ndarray, linear: np.ndarray, sample_rate: float) -> np.ndarray:
    """Specific force (g) and angular velocity (rad/s) in body axes from trunk angles and motion."""
    roll, pitch, yaw = angles.T
    gravity = np.stack(
        [-np.sin(pitch), np.sin(roll) * np.cos(pitch), np.cos(roll) * np.cos(pitch)], axis=1
    )
    d_roll, d_pitch, d_yaw = np.gradient(angles, 1.0 / sample_rate, axis=0).T
    gyro = np.stack(
        [
            d_roll - d_yaw * np.sin(pitch),
            d_pitch * np.cos(roll) + d_yaw * np.cos(pitch) * np.sin(roll),
            -d_pitch * np.sin(roll) + d_yaw * np.cos(pitch) * np.cos(roll),
        ],
        axis=1,
    )
    return np.concatenate([linear + gravity, gyro], axis=1)


def _record_subject(
    seed: int,
    domain_index: int,
    subject_index: int,
    domain: Domain,
    activities: list[str],
    seconds_per_activity: float,
) -> Recording:
    rng = np.random.default_rng([seed, 2, domain_index, subject_index])
    names = label_space(activities)
    moving = [a for a in names if a in MOTIONS]
    subject = _make_subject(rng, moving)
    subject_mounting = _rotation(*rng.normal(0.0, 4.0, size=3))  # the strap sits a little differently
    rate = domain.sample_rate
    order = [moving[i] for i in rng.permutation(len(moving))]
    segment_time = np.arange(int(round(seconds_per_activity * rate))) / rate
    transition_time = np.arange(int(round(TRANSITION_SECONDS * rate))) / rate
    segments = [_activity_segment(rng, a, subject, segment_time, domain.motion_gain) for a in order]
    angle_parts, linear_parts, label_parts = [], [], []
    for i, (activity, (angles, linear)) in enumerate(zip(order, segments, strict=True)):
        if i:
            previous = order[i - 1]
            turn, push = _transition(rng, segments[i - 1][0][-1], angles[0], transition_time)
            both_static = previous in STATIC and activity in STATIC
            label = (
                names.index("postural_transition")
                if both_static and "postural_transition" in names
                else UNLABELLED
            )
            angle_parts.append(turn)
            linear_parts.append(push)
            label_parts.append(np.full(len(transition_time), label))
        angle_parts.append(angles)
        linear_parts.append(linear)
        label_parts.append(np.full(len(segment_time), names.index(activity)))
    body = _sensor_readings(np.concatenate(angle_parts), np.concatenate(linear_parts), rate)
    placement = domain.rotation @ subject_mounting
    sensor = np.concatenate([body[:, :3] @ placement.T, body[:, 3:] @ placement.T], axis=1)
    sensor = sensor * domain.gain + domain.bias + rng.normal(0, 1, sensor.shape) * domain.noise
    return Recording(
        signal=sensor.astype(np.float32),
        labels=np.concatenate(label_parts),
        activity_names=names,
        channel_names=ACC + GYRO,
        sample_rate=rate,
        dataset=domain.name,
        subject=f"{domain.name}:{subject_index + 1}",
        attributes={"placement": domain.placement},
        source=f"synthetic(seed={seed}, domain={domain.name}, subject={subject_index + 1})",
    )


def load(
    path: str | None = None,
    *,
    seed: int = 0,
    num_domains: int = 4,
    subjects_per_domain: int = 6,
    seconds_per_activity: float = 20.0,
    activities: list[str] | None = None,
    **_: Any,
) -> list[Recording]:
    """Generate one recording per subject for ``num_domains`` domains; deterministic under ``seed``.

    ``path`` is accepted for the source protocol and ignored (nothing is read from disk). The
    defaults (4 domains x 6 subjects x 8 activities x 20 s) give about 2,700 windows of 2.56 s.
    """
    chosen = DEFAULT_ACTIVITIES if activities is None else list(activities)
    unsupported = sorted(set(chosen) - set(SUPPORTED))
    if unsupported:
        raise ValueError(
            f"the synthetic source cannot generate {unsupported}; it knows {', '.join(SUPPORTED)}"
        )
    if not any(a in MOTIONS for a in chosen):
        raise ValueError(f"activities {chosen} contain no activity to record besides transitions")
    if num_domains < 1 or subjects_per_domain < 1:
        raise ValueError(
            f"num_domains ({num_domains}) and subjects_per_domain ({subjects_per_domain}) must be >= 1"
        )
    if seconds_per_activity <= 2 * FADE_SECONDS:
        raise ValueError(
            f"seconds_per_activity must exceed {2 * FADE_SECONDS} s, got {seconds_per_activity}"
        )
    recordings = []
    for d in range(num_domains):
        domain = make_domain(seed, d)
        for s in range(subjects_per_domain):
            recordings.append(_record_subject(seed, d, s, domain, chosen, seconds_per_activity))
    return recordings
