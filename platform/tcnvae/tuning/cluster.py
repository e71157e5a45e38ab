"""The cluster and the storage: where a search runs and writes, and whether its folder can be trusted.

- Storage: ``--storage-path`` as Tune gets it (:func:`storage_location`, :func:`tune_storage`,
  :func:`experiment_location`): a local folder, or a URI (``s3://``, ``gs://`` ...) checked before
  Ray starts (:func:`check_storage_uri`); a local folder is refused on a multi-node cluster unless it
  is shared (:func:`check_shared_storage`).
- Ray: :func:`start_ray` checks the trial resources and starts Ray or joins ``--address``
  (:func:`join_cluster`, whose watchdog gives up in :data:`CONNECT_SECONDS`); from then on SIGTERM
  stops a search as Ctrl-C does (:func:`stop_sigterm_as_ctrl_c`).
- Trust: which pickled files of an experiment folder this user's own searches wrote, checked before
  ``--resume`` (:class:`DigestRecorder`, :func:`verify_experiment`).

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

import argparse
import hashlib
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray
from ray import tune

from tcnvae.checkpoints import read_json_object, write_json
from tcnvae.tuning.config import check_resources
from tcnvae.tuning.report import ray_init_options

logger = logging.getLogger(__name__)

STORAGE_ENV = "TCNVAE_STORAGE"
"""Environment variable naming the default ``--storage-path``: cluster.yaml sets it on every node."""

_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Object stores Tune reaches through pyarrow, and the bucket names each allows (S3's and GCS's rules;
# Azure containers and HDFS hosts are left to pyarrow).
_BUCKETS = {
    "s3": re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"),
    "gs": re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$"),
    "gcs": re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$"),
    "abfs": re.compile(r".+"), "abfss": re.compile(r".+"), "hdfs": re.compile(r".+"),
}
CONNECT_SECONDS = 30
"""How long joining ``--address`` may take before the search gives up (Ray itself retries for minutes)."""


def is_uri(location: str) -> bool:
    """``s3://...``, ``gs://...`` and the like: storage that Ray Tune reaches through pyarrow, not a local path."""
    return bool(_URI_SCHEME.match(location)) and not location.startswith("file://")


def storage_location(location: str | Path) -> str:
    """``--storage-path`` as Tune gets it: a URI verbatim (no trailing slash), a local path absolute.

    A URI must not pass through ``Path``: ``Path("s3://bucket/x").resolve()`` is a local path
    ``<cwd>/s3:/bucket/x``, and Tune would write the experiment there.
    """
    text = str(location)
    if not text:
        raise ValueError("--storage-path is empty: expected a folder or a URI such as s3://bucket/path")
    if text.startswith("file://"):
        text = text[len("file://"):]
    if is_uri(text):
        return text.rstrip("/")
    return str(Path(text).expanduser().resolve())


def check_storage_uri(uri: str) -> None:
    """Refuse a storage URI whose scheme pyarrow cannot write or whose bucket name cannot exist, before
    Ray starts (the bucket's existence and access are only known once Tune writes there)."""
    scheme, _, rest = uri.partition("://")
    bucket = rest.split("/", 1)[0]
    if scheme.lower() not in _BUCKETS:
        raise ValueError(f"--storage-path {uri}: unknown storage scheme {scheme!r}; expected a local folder or "
                         f"one of {', '.join(f'{name}://' for name in _BUCKETS)}")
    if not _BUCKETS[scheme.lower()].match(bucket):
        placeholder = "; replace cluster.yaml's CHANGE-ME placeholder with your bucket" if "CHANGE-ME" in bucket else ""
        raise ValueError(f"--storage-path {uri}: {bucket!r} is not a valid {scheme} bucket name (lowercase "
                         "letters, digits, dots and hyphens, starting and ending with a letter or digit; 3 to 63 "
                         f"characters on S3){placeholder}")


def check_shared_storage(storage: str, shared: bool, nodes: Sequence[Mapping[str, Any]]) -> None:
    """Refuse a local, non-shared storage folder when the Ray cluster has more than one live node.

    Each trial writes its checkpoints and TensorBoard files on the node it runs on, under the storage
    path; a retried, resumed or PBT-cloned trial may run on another node, which would not find them,
    and the driver would not see the results of trials on other nodes. ``nodes`` is ``ray.nodes()``.
    """
    alive = sum(1 for node in nodes if node.get("Alive", False))
    if alive <= 1 or shared or is_uri(storage):
        return
    raise ValueError(
        f"--storage-path {storage} is a folder on this machine, but the Ray cluster has {alive} live nodes: "
        "checkpoints a trial writes on one node are not visible on another, so retried, resumed and PBT-cloned "
        "trials would lose them. Use storage all nodes reach: an object-store URI (--storage-path "
        "s3://bucket/path, or set it once in cluster.yaml as TCNVAE_STORAGE), or a folder on a shared file "
        "system (EFS, NFS) mounted at the same path on every node, declared with --shared-storage"
    )


