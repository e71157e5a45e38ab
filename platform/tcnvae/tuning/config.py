"""The flat trial config: every knob of one TCN-VAE trial in one dict, and its validation.

Flat because Tune search spaces, Optuna, PBT mutations, the leaderboard CSV and TensorBoard's HParams
all address hyperparameters by a single key; nesting would make every search spell paths. Validation
runs before Ray starts (the searches call it on their base config and on the bounds of their search
space), so an impossible value costs a message, not a cluster start-up and a crashed trial.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from numbers import Integral, Real
from typing import Any

import numpy as np

from tcnvae.curriculum import check_curriculum_spec, make_curriculum
from tcnvae.data.pipeline import DataConfig
from tcnvae.model import architecture_problems
from tcnvae.objective import Objective
from tcnvae.trainer import PRECISIONS

logger = logging.getLogger(__name__)

OBJECTIVES: dict[str, str] = {
    "accuracy": "val/accuracy",
    "worst_domain_accuracy": "val/worst_domain_accuracy",
    "target_accuracy": "target/accuracy",
    "source_risk": "select/source_score",
    "dev": "select/dev_score",
}
"""What a search may optimise (all maximised), by flag value → reported metric.

- ``accuracy``: activity accuracy on the validation subjects — people never seen in training, from
  the training domains. The default: it measures generalisation to new people, not to new datasets.
- ``worst_domain_accuracy``: the lowest per-domain validation accuracy. Selects models that do not buy
  their average by failing one dataset (or placement, or subject group); the domain-robust choice.
- ``target_accuracy``: accuracy on a small labelled slice of a *target* domain that is held out of
  training (``target_domain``; ``target_labelled_fraction`` of its subjects are labelled for model
  selection, the rest stay unseen for the final test). The choice when you know where the model will
  be deployed and can label a little of it.
- ``source_risk``: minus the activity cross-entropy on the validation subjects (source risk, as a score
  to maximise). Label-free with respect to the target; assumes the target looks like the source.
- ``dev``: minus the Deep Embedded Validation risk (You et al., ICML 2019) — the same validation loss,
  each window weighted by how target-like its features are (a domain classifier's density ratio), with
  a control variate against the weights' variance. Needs ``adapt="unlabelled"`` (target features, never
  target labels); assumes covariate shift (p(y|x) shared) and overlapping feature distributions.

With ``adapt="unlabelled"`` the target's accuracy is still reported as ``analysis/target_accuracy``
and ``analysis/target_macro_f1``, for analysis only: no objective reads them.
"""
ADAPT_MODES = ("none", "unlabelled")
"""``none``: a ``target_domain`` is held out of training (its labelled slice may select models:
``target_accuracy``). ``unlabelled``: the target's training-side subjects join training without labels
(unsupervised domain adaptation), its other subjects are the test side."""
ADAPT_DEFAULTS: dict[str, Any] = {
    "sampling": "target_balanced",  # every batch half source, half target: the domain head sees both
    # At λ_dom 0.1 the domain head still told the groups apart 73 % of the time after 10 epochs: the
    # reversed gradient was too weak to align them. λ_ent (entropy minimisation) stays at DEFAULT_CONFIG's
    # 0: between groups of people it was worth less than the seeds' spread (λ_ent 0.3 with λ_dom 0.3: 0.9001,
    # λ_ent 0 with λ_dom 1: 0.8935, ±0.027), while on one target person it collapsed the predictions
    # (macro-F1 0.99 → 0.49), unseen by any label-free score (README, "Domain adaptation").
    "lambda_dom": 0.3,
    # Needs no density ratio; DEV's, fitted on one or two validation people, is noisy (README).
    "objective": "source_risk",
}
"""What ``adapt="unlabelled"`` changes in :data:`DEFAULT_CONFIG` for the keys a config leaves unset: the
settings benchmarks/cross_domain.py measured (README, "Domain adaptation")."""
LABEL_FREE_OBJECTIVES = ("accuracy", "worst_domain_accuracy", "source_risk", "dev")
OBJECTIVE_MODE = "max"

OPTIMIZERS = ("adam", "adamw")
LR_SCHEDULES = ("constant", "cosine")


def mutable_keys() -> tuple[str, ...]:
    """Hyperparameters that may change while a trial runs (PBT mutates them; a replay schedule sets
    them per epoch): the learning rate, weight decay, every setting of the objective (its loss weights,
    β schedule and parameters, α ramp, label smoothing: :meth:`Objective.config_defaults`), gradient
    clipping and input noise. Each checkpoint's hyperparameter history records exactly these."""
    return ("lr", "weight_decay", *Objective.config_defaults(), "grad_clip", "input_noise")


MUTABLE_KEYS: tuple[str, ...] = mutable_keys()
""":func:`mutable_keys` with the β schedules registered at import."""

