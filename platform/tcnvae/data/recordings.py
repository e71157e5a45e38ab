"""`Recording`: one continuous stretch of sensor data with per-sample labels, as sources parse it.

Sources that ship continuous signals (HAPT, PAMAP2, WISDM, MHEALTH, the synthetic generator, user
arrays) produce recordings; :mod:`tcnvae.data.harmonise` turns them into windows at a common rate and
channel set. Every source converts to the canonical units on parse, so pooled data means one thing:

- ``acc_x``, ``acc_y``, ``acc_z``: total acceleration in g (gravity included);
- ``body_acc_x`` .. ``body_acc_z``: acceleration in g with gravity removed;
- ``gyro_x``, ``gyro_y``, ``gyro_z``: angular velocity in rad/s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tcnvae.data.taxonomy import label_space

STANDARD_GRAVITY = 9.80665  # m/s² per g
ACC = ["acc_x", "acc_y", "acc_z"]
BODY_ACC = ["body_acc_x", "body_acc_y", "body_acc_z"]
GYRO = ["gyro_x", "gyro_y", "gyro_z"]
UNLABELLED = -1


@dataclass
class Recording:
    signal: np.ndarray  # (T, C) float32, canonical units
    labels: np.ndarray  # (T,) int64, index into activity_names, UNLABELLED (-1) for none
    activity_names: list[str]
    channel_names: list[str]
    sample_rate: float  # Hz
    dataset: str
    subject: str  # globally unique: "dataset:id"
    attributes: dict[str, str] = field(default_factory=dict)  # e.g. placement, device
    source: str = ""  # file or description, for error messages

    def __post_init__(self) -> None:
        self.signal = np.asarray(self.signal, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.activity_names = list(self.activity_names)
        self.channel_names = list(self.channel_names)
        where = f" ({self.source})" if self.source else ""
        if self.signal.ndim != 2 or self.signal.shape[1] != len(self.channel_names):
            raise ValueError(
                f"recording signal{where} must be (time, {len(self.channel_names)}) for channels "
                f"{self.channel_names}, got shape {self.signal.shape}"
            )
        if self.labels.shape != (self.signal.shape[0],):
            raise ValueError(
                f"recording labels{where} have shape {self.labels.shape}, "
                f"expected ({self.signal.shape[0]},)"
            )
        if self.activity_names != label_space(self.activity_names):
            raise ValueError(f"activity_names{where} must be known activities in canonical order")
        if len(self.labels) and (
            self.labels.min() < UNLABELLED or self.labels.max() >= len(self.activity_names)
        ):
            raise ValueError(f"recording labels{where} out of range for {self.activity_names}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate{where} must be positive, got {self.sample_rate}")

    def __len__(self) -> int:
        return self.signal.shape[0]
