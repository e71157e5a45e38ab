"""Bring your own data: windows or continuous recordings from numpy arrays or a ``.npz`` file.

Everything is validated before use, because a silently mis-shaped or mis-labelled user dataset would
poison a pooled training run without any visible error.

Fields (keys of the ``.npz`` file, keys of a dict, or keyword arguments; keywords win):

``signals``
    (N, T, C) pre-windowed → a :class:`WindowSet`; (T, C) one continuous recording, or (T, C) with
    ``offsets`` (R+1,) holding R recordings back to back (recording r is ``signals[offsets[r]:
    offsets[r+1]]``), or (arguments only) a list of (T_r, C) arrays → a list of :class:`Recording`.
``labels``
    one per window (N,), or one per sample ((T,), or a list matching the list of recordings):
    canonical activity names (strings; ``""`` marks an unlabelled sample), or integer codes
    (-1 marks an unlabelled sample) together with ``label_names``. Windows must all be labelled.
``label_names``
    integer code → activity name: a dict, or a sequence whose index is the code.

    Activity names are the taxonomy's (:mod:`tcnvae.data.taxonomy`) or your own: a lower_snake_case
    name outside the taxonomy (``pendulum``) becomes a new activity, with no code to write, in the
    driver and in every trial process alike (new names follow the taxonomy's in alphabetical order).
``label_map`` (optional)
    your name → the name to use instead, applied to ``labels``/``label_names`` before anything else:
    a dict (keyword argument, or ``--set source_options='{"arrays": {"label_map": {"jog": "running"}}}'``
    on a search's command line) or, in a ``.npz`` file, a (K, 2) string array of ``[yours, taxonomy]``
    rows. Map onto taxonomy names so your data pools with other datasets' activities; every key must
    name an activity of the data (a typo is an error, not a silent no-op).
``channel_names`` (C,)
    canonical names: acc_x/y/z (total acceleration, g), body_acc_x/y/z (gravity removed, g),
    gyro_x/y/z (rad/s). Convert units before loading.
``sample_rate``
    Hz.
``subjects`` (optional)
    one id per window, or one per recording; stored as ``"<dataset>:<id>"``. Without them every
    window is subject ``"<dataset>:unknown"`` and subject-disjoint splits cannot separate people.
``datasets`` (optional)
    a dataset name for everything (default ``"arrays"``) or one per window/recording. Several files
    pooled (:func:`load_files`) are each a dataset of their own, named by this field or, without it,
    by the file's stem.
``domains`` (optional)
    one string per window/recording, kept as the attribute ``domain`` (usable as a domain grouping).
``layout``
    ``"channels_last"`` (default: time before channels) or ``"channels_first"`` ((N, C, T) / (C, T)).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tcnvae.data.checks import check_label_names, check_layout
from tcnvae.data.recordings import ACC, BODY_ACC, GYRO, UNLABELLED, Recording
from tcnvae.data.sources.parsing import read_npz
from tcnvae.data.taxonomy import TAXONOMY, check_name, label_space
from tcnvae.data.windows import WindowSet

logger = logging.getLogger(__name__)

NAME = "arrays"
SAMPLE_RATE: float | None = None  # given with the data
ACTIVITY_MAP: dict[
    object, str
] = {}  # given with the data (label_names), or labels are names already
DEFAULT_DATASET = "arrays"
CANONICAL_CHANNELS = ACC + BODY_ACC + GYRO
LAYOUTS = ("channels_last", "channels_first")
FIELDS = (
    "signals",
    "labels",
    "label_names",
    "channel_names",
    "sample_rate",
    "subjects",
    "datasets",
    "domains",
    "offsets",
    "layout",
    "label_map",
)
_SHOWN = 5


def _fields(path_or_arrays: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """Merge the ``.npz``/dict/array source with keyword overrides into one field dict."""
    fields: dict[str, Any] = {}
    if isinstance(path_or_arrays, (str, Path)):
        path = Path(path_or_arrays)
        if not path.is_file():
            raise FileNotFoundError(f"arrays file {path} not found (expected a .npz file)")
        try:
            fields = read_npz(path, None, what="arrays file")
        except ValueError as error:  # read_npz names the problem; this adds where the format is
            raise ValueError(
                f"{path.name} is not a readable .npz archive of plain arrays: {error}; the fields "
                "are described in tcnvae.data.sources.arrays"
            ) from None
    elif isinstance(path_or_arrays, Mapping):
        fields = dict(path_or_arrays)
    elif path_or_arrays is not None:
        fields = {"signals": path_or_arrays}
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown fields {unknown}; expected some of {list(FIELDS)}")
    fields.update({key: value for key, value in overrides.items() if value is not None})
    if "signals" not in fields:
        raise ValueError(
            "the arrays source has no data: give it a .npz file (on a search's command line "
            "--data arrays --data-path arrays=FILE.npz; in Python path=FILE.npz) or signals=... arrays"
        )
    missing = [
        key for key in ("signals", "labels", "channel_names", "sample_rate") if key not in fields
    ]
    if missing:
        raise ValueError(
            f"arrays source needs {missing}; see tcnvae.data.sources.arrays for the fields"
        )
    return fields


def _channel_names(names: Any) -> list[str]:
    names = [str(n) for n in np.atleast_1d(np.asarray(names))]
    unknown = [n for n in names if n not in CANONICAL_CHANNELS]
    if unknown:
        raise ValueError(
            f"channel names {unknown} are not canonical; use {CANONICAL_CHANNELS} "
            "(acc = total acceleration in g, body_acc = gravity removed in g, gyro in rad/s)"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"channel names {names} repeat a name")
    return names


def _sample_rate(value: Any) -> float:
    try:
        rate = float(np.asarray(value))
    except (TypeError, ValueError) as error:
        raise ValueError(f"sample_rate must be a number of Hz, got {value!r}") from error
    if not np.isfinite(rate) or rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {rate}")
    return rate


def _check_finite(signal: np.ndarray, what: str) -> None:
    bad = np.argwhere(~np.isfinite(signal))
    if len(bad):
        positions = ", ".join(str(tuple(p)) for p in bad[:_SHOWN].tolist())
        raise ValueError(
            f"{what} holds {len(bad)} NaN or infinite values, first at indices {positions}"
        )


def _label_map(value: Any) -> dict[str, str]:
    """``label_map`` as a dict: from a dict, or from the (K, 2) ``[yours, taxonomy]`` rows of a file."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        rows = np.asarray(value)
        if rows.ndim != 2 or rows.shape[1] != 2 or rows.dtype.kind not in "US":
            raise ValueError(
                f"label_map has shape {rows.shape} and dtype {rows.dtype}; expected a dict, or "
                "(K, 2) strings: one [your_name, taxonomy_name] row per mapped activity"
            )
        pairs = rows.tolist()
    mapping = {str(yours): str(theirs) for yours, theirs in pairs}
    for name in mapping.values():
        try:
            check_name(name)
        except ValueError as error:
            raise ValueError(f"label_map: {error}") from None
    return mapping


