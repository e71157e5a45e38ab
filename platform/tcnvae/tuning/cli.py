"""The command line every search shares: flags → one validated base config → checked data.

Order matters and is the point of this module: the config is built and validated, the data prepared
(and the trial resources checked) before Ray starts, so a typo, an impossible value or a bad data
file costs a one-line error instead of a cluster start-up and a crashed trial. A search recipe adds
its own flags to :func:`search_parser` (a plain run to :func:`run_parser`), then calls
:func:`base_config`, :func:`prepare_data`, :func:`search_space` (and a scheduler from
:mod:`tcnvae.tuning.search`), :func:`experiment_path`, and last
:func:`tcnvae.tuning.search.run_search`, which starts Ray (:func:`tcnvae.tuning.cluster.start_ray`) and
runs the search.

Precedence of settings, lowest first: ``DEFAULT_CONFIG`` → the recipe's own defaults → ``--config
FILE`` → the named flags → ``--set KEY=VALUE``. A key given by ``--config`` or ``--set`` is fixed: it
leaves the search space (:func:`search_space`).

The data is prepared once in the driver (:func:`prepare_data`) before Ray starts, exactly as every
trial will prepare it, so a missing, corrupt or mis-shaped file, a channel set the data lacks or an
unknown split subject is one message, not an error in every trial. What can only fail inside a trial
(a diverging learning rate) is not retried either (:mod:`tcnvae.tuning.trainables`).

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
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ray.tune.search.sample import Categorical, Float, Integer

from tcnvae.checkpoints import check_writable_folder, read_json_object
from tcnvae.data.pipeline import PreparedData, prepare
from tcnvae.tuning.cluster import (STORAGE_ENV, TRUST_FLAG, check_storage_uri, experiment_location, is_uri,
                                   stop_signals, storage_location, verify_experiment)
from tcnvae.tuning.config import ADAPT_MODES, data_config, read_setting, validate_config
from tcnvae.tuning.metrics import OBJECTIVES
from tcnvae.tuning.report import trial_settings
from tcnvae.tuning.search import MIN_STEPS_PER_EPOCH, SearchInterrupted, fit_batch_sizes, largest_batch_size
from tcnvae.tuning.trainables import SearchFailedError


DEBUG_ENV = "TCNVAE_DEBUG"
"""Set to 1 for the traceback of a user error (as ``--debug`` does)."""

USER_ERRORS = (ValueError, OSError)
"""What bad flags, settings and data raise, :func:`run_command` prints as one ``error:`` line: a ``ValueError``
(a codec error reading a CSV, bad JSON among them) or an ``OSError`` about a path (a folder given as a file,
a file not found, no permission). Any other exception is a programming error and keeps its traceback."""

logger = logging.getLogger(__name__)

def run_parser(description: str) -> argparse.ArgumentParser:
    """The flags of anything that trains from a trial config: data, settings, seed, output folder."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--data", nargs="+", default=None, metavar="SOURCE",
                      help="data sources by name, e.g. sample synthetic uci_har hapt (default: the recipe's; "
                           "synthetic, or the embedded sample for loss_weights.py)")
    data.add_argument("--data-path", action="append", default=[], metavar="NAME=PATH",
                      help="file or folder of a source (repeatable); arrays=FILE given again pools several "
                           "files, each its own dataset (named by its 'datasets' field, else its file stem)")

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


def _debug(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "0") not in ("", "0")


def run_command(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None) -> None:
    """Run a script's ``main(argv)``; a user error (:data:`USER_ERRORS`) becomes ``error: <message>`` on
    stderr and exit status 2, as argparse does, unless ``--debug`` or ``TCNVAE_DEBUG=1`` asks for the
    traceback.

    A search every trial of which failed (:class:`~tcnvae.tuning.trainables.SearchFailedError`) ends the
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
        stopped_by = stop_signals[-1] if stop_signals else signal.SIGINT
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
    search.add_argument(TRUST_FLAG, action="store_true",
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


def parse_data_paths(pairs: Sequence[str]) -> dict[str, Any]:
    """``--data-path NAME=PATH`` strings to ``data_paths``: a name given several times (arrays) maps to the
    list of its paths, each file its own dataset (the data layer refuses a list for any other source)."""
    grouped: dict[str, list[Any]] = {}
    for pair in pairs:
        for name, path in parse_assignments([pair], "--data-path").items():
            grouped.setdefault(name, []).append(path)
    return {name: paths[0] if len(paths) == 1 else paths for name, paths in grouped.items()}


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
        config["data_paths"] = parse_data_paths(args.data_path)
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
        resolved["data_paths"] = {name: [absolute(item) for item in path] if isinstance(path, list) else absolute(path)
                                  for name, path in config["data_paths"].items()}
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
    sizes capped by the training set's size (:func:`~tcnvae.tuning.search.fit_batch_sizes`), every end
    validated (:func:`validate_space`); prints what is searched and what is fixed.

    ``also_searched`` names what the recipe searches besides ``space`` (for the printout). A space
    left empty is an error unless the recipe searches something else.
    """
    fixed = {key: config[key] for key in fixed_settings(args) if key in space}
    fitted, note = fit_batch_sizes({key: domain for key, domain in space.items() if key not in fixed},
                                          train_windows)
    if not fitted and not also_searched:
        raise ValueError(f"--config/--set fix every key this search varies ({', '.join(space)}): nothing is left "
                         "to search; leave some out, or train the config in one plain run")
    validate_space(config, fitted)
    if note:
        print(note)
    limit = largest_batch_size(train_windows)
    if "batch_size" not in fitted and config["batch_size"] > limit:
        print(f"Warning: batch_size {config['batch_size']} gives fewer than {MIN_STEPS_PER_EPOCH} optimiser "
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
    (:func:`~tcnvae.tuning.cluster.verify_experiment`). ``--num-samples`` with ``--resume`` is
    warned about: Tune keeps the trial count the search started with.

    With a URI ``--storage-path`` Tune writes the trials to ``<URI>/<name>`` (:func:`~tcnvae.tuning.cluster.tune_storage`)
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
        verify_experiment(experiment_location(args, path), trust=args.trust_experiment)
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