# A curriculum policy's parameters are flat keys under this prefix: "curriculum.single_epochs", or
# "curriculum.<policy>.<parameter>" (required in a composition for a name two policies share, and
# what the curriculum search uses). PBT may perturb them like any key; a restored trial builds its
# policy from its current values and continues from the checkpoint's policy state.
CURRICULUM_PREFIX = "curriculum."

DEFAULT_CONFIG: dict[str, Any] = {
    # data (tcnvae.data.pipeline.DataConfig documents each; flat names here, mapped by data_config())
    "datasets": ["synthetic"],
    "data_paths": {},  # dataset name -> file or folder; absent: the source's cache
    "source_options": {},  # dataset name -> options of its load(), e.g. synthetic subjects_per_domain
    "data_cache_dir": None,
    "data_download": False,
    "activities": None,  # None: every activity the datasets have
    "split": "subject",  # "subject", "loso:<subject>", "lodo:<domain>", "uci_har_official"
    "val_fraction": 0.2,  # of subjects: with 3 validation people one odd person decides the winner
    # 0: validation is val_fraction's draw; K >= 2: the people outside the test side cut into K folds and
    # fold val_fold validates (what --cross-validate sets for each fold run: tcnvae.tuning.cross_validation)
    "val_folds": 0,
    "val_fold": 0,
    "test_fraction": 0.2,
    "domain_by": "dataset",
    "channel_set": "acc_gyro",
    "sample_rate": 50.0,
    "window_seconds": None,  # None: pre-windowed data's own duration, else 2.56 (tcnvae.data.pipeline)
    "crop_windows": False,  # True: centre-crop pre-windowed data longer than window_seconds
    "step_seconds": 1.28,
    "min_purity": 0.8,
    "sampling": "uniform",  # "uniform", "class_balanced", "domain_balanced", "target_balanced" (adapt="unlabelled")
    # On by default: new people hold and move differently. Rotation is off: 15° gained 1.7 macro-F1 points
    # on HAPT by subject but lost 0.9 on UCI-HAR official (benchmarks/defaults.py, README "Results").
    # "auto" rotates by 15° where the channels hold xyz triples, and not at all where they do not.
    "augment_noise_std": 0.05,
    "augment_scale_std": 0.1,
    "augment_rotation_deg": 0.0,
    "augment_time_warp": 0.1,
    # model
    "latent_dim": 32,
    # Encoder TCN block widths. Three blocks of kernel 5 see 57 samples (over a second at 50 Hz, a
    # gait cycle); the former two of kernel 3 saw 13. Still a CPU-sized model: searches/architecture.py
    # searches larger ones.
    "hidden_dims": [64, 64, 64],
    "kernel_size": 5,
    "dropout": 0.2,
    "head_hidden": 64,
    "decoder_channels": 32,
    # True: each input channel's window mean (the gravity direction) joins the encoder's pooled features.
    # Off: averaged over 3 seeds it moved UCI-HAR +0.5 and HAPT -0.5 macro-F1 points, within seed noise
    # (README "Results").
    "input_means": False,
    # optimisation
    "lr": 2e-3,
    "weight_decay": 1e-4,
    "batch_size": 64,
    "optimizer": "adamw",
    "lr_schedule": "cosine",  # the last epochs at a small rate: the final weights are the settled ones
    "max_epochs": 20,
    "grad_clip": 1.0,  # None: no clipping
    # Time constant, in epochs, of the EMA of the weights that is evaluated, checkpointed and exported
    # (tcnvae.weight_average); 0: the last weights.
    "weight_average_epochs": 0.0,
    "input_noise": 0.0,
    # loss: β, the λs, the β schedule and its beta_<parameter> keys, the α ramp, label smoothing, with
    # the defaults tcnvae.objective declares (the classifier is the product: a light KL, β 0.1, and a
    # heavier activity term, λ_act 2.5, than the VAE's)
    **Objective.config_defaults(),
    # curriculum (tcnvae.curriculum): a registered policy, path/to/file.py:Class, or several joined by "+";
    # its parameters go in "curriculum.<parameter>" keys (CURRICULUM_PREFIX)
    "curriculum": "none",
    # model selection
    "objective": "accuracy",
    "target_domain": None,
    "target_labelled_fraction": 0.2,
    "adapt": "none",  # ADAPT_MODES; "unlabelled": the target's training-side windows train without labels
    "target_test_fraction": 0.5,  # adapt="unlabelled": share of the target's subjects kept for the test
    "transductive": False,  # adapt="unlabelled": adapt on the test side's own windows (one target person will do)
    "unlabelled_stretches": False,  # recordings' unlabelled stretches (HAPT) of training-side people join unlabelled
    "subject_groups": {},  # group -> subject ids, e.g. {"source": [...], "target": [...]}; domain_by="subject_group"
    # execution
    "seed": 0,
    "workers_per_trial": 1,
    "use_gpu": False,
    # "auto": bf16 on GPUs that support it, fp16 with a loss scaler on older ones, off on a CPU;
    # "bf16" on a CPU runs bf16 autocast there; "fp16" needs a GPU (tcnvae.trainer.resolve_precision)
    "mixed_precision": "auto",
    "checkpoint_interval": 1,  # epochs between checkpoints (and the last); README "Throughput" says how to choose
    "replay_schedule": None,  # None, or a list of {"epoch": e, <MUTABLE_KEYS>...} (tcnvae.tuning.replay)
}


