"""The search set-up every recipe shares: searchers, schedulers, spaces, the checkpoints kept, resume.

A recipe in ``searches/`` says what differs — its search space, which searcher (:class:`OptunaTPE`
or :class:`RandomSearch`), its scheduler (:func:`asha`, PBT with :func:`perturbation_interval`), how many trials, which
checkpoints to keep and the data it prepared — and hands them to :func:`run_search` (each a required
argument: a recipe cannot leave one out and silently get another), which does the rest the same way for
every recipe: Ray started only after every check, the trainable made once (here and nowhere else),
a new search or, with ``--resume``, the interrupted one continued, and the console of
:mod:`tcnvae.tuning.report`.

Why one place: the recipes used to copy this set-up, and the copies drifted (the curriculum search
kept a plain ``OptunaSearch`` after the others had moved to
:class:`ResumableOptunaSearch`, and its ``--resume`` failed after a
killed driver). A searcher is described by the recipe and built here, for a new search only: a
resumed search restores the one it started with.

What this module holds, in order: the searchers and :func:`run_search`; how trials are named
(:func:`trial_dirname`); :class:`ResumableOptunaSearch`, the Optuna searcher a killed driver can
resume; :class:`CurriculumSpace`, the conditional space of the curriculum search; what every recipe's
space goes through (batch sizes fitted to the data, PBT kept in its bounds, a grid of a space's
corners); and the schedulers fitted to a search's epochs (:func:`asha`, :func:`perturbation_interval`).
The spaces themselves (which keys, which ranges, which distributions) are the recipes': each
``searches/*.py`` writes its own as a plain dict of ``tune.*`` distributions at its top.

Checked before Ray starts: Ray asserts its scheduler settings only when the scheduler is built or first
used (``grace_period must be <= max_t`` inside the driver, after the cluster is up), and some settings
that pass its asserts still cannot work: a grace period as long as the trials never stops one early, a
PBT interval as long as the trials never perturbs. A recipe builds its scheduler with these checks, so a
setting that cannot work with ``max_epochs`` is adapted (and the change printed) or refused.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.sample import Categorical, Domain, Float, Integer

from tcnvae.curriculum import curriculum_class, curriculum_search_space
from tcnvae.data.checks import check_search_data
from tcnvae.data.pipeline import PreparedData
from tcnvae.tuning.cluster import DigestRecorder, experiment_location, start_ray, tune_storage, verify_experiment
from tcnvae.tuning.config import CURRICULUM_PREFIX
from tcnvae.tuning.metrics import OBJECTIVE_MODE, OBJECTIVES
from tcnvae.tuning.report import SearchProgress, console_verbosity, quiet_console, resume_hint
from tcnvae.tuning.tensorboard import is_search_domain, tune_logger_callbacks, write_search_start
from tcnvae.tuning.trainables import check_search_outcome, make_trainable

logger = logging.getLogger(__name__)

OPTUNA_STUDY_FILE = "optuna.db"
"""The Optuna study of an :class:`OptunaTPE` search, in the experiment folder, named after the experiment:
``optuna.load_study(study_name=NAME, storage="sqlite:///<experiment>/optuna.db")`` or optuna-dashboard."""


@dataclass(frozen=True)
class OptunaTPE:
    """Optuna's TPE sampler, seeded with the search's seed; several metrics search their Pareto front.

    ``space``: a define-by-run space (a callable of an ``optuna.Trial``, such as
    :class:`CurriculumSpace`); None takes the Tune domains of the
    search's ``param_space``. The searcher skips results its study already holds, so a search whose
    driver was killed resumes (:class:`ResumableOptunaSearch`).
    """

    metrics: Sequence[str]
    space: Callable[[optuna.Trial], Any] | None = None

    def build(self, experiment: Path, seed: int, first: list[dict[str, Any]] | None = None) -> Searcher:
        single = len(self.metrics) == 1
        return ResumableOptunaSearch(space=self.space, points_to_evaluate=first,
                                     metric=self.metrics[0] if single else list(self.metrics),
                                     mode=OBJECTIVE_MODE if single else [OBJECTIVE_MODE] * len(self.metrics),
                                     sampler=optuna.samplers.TPESampler(seed=seed),
                                     storage=optuna.storages.RDBStorage(
                                         f"sqlite:///{experiment / OPTUNA_STUDY_FILE}"),
                                     study_name=experiment.name)


@dataclass(frozen=True)
class RandomSearch:
    """Independent draws from the Tune domains (every combination of a ``tune.grid_search``), seeded with
    the search's seed. For spaces Optuna cannot store (lists as choices) and for PBT's first population."""

    def build(self, experiment: Path, seed: int, first: list[dict[str, Any]] | None = None) -> Searcher:
        return BasicVariantGenerator(random_state=seed, points_to_evaluate=first)

    @staticmethod
    def unpresettable_keys(point: Mapping[str, Any]) -> list[str]:
        """The keys of ``point`` Tune's random search cannot preset: it reads a list value (``hidden_dims``)
        as one setting per item, and fails."""
        return [key for key, value in point.items() if isinstance(value, (list, tuple, dict))]


def keep_best_checkpoints(metric: str, count: int = 2) -> tune.CheckpointConfig:
    """The ``count`` best checkpoints by ``metric`` (the models worth keeping); Tune also keeps each
    trial's latest, which a resumed or restarted trial goes on from."""
    return tune.CheckpointConfig(num_to_keep=count, checkpoint_score_attribute=metric,
                                 checkpoint_score_order=OBJECTIVE_MODE)


