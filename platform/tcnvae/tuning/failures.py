"""Trial failures: which recur (never worth a retry), and a search every trial of which failed.

Tune retries a failed trial from its latest checkpoint up to ``--max-failures`` times, whatever the
error: it has no notion of an error that will recur. Worth a retry is what happens to the process from
outside (a killed worker, a lost node: Tune's ``RayActorError``, which the trial never sees) or
depends on the moment (memory taken by other trials, a storage hiccup). An error the trial's own code
raises on its config or data (:data:`RECURRING_ERRORS`: a diverging loss, an impossible value, a data
file gone, a programming error) comes back at every try, after the same training time.

So a trial records such an error in its folder as it fails (:func:`no_retry_of_recurring_errors`),
and a retry that finds the record refuses at once, without training, with :class:`RecurringTrialError`
naming the first error: Tune still restarts the trial's process, but no epoch is run twice for nothing.
A resumed search (another Ray job) tries an errored trial again, as ``--resume`` promises.

When every trial of a search failed, :func:`check_search_outcome` ends it with one
:class:`SearchFailedError` naming the cause, instead of a summary of nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray
from ray import cloudpickle
from ray.exceptions import RayTaskError
from ray.tune import ResultGrid

from tcnvae.checkpoints import atomic_write
from tcnvae.trainer import TrainingDivergedError

USER_FAILURES = (TrainingDivergedError, ValueError, OSError)
"""Recurring errors a user fixes (a learning rate, a setting, a data file): a failed search exits with status 2."""
PROGRAMMING_FAILURES = (TypeError, AttributeError, NameError, KeyError, IndexError, NotImplementedError,
                        AssertionError, ZeroDivisionError)
"""Recurring errors of the code itself: a failed search shows the traceback and exits with status 1."""
TRANSIENT_OS_ERRORS = (ConnectionError, TimeoutError, InterruptedError, BlockingIOError)
"""OSErrors of the moment, retried like any error outside :data:`RECURRING_ERRORS`."""
RECURRING_ERRORS = (*USER_FAILURES, *PROGRAMMING_FAILURES)
RECORD_FILE = "recurring_error.json"
"""In the trial's folder: the recurring error a try of this trial failed with, and the Ray job of that try."""


class RecurringTrialError(RuntimeError):
    """A retried trial refusing to train again: its first try failed with an error that recurs."""

    def __init__(self, message: str, user_error: bool = True) -> None:
        super().__init__(message)
        self.user_error = user_error


class SearchFailedError(RuntimeError):
    """Every trial of the search failed. ``user_error``: the cause is the user's to fix (exit status 2, no
    traceback); else ``details`` holds the first failed trial's traceback."""

    def __init__(self, message: str, user_error: bool, details: str = "") -> None:
        super().__init__(message)
        self.user_error = user_error
        self.details = details


def recurs(error: BaseException) -> bool:
    """Whether ``error``, raised by a trial's own code, would come back at every retry."""
    return isinstance(error, (*RECURRING_ERRORS, RecurringTrialError)) and not isinstance(error, TRANSIENT_OS_ERRORS)


def cause(error: BaseException) -> BaseException:
    """The trial's own exception inside what Tune hands back (a ``RayTaskError`` wraps it)."""
    return error.cause if isinstance(error, RayTaskError) and error.cause is not None else error


def describe(error: BaseException) -> str:
    """``Type: message`` of a trial's error, the message's first line only."""
    error = cause(error)
    if isinstance(error, RecurringTrialError):
        return str(error)
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0]}" if message else type(error).__name__


def _is_user_error(error: BaseException) -> bool:
    error = cause(error)
    if isinstance(error, (RecurringTrialError, SearchFailedError)):
        return error.user_error
    return isinstance(error, USER_FAILURES)


def _job_id() -> str:
    return ray.get_runtime_context().get_job_id() if ray.is_initialized() else ""


@contextmanager
def no_retry_of_recurring_errors(trial_dir: Path) -> Iterator[None]:
    """Around a trial's training: record a recurring error (:func:`recurs`) in ``trial_dir`` as it
    propagates; refuse at once when an earlier try of this search (this Ray job) recorded one."""
    record_path = Path(trial_dir) / RECORD_FILE
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("job") == _job_id():
            raise RecurringTrialError(f"not retried: {record['error']} (it would recur)", record["user_error"])
    try:
        yield
    except Exception as error:
        if recurs(error):
            record = {"error": describe(error), "user_error": _is_user_error(error), "job": _job_id()}
            record_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(record_path, lambda stream: stream.write(json.dumps(record).encode()))
        raise


def check_search_outcome(results: ResultGrid, experiment: str | Path) -> None:
    """Raise :class:`SearchFailedError` when the search had trials and every one ended in an error:
    the most frequent cause, how many trials it ended, and where the trials' ``error.txt`` are."""
    errors = [result.error for result in results if result.error is not None]
    if not errors or len(errors) < len(results):
        return
    causes = Counter(_first_cause(error) for error in errors)
    (main, count), others = causes.most_common(1)[0], len(causes) - 1
    first = next(error for error in errors if _first_cause(error) == main)
    tally = f"all {len(errors)} trials" if count == len(errors) else f"{count} of the {len(errors)} trials"
    also = f" ({others} other error{'s' if others > 1 else ''} ended the rest)" if others else ""
    raise SearchFailedError(f"every trial failed; {tally} with {main}{also}. Each trial's error.txt under "
                            f"{experiment} holds its traceback", user_error=_is_user_error(first),
                            details=str(first))


def _first_cause(error: BaseException) -> str:
    """The error a trial first failed with: a refused retry names it."""
    text = describe(error)
    prefix = "not retried: "
    text = text[len(prefix):] if text.startswith(prefix) else text
    return text.removesuffix(" (it would recur)")


def trial_error(trial: Any) -> BaseException | None:
    """The error a Tune trial just failed with, read from the file Tune wrote in this driver a moment ago
    (Tune's own ``get_error`` reads the storage copy, which is synced later); None if it cannot be read."""
    path = trial.pickled_error_file
    if not path or not Path(path).is_file():
        return None
    try:
        with open(path, "rb") as stream:
            return cloudpickle.load(stream)
    except Exception:  # an error that does not unpickle here: its error.txt still holds the traceback
        return None