def _mapped_names(names: list[str], label_map: dict[str, str]) -> list[str]:
    """``names`` through ``label_map``, checked; logs the names that are new to the taxonomy."""
    stray = sorted(set(label_map) - set(names))
    if stray:
        raise ValueError(
            f"label_map maps {stray}, which name no activity of the data; its activities: {sorted(set(names))}"
        )
    mapped = [label_map.get(name, name) for name in names]
    for name in mapped:
        try:
            check_name(name)
        except ValueError as error:
            raise ValueError(f"{error}; rename it, or map it onto another name with label_map") from None
    new = sorted(set(mapped) - set(TAXONOMY))
    if new:
        logger.info(
            "arrays: activities %s are not in the taxonomy and become new activities "
            "(map them onto taxonomy names with label_map to pool them with other datasets)", new
        )
    return mapped


def _code_names(label_names: Any, label_map: dict[str, str]) -> dict[int, str]:
    if isinstance(label_names, Mapping):
        pairs = list(label_names.items())
    else:
        pairs = list(enumerate(np.atleast_1d(np.asarray(label_names)).tolist()))
    check_label_names((code, str(name)) for code, name in pairs)
    names = _mapped_names([str(name) for _, name in pairs], label_map)
    return {int(code): name for (code, _), name in zip(pairs, names)}


