"""What every dataset parser needs: reading numeric text tables and ``.npz`` archives with errors that
name the file and the problem, mapping a dataset's raw label codes to canonical activities, and
cutting signals into segments.

Raw codes are mapped through each source's ``ACTIVITY_MAP`` by meaning; a code outside the map becomes
unlabelled and is *counted in the log*, so nothing disappears silently.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Collection, Mapping
from pathlib import Path

import numpy as np

from tcnvae.data.recordings import UNLABELLED
from tcnvae.data.taxonomy import label_space

logger = logging.getLogger(__name__)


def read_table(path: Path, columns: int, *, what: str, delimiter: str | None = None) -> np.ndarray:
    """A whitespace- (or ``delimiter``-) separated numeric text file as a (rows, ``columns``) array.

    ``what`` describes the file for errors (e.g. "PAMAP2 subject file"); "NaN" fields parse as NaN.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found")
    try:
        table = np.loadtxt(path, dtype=np.float64, delimiter=delimiter, ndmin=2)
    except ValueError as error:
        raise ValueError(
            f"{what} {path} is malformed or truncated ({error}); expected {columns} numeric columns per row"
        ) from error
    if table.shape[0] == 0:
        raise ValueError(f"{what} {path} is empty")
    if table.shape[1] != columns:
        raise ValueError(f"{what} {path} has {table.shape[1]} columns, expected {columns}")
    return table


def read_npz(path: Path, keys: Collection[str] | None, *, what: str) -> dict[str, np.ndarray]:
    """The arrays ``keys`` (None: every array) of a ``.npz`` archive, read whole; nothing pickled is
    ever loaded.

    A file that is not a zip archive (a text or CSV file renamed ``.npz``) or a torn one gets a message
    saying so: numpy's own ("contains pickled data ... allow_pickle") would invite an unsafe fix.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{what} {path} is not a valid .npz archive (not a zip file: truncated, or another "
                         "format renamed .npz); write it with numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = archive.files if keys is None else keys
            missing = sorted(set(keys) - set(archive.files))
            if missing:
                raise ValueError(f"{what} {path} lacks keys {missing}; expected {', '.join(keys)}")
            return {key: archive[key] for key in keys}
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise ValueError(f"{what} {path} is truncated or corrupt ({error}); write it again with numpy.savez") from None
    except ValueError as error:
        if "pickle" in str(error):  # an object array: numpy says "allow_pickle" or "pickled data"
            raise ValueError(f"{what} {path} holds an object (pickled) array, which is never loaded: "
                             "store numbers and strings as plain numpy arrays") from None
        raise


def map_codes(
    codes: np.ndarray,
    activity_map: Mapping[object, str],
    *,
    source: str,
    null_codes: Collection[object] = (),
) -> tuple[np.ndarray, list[str]]:
    """Per-sample label indices into the map's label space (canonical order), and that label space.

    Codes in ``null_codes`` (a dataset's "no activity" marker) become unlabelled quietly; any other
    code missing from the map becomes unlabelled with a logged count per code.
    """
    names = label_space(activity_map.values())
    index = {code: names.index(name) for code, name in activity_map.items()}
    uniques, inverse, counts = np.unique(np.asarray(codes), return_inverse=True, return_counts=True)
    raw = uniques.tolist()
    lookup = np.array([index.get(code, UNLABELLED) for code in raw], dtype=np.int64)
    unmapped = {
        code: n
        for code, n in zip(raw, counts.tolist())
        if code not in index and code not in null_codes
    }
    if unmapped:
        logger.info(
            "%s: %d samples carry activity codes outside the taxonomy and are left unlabelled: %s",
            source,
            sum(unmapped.values()),
            unmapped,
        )
    return lookup[inverse.reshape(-1)], names


def contiguous_runs(mask: np.ndarray) -> np.ndarray:
    """(K, 2) array of [start, stop) index pairs of the maximal runs where ``mask`` is true."""
    padded = np.concatenate([[0], np.asarray(mask, dtype=np.int8), [0]])
    return np.flatnonzero(np.diff(padded)).reshape(-1, 2)


def segments(keep: np.ndarray, breaks: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) runs of kept samples, also cut before every index in ``breaks``."""
    breaks = np.sort(np.asarray(breaks, dtype=np.int64))
    pieces: list[tuple[int, int]] = []
    for start, stop in contiguous_runs(keep).tolist():
        inner = breaks[(breaks > start) & (breaks < stop)].tolist()
        bounds = [start, *inner, stop]
        pieces.extend(zip(bounds[:-1], bounds[1:]))
    return pieces
