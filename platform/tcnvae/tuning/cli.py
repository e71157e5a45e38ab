"""The command line every search shares: flags → one validated base config → checked data → Ray.

Order matters and is the point of this module: the config is built and validated, the data prepared
(and the trial resources checked) before Ray starts, so a typo, an impossible value or a bad data
file costs a one-line error instead of a cluster start-up and a crashed trial. A search recipe adds
its own flags to :func:`search_parser` (a plain run to :func:`run_parser`), then calls
:func:`base_config`, :func:`prepare_data`, :func:`search_space` (and a scheduler from
:mod:`tcnvae.tuning.schedulers`), :func:`experiment_path`, and last
:func:`tcnvae.tuning.search.run_search`, which starts Ray (:func:`start_ray`) and runs the search.

Precedence of settings, lowest first: ``DEFAULT_CONFIG`` → the recipe's own defaults → ``--config
FILE`` → the named flags → ``--set KEY=VALUE``. A key given by ``--config`` or ``--set`` is fixed: it
leaves the search space (:func:`search_space`).

The data is prepared once in the driver (:func:`prepare_data`) before Ray starts, exactly as every
trial will prepare it, so a missing, corrupt or mis-shaped file, a channel set the data lacks or an
unknown split subject is one message, not an error in every trial. What can only fail inside a trial
(a diverging learning rate) is not retried either (:mod:`tcnvae.tuning.failures`).

Scripts end with ``cli.run_command(main)``: a user error is ``error: <message>`` on stderr and exit
status 2, as argparse does; ``--debug`` (or ``TCNVAE_DEBUG=1``) shows the traceback instead. So is a
search every trial of which failed for the user's reason; Ctrl-C and SIGTERM stop a search alike,
with the resume hint and exit status 130 or 143.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
from ray.tune.search.sample import Categorical, Float, Integer

from tcnvae.checkpoints import check_writable_folder, read_json_object
from tcnvae.data.pipeline import PreparedData, prepare
from tcnvae.tuning import provenance, spaces
from tcnvae.tuning.config import ADAPT_MODES, OBJECTIVES, check_resources, data_config, read_setting, validate_config
from tcnvae.tuning.failures import SearchFailedError
from tcnvae.tuning.progress import ray_init_options
from tcnvae.tuning.results import trial_settings


DEBUG_ENV = "TCNVAE_DEBUG"
"""Set to 1 for the traceback of a user error (as ``--debug`` does)."""

USER_ERRORS = (ValueError, OSError)
"""What bad flags, settings and data raise, :func:`run_command` prints as one ``error:`` line: a ``ValueError``
(a codec error reading a CSV, bad JSON among them) or an ``OSError`` about a path (a folder given as a file,
a file not found, no permission). Any other exception is a programming error and keeps its traceback."""

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


def run_parser(description: str) -> argparse.ArgumentParser:
    """The flags of anything that trains from a trial config: data, settings, seed, output folder."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--data", nargs="+", default=None, metavar="SOURCE",
                      help="data sources by name, e.g. synthetic uci_har hapt (default: synthetic)")
    data.add_argument("--data-path", action="append", default=[], metavar="NAME=PATH",
                      help="file or folder of a source (repeatable)")

    settings = parser.add_argument_group("any trial setting")
    settings.add_argument("--config", type=Path, default=None, metavar="FILE",
                          help="JSON file of trial settings, e.g. a previous search's best_config.json")
    settings.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                          help="any key of tcnvae.tuning.config.DEFAULT_CONFIG; VALUE is JSON or a bare "
                               "string, e.g. --set hidden_dims=[64,64] --set split=lodo:synthetic_d (repeatable)")
    settings.add_argument("--seed", type=int, default=None,
                          help="seed of the data split and order and of the initialisation (default: 0); "
                               "a search also seeds its search algorithm with it")

    output = parser.add_argument_group("output")
    output.add_argument("--storage-path", default=os.environ.get(STORAGE_ENV, "results"),
                        help="folder or URI (s3://bucket/path, gs://...) holding every experiment "
                             f"(default: ${STORAGE_ENV} when set, as on the cluster of cluster.yaml, "
                             "else ./results)")
    output.add_argument("--shared-storage", action="store_true",
                        help="--storage-path is a folder every node of the Ray cluster mounts (EFS, NFS); "
                             "without it a local folder is refused on a multi-node cluster")
    output.add_argument("--name", default=None,
                        help="experiment folder name (default: the recipe name and the start time)")
    output.add_argument("--debug", action="store_true",
                        help=f"show the traceback of an error instead of one 'error:' line (or set {DEBUG_ENV}=1)")
    return parser