def _activity_indices(
    labels: np.ndarray, label_names: Any, label_map: dict[str, str], *, allow_unlabelled: bool
) -> tuple[np.ndarray, list[str]]:
    """Label indices into the label space of the names involved, and that label space."""
    if labels.dtype.kind in "US":
        present = sorted(set(np.unique(labels).tolist()) - {""})
        mapped = dict(zip(present, _mapped_names(present, label_map)))
        if "" in labels and not allow_unlabelled:
            raise ValueError(
                f"{int((labels == '').sum())} windows have an empty label; windows must be labelled"
            )
        names = label_space(mapped.values())
        lookup = {name: names.index(mapped[name]) for name in present} | {"": UNLABELLED}
        return np.array([lookup[v] for v in labels.tolist()], dtype=np.int64), names
    if labels.dtype.kind not in "iu":
        raise ValueError(
            f"labels must be activity names or integer codes, got dtype {labels.dtype}"
        )
    if label_names is None:
        raise ValueError("integer labels need label_names (code -> canonical activity name)")
    code_names = _code_names(label_names, label_map)
    codes = set(np.unique(labels).tolist()) - ({UNLABELLED} if allow_unlabelled else set())
    unknown = sorted(codes - set(code_names))
    if unknown:
        raise ValueError(f"label codes {unknown} have no entry in label_names {code_names}")
    names = label_space(code_names.values())
    lookup = {code: names.index(name) for code, name in code_names.items()} | {
        UNLABELLED: UNLABELLED
    }
    return np.array([lookup[v] for v in labels.tolist()], dtype=np.int64), names


def _per_item(value: Any, count: int, field: str, unit: str, default: str) -> np.ndarray:
    """A string column of ``count`` entries from a scalar, a sequence, or nothing (``default``)."""
    if value is None:
        return np.full(count, default)
    column = np.asarray(value)
    if column.ndim == 0:
        return np.full(count, str(column))
    if column.shape != (count,):
        raise ValueError(f"{field} has shape {column.shape}, expected ({count},): one per {unit}")
    return column.astype(str)


