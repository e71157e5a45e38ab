"""The flat trial config: every knob of one TCN-VAE trial in one dict, and its validation.

Flat because Tune search spaces, Optuna, PBT mutations, the leaderboard CSV and TensorBoard's HParams
all address hyperparameters by a single key; nesting would make every search spell paths.

Every key is declared once (:class:`~tcnvae.settings.Setting`: default, check, help, whether
PBT may mutate it) by the part that uses it: the data layer's in :class:`DataConfig` and
:mod:`tcnvae.data.loaders`, the model's in :data:`tcnvae.model.ARCHITECTURE`, the objective's in
:class:`~tcnvae.objective.Objective`, the trial's own in :data:`TRIAL_SETTINGS`. The keys, their defaults
(:data:`DEFAULT_CONFIG`), their checks and what PBT may mutate (:func:`mutable_keys`) derive from the
declarations (:func:`declarations`); this module adds the rules between settings.

A config is validated (:func:`validate_config`) once, where it enters: the command line's base config,
:func:`~tcnvae.tuning.trial.run_trial` (a Tune trial's sampled values included), the final model, a
replay file; and each end of a search space before Ray starts. So an impossible value costs a message,
not a cluster start-up and a crashed trial.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from tcnvae import beta_schedules
from tcnvae.curriculum import check_curriculum_spec, make_curriculum
from tcnvae.data.pipeline import AUGMENTATION, DataConfig, data_settings
from tcnvae.model import ARCHITECTURE
from tcnvae.objective import Objective
from tcnvae.objective import settings as objective_settings
from tcnvae.settings import FLAG, Check, Setting, choice, defaults, is_integer, number
from tcnvae.settings import problems as setting_problems
from tcnvae.trainer import PRECISIONS
from tcnvae.tuning.metrics import OBJECTIVES

logger = logging.getLogger(__name__)

ADAPT_MODES = ("none", "unlabelled")
"""``none``: a ``target_domain`` is held out of training (its labelled slice may select models:
``target_accuracy``). ``unlabelled``: the target's training-side subjects join training without labels
(unsupervised domain adaptation), its other subjects are the test side."""
ADAPT_DEFAULTS: dict[str, Any] = {
    "sampling": "target_balanced",  # every batch half source, half target: the domain head sees both
    # At λ_dom 0.1 the domain head could still tell the groups apart after 10 epochs: the reversed
    # gradient was too weak to align them. λ_ent (entropy minimisation) stays at DEFAULT_CONFIG's 0:
    # between groups of people it was worth less than the seeds' spread, while on one target person it
    # collapsed the predictions, unseen by any label-free score (docs/results.md, "Domain adaptation";
    # docs/design.md, "Domain adaptation defaults").
    "lambda_dom": 0.3,
    # Needs no density ratio; DEV's, fitted on one or two validation people, is noisy (docs/design.md).
    "objective": "source_risk",
}
"""What ``adapt="unlabelled"`` changes in :data:`DEFAULT_CONFIG` for the keys a config leaves unset: the
settings benchmarks/cross_domain.py measured (docs/results.md, "Domain adaptation")."""
LABEL_FREE_OBJECTIVES = ("accuracy", "worst_domain_accuracy", "source_risk", "dev")

OPTIMIZERS = ("adam", "adamw")
LR_SCHEDULES = ("constant", "cosine")


# A curriculum policy's parameters are flat keys under this prefix: "curriculum.single_epochs", or
# "curriculum.<policy>.<parameter>" (required in a composition for a name two policies share, and
# what the curriculum search uses). PBT may perturb them like any key; a restored trial builds its
# policy from its current values and continues from the checkpoint's policy state.
CURRICULUM_PREFIX = "curriculum."

TRIAL_SETTINGS: dict[str, Setting] = {
    # optimisation
    "lr": Setting(2e-3, number(0, low_open=True), "the learning rate", mutable=True),
    "weight_decay": Setting(1e-4, number(0), "the optimiser's weight decay", mutable=True),
    "optimizer": Setting("adamw", choice(OPTIMIZERS), "the optimiser"),
    "lr_schedule": Setting("cosine", choice(LR_SCHEDULES), "the learning rate over the run; cosine ends at a "
                           "small rate, so the final weights are the settled ones"),
    "max_epochs": Setting(20, number(1, integer=True), "epochs a trial trains"),
    "grad_clip": Setting(1.0, number(0, low_open=True, optional=True), "the largest gradient norm; None: no "
                         "clipping", mutable=True),
    "weight_average_epochs": Setting(0.0, number(0), "time constant, in epochs, of the EMA of the weights that is "
                                     "evaluated, checkpointed and exported, tcnvae.weight_average; 0: the last "
                                     "weights"),
    "input_noise": Setting(0.0, number(0), "std of the Gaussian noise added to training inputs", mutable=True),
    # curriculum (tcnvae.curriculum): its policies check the spec and their parameters
    "curriculum": Setting("none", None, "a registered curriculum policy, path/to/file.py:Class, or several joined "
                          f"by '+'; its parameters are {CURRICULUM_PREFIX}<parameter> keys"),
    # model selection
    "objective": Setting("accuracy", choice(OBJECTIVES), "what a search maximises: OBJECTIVES"),
    "target_domain": Setting(None, Check(lambda v: v is None or isinstance(v, str), "None or a domain name"),
                             "a domain held out of training, which the test side holds"),
    "target_labelled_fraction": Setting(0.2, number(0, 1, low_open=True, high_open=True),
                                        "share of the target's subjects labelled for model selection"),
    "adapt": Setting("none", choice(ADAPT_MODES), "'unlabelled': the target's training-side windows train "
                     "without labels"),
    # execution
    "workers_per_trial": Setting(1, number(1, integer=True), "data-parallel workers of one trial"),
    "use_gpu": Setting(False, FLAG, "train on a GPU"),
    # "auto": bf16 on GPUs that support it, fp16 with a loss scaler on older ones, off on a CPU;
    # "bf16" on a CPU runs bf16 autocast there; "fp16" needs a GPU (tcnvae.trainer.resolve_precision)
    "mixed_precision": Setting("auto", choice(PRECISIONS), "autocast precision; auto picks by device"),
    "checkpoint_interval": Setting(1, number(1, integer=True), "epochs between checkpoints, and the last; "
                                   "docs/results.md \"Throughput\" says how to choose"),
    "replay_schedule": Setting(None, None, "None, or a list of per-epoch dicts of the mutable keys, "
                               "tcnvae.tuning.trial"),
}
"""The trial's own settings; the data's, the model's and the objective's are declared by their owners
(:func:`declarations`)."""

# Flat trial keys -> DataConfig fields, where the names differ (context-free names in a flat dict).
_DATA_KEYS = {"data_paths": "paths", "data_cache_dir": "cache_dir", "data_download": "download"}
_AUGMENT_PREFIX = "augment_"


def declarations() -> dict[str, Setting]:
    """Every declared trial setting by flat key: the data layer's (:class:`DataConfig`'s fields, the
    augmentation's as ``augment_<name>``), the model's (:data:`~tcnvae.model.ARCHITECTURE`), the trial's
    (:data:`TRIAL_SETTINGS`) and the objective's. The β schedule's keys are the schedules' own
    (:mod:`tcnvae.beta_schedules`)."""
    renamed = {name: key for key, name in _DATA_KEYS.items()}
    return {**{renamed.get(name, name): setting for name, setting in data_settings().items()},
            **{_AUGMENT_PREFIX + name: setting for name, setting in AUGMENTATION.items()},
            **ARCHITECTURE, **TRIAL_SETTINGS, **dict(objective_settings())}


def default_config() -> dict[str, Any]:
    """Every trial key with its default: each declaration's, and the β schedules registered now (one
    registered after this module was imported brings its ``beta_<parameter>`` keys)."""
    return {**defaults(declarations()), **Objective.config_defaults()}


DEFAULT_CONFIG: dict[str, Any] = default_config()
""":func:`default_config` with the β schedules registered at import."""


def mutable_keys() -> tuple[str, ...]:
    """Hyperparameters that may change while a trial runs (PBT mutates them; a replay schedule sets
    them per epoch): the settings declared mutable (the learning rate, weight decay, gradient clipping,
    input noise, the objective's weights, α ramp and label smoothing) and the β schedule's keys. Each
    checkpoint's hyperparameter history records exactly these."""
    declared = declarations()
    schedule = {"beta_schedule", *beta_schedules.config_defaults()}
    return tuple(key for key in default_config() if key in schedule or (key in declared and declared[key].mutable))


MUTABLE_KEYS: tuple[str, ...] = mutable_keys()
""":func:`mutable_keys` with the β schedules registered at import."""


def read_setting(key: str, text: str) -> Any:
    """A ``KEY=VALUE`` value as typed on a command line (``--set``): JSON when it parses (numbers, lists,
    dicts, true, null), else the text; and the text where ``key``'s declaration takes the text but not
    the JSON value (a domain named ``2``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    setting = declarations().get(key)
    if setting is not None and setting.check is not None and not setting.check(value) and setting.check(text):
        return text
    return value


def _problem(key: str, value: Any, expected: str) -> str:
    return f"{key}={value!r}: expected {expected}"


def _check_settings(config: Mapping[str, Any]) -> list[str]:
    """Each declared key by its own check, and the β schedule's keys by their schedules."""
    return setting_problems(declarations(), config) + beta_schedules.config_problems(config)


def _check_combinations(config: Mapping[str, Any]) -> list[str]:
    """The rules between settings."""
    problems = []
    if config["mixed_precision"] == "fp16" and not config["use_gpu"]:
        problems.append(_problem("mixed_precision", "fp16", "'auto', 'bf16' or 'off' for a CPU trial: fp16 needs "
                                 "a GPU (--gpus-per-trial)"))
    if config["objective"] == "target_accuracy" and not config["target_domain"]:
        problems.append(_problem("target_domain", config["target_domain"],
                                 "a domain name: objective 'target_accuracy' needs a target domain"))
    unlabelled = config["adapt"] == "unlabelled"
    if unlabelled and not config["target_domain"]:
        problems.append(_problem("target_domain", config["target_domain"],
                                 "a domain name: adapt='unlabelled' needs the target whose labels go unused"))
    if unlabelled and config["objective"] not in LABEL_FREE_OBJECTIVES:
        problems.append(_problem("objective", config["objective"],
                                 f"one of {', '.join(LABEL_FREE_OBJECTIVES)} with adapt='unlabelled': the "
                                 "target's labels are not to be used, so they cannot choose models"))
    if config["objective"] == "dev" and not unlabelled:
        problems.append(_problem("objective", "dev", "an objective other than 'dev' without adapt='unlabelled': "
                                 "Deep Embedded Validation weighs by unlabelled target windows"))
    if config["sampling"] == "target_balanced" and not unlabelled:
        problems.append(_problem("sampling", "target_balanced", "another sampling without adapt='unlabelled' "
                                 "(it balances labelled source and unlabelled target windows)"))
    return problems


def curriculum_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """The curriculum policy's parameters, read from their ``curriculum.<parameter>`` keys (prefix
    stripped: what :func:`~tcnvae.curriculum.make_curriculum` takes)."""
    return {key[len(CURRICULUM_PREFIX):]: value for key, value in config.items()
            if key.startswith(CURRICULUM_PREFIX)}


def _check_curriculum(config: Mapping[str, Any]) -> list[str]:
    """Build the policy once: unknown policies, files, classes and parameters, and bad values, all
    surface here (the policy constructors check their own parameters)."""
    spec = config["curriculum"]
    if not isinstance(spec, str):
        return [_problem("curriculum", spec, "a policy name, path/to/file.py:Class, or several joined by '+'")]
    try:
        make_curriculum(spec, **curriculum_params(config))
    except (ValueError, FileNotFoundError) as error:
        return [str(error)]
    return []


def _check_replay(config: Mapping[str, Any]) -> list[str]:
    schedule = config["replay_schedule"]
    if schedule is None:
        return []
    if not isinstance(schedule, list) or not all(isinstance(entry, Mapping) for entry in schedule):
        return [_problem("replay_schedule", schedule, "None or a list of per-epoch dicts")]
    problems = []
    for entry in schedule:
        epoch = entry.get("epoch")
        unknown = sorted(key for key in set(entry) - {"epoch", *mutable_keys()} if not key.startswith(CURRICULUM_PREFIX))
        if not is_integer(epoch) or epoch < 0:
            problems.append(_problem("replay_schedule", entry, "an 'epoch' >= 0 in every entry"))
        if unknown:
            problems.append(_problem("replay_schedule", entry,
                                     f"only 'epoch', the mutable keys ({', '.join(mutable_keys())}) and "
                                     f"{CURRICULUM_PREFIX}* keys; unknown: {', '.join(unknown)}"))
    if not problems:
        for entry in schedule:
            # Each epoch's values must be a valid config on their own; curriculum parameters go with
            # the config's policy.
            values = {**default_config(), **entry}
            problems += [f"replay_schedule epoch {entry['epoch']}: {p}" for p in
                         _check_settings(values) + _check_combinations(values)
                         + (_check_curriculum({**config, **entry}) if curriculum_params(entry) else [])]
    return problems


def _plain(value: Any) -> Any:
    """Python scalars in place of NumPy ones (search spaces sample NumPy values): checkpoints are
    loaded with ``weights_only=True``, which refuses NumPy scalars, and JSON cannot write them."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def validate_config(config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``config`` merged over :func:`default_config` (with :data:`ADAPT_DEFAULTS` when it adapts to an
    unlabelled target), checked; raises one ValueError listing every problem.

    Unknown keys are errors too: a misspelt hyperparameter would otherwise be searched with no effect.
    ``curriculum.<parameter>`` keys must be parameters of the configured curriculum. Each key is checked
    by its declaration (:func:`declarations`), then the rules between keys, the curriculum's and the data
    layer's (``DataConfig.validate``; no data is loaded here). A curriculum read from a
    file comes back with its path made absolute, so Ray workers in other directories find it.
    """
    config = dict(config or {})
    defaults = default_config()
    if config.get("adapt") == "unlabelled":
        defaults.update(ADAPT_DEFAULTS)
    unknown = sorted(key for key in set(config) - set(defaults) if not key.startswith(CURRICULUM_PREFIX))
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; known keys: {', '.join(sorted(defaults))} "
                         f"and the curriculum's parameters as {CURRICULUM_PREFIX}<parameter>")
    merged = {key: _plain(value) for key, value in {**defaults, **config}.items()}
    curriculum_problems = _check_curriculum(merged)
    problems = (_check_settings(merged) + _check_combinations(merged) + curriculum_problems
                + ([] if curriculum_problems else _check_replay(merged)))
    if not problems:
        try:
            data_config(merged)
        except (TypeError, ValueError) as error:
            problems.append(str(error))
    if problems:
        raise ValueError("invalid trial config: " + "; ".join(problems))
    merged["curriculum"] = check_curriculum_spec(merged["curriculum"])
    return merged


