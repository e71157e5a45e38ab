"""Which pickled files of an experiment folder this user's own searches wrote: checked before ``--resume``.

``Tuner.restore`` unpickles ``tuner.pkl``, the searcher's state files, the trials inside
``experiment_state-*.json`` and each errored trial's ``error.pkl``: whoever can write the experiment
folder (an S3 bucket, an NFS share, a world-writable results folder) could plant one that runs code as
whoever resumes. So a search records the SHA-256 of each such file it writes, in this user's own state
directory (``$TCNVAE_STATE_DIR``, else ``$XDG_STATE_HOME/tcnvae``, else ``~/.local/state/tcnvae``),
which a writer of the experiment folder cannot reach, and ``--resume`` refuses a file whose content
is not one this user's search wrote (``--trust-experiment`` overrides, after you have checked it).

The record keeps the last few versions of each file: Tune rewrites its state every few seconds and
uploads it in the background, so after a killed driver the folder may hold the version before the
newest one; both are this user's own writes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import pyarrow.fs
from ray import tune

from tcnvae.checkpoints import read_json_object, write_json

logger = logging.getLogger(__name__)

STATE_ENV = "TCNVAE_STATE_DIR"
"""Environment variable naming the state directory that holds the records (tests point it elsewhere)."""
TRUST_FLAG = "--trust-experiment"
VERSIONS_KEPT = 16  # per file: Tune rewrites its state each save; a killed driver leaves a recent one
REMOTE_SCAN_SECONDS = 2.0  # a URI experiment is listed at most this often (each listing is a request)
LISTING_SECONDS = 2.0
"""How often a local experiment folder is listed for new pickled files; the files found are checked at every
step. A listing stats every trial folder and Tune steps many times a second: listing at every step took a
fifth of the driver's time in a 300-trial search (benchmarks/many_trials.py)."""


def state_dir() -> Path:
    """This user's state directory for tcnvae: never inside an experiment folder."""
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV]).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "tcnvae"


def record_path(location: str) -> Path:
    """The record of the experiment at ``location`` (its folder or URI)."""
    return state_dir() / "experiments" / f"{hashlib.sha256(location.encode()).hexdigest()[:32]}.json"


def _filesystem(location: str) -> tuple[pyarrow.fs.FileSystem, str]:
    if "://" in location:
        return pyarrow.fs.FileSystem.from_uri(location)
    return pyarrow.fs.LocalFileSystem(), str(Path(location).absolute())


def _is_unpickled_on_restore(relative: str) -> bool:
    """Tune's files that restore unpickles: the folder's own ``*.pkl``, its state files (``*state-*.json``:
    the trials in ``experiment_state-*.json`` are cloudpickled, ``search_gen_state-*.json`` and
    ``basic-variant-state-*.json`` are pickles despite the name), and each trial's ``error.pkl``. The
    search's own results (``best_config.json``, ...) are plain JSON, read as such."""
    parts = relative.split("/")
    if len(parts) == 1:
        return relative.endswith(".pkl") or ("state-" in relative and relative.endswith(".json"))
    return len(parts) == 2 and parts[1] == "error.pkl"


def _pickled_files(fs: pyarrow.fs.FileSystem, root: str) -> dict[str, pyarrow.fs.FileInfo]:
    """The files of :func:`_is_unpickled_on_restore` under ``root``, by path relative to it."""
    top = fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
    folders = [info.path for info in top if info.type == pyarrow.fs.FileType.Directory]
    errors = fs.get_file_info([f"{folder}/error.pkl" for folder in folders]) if folders else []
    found = {}
    for info in [*top, *errors]:
        relative = info.path[len(root):].lstrip("/")
        if info.type == pyarrow.fs.FileType.File and _is_unpickled_on_restore(relative):
            found[relative] = info
    return found


def _sha256(fs: pyarrow.fs.FileSystem, path: str) -> str:
    with fs.open_input_stream(path) as stream:
        return hashlib.sha256(stream.readall()).hexdigest()


def _read_record(location: str) -> dict[str, list[str]]:
    path = record_path(location)
    if not path.is_file():
        return {}
    record = read_json_object(path, "experiment record")
    return dict(record.get("files", {}))


