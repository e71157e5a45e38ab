"""WISDM 2019, the phone: a Google Nexus 5/5X or Samsung Galaxy S5/S6 (Android 6) in the trousers
pocket, accelerometer and gyroscope, about 19.86 Hz measured (20 Hz nominal). The shared copy holds
21 people (1600, 1604, 1606, ...: the others' phone files were missing from the copy it came from).

Read from ``wisdm2019_phone_raw.npz`` or the official ``wisdm-dataset`` folder
(``raw/phone/accel/data_<subject>_accel_phone.txt`` and ``raw/phone/gyro/...``). Channels acc_x..z
(g) and gyro_x..z (rad/s); attributes ``placement="pocket"``, ``device="phone"``. Formats, units,
clipping and the activity mapping (C "stairs" stays ``stairs``: up and down are not told apart) are
described in :mod:`tcnvae.data.sources.wisdm2019`.
"""

from __future__ import annotations

from tcnvae.data.sources import wisdm2019

DEVICE = wisdm2019.PHONE
NAME = DEVICE.source
SAMPLE_RATE = wisdm2019.NOMINAL_RATE
ACTIVITY_MAP = wisdm2019.ACTIVITY_MAP
ARCHIVE = wisdm2019.ARCHIVE
load = wisdm2019.loader(DEVICE)