def data_config(config: Mapping[str, Any]) -> DataConfig:
    """The data layer's :class:`DataConfig` for a validated-shape trial config, checked by its own rules.

    With a ``target_domain`` and the default ``split="subject"``, the split becomes
    ``"lodo:<target_domain>"``: the target is held out of training and is what the test side holds;
    with ``adapt="unlabelled"`` it becomes ``"unlabelled:<target_domain>"`` (its training side joins
    training without labels).
    """
    names = {item.name for item in fields(DataConfig)}
    values = {_DATA_KEYS.get(key, key): value for key, value in config.items()
              if _DATA_KEYS.get(key, key) in names}
    values["augmentation"] = {key[len(_AUGMENT_PREFIX):]: value for key, value in config.items()
                              if key.startswith(_AUGMENT_PREFIX)}
    target = config["target_domain"]
    if target:
        held_out = f"{'unlabelled' if config['adapt'] == 'unlabelled' else 'lodo'}:{target}"
        if values["split"] == DEFAULT_CONFIG["split"]:
            values["split"] = held_out
        elif values["split"] != held_out:
            raise ValueError(_problem("split", values["split"],
                                      f"{held_out!r} (or the default {DEFAULT_CONFIG['split']!r}): "
                                      f"target_domain={target!r} is held out of training"))
    return DataConfig.from_dict(values).validate()


