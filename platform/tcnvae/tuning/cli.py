"""The command line every search shares: flags → one validated base config → Ray.

Order matters and is the point of this module: the config is built and validated (and the trial
resources checked) before Ray starts, so a typo or an impossible value costs a one-line error instead
of a cluster start-up and a crashed trial. A search recipe adds its own flags to
:func:`search_parser` (a plain run to :func:`run_parser`), then calls :func:`base_config`,
:func:`experiment_path`, :func:`start_ray` and :func:`new_tuner` (or :func:`restore_tuner`).

Precedence of settings, lowest first: ``DEFAULT_CONFIG`` → the recipe's own defaults → ``--config
FILE`` → the named flags → ``--set KEY=VALUE``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.search.sample import Categorical, Float, Integer

from tcnvae.checkpoints import read_json_object
from tcnvae.data.pipeline import prepare
from tcnvae.tuning.config import ADAPT_MODES, OBJECTIVES, check_resources, data_config, validate_config
from tcnvae.tuning.tensorboard import tune_logger_callbacks
from tcnvae.tuning.trainable import make_trainable


STORAGE_ENV = "TCNVAE_STORAGE"
"""Environment variable naming the default ``--storage-path``: cluster.yaml sets it on every node."""

_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


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
    return parser


def search_parser(description: str) -> argparse.ArgumentParser:
    """:func:`run_parser` plus the flags common to every search; recipes add theirs to it."""
    parser = run_parser(description)
    search = parser.add_argument_group("search")
    search.add_argument("--num-samples", type=int, default=None,
                        help="trials to run (population size for PBT) (default: the recipe's)")
    search.add_argument("--max-epochs", type=int, default=None,
                        help="epochs of a trial that is never stopped early (default: the recipe's)")
    search.add_argument("--metric", choices=sorted(OBJECTIVES), default=None,
                        help="what the search maximises (default: accuracy). accuracy: validation accuracy "
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
                             "subjects are the test side; none: the target is held out of training (default: none)")
    search.add_argument("--resume", action="store_true",
                        help="continue the interrupted experiment --name: unfinished and errored trials go on "
                             "from their checkpoints, finished ones are not rerun")

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
    """``KEY=VALUE`` strings to a dict; VALUE read as JSON when it parses, else kept as a string."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, separator, text = pair.partition("=")
        if not separator or not key:
            raise ValueError(f"{option} {pair!r}: expected KEY=VALUE")
        try:
            parsed[key] = json.loads(text)
        except json.JSONDecodeError:
            parsed[key] = text
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
    if args.config is not None:
        config.update(read_json_object(args.config, "--config"))
    config.update({key: flags[flag] for flag, key in _FLAG_SETTINGS.items() if flags.get(flag) is not None})
    if args.data_path:
        config["data_paths"] = parse_assignments(args.data_path, "--data-path")
    if "gpus_per_trial" in flags:
        config["use_gpu"] = args.gpus_per_trial > 0
    config.update(parse_assignments(args.overrides, "--set"))
    config = validate_config(config)
    check_target_domain(config)
    return config


def check_target_domain(config: Mapping[str, Any]) -> None:
    """With a target domain, split the data once here: a target absent from the data, one that leaves no
    labelled training windows or too few subjects to adapt and test on fails now, not in every trial."""
    if config["target_domain"]:
        prepare(data_config(config))


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


def experiment_path(args: argparse.Namespace, recipe: str) -> Path:
    """The local experiment folder, ``--storage-path/--name``, checked against ``--resume`` (resume needs
    it; a new run must not reuse it).

    With a URI ``--storage-path`` Tune writes the trials to ``<URI>/<name>`` (:func:`tune_storage`)
    and this folder, ``./results/<name>`` on the machine running the search, holds the search's own files
    (Optuna study, leaderboard, best config).
    """
    storage = storage_location(args.storage_path)
    remote = is_uri(storage)
    local_root = Path("results").resolve() if remote else Path(storage)
    if getattr(args, "resume", False):
        if args.name is None:
            raise ValueError("--resume needs --name: the experiment folder under --storage-path to continue")
        path = local_root / args.name
        if not remote and not path.is_dir():  # a URI's experiment is checked by Tune's restore
            raise FileNotFoundError(f"--resume: no experiment at {path}")
        return path
    name = args.name or f"{recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = local_root / name
    if path.exists():
        raise ValueError(f"experiment folder {path} exists; pass --resume to continue it or pick another --name")
    return path


