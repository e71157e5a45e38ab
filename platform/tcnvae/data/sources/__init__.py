"""Dataset sources by name: each turns one dataset's files into canonical recordings or windows.

A source is a module (imported only when used, so a missing optional dataset costs nothing) with:

- ``NAME``: the dataset name used in subject ids (``"<NAME>:<id>"``);
- ``SAMPLE_RATE``: its native rate in Hz;
- ``ACTIVITY_MAP``: raw label code → canonical activity (:mod:`tcnvae.data.taxonomy`), mapped by
  meaning; codes missing from the map become unlabelled, with a logged count;
- a docstring giving the exact on-disk format;
- optionally ``SAME_PEOPLE_AS``: the datasets whose subject ids name the same people as its own (HAPT
  and UCI-HAR), so that pooled they are split as one set of people (:mod:`tcnvae.data.checks`);
- ``load(path=None, *, cache_dir=None, download=False, **options)`` returning a list of
  :class:`~tcnvae.data.recordings.Recording` (continuous data) or a
  :class:`~tcnvae.data.windows.WindowSet` (data that only exists as windows, i.e. UCI-HAR), in
  canonical channels and units.

``path`` is the dataset's file or folder; without it the source looks in the cache
(``$TCNVAE_CACHE`` or ``~/.cache/tcnvae``) and, with ``download=True``, fetches the official archive.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from tcnvae.data.recordings import Recording
from tcnvae.data.windows import WindowSet

Loader = Callable[..., list[Recording] | WindowSet]

SOURCES: dict[str, str] = {
    "uci_har": "tcnvae.data.sources.uci_har",
    "hapt": "tcnvae.data.sources.hapt",
    "pamap2": "tcnvae.data.sources.pamap2",
    "wisdm": "tcnvae.data.sources.wisdm",
    "mhealth": "tcnvae.data.sources.mhealth",
    "wisdm2019_phone": "tcnvae.data.sources.wisdm2019_phone",
    "wisdm2019_watch": "tcnvae.data.sources.wisdm2019_watch",
    "hugadb": "tcnvae.data.sources.hugadb",
    "synthetic": "tcnvae.data.sources.synthetic",
    "sample": "tcnvae.data.sources.sample",
    "arrays": "tcnvae.data.sources.arrays",
}
_CALLABLES: dict[str, Loader] = {}


def available_sources() -> list[str]:
    return sorted(set(SOURCES) | set(_CALLABLES))


def register_source(name: str, source: str | ModuleType | Loader, *, replace: bool = False) -> None:
    """Make ``source`` loadable as ``name``: a module path, a module with ``load``, or a loader function.

    A loader function is called like a module's ``load``: ``(path, cache_dir=..., download=...,
    **options)``. Registering a taken name needs ``replace=True``, so a typo cannot shadow a dataset.
    """
    if not name or not name.replace("_", "").isalnum() or name != name.lower():
        raise ValueError(f"source name {name!r} must be lower_snake_case letters and digits")
    if name in available_sources() and not replace:
        raise ValueError(f"source {name!r} is already registered; pass replace=True to override it")
    if isinstance(source, ModuleType):
        if not callable(getattr(source, "load", None)):
            raise ValueError(f"module {source.__name__} has no load() function")
        source = source.__name__
    if isinstance(source, str):
        SOURCES[name] = source
        _CALLABLES.pop(name, None)
    elif callable(source):
        _CALLABLES[name] = source
        SOURCES.pop(name, None)
    else:
        raise ValueError(
            f"source {name!r} must be a module path, a module or a callable, got {type(source)}"
        )


def source_module(name: str) -> ModuleType:
    """The module of a module-based source (for its NAME, SAMPLE_RATE, ACTIVITY_MAP, docs)."""
    if name not in SOURCES:
        raise ValueError(
            f"unknown data source {name!r}; known module sources: {', '.join(sorted(SOURCES))}"
        )
    return importlib.import_module(SOURCES[name])


def load_source(
    name: str,
    path: str | Path | Any = None,
    *,
    cache_dir: str | Path | None = None,
    download: bool = False,
    **options: Any,
) -> list[Recording] | WindowSet:
    """Load dataset ``name`` from ``path`` (or the cache; see the module docstring)."""
    if name in _CALLABLES:
        loader = _CALLABLES[name]
    elif name in SOURCES:
        loader = source_module(name).load
    else:
        raise ValueError(
            f"unknown data source {name!r}; known sources: {', '.join(available_sources())}"
        )
    return loader(path, cache_dir=cache_dir, download=download, **options)