class DigestRecorder(tune.Callback):
    """A Tune callback that records the digests of the experiment's pickled files as Tune writes them.

    It runs in the driver after each controller step (just after Tune saves its state) and at the end,
    and reads Tune's local staging copy of its state as well as the experiment folder, so the record
    has each version before (or as soon as) the upload lands. A new file (the first state save, a trial's
    error.pkl) is found by listing the folders, every :data:`LISTING_SECONDS` and at the end.
    """

    def __init__(self, location: str):
        self.location = location
        self._seen: dict[str, tuple[int, Any]] = {}
        self._last_scan = 0.0
        self._last_listing = float("-inf")
        self._warned = False

    def __getstate__(self) -> dict[str, Any]:  # pickled into tuner.pkl: the cache starts afresh
        return {"location": self.location}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["location"])

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if "://" in self.location and now - self._last_scan < REMOTE_SCAN_SECONDS:
            return
        self._record_or_warn(trials, listing=now - self._last_listing >= LISTING_SECONDS)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._record_or_warn(trials)

    def _record_or_warn(self, trials: list, listing: bool = True) -> None:
        # A state directory that cannot be written must not stop the search; it only costs the check.
        try:
            self.record(trials, listing)
        except OSError as error:
            if not self._warned:
                logger.warning("cannot record the digests of %s's pickled files (%s): resuming it will need %s",
                               self.location, error, TRUST_FLAG)
                self._warned = True

    def record(self, trials: list, listing: bool = True) -> None:
        """Add the digest of every new or changed pickled file to this experiment's record; without
        ``listing``, only of the files an earlier call found (no folder is listed)."""
        self._last_scan = time.monotonic()
        if listing:
            self._last_listing = self._last_scan
        sources = [_filesystem(self.location)]
        storage = getattr(trials[0], "storage", None) if trials else None
        if storage is not None:  # Tune's staging copy of its own state, on this machine, written before the upload
            sources.append((pyarrow.fs.LocalFileSystem(), storage.experiment_driver_staging_path))
        changed: dict[str, set[str]] = {}
        stamps = {}
        for fs, root in sources:
            found = _pickled_files(fs, root) if listing else self._found_before(fs, root)
            for relative, info in found.items():
                key, stamp = f"{root}/{relative}", (info.size, info.mtime_ns)
                if self._seen.get(key) != stamp:
                    stamps[key] = stamp
                    changed.setdefault(relative, set()).add(_sha256(fs, info.path))
        if not changed:
            return
        files = _read_record(self.location)
        for relative, digests in changed.items():
            known = files.get(relative, [])
            files[relative] = ([d for d in known if d not in digests] + sorted(digests))[-VERSIONS_KEPT:]
        write_json({"location": self.location, "files": files}, record_path(self.location))
        self._seen.update(stamps)  # only once recorded: a failed write is retried at the next step

    def _found_before(self, fs: pyarrow.fs.FileSystem, root: str) -> dict[str, pyarrow.fs.FileInfo]:
        """The files under ``root`` that an earlier call recorded and that are still there, by relative path."""
        infos = fs.get_file_info([key for key in self._seen if key.startswith(f"{root}/")])
        return {info.path[len(root):].lstrip("/"): info for info in infos if info.type == pyarrow.fs.FileType.File}


def verify_experiment(location: str, trust: bool = False) -> None:
    """Refuse to restore ``location`` unless each file Tune would unpickle is one this user's search wrote.

    ``trust`` (the ``--trust-experiment`` flag) skips the check after printing what it skips.
    """
    fs, root = _filesystem(location)
    present = _pickled_files(fs, root)
    files = _read_record(location)
    unknown = sorted(relative for relative, info in present.items()
                     if _sha256(fs, info.path) not in files.get(relative, []))
    if not unknown:
        return
    if trust:
        print(f"{TRUST_FLAG}: restoring {location} although {len(unknown)} pickled file(s) are not recorded "
              f"as written by your searches: {', '.join(unknown)}")
        return
    why = ("there is no record of it in your state directory: it was started by someone else, on another "
           "machine, with another state directory, or before records were kept" if not files else
           "their content differs from every version your search recorded: someone or something else "
           "wrote them after your search did")
    raise ValueError(
        f"--resume refused: {location} holds pickled files that Tune would load, which can run any code, and "
        f"{', '.join(unknown)} cannot be verified ({why}; records are kept in {state_dir() / 'experiments'}). "
        f"If you trust everyone who can write that folder, or have checked these files, pass {TRUST_FLAG}"
    )