class SearchInterrupted(Exception):
    """Ctrl-C or SIGTERM ended the search before its trials did; the message says how to resume it."""


_stop_signals: list[int] = []


def stop_sigterm_as_ctrl_c() -> None:
    """From now on, SIGTERM stops the search as Ctrl-C does: Tune's graceful stop while it runs (the
    experiment state saved, then the resume hint), a ``KeyboardInterrupt`` otherwise.

    Called once Ray has started: ``ray.init`` installs a SIGTERM handler of its own, which exits in the
    middle of Tune's loop and ends the process with a native stack dump (exit status 134).
    """
    def on_sigterm(signum: int, frame: Any) -> None:
        _stop_signals.append(signum)
        ctrl_c = signal.getsignal(signal.SIGINT)
        if not callable(ctrl_c) or ctrl_c is signal.default_int_handler:
            raise KeyboardInterrupt
        ctrl_c(signal.SIGINT, frame)  # Tune's handler while a search runs

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)


def _debug(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "0") not in ("", "0")


def run_command(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None) -> None:
    """Run a script's ``main(argv)``; a user error (:data:`USER_ERRORS`) becomes ``error: <message>`` on
    stderr and exit status 2, as argparse does, unless ``--debug`` or ``TCNVAE_DEBUG=1`` asks for the
    traceback.

    A search every trial of which failed (:class:`~tcnvae.tuning.failures.SearchFailedError`) ends the
    same way when the cause is the user's to fix (a diverging learning rate, a bad setting or file);
    a programming error shows the first trial's traceback, then the ``error:`` line, exit status 1.
    A search stopped by Ctrl-C or SIGTERM says how to resume it and exits with 128 + the signal's
    number (130, 143), as a shell reports a process the signal ended.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        main(argv)
    except SearchFailedError as error:
        if _debug(argv):
            raise
        if not error.user_error:
            print(error.details, file=sys.stderr)
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2 if error.user_error else 1) from None
    except USER_ERRORS as error:
        if _debug(argv):
            raise
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except (SearchInterrupted, KeyboardInterrupt) as stop:
        stopped_by = _stop_signals[-1] if _stop_signals else signal.SIGINT
        print(f"\n{str(stop) or 'interrupted'} ({signal.Signals(stopped_by).name})", file=sys.stderr)
        raise SystemExit(128 + stopped_by) from None


def search_parser(description: str) -> argparse.ArgumentParser:
    """:func:`run_parser` plus the flags common to every search; recipes add theirs to it."""
    parser = run_parser(description)
    search = parser.add_argument_group("search")
    search.add_argument("--num-samples", type=int, default=None,
                        help="trials to run (population size for PBT) (default: the recipe's)")
    search.add_argument("--max-epochs", type=int, default=None,
                        help="epochs of a trial that is never stopped early (default: the recipe's)")
    search.add_argument("--metric", choices=sorted(OBJECTIVES), default=None,
                        help="what the search maximises (default: accuracy; source_risk with --adapt unlabelled). "
                             "accuracy: validation accuracy "
                             "on held-out subjects of the training domains; worst_domain_accuracy: the "
                             "lowest per-domain validation accuracy; target_accuracy: accuracy on a small "
                             "labelled slice of --target-domain, which is held out of training; source_risk: "
                             "minus the validation cross-entropy; dev: minus the Deep Embedded Validation risk "
                             "(needs --adapt unlabelled)")
    search.add_argument("--target-domain", default=None,
                        help="the deployment domain: for --metric target_accuracy, or to adapt to with --adapt "
                             "unlabelled")
    search.add_argument("--target-labelled-fraction", type=float, default=None,
                        help="share of the target domain's subjects labelled for model selection (default: 0.2)")
    search.add_argument("--adapt", choices=ADAPT_MODES, default=None,
                        help="unlabelled: --target-domain's training-side subjects join training without labels "
                             "(unsupervised domain adaptation; select with --metric dev or source_risk), its other "
                             "subjects are the test side, with the adaptation defaults of README 'Domain "
                             "adaptation'; none: the target is held out of training (default: none)")
    search.add_argument("--resume", action="store_true",
                        help="continue the interrupted experiment --name: unfinished and errored trials go on "
                             "from their checkpoints, finished ones are not rerun")
    search.add_argument(provenance.TRUST_FLAG, action="store_true",
                        help="with --resume: restore even pickled files your own searches are not recorded as "
                             "having written (README, 'Resuming and trust')")
    search.add_argument("--verbose", action="store_true",
                        help="Tune's own console: its trial tables and every warning, such as its repeated "
                             "'Experiment state snapshotting' (default: one progress line now and then)")

    resources = parser.add_argument_group("resources")
    resources.add_argument("--cpus-per-trial", type=float, default=1.0, help="(default: 1)")
    resources.add_argument("--gpus-per-trial", type=float, default=0.0,
                           help="fractions pack several small trials on one GPU, e.g. 0.25 (default: 0)")
    resources.add_argument("--workers-per-trial", type=int, default=None,
                           help="above 1, each trial trains with DDP on this many Ray Train workers (default: 1)")
    resources.add_argument("--max-concurrent", type=int, default=None,
                           help="trials running at once (default: as many as the resources allow)")
    resources.add_argument("--max-failures", type=int, default=2,
                           help="times a crashed trial is restarted from its latest checkpoint; -1: no limit "
                                "(default: 2)")
    resources.add_argument("--address", default=None,
                           help="Ray cluster to join, e.g. auto (default: start Ray on this machine)")
    return parser


def parse_assignments(pairs: Sequence[str], option: str) -> dict[str, Any]:
    """``KEY=VALUE`` strings to a dict; VALUE read by :func:`~tcnvae.tuning.config.read_setting` (JSON
    when it parses, else a string; a trial setting's as its declaration takes it)."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, separator, text = pair.partition("=")
        if not separator or not key:
            raise ValueError(f"{option} {pair!r}: expected KEY=VALUE")
        parsed[key] = read_setting(key, text)
    return parsed


# Named flags -> the trial setting each one sets (only when given: flags never reset a --config value).
_FLAG_SETTINGS = {
    "data": "datasets", "max_epochs": "max_epochs", "metric": "objective", "target_domain": "target_domain",
    "target_labelled_fraction": "target_labelled_fraction", "seed": "seed", "workers_per_trial": "workers_per_trial",
    "adapt": "adapt",
}


def base_config(args: argparse.Namespace, recipe_defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The validated config every trial starts from (before a search's sampled values).

    Also checks the search flags that are not trial settings, so every bad value fails before Ray.
    """
    flags = vars(args)
    for flag, lowest in (("num_samples", 1), ("max_concurrent", 1), ("max_failures", -1)):
        if flags.get(flag) is not None and flags[flag] < lowest:
            raise ValueError(f"--{flag.replace('_', '-')} {flags[flag]}: expected an integer >= {lowest}")
    config: dict[str, Any] = dict(recipe_defaults)
    config.update(_config_file(args))
    config.update({key: flags[flag] for flag, key in _FLAG_SETTINGS.items() if flags.get(flag) is not None})
    if args.data_path:
        config["data_paths"] = parse_assignments(args.data_path, "--data-path")
    if "gpus_per_trial" in flags:
        config["use_gpu"] = args.gpus_per_trial > 0
    config.update(parse_assignments(args.overrides, "--set"))
    config = validate_config(absolute_data_paths(config))
    check_target_domain(config)
    return config


def absolute_data_paths(config: Mapping[str, Any]) -> dict[str, Any]:
    """``data_paths`` and ``data_cache_dir`` as the driver reads them: a trial runs in its own folder
    (Ray Tune's working directory for it), where a path relative to where the search started points elsewhere."""
    def absolute(path: Any) -> Any:
        return path if not isinstance(path, str) or is_uri(path) else str(Path(path).expanduser().absolute())

    resolved = dict(config)
    if isinstance(config.get("data_paths"), Mapping):
        resolved["data_paths"] = {name: absolute(path) for name, path in config["data_paths"].items()}
    resolved["data_cache_dir"] = absolute(config.get("data_cache_dir"))
    return resolved


def check_target_domain(config: Mapping[str, Any]) -> None:
    """With a target domain, split the data once here: a target absent from the data, one that leaves no
    labelled training windows or too few subjects to adapt and test on fails now, not in every trial."""
    if config["target_domain"]:
        prepare(data_config(config))


def _config_file(args: argparse.Namespace) -> dict[str, Any]:
    # a best_config.json's test record is no setting
    return trial_settings(read_json_object(args.config, "--config")) if args.config is not None else {}


def fixed_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the user gave by ``--config`` and ``--set``: fixed, never searched."""
    return {**_config_file(args), **parse_assignments(args.overrides, "--set")}


def prepare_data(config: Mapping[str, Any]) -> tuple[dict[str, Any], PreparedData]:
    """Prepare the data once, as every trial will, before Ray starts; the (validated) config with what
    the data decided recorded in it.

    Every data problem (a missing, corrupt, mis-shaped or NaN file, a forgotten ``--data-path``, a
    channel set the data lacks, an unknown split subject or target domain) is raised here, in seconds.
    Recorded: ``activities`` (the head's order, new activity names included) and ``window_seconds``
    (pre-windowed data's own duration), so ``best_config.json`` rebuilds the same model on the same
    windows.
    """
    data = prepare(data_config(config))
    recorded = dict(config)
    if recorded["activities"] is None:
        recorded["activities"] = data.activity_names
    recorded["window_seconds"] = data.config.window_seconds
    splits = ", ".join(f"{len(windows)} {side}" for side, windows in
                       (("train", data.train), ("val", data.val), ("test", data.test)))
    print(f"Data: {', '.join(config['datasets'])}: {splits} windows of {data.config.window_seconds:g} s at "
          f"{data.train.sample_rate:g} Hz; {data.num_activities} activities: {', '.join(data.activity_names)}")
    return recorded, data  # the data's own values: the config stays valid


def validate_space(config: Mapping[str, Any], space: Mapping[str, Any]) -> None:
    """Validate ``config`` with each search-space key at each end of its range (and each choice).

    Range checks are per key, so the ends and the choices are where an impossible value would hide;
    nothing is sampled. Accepts Tune domains, ``tune.grid_search`` dicts, lists of choices and
    ``[low, high]`` bounds (PB2).
    """
    for key, domain in space.items():
        if isinstance(domain, (Float, Integer)):
            values = [domain.lower, domain.upper]
        elif isinstance(domain, Categorical):
            values = list(domain.categories)
        elif isinstance(domain, Mapping) and "grid_search" in domain:
            values = list(domain["grid_search"])
        elif isinstance(domain, (list, tuple)):
            values = list(domain)
        else:
            raise ValueError(f"search space key {key!r}: cannot read the values of {domain!r}")
        for value in values:
            try:
                validate_config({**config, key: value})
            except ValueError as error:
                raise ValueError(f"search space {key}={value!r} is not a valid setting: {error}") from None


def search_space(args: argparse.Namespace, config: Mapping[str, Any], space: Mapping[str, Any],
                 train_windows: int, *, also_searched: Sequence[str] = ()) -> dict[str, Any]:
    """The recipe's ``space`` fitted to this search: keys fixed by ``--config``/``--set`` left out, batch
    sizes capped by the training set's size (:func:`~tcnvae.tuning.spaces.fit_batch_sizes`), every end
    validated (:func:`validate_space`); prints what is searched and what is fixed.

    ``also_searched`` names what the recipe searches besides ``space`` (for the printout). A space
    left empty is an error unless the recipe searches something else.
    """
    fixed = {key: config[key] for key in fixed_settings(args) if key in space}
    fitted, note = spaces.fit_batch_sizes({key: domain for key, domain in space.items() if key not in fixed},
                                          train_windows)
    if not fitted and not also_searched:
        raise ValueError(f"--config/--set fix every key this search varies ({', '.join(space)}): nothing is left "
                         "to search; leave some out, or train the config in one plain run")
    validate_space(config, fitted)
    if note:
        print(note)
    limit = spaces.largest_batch_size(train_windows)
    if "batch_size" not in fitted and config["batch_size"] > limit:
        print(f"Warning: batch_size {config['batch_size']} gives fewer than {spaces.MIN_STEPS_PER_EPOCH} optimiser "
              f"steps an epoch on {train_windows} training windows; consider --set batch_size={limit}")
    print(f"Searching: {', '.join([*fitted, *also_searched])}")
    if fixed:
        print("Fixed by --config/--set: " + ", ".join(f"{key}={value!r}" for key, value in fixed.items()))
    return fitted


def experiment_path(args: argparse.Namespace, recipe: str) -> Path:
    """The local experiment folder, ``--storage-path/--name``, checked against ``--resume`` (resume needs
    it; a new run must not reuse it), all before Ray starts.

    Also refused here: a ``--name`` that would leave ``--storage-path`` (``../x``, ``a/b``); a storage
    folder that is a file or cannot be written; a storage URI of an unknown scheme or an impossible
    bucket; and a resume whose pickled files this user's searches did not write
    (:func:`~tcnvae.tuning.provenance.verify_experiment`). ``--num-samples`` with ``--resume`` is
    warned about: Tune keeps the trial count the search started with.

    With a URI ``--storage-path`` Tune writes the trials to ``<URI>/<name>`` (:func:`tune_storage`)
    and this folder, ``./results/<name>`` on the machine running the search, holds the search's own files
    (Optuna study, leaderboard, best config).
    """
    storage = storage_location(args.storage_path)
    remote = is_uri(storage)
    if remote:
        check_storage_uri(storage)
    local_root = check_writable_folder(Path("results") if remote else storage,
                                       "results folder" if remote else "--storage-path")
    if args.name is not None and (args.name in ("", ".", "..") or re.search(r"[/\\]", args.name)):
        raise ValueError(f"--name {args.name!r}: expected a plain folder name (no '/', '\\', '.' or '..'): the "
                         f"experiment folder must stay inside --storage-path {storage}")
    if getattr(args, "resume", False):
        if args.name is None:
            raise ValueError("--resume needs --name: the experiment folder under --storage-path to continue")
        # Warned, not refused: rerunning the very command of the search with --resume added is the usual way.
        ignored = ignored_with_resume(args)
        if ignored:
            logger.warning("%s %s ignored with --resume: Tune restores the search as it was started, its "
                           "settings, search space and trial count included (only --cpus-per-trial and "
                           "--gpus-per-trial apply); start a new search (another --name) to change them",
                           ", ".join(ignored), "is" if len(ignored) == 1 else "are")
        path = local_root / args.name
        if not remote and not path.is_dir():  # a URI's experiment is checked by Tune's restore
            raise FileNotFoundError(f"--resume: no experiment at {path}")
        provenance.verify_experiment(experiment_location(args, path), trust=args.trust_experiment)
        return path
    name = args.name or f"{recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = local_root / name
    if path.exists():
        raise ValueError(f"experiment folder {path} exists; pass --resume to continue it or pick another --name")
    return path


_RESTORED_FLAGS = ("data", "data_path", "config", "overrides", "seed", "num_samples", "max_epochs", "metric",
                   "target_domain", "target_labelled_fraction", "adapt", "max_failures", "max_concurrent")


def ignored_with_resume(args: argparse.Namespace) -> list[str]:
    """The shared flags given on this command line that a resumed search does not apply (Tune restores the
    settings it started with), as typed: ``--set lr=0.01``, ``--num-samples 20``. A recipe's own flags
    (a searcher, a scheduler) are restored too, and not listed."""
    defaults = vars(search_parser("").parse_args([]))
    ignored = []
    for dest in _RESTORED_FLAGS:
        value = getattr(args, dest, defaults[dest])
        if value == defaults[dest]:
            continue
        flag = "--set" if dest == "overrides" else f"--{dest.replace('_', '-')}"
        if dest in ("overrides", "data_path"):  # repeatable: one entry each
            ignored.extend(f"{flag} {item}" for item in value)
        else:
            ignored.append(f"{flag} {' '.join(map(str, value)) if isinstance(value, list) else value}")
    return ignored


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


TRIAL_NAME_LENGTH = 100
"""Longest trial name: TensorBoard's run list and Tune's status table stay readable."""


def _short_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2g}"
    return str(value).replace(" ", "")


def trial_dirname(trial: Any) -> str:
    """A trial's name and folder: its index, then the values it drew in the alphabetical order HParams
    uses, e.g. ``003_batch_size=64_beta=0.52_dropout=0.23_lambda_act=2.1_lambda_dom=0.031_lr=0.00032``.

    Given as both ``trial_name_creator`` and ``trial_dirname_creator``, so Tune's console table,
    ``leaderboard.csv`` (which names trials by folder) and TensorBoard (which lists runs by folder)
    show the same name, in trial order. The index is the searcher's count (``experiment_tag``), saved
    with the search so a resumed search goes on counting; a dotted curriculum key shows its last part.
    Tune's default spells out the whole sixty-key config, a path too long to read.
    """
    index = trial.experiment_tag.split("_", 1)[0]
    drawn = "_".join(f"{str(key).rsplit('.', 1)[-1]}={_short_value(value)}"
                     for key, value in sorted(trial.evaluated_params.items()))
    name = f"{int(index):03d}_{drawn}" if drawn else f"{int(index):03d}"
    return name.replace("/", "-")[:TRIAL_NAME_LENGTH]
