"""Meaning checks: what a well-formed dataset can still get wrong, refused before any window is cut.

A file can have every field the format asks for and still mean something other than it says:
acceleration in m/s² where g is expected, angular velocity in deg/s, a sample period where a rate
belongs, two label codes under one name, an array transposed, no labelled sample at all, one activity
or one person, or two datasets that recorded the same people. Every source, built in or a user's,
goes through these checks in :func:`tcnvae.data.pipeline.prepare` (so before Ray starts); each
refusal names the problem and the fix, each warning names the recordings or people concerned.
``predict`` applies the same unit and rate checks to what it is given.

**The same people in two datasets.** HAPT holds the continuous recordings behind UCI-HAR's windows
(the same 30 people under the same ids), and WISDM 2019's phone and watch were worn at once by the
same people. A source module declares this with ``SAME_PEOPLE_AS`` (the datasets whose subject ids
name the same people as its own); a user declares it with the data setting ``same_people``
(``{dataset: dataset whose people it recorded}``, e.g. ``--set 'same_people={"watch": "phone"}'``).
Pooled, such datasets are split as one set of people: ``hapt:7`` is split as ``uci_har:7``, so each
person's windows of both datasets land on one side, and the fractions count people, not ids. A split
that tests on one of them while training on the other (``lodo:hapt`` beside ``uci_har``) is refused.
Subject ids shared by a user's dataset and another without a declaration get a warning naming them.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from os import PathLike
from typing import TYPE_CHECKING, Any

import numpy as np

from tcnvae.data.recordings import ACC, BODY_ACC, GYRO, STANDARD_GRAVITY, UNLABELLED, Recording
from tcnvae.data.sources import SOURCES, source_module
from tcnvae.data.windows import WindowSet

if TYPE_CHECKING:
    from tcnvae.data.pipeline import DataConfig, PreparedData

logger = logging.getLogger(__name__)

ACC_MS2_MEDIAN = (4.0, 20.0)
"""Median |total acceleration| in this range means m/s² (in g it is about 1: gravity)."""
BODY_ACC_MS2_P99 = 8.0
GYRO_DEGREES_P99 = 20.0
"""99th percentile |angular velocity| above this many rad/s (over 1100 deg/s) means deg/s."""
SAMPLE_RATE_RANGE = (2.0, 10_000.0)
"""Hz. Activity sensors sample at tens of Hz (a few hundred at most); a rate outside this range is a
period (0.02), a rate in kHz or mHz, or a typo, and resampling it would shrink the data to nothing or
grow it thousands of times over."""
UNIT_CHECK_SAMPLES = 1_000_000
"""Samples of a dataset the unit check reads, evenly spaced: its median and 99th percentile are as
sure from these as from all of them."""
MIN_PEOPLE = 3
"""A split by person needs one person for each of training, validation and test."""
_SHOWN = 5

Loaded = WindowSet | list[Recording]


def _listed(items: Sequence[Any]) -> str:
    shown = ", ".join(str(item) for item in items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


# -- units and rates -----------------------------------------------------------------------------------

def check_units(channel_names: Sequence[str], signal: np.ndarray, where: str) -> None:
    """Refuse acceleration in m/s² and angular velocity in deg/s (``signal`` (..., C)), naming the conversion."""
    column = {name: signal[..., i].reshape(-1) for i, name in enumerate(channel_names)}
    if all(name in column for name in ACC):
        median = float(np.median(np.sqrt(sum(column[name].astype(np.float64) ** 2 for name in ACC))))
        if ACC_MS2_MEDIAN[0] < median < ACC_MS2_MEDIAN[1]:
            raise ValueError(f"{where}: acc_x/y/z look like m/s² (median magnitude {median:.2f}, gravity is 9.81 m/s²); "
                             f"they must be in g: divide them by {STANDARD_GRAVITY}")
    for names, limit, wrong, fix in (
            (BODY_ACC, BODY_ACC_MS2_P99, "m/s², not g", f"divide them by {STANDARD_GRAVITY}"),
            (GYRO, GYRO_DEGREES_P99, "deg/s, not rad/s", f"multiply them by pi/180 = {np.pi / 180:.6f}")):
        present = [name for name in names if name in column]
        if not present:
            continue
        p99 = float(np.percentile(np.abs(np.concatenate([column[name] for name in present])), 99))
        if p99 > limit:
            raise ValueError(f"{where}: {', '.join(present)} reach {p99:.1f} (99th percentile), which is {wrong}; {fix}")


def check_sample_rate(rate: float, where: str, target: float | None = None) -> None:
    """Refuse a rate no activity sensor has (:data:`SAMPLE_RATE_RANGE`), before anything is resampled."""
    low, high = SAMPLE_RATE_RANGE
    if low <= rate <= high:
        return
    growth = f"; resampled to {target:g} Hz it would grow {target / rate:,.0f}-fold" if target and rate < low else ""
    if rate < 1:
        guess = f"if {rate:g} is the sample period in seconds, the rate is 1/{rate:g} = {1 / rate:.4g} Hz"
    elif rate < low:
        guess = "give the rate in Hz (samples per second)"
    else:
        guess = f"if it is in mHz, the rate is {rate / 1000:.4g} Hz; give the rate in Hz (samples per second)"
    raise ValueError(f"{where}: sample rate {rate:g} Hz is outside {low:g}-{high:g} Hz, where activity sensors sample"
                     f"{growth}; {guess}")


# -- a user's file: label names and layout -------------------------------------------------------------

def check_label_names(code_names: Iterable[tuple[object, str]]) -> None:
    """Refuse two label codes given one activity name: two activities would merge without a word."""
    codes: dict[str, list[object]] = defaultdict(list)
    for code, name in code_names:
        codes[name].append(code)
    merged = {name: found for name, found in codes.items() if len(found) > 1}
    if merged:
        listed = "; ".join(f"codes {', '.join(map(str, found))} are all {name!r}" for name, found in merged.items())
        raise ValueError(f"label_names give one name to several codes ({listed}): their activities would merge into "
                         "one. Give each code its own activity's name; to merge them on purpose, name them apart and "
                         "map them onto one name with label_map")


def check_layout(shape: Sequence[int], layout: str, channels: int, where: str = "signals") -> None:
    """Refuse an array whose channels lie on the time axis of ``layout``: it is the other layout."""
    if len(shape) not in (2, 3):
        return
    channel_axis = len(shape) - 1 if layout == "channels_last" else len(shape) - 2
    time_axis = len(shape) - 2 if layout == "channels_last" else len(shape) - 1
    if shape[channel_axis] != channels and shape[time_axis] == channels:
        other = "channels_first" if layout == "channels_last" else "channels_last"
        raise ValueError(f"{where} have shape {tuple(shape)}: with layout {layout!r} axis {channel_axis} holds the "
                         f"channels, but it is {shape[channel_axis]} long while axis {time_axis} matches the "
                         f"{channels} channel names; the array is {other}: set layout={other!r}")


# -- every source, before windowing --------------------------------------------------------------------

def _subject_ids(loaded: Loaded) -> dict[str, set[str]]:
    """dataset -> its subject ids (the part after "dataset:"), of what a source loaded."""
    pairs = (zip(loaded.dataset.tolist(), loaded.subject.tolist()) if isinstance(loaded, WindowSet)
             else ((r.dataset, r.subject) for r in loaded))
    found: dict[str, set[str]] = defaultdict(set)
    for dataset, subject in set(pairs):
        found[dataset].add(_local_id(subject))
    return found


def _local_id(subject: str) -> str:
    return subject.partition(":")[2] or subject


def _samples(signals: Sequence[np.ndarray], channels: int) -> np.ndarray:
    """At most :data:`UNIT_CHECK_SAMPLES` samples (S, C), evenly spaced, of a list of (..., C) arrays."""
    flat = [np.asarray(signal).reshape(-1, channels) for signal in signals]
    stride = max(1, math.ceil(sum(len(part) for part in flat) / UNIT_CHECK_SAMPLES))
    return np.concatenate([part[::stride] for part in flat])


def _check_source(name: str, loaded: Loaded, path: Any, target_rate: float) -> None:
    origin = f" ({path})" if isinstance(path, (str, PathLike)) else ""
    if isinstance(loaded, WindowSet):
        check_sample_rate(loaded.sample_rate, f"{name}{origin}", target_rate)
        for dataset in sorted(set(loaded.dataset.tolist())):
            index = np.flatnonzero(loaded.dataset == dataset)
            stride = max(1, math.ceil(len(index) * loaded.window_length / UNIT_CHECK_SAMPLES))
            picked = loaded.signals[index[::stride]].reshape(-1, loaded.num_channels)
            check_units(loaded.channel_names, picked, f"{dataset}{origin}")
        return
    for index, recording in enumerate(loaded):
        where = f"{name}{origin} recording {index} ({recording.subject})"
        check_sample_rate(recording.sample_rate, where, target_rate)
    groups: dict[tuple[str, tuple[str, ...]], list[np.ndarray]] = defaultdict(list)
    for recording in loaded:
        groups[recording.dataset, tuple(recording.channel_names)].append(recording.signal)
    for (dataset, channels), signals in groups.items():
        check_units(channels, _samples(signals, len(channels)), f"{dataset}{origin}")
    if all((recording.labels == UNLABELLED).all() for recording in loaded):
        raise ValueError(f"{name}{origin}: every sample of its {len(loaded)} recording(s) is unlabelled (label -1, or "
                         "''), so there is no activity to train on or score. Give the samples their activities: "
                         "integer codes with label_names (-1 only where no activity is known), or activity names")


def check_sources(config: DataConfig, loaded: Mapping[str, Loaded]) -> None:
    """Every loaded source: plausible rates, canonical units, some labels; then the people they share."""
    check_sample_rate(config.sample_rate, "sample_rate (the common rate windows are cut at)")
    for name, data in loaded.items():
        _check_source(name, data, config.paths.get(name), config.sample_rate)
    datasets: dict[str, set[str]] = defaultdict(set)
    user: set[str] = set()  # datasets of the arrays source or of a source registered from outside the package
    for name, data in loaded.items():
        for dataset, ids in _subject_ids(data).items():
            datasets[dataset] |= ids
            if not SOURCES.get(name, "").startswith("tcnvae.data.sources.") or name == "arrays":
                user.add(dataset)
    _check_people(config, datasets, user)


# -- the same people in two datasets -------------------------------------------------------------------

def _declared(config: DataConfig) -> list[tuple[str, str]]:
    """(dataset, dataset whose people it recorded): the sources' SAME_PEOPLE_AS, then ``same_people``."""
    pairs = []
    for name in config.datasets:
        if name in SOURCES:
            pairs += [(name, other) for other in getattr(source_module(name), "SAME_PEOPLE_AS", ())]
    return pairs + list(config.same_people.items())