def tune_storage(args: argparse.Namespace, experiment: Path) -> str:
    """The ``storage_path`` Tune gets for ``experiment`` (:func:`experiment_path`): the URI of a URI
    ``--storage-path`` (Tune writes the trials to ``<URI>/<name>``), else the local folder's parent."""
    storage = storage_location(args.storage_path)
    return storage if is_uri(storage) else str(experiment.parent)


def start_ray(args: argparse.Namespace, config: Mapping[str, Any]) -> None:
    """Check the trial resources and start Ray (or join ``--address``); a running Ray is reused.

    When joining a cluster the GPU check counts the cluster's GPUs, so it runs after connecting;
    on one machine it runs before Ray starts. Once connected, a local ``--storage-path`` is refused on
    a multi-node cluster unless ``--shared-storage`` (:func:`check_shared_storage`). A cluster that
    autoscales from zero has one node when the search starts, so the check cannot see the workers to
    come: there the storage comes from ``TCNVAE_STORAGE`` (cluster.yaml sets an S3 URI).
    """
    if args.address is not None and not ray.is_initialized():
        ray.init(address=args.address)
    check_resources(args.cpus_per_trial, args.gpus_per_trial, config["workers_per_trial"])
    if not ray.is_initialized():
        ray.init()
    check_shared_storage(storage_location(args.storage_path), args.shared_storage, ray.nodes())


def new_tuner(args: argparse.Namespace, experiment: Path, config: Mapping[str, Any], param_space: dict[str, Any], *,
              num_samples: int, checkpoint_config: Any, search_alg: Any = None, scheduler: Any = None,
              stop: Mapping[str, Any] | None = None) -> tune.Tuner:
    """A ``Tuner`` for a new search: the recipe's searcher, scheduler and checkpoints, and what all share.

    Shared: the trainable with the flags' resources, Tune's ``reuse_actors`` (trials reuse a warm
    process), short trial folder names, each trial's own TensorBoard run instead of Ray's copy
    (:func:`~tcnvae.tuning.tensorboard.tune_logger_callbacks`), ``--max-concurrent``, and
    ``--max-failures`` restarts from the latest checkpoint.

    ``sync_artifacts``: a trial writes its TensorBoard files into its Tune trial directory, which for
    a trial that reuses another's process is a working directory under Ray's session folder; Tune
    copies it into the experiment folder only with this switch (at every checkpoint and at the end).
    Without it, ``tensorboard --logdir <experiment>`` would miss every trial that reused a process.
    """
    return tune.Tuner(
        make_trainable(args.cpus_per_trial, args.gpus_per_trial, config["workers_per_trial"]),
        param_space=param_space,
        tune_config=tune.TuneConfig(search_alg=search_alg, scheduler=scheduler, num_samples=num_samples,
                                    max_concurrent_trials=args.max_concurrent, reuse_actors=True,
                                    trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(name=experiment.name, storage_path=tune_storage(args, experiment),
                                  callbacks=tune_logger_callbacks(), checkpoint_config=checkpoint_config,
                                  failure_config=tune.FailureConfig(max_failures=args.max_failures), stop=stop,
                                  sync_config=tune.SyncConfig(sync_artifacts=True),
                                  verbose=1),  # trial status tables; 2 also prints every result
    )


def restore_tuner(args: argparse.Namespace, experiment: Path, config: Mapping[str, Any]) -> tune.Tuner:
    """The ``Tuner`` of an interrupted search, continuing its unfinished and errored trials.

    The searcher, scheduler and trial settings come from the experiment folder; only the resources
    come from this command's flags.
    """
    tune_logger_callbacks()  # switches Ray's TensorBoard logger off in this process too
    trainable = make_trainable(args.cpus_per_trial, args.gpus_per_trial, config["workers_per_trial"])
    return tune.Tuner.restore(f"{tune_storage(args, experiment)}/{experiment.name}", trainable,
                              resume_unfinished=True, resume_errored=True)


def trial_dirname(trial: Any) -> str:
    """Short trial folder names (``tcnvae_trial_1a2b3c4d``) for ``TuneConfig(trial_dirname_creator=...)``.

    Tune's default spells out the trial's config in the folder name; with a flat config of sixty keys
    that is a path too long to read, and TensorBoard lists runs by it.
    """
    return f"{trial.trainable_name}_{trial.trial_id}"