def check_resources(cpus_per_trial: float = 1, gpus_per_trial: float = 0, workers_per_trial: int = 1) -> None:
    """Refuse trial resources the cluster can never grant, before anything starts.

    A trial asking for more CPUs or GPUs than any node has would sit pending forever in Tune. Counted on
    the connected Ray cluster when there is one (its live nodes, and the node types its autoscaler may
    start: cluster.yaml's, when it autoscales), else on this machine. A multi-worker trial splits its
    CPUs and GPUs evenly across its workers, each of which must fit on one node; more than one GPU per
    worker must be whole.
    """
    problems = [_problem(key, value, check.expected) for key, value, check in (
        ("workers_per_trial", workers_per_trial, TRIAL_SETTINGS["workers_per_trial"].check),
        ("cpus_per_trial", cpus_per_trial, number(0, low_open=True)), ("gpus_per_trial", gpus_per_trial, number(0)))
        if not check(value)]
    if problems:
        raise ValueError("invalid trial resources: " + "; ".join(problems))
    per_worker = gpus_per_trial / workers_per_trial
    if per_worker > 1 and per_worker != int(per_worker):
        raise ValueError(_problem("gpus_per_trial", gpus_per_trial,
                                  f"a whole number of GPUs per worker when above 1 "
                                  f"({workers_per_trial} workers get {per_worker} each)"))
    nodes, where = cluster_nodes()
    listed = "; ".join(f"{node.name}: {node.cpus:g} CPU, {node.gpus:g} GPU" for node in nodes)
    if gpus_per_trial > 0 and not any(node.gpus > 0 for node in nodes):
        raise ValueError(_problem("gpus_per_trial", gpus_per_trial,
                                  f"0: there is no GPU on {where} (no CUDA device, and the Ray cluster, "
                                  "if connected, reports none)"))
    asked = f"--cpus-per-trial {cpus_per_trial:g} --gpus-per-trial {gpus_per_trial:g}"
    worker_cpus = cpus_per_trial / workers_per_trial
    fitting = [node for node in nodes if node.cpus >= worker_cpus and node.gpus >= per_worker]
    if fitting and all(node.on_demand for node in fitting):
        logger.warning("%s fits no live node of the Ray cluster; its trials wait until the autoscaler starts a "
                       "node of type %s (cluster.yaml)", asked, " or ".join(node.name[len("node type "):]
                                                                          for node in fitting))
    if not fitting:
        split = f" ({workers_per_trial} workers get {worker_cpus:g} CPU and {per_worker:g} GPU each)" \
            if workers_per_trial > 1 else ""
        raise ValueError(f"{asked}{split} fits on no node of {where} ({listed}), so the trial would wait "
                         "forever; ask for at most what one node has, or join a bigger cluster with --address")
    total_cpus = sum(node.cpus * node.count for node in nodes)
    total_gpus = sum(node.gpus * node.count for node in nodes)
    if cpus_per_trial > total_cpus or gpus_per_trial > total_gpus:
        raise ValueError(f"{asked} --workers-per-trial {workers_per_trial}: each worker fits on a node, but "
                         f"{where} has {total_cpus:g} CPU and {total_gpus:g} GPU in all ({listed}), so the "
                         "trial would wait forever; ask for fewer workers or resources")