def people_pools(config: DataConfig, present: Iterable[str]) -> dict[str, str]:
    """Each present dataset that shares its people with another present one -> the pool's name (the
    dataset the declarations lead to: ``uci_har`` for ``hapt``)."""
    parent: dict[str, str] = {}

    def root(dataset: str) -> str:
        while parent.get(dataset, dataset) != dataset:
            dataset = parent[dataset]
        return dataset

    for dataset, other in _declared(config):
        if root(dataset) != root(other):
            parent[root(dataset)] = root(other)
    members: dict[str, list[str]] = defaultdict(list)
    for dataset in sorted(set(present)):
        members[root(dataset)].append(dataset)
    return {dataset: pool for pool, found in members.items() if len(found) > 1 for dataset in found}


def _check_people(config: DataConfig, datasets: Mapping[str, set[str]], user: set[str]) -> None:
    unknown = sorted({name for pair in config.same_people.items() for name in pair} - set(datasets))
    if unknown:
        raise ValueError(f"same_people names datasets that were not loaded: {unknown}; the datasets loaded: "
                         f"{', '.join(sorted(datasets))}")
    itself = sorted(name for name, other in config.same_people.items() if name == other)
    if itself:
        raise ValueError(f"same_people maps {itself} onto itself; map a dataset onto the one whose people it "
                         "recorded")
    pools = people_pools(config, datasets)
    for pool in sorted(set(pools.values())):
        members = sorted(dataset for dataset, owner in pools.items() if owner == pool)
        shared = set.intersection(*(datasets[dataset] for dataset in members))
        if not shared:
            logger.warning("%s are declared the same people but share no subject id (%s); the ids must name the "
                           "same person in each, or the declaration does nothing", " and ".join(members),
                           "; ".join(f"{d}: {_listed(sorted(datasets[d]))}" for d in members))
        else:
            logger.info("%s record the same people (%d shared ids): each person's windows of all of them go to one "
                        "side of the split, as %s:<id>", " and ".join(members), len(shared), pool)
    names = sorted(datasets)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            if not ({first, second} & user) or pools.get(first, first) == pools.get(second, second):
                continue
            shared = sorted(datasets[first] & datasets[second] - {"unknown"})
            if shared:
                logger.warning("%s and %s share subject ids %s, and are split as different people: if they are the "
                               "same people, declare it (--set 'same_people={\"%s\": \"%s\"}') so nobody lands in "
                               "training and test", first, second, _listed(shared), second, first)


