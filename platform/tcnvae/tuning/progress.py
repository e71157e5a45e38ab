"""The search's console: one compact progress line now and then, Tune's own tables only with ``--verbose``.

Tune's default console redraws a table of every trial and its sixty settings, and warns "Experiment
state snapshotting has been triggered multiple times..." each time a trial writes ``num_to_keep``
checkpoints between two saves of the experiment state (an 80-second search printed it 44 times).
That warning asks for nothing (keeping few checkpoints is this project's choice, and the forced
saves are what keeps ``--resume`` close to the driver's last state), so it is filtered out unless
``--verbose``, which also brings back Tune's tables. By default the search prints
:class:`SearchProgress` lines instead::

    search 1:05  trials: 3 done, 2 running, 7 pending (of 12)  best val/accuracy 0.8123 (trial 002)  ETA 2:40

Ray's and Tune's own messages are silenced where they are made, not filtered from the console
(:func:`quiet_console`, :func:`ray_init_options`): the trial processes' Ray loggers are raised to
warnings by a ``worker_process_setup_hook`` (:func:`quiet_worker_logging`; Ray Train logs "Checkpoint
successfully created at: ..." at every checkpoint), the driver's by ``ray.init(logging_level=...)``
(the dashboard's address, the token it generated, Tune's "Wrote the latest version...") and its token
notice's logger to errors (:data:`TOKEN_NOTICE_LOGGER`), Tune's
start-up table by its legacy console (``RAY_AIR_NEW_OUTPUT=0``) at verbosity 0, and each trial
error's traceback (``TUNE_PRINT_ALL_TRIAL_ERRORS=0``) becomes one line of :class:`SearchProgress`
naming the error and whether it is retried (the traceback stays in the trial's ``error.txt``). ``--verbose`` keeps all of Ray's and Tune's console.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import optuna
from ray.tune import Callback

from tcnvae.tuning.failures import RecurringTrialError, cause, describe, recurs, trial_error

PRINT_EVERY_SECONDS = 30.0
"""Longest gap between two progress lines while trials report (a trial's end always prints one)."""
SNAPSHOT_WARNING = "Experiment state snapshotting has been triggered multiple times"
SNAPSHOT_LOGGER = "ray.tune.execution.experiment_state"  # the Ray module that logs it


QUIET_CONSOLE_ENV = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_PRINT_ALL_TRIAL_ERRORS": "0"}
"""Tune's switches while a quiet search runs: its legacy console, which at verbosity 0 prints nothing (the
new one prints its configuration table at any verbosity), and no traceback of every trial error."""
TOKEN_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"
"""Ray's logger of "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to
opt out": a notice at every start of a local Ray, logged as a warning. Quiet searches keep the token
authentication and raise this logger to errors; ``RAY_AUTH_MODE=token`` set by the search would not do:
Ray reads it when it is imported."""
WORKER_SETUP_HOOK = "tcnvae.tuning.progress.quiet_worker_logging"
"""Run by every Ray worker process of a quiet search as it starts (``runtime_env``'s ``worker_process_setup_hook``)."""


def console_verbosity(verbose: bool) -> int:
    """Tune's ``RunConfig(verbose=...)``: 1 (its trial tables) with ``--verbose``, else 0 (our lines only)."""
    return 1 if verbose else 0


def quiet_worker_logging() -> None:
    """In a trial's process: Ray's own loggers (Ray Train's "Checkpoint successfully created at: ..." at
    every checkpoint, among them) emit warnings and errors only, so only those reach the driver's console."""
    logging.getLogger("ray").setLevel(logging.WARNING)


def ray_init_options(verbose: bool) -> dict[str, Any]:
    """``ray.init`` keywords for the search's console: Ray's driver and worker logs at warnings without
    ``--verbose``, as Ray has them (the dashboard address included) with it."""
    if verbose:
        return {}
    return {"logging_level": logging.WARNING, "runtime_env": {"worker_process_setup_hook": WORKER_SETUP_HOOK}}


@contextmanager
def quiet_console(enabled: bool = True) -> Iterator[None]:
    """While a search starts and runs: Tune's console off (:data:`QUIET_CONSOLE_ENV`), its repeated snapshot
    warning dropped (module doc), Optuna's "A new study created" left out; everything as it was afterwards."""
    if not enabled:
        yield
        return
    saved_env = {key: os.environ.get(key) for key in QUIET_CONSOLE_ENV}
    os.environ.update(QUIET_CONSOLE_ENV)
    optuna_verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    token_logger = logging.getLogger(TOKEN_NOTICE_LOGGER)
    token_level = token_logger.level
    token_logger.setLevel(logging.ERROR)
    try:
        with quiet_snapshot_warnings():
            yield
    finally:
        token_logger.setLevel(token_level)
        optuna.logging.set_verbosity(optuna_verbosity)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _DropSnapshotWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(SNAPSHOT_WARNING)


@contextmanager
def quiet_snapshot_warnings() -> Iterator[None]:
    """Drop Tune's repeated snapshot warning (module doc) while the search runs; other warnings stay."""
    snapshot_logger = logging.getLogger(SNAPSHOT_LOGGER)
    dropper = _DropSnapshotWarnings()
    snapshot_logger.addFilter(dropper)
    try:
        yield
    finally:
        snapshot_logger.removeFilter(dropper)


def _index(trial: Any) -> str:
    return str(trial).split("_", 1)[0]


def format_duration(seconds: float) -> str:
    """``1:05``, ``1:02:03``: minutes and seconds, hours when there are any."""
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class SearchProgress(Callback):
    """Prints a progress line at the first result, then at most every :data:`PRINT_EVERY_SECONDS` while
    trials report, and at each trial's end: trials done/running/pending, the best so far, and an ETA.
    On a terminal it is one line, rewritten in place (a failed trial's line goes above it); into a pipe
    or a file, a line each time.

    Best so far: the highest ``metric`` at a trial's latest epoch, the value the leaderboard ranks by.
    ETA: the epochs still to run (every unfinished trial to its ``max_epochs``, trials not started yet
    included) at the rate epochs have come in since the first one (Ray's start-up left out), so it
    allows for the trials running side by side; a scheduler that stops trials early (ASHA) makes the
    search end sooner.
    Counted from the trials Tune hands every callback, so a resumed search counts the trials it
    finished before the interruption.
    """

    def __init__(self, metric: str, max_epochs: int, print_every_seconds: float = PRINT_EVERY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.metric = metric
        self.max_epochs = max_epochs
        self.print_every_seconds = print_every_seconds
        self.clock = clock
        self._total = 0
        self._started = clock()
        self._last_line = -math.inf
        self._first_result: float | None = None
        self._epochs = 0
        self._line_open = False

    def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info: Any) -> None:
        self._total = total_num_samples or num_samples or 0
        self._started = self.clock()
        self._last_line = -math.inf
        self._first_result = None
        self._epochs = 0
        self._line_open = False

    def on_trial_result(self, iteration: int, trials: Sequence[Any], trial: Any, result: dict, **info: Any) -> None:
        if self._first_result is None:
            self._first_result = self.clock()
        else:
            self._epochs += 1
        if self.clock() - self._last_line >= self.print_every_seconds:
            self._print(trials)

    # Tune calls these before it sets the trial's new status: the line counts it as ended already.
    def on_trial_complete(self, iteration: int, trials: Sequence[Any], trial: Any, **info: Any) -> None:
        self._print(trials, ended=trial, ended_as="TERMINATED")

    # One line per failure the user should know of: a trial's own error once (a recurring one is not
    # retried: the restarts Tune still makes refuse at once, and are not shown), a retried crash each time.
    def on_trial_error(self, iteration: int, trials: Sequence[Any], trial: Any, **info: Any) -> None:
        error = trial_error(trial)
        if not isinstance(cause(error), RecurringTrialError):
            self._say(f"trial {_index(trial)} failed: {describe(error) if error else 'see its error.txt'}")
        self._print(trials, ended=trial, ended_as="ERROR")

    def on_trial_recover(self, iteration: int, trials: Sequence[Any], trial: Any, **info: Any) -> None:
        error = trial_error(trial)
        if error is None:
            self._say(f"trial {_index(trial)} failed (see its error.txt); retried from its latest checkpoint")
        elif recurs(cause(error)):
            if not isinstance(cause(error), RecurringTrialError):
                self._say(f"trial {_index(trial)} failed: {describe(error)}; not retried: it would recur")
        else:
            self._say(f"trial {_index(trial)} failed: {describe(error)}; retried from its latest checkpoint")

    def line(self, trials: Sequence[Any], ended: Any = None, ended_as: str = "TERMINATED") -> str:
        """The progress line for Tune's ``trials`` now; ``ended``, if given, counts as ``ended_as``."""
        statuses = [ended_as if trial is ended else trial.status for trial in trials]
        done, errors = statuses.count("TERMINATED"), statuses.count("ERROR")
        running = statuses.count("RUNNING") + statuses.count("PAUSED")
        total = max(self._total, len(trials))
        counts = f"{done} done, " + (f"{errors} errored, " if errors else "") + \
            f"{running} running, {total - done - errors - running} pending (of {total})"
        parts = [f"search {format_duration(self.clock() - self._started)}", f"trials: {counts}"]
        scored = [(trial.last_result[self.metric], trial) for trial in trials
                  if isinstance((trial.last_result or {}).get(self.metric), (int, float))
                  and not math.isnan(trial.last_result[self.metric])]
        if scored:
            value, best = max(scored, key=lambda pair: pair[0])
            parts.append(f"best {self.metric} {value:.4f} (trial {_index(best)})")
        parts.append(f"ETA {self._eta(trials, statuses, total)}")
        return "  ".join(parts)

    def _eta(self, trials: Sequence[Any], statuses: Sequence[str], total: int) -> str:
        unfinished = [trial for trial, status in zip(trials, statuses) if status not in ("TERMINATED", "ERROR")]
        remaining = sum(max(0, trial.config.get("max_epochs", self.max_epochs)
                            - (trial.last_result or {}).get("training_iteration", 0)) for trial in unfinished)
        remaining += max(0, total - len(trials)) * self.max_epochs
        if remaining == 0:
            return "0:00"
        if self._first_result is None or self._epochs == 0:
            return "after the first epochs"
        return format_duration(remaining * (self.clock() - self._first_result) / self._epochs)

    def _print(self, trials: Sequence[Any], **ended: Any) -> None:
        self._last_line = self.clock()
        if sys.stdout.isatty():  # one line, rewritten in place; a log (a pipe, a file) gets each line
            sys.stdout.write(f"\r\x1b[2K{self.line(trials, **ended)}")
            sys.stdout.flush()
            self._line_open = True
        else:
            print(self.line(trials, **ended), flush=True)

    def _say(self, message: str) -> None:
        """A line of its own: below the progress line a terminal shows, which goes on under it."""
        self._end_line()
        print(message, flush=True)

    def _end_line(self) -> None:
        if self._line_open:
            sys.stdout.write("\n")
            self._line_open = False

    def on_experiment_end(self, trials: Sequence[Any], **info: Any) -> None:
        self._end_line()