def _nearest(domain: Domain, value: Any) -> Any:
    """``value`` if it lies in ``domain``, else the nearest value that does (None when none is near:
    a value that is not a number among categories that are not all numbers)."""
    if isinstance(domain, Categorical):
        if any(value == category for category in domain.categories):
            return value
        numeric = all(isinstance(v, Real) and not isinstance(v, bool) for v in (value, *domain.categories))
        return min(domain.categories, key=lambda category: abs(category - value)) if numeric else None
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    if isinstance(domain, Integer):  # Tune's integer upper bounds are exclusive
        return min(max(int(round(value)), domain.lower), domain.upper - 1)
    return min(max(value, domain.lower), domain.upper) if isinstance(domain, Float) else None


def defaults_trial(param_space: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The first trial of a new search: ``config``'s own value of every searched key (the defaults, or
    what --set/--config gave), each moved to the nearest value its range allows (a batch size capped by a
    small data set, a learning rate outside a narrowed range); None when the space is a grid or a key
    has no value near its range.

    Why: the defaults are a measured, good configuration (docs/results.md, "Defaults, previous and
    current"), and a search of a dozen draws can miss every point as good; with them as its first trial, the search's winner is at least
    as good as the defaults on the objective it chooses by. Optuna's ``enqueue_trial`` is made for this.
    """
    point = {}
    for key, domain in param_space.items():
        if isinstance(domain, Mapping) and "grid_search" in domain:
            return None  # a grid is its own design; an extra point would not be one of its corners
        if isinstance(domain, Domain):
            point[key] = _nearest(domain, config.get(key))
            if point[key] is None:
                return None
    return point or None


def search_algorithm(searcher: OptunaTPE | RandomSearch, experiment: Path, config: Mapping[str, Any],
                     param_space: Mapping[str, Any], max_concurrent: int | None) -> tuple[Searcher, int | None]:
    """The searcher's Tune object, starting from :func:`defaults_trial`, and the ``max_concurrent_trials``
    to give Tune with it.

    Tune limits only a ``Searcher`` by ``max_concurrent_trials``; a random or grid search's generator
    would run as many trials as fit (with a warning), so it takes the limit itself.
    """
    first = defaults_trial(param_space, config)
    unpresettable = RandomSearch.unpresettable_keys(first or {}) if isinstance(searcher, RandomSearch) else []
    if unpresettable:
        print(f"First trial: a random draw like the others (Tune's random search cannot start from the "
              f"defaults' {', '.join(unpresettable)}: a list)")
        first = None
    elif first:
        print("First trial: the defaults, " + ", ".join(f"{key}={value!r}" for key, value in first.items()))
    search_alg = searcher.build(experiment, config["seed"], [first] if first else None)
    if isinstance(search_alg, BasicVariantGenerator) and max_concurrent is not None:
        search_alg.max_concurrent, max_concurrent = max_concurrent, None
    return search_alg, max_concurrent


def run_search(args: argparse.Namespace, experiment: Path, config: Mapping[str, Any], *,
               param_space: dict[str, Any], searcher: OptunaTPE | RandomSearch, scheduler: Any,
               num_samples: int, checkpoints: tune.CheckpointConfig, data: PreparedData,
               stop: Mapping[str, Any] | None = None, searched: Mapping[str, Any] | None = None) -> tune.ResultGrid:
    """Start Ray, then run the new search (or with ``--resume`` continue the interrupted one) to its end.

    Call it last, once the config, the data, the space and the experiment folder are checked
    (:mod:`tcnvae.tuning.cli`). With ``--resume`` the searcher, scheduler, trial count and settings
    come from the experiment folder, and only the resources from this command's flags; the
    arguments describing a new search are then not used.

    Raises :class:`SearchInterrupted` with the resume hint when Ctrl-C or SIGTERM
    stopped the search, and :class:`~tcnvae.tuning.trainables.SearchFailedError` when every trial failed.

    ``data``: the data ``cli.prepare_data`` prepared; trials read it from Ray's object store instead of
    preparing it again. Required, as everything a recipe describes is: an optional ``data`` was left out
    by a recipe once, and its every trial prepared the data again, silently. ``searched``: the searched
    keys and their domains, for TensorBoard's HParams summary; default: the Tune domains in
    ``param_space`` (a define-by-run space passes its own).
    """
    check_search_data(data)  # no validation or test windows: every trial would fail the same way
    with quiet_console(enabled=not args.verbose):  # Ray's and Tune's own console: --verbose only
        start_ray(args, config)
        # The one place the trainable is made, for a new search and a resumed one alike.
        trainable = make_trainable(args.cpus_per_trial, args.gpus_per_trial, config["workers_per_trial"], data=data)
        if args.resume:
            tuner = _restore_tuner(args, experiment, trainable)
        else:
            experiment.mkdir(parents=True)  # the searcher's own files (the Optuna study) live there too
            searched = searched or {key: value for key, value in param_space.items() if is_search_domain(value)}
            write_search_start(experiment, searched, config)
            search_alg, max_concurrent = search_algorithm(searcher, experiment, config, param_space,
                                                          args.max_concurrent)
            tuner = _new_tuner(args, experiment, config, trainable, param_space,
                               tune.TuneConfig(search_alg=search_alg, scheduler=scheduler,
                                               num_samples=num_samples, max_concurrent_trials=max_concurrent,
                                               reuse_actors=True, trial_name_creator=trial_dirname,
                                               trial_dirname_creator=trial_dirname),
                               checkpoints, stop)
        ctrl_c = signal.getsignal(signal.SIGINT)
        try:
            results = tuner.fit()
        finally:  # Tune leaves its handler behind, which would make Ctrl-C a no-op from here on
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, ctrl_c)
    hint = resume_hint(results.experiment_path)
    if hint:  # Ctrl-C or SIGTERM (cluster.stop_sigterm_as_ctrl_c): Tune saved the state and stopped
        raise SearchInterrupted(hint)
    check_search_outcome(results, experiment)
    return results


def _new_tuner(args: argparse.Namespace, experiment: Path, config: Mapping[str, Any], trainable: Any,
               param_space: dict[str, Any], tune_config: tune.TuneConfig, checkpoints: tune.CheckpointConfig,
               stop: Mapping[str, Any] | None) -> tune.Tuner:
    """A ``Tuner`` for a new search: the recipe's choices and what every search shares.

    Shared: Tune's ``reuse_actors`` (trials reuse a warm process), short trial folder names
    (:func:`trial_dirname`), each trial's own TensorBoard run instead of Ray's copy
    (:func:`~tcnvae.tuning.tensorboard.tune_logger_callbacks`), a record of the pickled files for
    ``--resume`` (:mod:`tcnvae.tuning.cluster`), the progress view, ``--max-concurrent`` and
    ``--max-failures`` restarts from the latest checkpoint.

    ``sync_artifacts``: a trial writes its TensorBoard files into its Tune trial directory, which for
    a trial that reuses another's process is a working directory under Ray's session folder; Tune
    copies it into the experiment folder only with this switch (at every checkpoint and at the end).
    Without it, ``tensorboard --logdir <experiment>`` would miss every trial that reused a process.
    """
    progress = SearchProgress(OBJECTIVES[config["objective"]], config["max_epochs"])
    return tune.Tuner(
        trainable, param_space=param_space, tune_config=tune_config,
        run_config=tune.RunConfig(name=experiment.name, storage_path=tune_storage(args, experiment),
                                  callbacks=[*tune_logger_callbacks(), progress,
                                             DigestRecorder(experiment_location(args, experiment))],
                                  checkpoint_config=checkpoints,
                                  failure_config=tune.FailureConfig(max_failures=args.max_failures), stop=stop,
                                  sync_config=tune.SyncConfig(sync_artifacts=True),
                                  verbose=console_verbosity(args.verbose)),
    )


def _restore_tuner(args: argparse.Namespace, experiment: Path, trainable: Any) -> tune.Tuner:
    """The ``Tuner`` of an interrupted search, continuing its unfinished and errored trials; its
    searcher, scheduler, callbacks and settings come from the experiment folder."""
    tune_logger_callbacks()  # switches Ray's TensorBoard logger off in this process too
    location = experiment_location(args, experiment)
    if not args.trust_experiment:  # checked again just before Tune unpickles: it may have changed since
        verify_experiment(location)
    return tune.Tuner.restore(location, trainable, resume_unfinished=True, resume_errored=True)


class SearchInterrupted(Exception):
    """Ctrl-C or SIGTERM ended the search before its trials did; the message says how to resume it."""


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


# An OptunaSearch that survives a search driver killed with SIGKILL and resumed.
#
# Why: the Optuna study lives in optuna.db and is written at once, while Tune saves its own state
# (trial statuses, the searcher) only every so often. A driver killed between the two leaves a study
# ahead of Tune's state, in two ways:
#
# - a trial the study already holds as finished is listed by Tune as running, is resumed from its
#   latest saved checkpoint, and its redone epochs' results go to Optuna, which refuses to update a
#   finished trial (optuna.exceptions.UpdateFinishedTrialError): the resumed search would die. The
#   study already has those results, so they are skipped (and counted in the log);
# - a trial the study handed out (``ask``) after Tune's last save is unknown to the restored searcher,
#   so no Tune trial will ever report to it: it would stay RUNNING in the study for good. It is
#   marked FAIL on restore (TPE learns from complete trials only), and the search asks afresh.
class ResumableOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that skips results of trials its study has already finished and fails the study's
    trials that no Tune trial holds after a restore (see the comment above)."""

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            logger.warning("trial %s is finished in the Optuna study already (a resumed search redoes the work "
                           "after Tune's last saved state); its redone result at iteration %s is not reported again",
                           trial_id, result.get("training_iteration"))

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        held = {trial.number for trial in self._ot_trials.values()}
        for orphan in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if orphan.number not in held:
                self._ot_study.tell(orphan.number, state=TrialState.FAIL)
                logger.warning("Optuna trial %d was handed out after Tune's last saved state and no trial runs "
                               "it: marked FAIL", orphan.number)


# A conditional search space for Optuna: loss weights, a choice of curriculum, that curriculum's parameters.
#
# A flat space over every policy's parameters would give each trial the parameters of policies it does
# not run (which the trial config rejects, and which would be noise to the sampler). Optuna's
# define-by-run interface asks for a policy first and then only for that policy's parameters, and TPE
# models each parameter on the trials that drew it. Parameters are keyed
# ``curriculum.<policy>.<parameter>``, so two policies' parameters of the same name (``ramp_epochs``)
# are separate dimensions.
#
# The space is a module-level class rather than a closure in a recipe: Ray pickles the searcher with
# the plain ``pickle`` module for ``--resume``, which finds classes by their importable name.
def policy_space(spec: str) -> dict[str, Any]:
    """The Tune space of the curriculum ``spec``'s parameters under their trial-config keys,
    ``curriculum.<policy>.<parameter>`` (a composition's space is keyed by policy already)."""
    space = curriculum_search_space(spec)
    if "+" not in spec:
        cls = curriculum_class(spec)
        space = {f"{cls.name or cls.__name__}.{key}": domain for key, domain in space.items()}
    return {CURRICULUM_PREFIX + key: domain for key, domain in space.items()}


def suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """Ask ``trial`` for ``name`` from ``distribution`` through the public ``suggest_*`` calls (what
    Ray's define-by-run wrapper records as the trial's config)."""
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step,
                                 log=distribution.log)
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step,
                                   log=distribution.log)
    raise ValueError(f"search space {name!r}: no Optuna suggestion for {distribution!r}")


