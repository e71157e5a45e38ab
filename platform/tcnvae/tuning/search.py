"""One search set-up every recipe shares: the searcher, the checkpoints kept, the Optuna study, resume.

A recipe in ``searches/`` says what differs — its search space, which searcher (:class:`OptunaTPE`
or :class:`RandomSearch`), its scheduler (:mod:`tcnvae.tuning.schedulers`), how many trials, which
checkpoints to keep and the data it prepared — and hands them to :func:`run_search` (each a required
argument: a recipe cannot leave one out and silently get another), which does the rest the same way for
every recipe: Ray started only after every check, the trainable made once (here and nowhere else),
a new search or, with ``--resume``, the interrupted one continued, and the console of
:mod:`tcnvae.tuning.progress`.

Why one place: the recipes used to copy this set-up, and the copies drifted (the curriculum search
kept a plain ``OptunaSearch`` after the others had moved to
:class:`~tcnvae.tuning.optuna_search.ResumableOptunaSearch`, and its ``--resume`` failed after a
killed driver). A searcher is described by the recipe and built here, for a new search only: a
resumed search restores the one it started with.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.sample import Categorical, Domain, Float, Integer

from tcnvae.tuning import provenance
from tcnvae.tuning.cli import SearchInterrupted, experiment_location, start_ray, trial_dirname, tune_storage
from tcnvae.tuning.config import OBJECTIVE_MODE, OBJECTIVES
from tcnvae.tuning.optuna_search import ResumableOptunaSearch
from tcnvae.tuning.failures import check_search_outcome
from tcnvae.tuning.progress import SearchProgress, console_verbosity, quiet_console
from tcnvae.tuning.results import resume_hint
from tcnvae.tuning.tensorboard import is_search_domain, tune_logger_callbacks, write_search_start
from tcnvae.data.checks import check_search_data
from tcnvae.data.pipeline import PreparedData
from tcnvae.tuning.trainable import make_trainable

OPTUNA_STUDY_FILE = "optuna.db"
"""The Optuna study of an :class:`OptunaTPE` search, in the experiment folder, named after the experiment:
``optuna.load_study(study_name=NAME, storage="sqlite:///<experiment>/optuna.db")`` or optuna-dashboard."""


@dataclass(frozen=True)
class OptunaTPE:
    """Optuna's TPE sampler, seeded with the search's seed; several metrics search their Pareto front.

    ``space``: a define-by-run space (a callable of an ``optuna.Trial``, such as
    :class:`~tcnvae.tuning.curriculum_space.CurriculumSpace`); None takes the Tune domains of the
    search's ``param_space``. The searcher skips results its study already holds, so a search whose
    driver was killed resumes (:mod:`tcnvae.tuning.optuna_search`).
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

    Raises :class:`~tcnvae.tuning.cli.SearchInterrupted` with the resume hint when Ctrl-C or SIGTERM
    stopped the search, and :class:`~tcnvae.tuning.failures.SearchFailedError` when every trial failed.

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
    if hint:  # Ctrl-C or SIGTERM (cli.stop_sigterm_as_ctrl_c): Tune saved the state and stopped
        raise SearchInterrupted(hint)
    check_search_outcome(results, experiment)
    return results


def _new_tuner(args: argparse.Namespace, experiment: Path, config: Mapping[str, Any], trainable: Any,
               param_space: dict[str, Any], tune_config: tune.TuneConfig, checkpoints: tune.CheckpointConfig,
               stop: Mapping[str, Any] | None) -> tune.Tuner:
    """A ``Tuner`` for a new search: the recipe's choices and what every search shares.

    Shared: Tune's ``reuse_actors`` (trials reuse a warm process), short trial folder names
    (:func:`~tcnvae.tuning.cli.trial_dirname`), each trial's own TensorBoard run instead of Ray's copy
    (:func:`~tcnvae.tuning.tensorboard.tune_logger_callbacks`), a record of the pickled files for
    ``--resume`` (:mod:`tcnvae.tuning.provenance`), the progress view, ``--max-concurrent`` and
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
                                             provenance.DigestRecorder(experiment_location(args, experiment))],
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
        provenance.verify_experiment(location)
    return tune.Tuner.restore(location, trainable, resume_unfinished=True, resume_errored=True)