stop_signals: list[int] = []
"""The signals that stopped the search, as :func:`stop_sigterm_as_ctrl_c` records them: how
:func:`tcnvae.tuning.cli.run_command` tells a SIGTERM from a Ctrl-C."""


def stop_sigterm_as_ctrl_c() -> None:
    """From now on, SIGTERM stops the search as Ctrl-C does: Tune's graceful stop while it runs (the
    experiment state saved, then the resume hint), a ``KeyboardInterrupt`` otherwise.

    Called once Ray has started: ``ray.init`` installs a SIGTERM handler of its own, which exits in the
    middle of Tune's loop and ends the process with a native stack dump (exit status 134).
    """
    def on_sigterm(signum: int, frame: Any) -> None:
        stop_signals.append(signum)
        ctrl_c = signal.getsignal(signal.SIGINT)
        if not callable(ctrl_c) or ctrl_c is signal.default_int_handler:
            raise KeyboardInterrupt
        ctrl_c(signal.SIGINT, frame)  # Tune's handler while a search runs

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)


def experiment_location(args: argparse.Namespace, experiment: Path) -> str:
    """Where Tune keeps the experiment's own files: the folder, or ``<URI>/<name>``."""
    return f"{tune_storage(args, experiment)}/{experiment.name}"


def tune_storage(args: argparse.Namespace, experiment: Path) -> str:
    """The ``storage_path`` Tune gets for ``experiment`` (:func:`experiment_path`): the URI of a URI
    ``--storage-path`` (Tune writes the trials to ``<URI>/<name>``), else the local folder's parent."""
    storage = storage_location(args.storage_path)
    return storage if is_uri(storage) else str(experiment.parent)


def start_ray(args: argparse.Namespace, config: Mapping[str, Any]) -> None:
    """Check the trial resources and start Ray (or join ``--address``); a running Ray is reused.

    When joining a cluster the resource check counts the cluster's nodes (and the node types its
    autoscaler may start), so it runs after connecting (:func:`join_cluster`, bounded in time); on one
    machine it runs before Ray starts. Once connected, a local ``--storage-path`` is refused on
    a multi-node cluster unless ``--shared-storage`` (:func:`check_shared_storage`). A cluster that
    autoscales from zero has one node when the search starts, so the check cannot see the workers to
    come: there the storage comes from ``TCNVAE_STORAGE`` (cluster.yaml sets an S3 URI).
    """
    verbose = getattr(args, "verbose", False)
    if args.address is not None and not ray.is_initialized():
        join_cluster(args.address, **ray_init_options(verbose))
    check_resources(args.cpus_per_trial, args.gpus_per_trial, config["workers_per_trial"])
    if not ray.is_initialized():
        # "local": a new Ray of this search's own. A bare ray.init() joins whatever Ray another job on this
        # machine started last (`ray start`), and would run the trials there; joining is --address's job.
        ray.init(address="local", **ray_init_options(verbose))
    stop_sigterm_as_ctrl_c()
    check_shared_storage(storage_location(args.storage_path), args.shared_storage, ray.nodes())


def join_cluster(address: str, **init_options: Any) -> None:
    """``ray.init(address=...)``, failing within :data:`CONNECT_SECONDS` instead of Ray's minutes of retries.

    A ``HOST:PORT`` (or ``ray://HOST:PORT``) nobody listens on is refused at once. Beyond that, Ray's
    connection retries run in native code where neither Ctrl-C nor SIGTERM is handled, so a watchdog
    ends the process with an error (exit status 2) if joining has not finished in time.
    """
    if address not in ("auto", "local"):
        host, separator, port = address.split("://", 1)[-1].rpartition(":")
        if not separator or not host or not port.isdigit():
            raise ValueError(f"--address {address!r}: expected HOST:PORT (the head's GCS port, 6379 by default), "
                             "ray://HOST:PORT or auto")
        try:
            socket.create_connection((host, int(port)), timeout=10).close()
        except OSError as error:
            raise ValueError(f"--address {address}: no Ray cluster answers there ({error.strerror or error}). "
                             "Start one with `ray start --head`, check the host and port, or leave --address out "
                             "to start Ray on this machine") from None

    def give_up() -> None:
        print(f"error: --address {address}: joining the Ray cluster did not finish in {CONNECT_SECONDS} s; is it "
              "a Ray head's GCS port, and of Ray's version on both sides?", file=sys.stderr, flush=True)
        os._exit(2)

    watchdog = threading.Timer(CONNECT_SECONDS, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        ray.init(address=address, **init_options)
    finally:
        watchdog.cancel()


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