@dataclass
class CurriculumSpace:
    """``OptunaSearch(space=...)``: each trial draws ``base`` (the loss weights), then a curriculum
    among ``curricula``, then that curriculum's parameters; ``fixed`` settings per curriculum (an
    encoder path) are added as they are."""

    base: dict[str, BaseDistribution]
    curricula: dict[str, dict[str, BaseDistribution]]
    fixed: dict[str, dict[str, Any]]

    @classmethod
    def from_tune(cls, base: Mapping[str, Any], specs: Sequence[str],
                  fixed: Mapping[str, Mapping[str, Any]] | None = None) -> CurriculumSpace:
        """From a Tune space for the base keys and curriculum specs (their spaces: :func:`policy_space`)."""
        if not specs:
            raise ValueError("a curriculum search needs at least one curriculum to choose from")
        fixed = fixed or {}
        return cls(base=OptunaSearch.convert_search_space(dict(base)),
                   curricula={spec: OptunaSearch.convert_search_space(policy_space(spec)) for spec in specs},
                   fixed={spec: dict(fixed.get(spec, {})) for spec in specs})

    def hyperparameters(self) -> list[str]:
        """Every key a trial may draw, base keys first: the leaderboard's columns."""
        parameters = [key for space in self.curricula.values() for key in space]
        return [*self.base, "curriculum", *dict.fromkeys(parameters)]

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        for name, distribution in self.base.items():
            suggest(trial, name, distribution)
        spec = trial.suggest_categorical("curriculum", list(self.curricula))
        for name, distribution in self.curricula[spec].items():
            suggest(trial, name, distribution)
        return dict(self.fixed[spec])