def _identities(
    fields: dict[str, Any], count: int, unit: str
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Dataset, subject and attribute columns, one entry per window or recording."""
    datasets = _per_item(fields.get("datasets"), count, "datasets", unit, DEFAULT_DATASET)
    bad = sorted({d for d in datasets.tolist() if not d or ":" in d})
    if bad:
        raise ValueError(f"dataset names {bad} must be non-empty and contain no ':'")
    if fields.get("subjects") is None:
        logger.warning("arrays: no subjects given; all data is subject '<dataset>:unknown'")
    ids = _per_item(fields.get("subjects"), count, "subjects", unit, "unknown")
    prefixes = np.char.add(datasets, ":")
    prefixed = np.char.startswith(ids, prefixes)
    subjects = np.where(prefixed, ids, np.char.add(prefixes, ids))
    attributes = {}
    if fields.get("domains") is not None:
        attributes["domain"] = _per_item(fields["domains"], count, "domains", unit, "")
    return datasets, subjects, attributes


def _windows(
    fields: dict[str, Any], signals: np.ndarray, channels: list[str], rate: float
) -> WindowSet:
    if fields.get("offsets") is not None:
        raise ValueError("offsets apply to continuous (T, C) signals, not to (N, T, C) windows")
    if fields.get("layout") == "channels_first":
        signals = np.transpose(signals, (0, 2, 1))
    if signals.shape[2] != len(channels):
        raise ValueError(
            f"signals (windows, time, channels) have shape {signals.shape} but {len(channels)} "
            f"channel names {channels} were given"
        )
    _check_finite(signals, "signals")
    labels = np.asarray(fields["labels"])
    if labels.shape != (len(signals),):
        raise ValueError(
            f"labels have shape {labels.shape}, expected ({len(signals)},) for signals {signals.shape}"
        )
    activity, names = _activity_indices(
        labels, fields.get("label_names"), _label_map(fields.get("label_map")), allow_unlabelled=False
    )
    datasets, subjects, attributes = _identities(fields, len(signals), "window")
    return WindowSet(
        signals=signals,
        activity=activity,
        activity_names=names,
        dataset=datasets,
        subject=subjects,
        channel_names=channels,
        sample_rate=rate,
        attributes=attributes,
    )


def _split_recordings(fields: dict[str, Any]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-recording signal and label arrays, from a list, an offsets-split stack, or one array."""
    signals, labels = fields["signals"], fields["labels"]
    if isinstance(signals, (list, tuple)):
        if fields.get("offsets") is not None:
            raise ValueError(
                "give either a list of recordings or one (T, C) array with offsets, not both"
            )
        if not isinstance(labels, (list, tuple)) or len(labels) != len(signals):
            raise ValueError(
                f"a list of {len(signals)} recordings needs a list of {len(signals)} label arrays"
            )
        return [np.asarray(s) for s in signals], [np.asarray(y) for y in labels]
    signals, labels = np.asarray(signals), np.asarray(labels)
    if fields.get("offsets") is None:
        return [signals], [labels]
    offsets = np.asarray(fields["offsets"])
    length = signals.shape[-1] if fields.get("layout") == "channels_first" else len(signals)
    if (
        offsets.ndim != 1
        or offsets.dtype.kind not in "iu"
        or len(offsets) < 2
        or offsets[0] != 0
        or offsets[-1] != length
        or np.any(np.diff(offsets) <= 0)
    ):
        raise ValueError(
            f"offsets must be integers rising strictly from 0 to {length}, got {offsets.tolist()[:8]}..."
        )
    if labels.shape != (length,):
        raise ValueError(
            f"labels have shape {labels.shape}, expected ({length},) for signals {signals.shape}"
        )
    pieces = list(zip(offsets[:-1].tolist(), offsets[1:].tolist()))
    if fields.get("layout") == "channels_first":
        return [signals[:, a:b] for a, b in pieces], [labels[a:b] for a, b in pieces]
    return [signals[a:b] for a, b in pieces], [labels[a:b] for a, b in pieces]


def _recordings(fields: dict[str, Any], channels: list[str], rate: float) -> list[Recording]:
    signals, labels = _split_recordings(fields)
    checked = []
    for r, (signal, label) in enumerate(zip(signals, labels)):
        if signal.ndim != 2 or signal.dtype.kind not in "fiu":
            raise ValueError(
                f"recording {r} has shape {signal.shape} and dtype {signal.dtype}; "
                "expected numeric (time, channels)"
            )
        if fields.get("layout") == "channels_first":
            signal = signal.T
        if signal.shape[1] != len(channels):
            raise ValueError(
                f"recording {r} has shape {signal.shape} (time, channels) but {len(channels)} "
                f"channel names {channels} were given"
            )
        if label.shape != (len(signal),):
            raise ValueError(
                f"labels of recording {r} have shape {label.shape}, expected ({len(signal)},)"
            )
        _check_finite(signal, f"recording {r}")
        checked.append((signal, label))
    all_labels = np.concatenate([label for _, label in checked])
    activity, names = _activity_indices(
        all_labels, fields.get("label_names"), _label_map(fields.get("label_map")), allow_unlabelled=True
    )
    datasets, subjects, attributes = _identities(fields, len(checked), "recording")
    bounds = np.cumsum([0] + [len(label) for _, label in checked])
    return [
        Recording(
            signal=signal,
            labels=activity[bounds[r] : bounds[r + 1]],
            activity_names=names,
            channel_names=channels,
            sample_rate=rate,
            dataset=str(datasets[r]),
            subject=str(subjects[r]),
            attributes={key: str(column[r]) for key, column in attributes.items()},
            source=f"arrays recording {r}",
        )
        for r, (signal, _) in enumerate(checked)
    ]


def load(
    path_or_arrays: str
    | Path
    | Mapping[str, Any]
    | np.ndarray
    | Sequence[np.ndarray]
    | None = None,
    *,
    cache_dir: str | Path | None = None,
    download: bool = False,
    signals: np.ndarray | Sequence[np.ndarray] | None = None,
    labels: np.ndarray | Sequence[np.ndarray] | None = None,
    label_names: Mapping[int, str] | Sequence[str] | None = None,
    channel_names: Sequence[str] | None = None,
    sample_rate: float | None = None,
    subjects: Sequence[object] | None = None,
    datasets: str | Sequence[str] | None = None,
    domains: Sequence[str] | None = None,
    offsets: Sequence[int] | None = None,
    layout: str | None = None,
    label_map: Mapping[str, str] | None = None,
) -> WindowSet | list[Recording]:
    """Your data as windows (from (N, T, C) signals) or recordings (anything continuous).

    ``path_or_arrays`` is a ``.npz`` path, a dict of the fields, or the signals themselves; the
    keyword arguments supply or override fields (see the module docstring). ``cache_dir`` is unused
    (nothing to fetch) and ``download=True`` is an error.
    """
    del cache_dir  # the protocol's argument; local data needs no cache
    if download:
        raise ValueError("the arrays source reads your own data; there is nothing to download")
    fields = _fields(
        path_or_arrays,
        {
            "signals": signals,
            "labels": labels,
            "label_names": label_names,
            "channel_names": channel_names,
            "sample_rate": sample_rate,
            "subjects": subjects,
            "datasets": datasets,
            "domains": domains,
            "offsets": offsets,
            "layout": layout,
            "label_map": label_map,
        },
    )
    fields["layout"] = str(np.asarray(fields.get("layout", "channels_last")))
    if fields["layout"] not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {fields['layout']!r}")
    channels = _channel_names(fields["channel_names"])
    rate = _sample_rate(fields["sample_rate"])
    if isinstance(fields["signals"], (list, tuple)):
        for r, signal in enumerate(fields["signals"]):
            check_layout(np.shape(signal), fields["layout"], len(channels), f"recording {r}'s signals")
    else:
        stacked = np.asarray(fields["signals"])
        if stacked.dtype.kind not in "fiu":
            raise ValueError(f"signals must be numeric, got dtype {stacked.dtype}")
        check_layout(stacked.shape, fields["layout"], len(channels))
        if stacked.ndim == 3:
            return _windows(fields, stacked.astype(np.float32), channels, rate)
        if stacked.ndim != 2:
            raise ValueError(
                f"signals have shape {stacked.shape}; expected (windows, time, channels) or (time, channels)"
            )
        fields["signals"] = stacked
    return _recordings(fields, channels, rate)


def load_files(paths: Sequence[str | Path], **options: Any) -> dict[str, WindowSet | list[Recording]]:
    """Several arrays files, each a dataset of its own (as ``load`` reads one), by ``"<its datasets> (<file
    name>)"``: a file is named by its ``datasets`` field when it has one, else by its file stem. Two files
    that would hold one dataset name are refused (their people would merge), as is a file given twice."""
    loaded: dict[str, WindowSet | list[Recording]] = {}
    owner: dict[str, Path] = {}  # dataset name -> the file that holds it
    for path in map(Path, paths):
        fields = _fields(path, {})
        fields.setdefault("datasets", path.stem)
        try:
            data = load(fields, **options)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        names = sorted(set(data.dataset.tolist()) if isinstance(data, WindowSet) else {r.dataset for r in data})
        for name in names:
            if name in owner:
                raise ValueError(
                    f"arrays files {owner[name]} and {path} both hold dataset {name!r} (named by the files' "
                    "'datasets' field, else their file stem), so their people would merge into one dataset: "
                    "rename one file, or save it with its own name, np.savez(..., datasets='NAME')")
            owner[name] = path
        loaded[f"{', '.join(names)} ({path.name})"] = data
    return loaded