def people_view(windows: WindowSet, config: DataConfig) -> tuple[WindowSet, str]:
    """The windows as the split sees them, each person once across datasets of the same people
    (dataset and subject of a pool renamed to the pool's), and the split's target in those terms.

    Refuses a split that holds out one dataset of a pool: its people would be trained on and tested."""
    kind, _, target = config.split.partition(":")
    pools = people_pools(config, np.unique(windows.dataset).tolist())
    if not pools:
        return windows, target
    by = "subject" if kind == "loso" else config.domain_by
    if kind in ("lodo", "unlabelled") and by == "dataset" and target in pools:
        others = sorted(d for d, pool in pools.items() if pool == pools[target] and d != target)
        raise ValueError(f"split {config.split!r} tests on {target}, whose people are {' and '.join(others)}'s too (the "
                         f"same people): they would be trained on and tested. Pool {target} without "
                         f"{' and '.join(others)}, or split by person (split='subject')")
    if by == "subject" and target.partition(":")[0] in pools:
        target = f"{pools[target.partition(':')[0]]}:{_local_id(target)}"
    dataset, subject = windows.dataset.astype(object), windows.subject.astype(object)
    for member, pool in pools.items():
        chosen = windows.dataset == member
        dataset[chosen] = pool
        subject[chosen] = [f"{pool}:{_local_id(s)}" for s in windows.subject[chosen].tolist()]
    return replace(windows, dataset=dataset, subject=subject), target


