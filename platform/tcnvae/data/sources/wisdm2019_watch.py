"""WISDM 2019, the watch: an LG G Watch (Android Wear 1.5) on the dominant wrist, accelerometer and
gyroscope, about 20.03 Hz measured (20 Hz nominal; stretches delivered at about 100 Hz were
decimated). The shared copy holds 46 people (all but 1629 and 1637-1640).

Read from ``wisdm2019_watch_raw.npz`` or the official ``wisdm-dataset`` folder
(``raw/watch/accel/data_<subject>_accel_watch.txt`` and ``raw/watch/gyro/...``). Channels acc_x..z
(g) and gyro_x..z (rad/s); attributes ``placement="wrist"``, ``device="watch"``. Formats, units,
clipping and the activity mapping (C "stairs" stays ``stairs``: up and down are not told apart) are
described in :mod:`tcnvae.data.sources.wisdm2019`.
"""

from __future__ import annotations

from tcnvae.data.sources import wisdm2019

DEVICE = wisdm2019.WATCH
NAME = DEVICE.source
SAMPLE_RATE = wisdm2019.NOMINAL_RATE
SAME_PEOPLE_AS = ("wisdm2019_phone",)  # phone and watch were worn at once: wisdm2019_watch:1600 is wisdm2019_phone:1600
ACTIVITY_MAP = wisdm2019.ACTIVITY_MAP
ARCHIVE = wisdm2019.ARCHIVE
load = wisdm2019.loader(DEVICE)