MIN_STEPS_PER_EPOCH = 8
"""Fewest optimiser steps an epoch may give a trial: with 1–2 steps an epoch (batch 64 on 34 windows)
no trial learns, and the search ranks noise."""


def two_level_grid(space: Mapping[str, Any]) -> dict[str, Any]:
    """A two-level factorial design of ``space``: each range's low and high end (each choice list's first
    and last), every combination (2⁶ = 64 trials over six keys).

    The classic screening design: it shows which knobs matter at all, at the fewest trials a full grid
    allows; run it with ASHA so most corners are dropped after their first epochs.
    """
    grid = {}
    for key, domain in space.items():
        if isinstance(domain, Categorical):
            ends = [domain.categories[0], domain.categories[-1]]
        elif isinstance(domain, (Float, Integer)):
            ends = [domain.lower, domain.upper]
        else:
            raise ValueError(f"search space key {key!r}: no low and high end in {domain!r}")
        grid[key] = tune.grid_search(ends)
    return grid


def clamp_to_bounds(config: dict[str, Any], bounds: dict[str, list[float]]) -> dict[str, Any]:
    """PBT's ``custom_explore_fn``: pull perturbed values back into their ``[low, high]`` bounds.

    PBT explores by multiplying by 0.8 or 1.2, which walks a value out of its range within a few
    exploits (a β above 1, a ramp fraction above 1 that the schedule rejects). Bind ``bounds`` with
    ``functools.partial`` so the function pickles with the experiment for ``--resume``.
    """
    for key, (low, high) in bounds.items():
        config[key] = min(max(config[key], low), high)
    return config