# -- the pooled windows and their split ----------------------------------------------------------------

def check_activities(windows: WindowSet, config: DataConfig) -> None:
    """Refuse data of one activity: a classifier with one answer scores 1.000 and learns nothing."""
    counts = {name: n for name, n in windows.class_counts().items() if n}
    if len(counts) != 1:
        return
    (only, n), = counts.items()
    kept = f" (activities={config.activities} keeps only it)" if config.activities is not None else ""
    raise ValueError(f"the data of {', '.join(config.datasets)} holds one activity, {only!r} ({n} windows){kept}: a "
                     "classifier with one answer scores 1.000 and learns nothing. Pool data of other activities, or "
                     "check the labels (every code its own name in label_names?)")


def check_split(people: WindowSet, split: Mapping[str, np.ndarray], config: DataConfig) -> None:
    """Refuse a split that leaves validation or test empty where it was asked for, with the people per
    dataset; ``people`` as :func:`people_view` gives them."""
    everyone = sorted(set(people.subject.tolist()))
    by_fraction = config.split == "subject"
    if len(everyone) == 1 and by_fraction:
        raise ValueError(f"the data holds one person ({everyone[0]}): a split by person leaves nobody to validate and "
                         f"test on, and a score on the person trained on says nothing about anyone else. Add "
                         f"recordings of more people (at least {MIN_PEOPLE}), each with its person (the arrays "
                         "field 'subjects')")
    asked = {"val": (config.val_fraction > 0 or config.val_folds >= 2, "val_fraction", "validation"),
             "test": (config.test_fraction > 0 or not by_fraction, "test_fraction", "test")}
    for side, (wanted, fraction, called) in asked.items():
        if not wanted or len(split[side]):
            continue
        counts = "; ".join(
            f"{dataset}: {len(set(people.subject[people.dataset == dataset].tolist()))} people"
            for dataset in sorted(set(people.dataset.tolist())))
        sizes = ", ".join(f"{len(index)} {name}" for name, index in split.items())
        if side == "test" and not by_fraction:
            raise ValueError(f"split {config.split!r} leaves no test windows ({sizes}; {counts}): the people it tests "
                             "on have no windows here; choose a split whose test people are in the data")
        raise ValueError(f"split {config.split!r} leaves no {called} windows ({sizes}): {fraction} "
                         f"{getattr(config, fraction)} of each dataset's people holds out nobody ({counts}). "
                         f"Each dataset needs at least {MIN_PEOPLE} people, one each for training, validation and "
                         "test: add recordings of more people, each with its person (the arrays field 'subjects')")


def check_search_data(data: PreparedData) -> None:
    """A search chooses its trials on validation and scores the winner on the test once: both need windows."""
    sizes = f"{len(data.train)} training, {len(data.val)} validation and {len(data.test)} test windows"
    if not len(data.val):
        raise ValueError(f"no validation windows ({sizes}; val_fraction={data.config.val_fraction}): a search "
                         "chooses its trials on validation. Set val_fraction above 0, e.g. --set val_fraction=0.2")
    if not len(data.test):
        raise ValueError(f"no test windows ({sizes}; test_fraction={data.config.test_fraction}): a search scores its "
                         "winner on the test. Set test_fraction above 0, e.g. --set test_fraction=0.2")