@dataclass(frozen=True)
class NodeCapacity:
    """What one node offers trials, and how many such nodes there can be (an autoscaler node type's
    ``max_workers``; infinite when unlimited)."""

    name: str
    cpus: float
    gpus: float
    count: float = 1
    on_demand: bool = False  # a node type the autoscaler starts when trials ask for it


def cluster_nodes() -> tuple[list[NodeCapacity], str]:
    """The nodes a trial could run on, and where they were counted.

    Without Ray: this machine, as ``ray.init()`` would count it (CPU limits of a container included).
    With Ray: each live node, plus each node type the autoscaler may still start (read from the
    cluster config the autoscaler publishes, i.e. cluster.yaml's ``available_node_types``).
    """
    import ray
    import torch
    from ray._private import state, utils  # Ray's own counts: what the scheduler will see

    if not ray.is_initialized():
        return [NodeCapacity("this machine", float(utils.get_num_cpus()), float(torch.cuda.device_count()))], \
            "this machine"
    nodes = [NodeCapacity(f"node {node['NodeManagerAddress']} {node['NodeID'][:8]}",
                          node["Resources"].get("CPU", 0.0), node["Resources"].get("GPU", 0.0))
             for node in ray.nodes() if node["Alive"]]
    where = f"the Ray cluster ({len(nodes)} live node(s))"
    config = state.state.get_cluster_config()
    startable = [group for group in (config.node_group_configs if config else []) if group.max_count != 0]
    nodes += [NodeCapacity(f"node type {group.name}", group.resources.get("CPU", 0.0), group.resources.get("GPU", 0.0),
                           math.inf if group.max_count < 0 else group.max_count, on_demand=True)
              for group in startable]
    if startable:
        where = (f"the Ray cluster ({len(nodes) - len(startable)} live node(s), and the node types its "
                 "autoscaler may start, from cluster.yaml)")
    return nodes, where