def largest_batch_size(train_windows: int) -> int:
    """The largest batch that still gives :data:`MIN_STEPS_PER_EPOCH` steps an epoch (at least 1)."""
    return max(1, train_windows // MIN_STEPS_PER_EPOCH)


def fit_batch_sizes(space: Mapping[str, Any], train_windows: int) -> tuple[dict[str, Any], str | None]:
    """``space`` with its ``batch_size`` choices (``tune.choice`` or a grid) capped by the training set's
    size, and a sentence saying so when they were; choices all above the cap give way to the powers of
    two just under it."""
    domain = space.get("batch_size")
    if isinstance(domain, Categorical):
        choices, build = list(domain.categories), tune.choice
    elif isinstance(domain, Mapping) and "grid_search" in domain:
        choices, build = list(domain["grid_search"]), tune.grid_search
    else:
        return dict(space), None
    limit = largest_batch_size(train_windows)
    kept = [size for size in choices if size <= limit]
    if kept == choices:
        return dict(space), None
    if not kept:
        top = 1 << (limit.bit_length() - 1)  # the largest power of two <= limit
        kept = sorted({max(1, top // 2), top})
    note = (f"batch_size choices {choices} capped at {limit}: {train_windows} training windows give each trial "
            f"at least {MIN_STEPS_PER_EPOCH} optimiser steps an epoch only up to that size; searching {kept}")
    return {**space, "batch_size": build(kept)}, note


def asha(metric: str, max_epochs: int, grace_period: int, reduction_factor: float) -> TrialScheduler:
    """ASHA over epochs, or FIFO (with a printed reason) when ``max_epochs`` leaves it no rung.

    The recipe says its grace period and reduction factor; a grace period at or above ``max_epochs``
    cannot stop any trial before its end, so every trial runs to the end (FIFO) and the search says so.
    """
    if grace_period < 1:
        raise ValueError(f"--grace-period {grace_period}: expected an integer >= 1")
    if not reduction_factor > 1:
        raise ValueError(f"--reduction-factor {reduction_factor}: expected a number above 1 "
                         "(the share 1/reduction-factor of trials goes on at each rung)")
    if grace_period >= max_epochs:
        print(f"ASHA: grace period {grace_period} >= max_epochs {max_epochs} leaves no epoch to stop a trial at, "
              "so every trial runs to the end (FIFO); raise --max-epochs to stop trials early.")
        return FIFOScheduler()
    print(f"ASHA: trials may be stopped from epoch {grace_period} of {max_epochs} "
          f"(reduction factor {reduction_factor:g}).")
    return ASHAScheduler(metric=metric, mode=OBJECTIVE_MODE, time_attr="training_iteration", max_t=max_epochs,
                         grace_period=grace_period, reduction_factor=reduction_factor)


def perturbation_interval(interval: int, max_epochs: int) -> int:
    """The PBT/PB2 perturbation interval, lowered (and said) when the population would never perturb.

    PBT exploits and explores every ``interval`` epochs; an interval at or beyond ``max_epochs`` would
    end the trials before the first perturbation, a population of independent runs. Lowered to half
    the run (at least 1 epoch).
    """
    if interval < 1:
        raise ValueError(f"--perturbation-interval {interval}: expected an integer >= 1")
    if interval < max_epochs:
        return interval
    lowered = max(1, max_epochs // 2)
    if lowered < max_epochs:
        print(f"PBT: perturbation interval {interval} >= max_epochs {max_epochs} would never perturb the "
              f"population; lowered to {lowered}.")
    else:
        print(f"PBT: {max_epochs} epoch leaves no time to perturb the population; its trials train independently.")
    return lowered