def default_config() -> dict[str, Any]:
    """:data:`DEFAULT_CONFIG` with the objective's keys as registered now: a β schedule registered after
    this module was imported brings its ``beta_<parameter>`` keys."""
    return {**DEFAULT_CONFIG, **Objective.config_defaults()}


def _problem(key: str, value: Any, expected: str) -> str:
    return f"{key}={value!r}: expected {expected}"


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _check_numbers(config: Mapping[str, Any]) -> list[str]:
    """Range checks of the numeric knobs, as (key, test, expectation) rows."""
    rules: list[tuple[str, Any, str]] = [
        ("lr", lambda v: _is_number(v) and v > 0, "a positive number"),
        ("weight_decay", lambda v: _is_number(v) and v >= 0, "a number >= 0"),
        ("grad_clip", lambda v: v is None or (_is_number(v) and v > 0), "None or a positive number"),
        ("input_noise", lambda v: _is_number(v) and v >= 0, "a number >= 0 (std of training input noise)"),
        ("weight_average_epochs", lambda v: _is_number(v) and v >= 0,
         "a number >= 0 (the weight EMA's time constant in epochs; 0: off)"),
        ("batch_size", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
        ("max_epochs", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
        ("seed", lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
        ("workers_per_trial", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
        ("checkpoint_interval", lambda v: _is_int(v) and v >= 1, "an integer >= 1 (epochs)"),
        ("target_labelled_fraction", lambda v: _is_number(v) and 0 < v < 1, "a fraction in (0, 1)"),
        ("use_gpu", lambda v: isinstance(v, bool), "True or False"),
    ]
    # The model's and the objective's settings by their owners' rules (tcnvae.model, tcnvae.objective).
    architecture = {key: config[key] for key in _ARCHITECTURE_KEYS}
    return ([_problem(key, config[key], expected) for key, test, expected in rules if not test(config[key])]
            + architecture_problems(architecture) + Objective.config_problems(config))


_ARCHITECTURE_KEYS = ("latent_dim", "hidden_dims", "kernel_size", "dropout", "head_hidden", "decoder_channels",
                      "input_means")


def _check_choices(config: Mapping[str, Any]) -> list[str]:
    problems = []
    for key, allowed in (("objective", tuple(OBJECTIVES)), ("optimizer", OPTIMIZERS),
                         ("lr_schedule", LR_SCHEDULES), ("mixed_precision", PRECISIONS), ("adapt", ADAPT_MODES)):
        if config[key] not in allowed:
            problems.append(_problem(key, config[key], f"one of {', '.join(allowed)}"))
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
        if not _is_int(epoch) or epoch < 0:
            problems.append(_problem("replay_schedule", entry, "an 'epoch' >= 0 in every entry"))
        if unknown:
            problems.append(_problem("replay_schedule", entry,
                                     f"only 'epoch', the mutable keys ({', '.join(mutable_keys())}) and "
                                     f"{CURRICULUM_PREFIX}* keys; unknown: {', '.join(unknown)}"))
    if not problems:
        for entry in schedule:
            # Each epoch's values must be a valid config on their own; curriculum parameters go with
            # the config's policy.
            problems += [f"replay_schedule epoch {entry['epoch']}: {p}" for p in
                         _check_numbers({**default_config(), **entry}) + _check_choices({**default_config(), **entry})
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
    ``curriculum.<parameter>`` keys must be parameters of the configured curriculum. The data knobs are
    checked by the data layer's own ``DataConfig`` (no data is loaded here). A curriculum read from a
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
    problems = (_check_numbers(merged) + _check_choices(merged) + curriculum_problems
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


# Flat trial keys -> DataConfig fields, where the names differ (context-free names in a flat dict).
_DATA_KEYS = {"data_paths": "paths", "data_cache_dir": "cache_dir", "data_download": "download"}
_AUGMENT_PREFIX = "augment_"


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
    problems = []
    if not _is_int(workers_per_trial) or workers_per_trial < 1:
        problems.append(_problem("workers_per_trial", workers_per_trial, "an integer >= 1"))
    if not _is_number(cpus_per_trial) or cpus_per_trial <= 0:
        problems.append(_problem("cpus_per_trial", cpus_per_trial, "a positive number"))
    if not _is_number(gpus_per_trial) or gpus_per_trial < 0:
        problems.append(_problem("gpus_per_trial", gpus_per_trial, "a number >= 0"))
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
