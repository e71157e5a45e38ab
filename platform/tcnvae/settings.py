"""Declared settings: each setting of a trial once, with its default, its check and its help, and the
few checks every declaration is built from.

As scikit-learn's parameter constraints: each owner declares its settings where it uses them (the
data layer's in :class:`~tcnvae.data.pipeline.DataConfig` and :mod:`tcnvae.data.loaders`, the model's
in :mod:`tcnvae.model`, the objective's in :mod:`tcnvae.objective`, the rest in
:mod:`tcnvae.tuning.config`), and the flat trial config derives from the declarations: its keys and
defaults, its checks and their messages, what ``--set`` reads and what PBT may mutate. A check
says what it expects in words, so every message reads ``key=value: expected <what> (<help>)``.

Adding a setting is one declaration where it is used: a field of ``DataConfig`` or of ``Objective``
(``Setting(default, check, help).field()``), an entry of ``tcnvae.model.ARCHITECTURE`` or of
``tcnvae.tuning.config.TRIAL_SETTINGS``. The trial config then has the key, its default and its check;
``--set`` reads it; a rule between it and other settings goes in the owner's validation.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import Field, dataclass, field
from numbers import Integral, Real
from typing import Any


def is_number(value: Any) -> bool:
    """A finite real number, not a bool."""
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def is_integer(value: Any) -> bool:
    """An integer, not a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class Check:
    """A test of one value, and what it expects in words (``"an integer >= 1"``)."""

    test: Callable[[Any], bool]
    expected: str

    def __call__(self, value: Any) -> bool:
        return bool(self.test(value))


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if high is None:
        return f"{'>' if low_open else '>='} {low:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False,
           integer: bool = False, optional: bool = False, expected: str | None = None) -> Check:
    """A finite number (``integer``: an integer) within the bounds given, each closed unless declared
    open; ``optional`` also accepts None. ``expected`` replaces the generated wording."""
    def test(value: Any) -> bool:
        if value is None:
            return optional
        if not (is_integer(value) if integer else is_number(value)):
            return False
        above = low is None or (value > low if low_open else value >= low)
        return above and (high is None or (value < high if high_open else value <= high))

    if expected is None:
        low_ = 0 if low is None and high is not None else low
        if integer:
            expected = "an integer" + ("" if low_ is None else f" {_bounds(low_, high, low_open, high_open)}")
        elif low_ == 0 and high is None and low_open:
            expected = "a positive number"
        elif low_ == 0 and high == 1:
            expected = f"a fraction {_bounds(low_, high, low_open, high_open)}"
        else:
            expected = "a number" + ("" if low_ is None else f" {_bounds(low_, high, low_open, high_open)}")
        if optional:
            expected = f"None or {expected}"
    return Check(test, expected)


def choice(options: Iterable[Any], *, optional: bool = False) -> Check:
    """One of ``options`` (``optional``: or None)."""
    allowed = tuple(options)
    words = f"one of {', '.join(str(option) for option in allowed)}"
    return Check(lambda value: (optional and value is None) or (_hashable(value) and value in allowed),
                 f"None or {words}" if optional else words)


def _hashable(value: Any) -> bool:
    return not isinstance(value, (list, dict, set))


FLAG = Check(lambda value: isinstance(value, bool), "True or False")


@dataclass(frozen=True)
class Setting:
    """One setting: its default, its check and its help (what it means, in a sentence).

    ``check`` None: the setting is checked together with those it depends on, by its owner (a curriculum
    spec by its policies, the datasets by the source registry). ``mutable``: PBT may change it while a
    trial runs. ``term``: for a loss weight, the loss term it multiplies."""

    default: Any
    check: Check | None
    help: str
    mutable: bool = False
    term: str | None = None

    @property
    def expected(self) -> str:
        return self.check.expected if self.check is not None else ""

    def problem(self, key: str, value: Any) -> str | None:
        """``key=value: expected ... (help)`` when ``value`` fails the check, else None."""
        if self.check is None or self.check(value):
            return None
        return f"{key}={value!r}: expected {self.check.expected} ({self.help})"

    def field(self) -> Field:
        """A dataclass field defaulting to this declaration's default (a fresh copy of a list or dict)
        and carrying the declaration (:func:`declared`)."""
        if isinstance(self.default, (list, dict)):
            return field(default_factory=lambda: copy.deepcopy(self.default), metadata={"setting": self})
        return field(default=self.default, metadata={"setting": self})


def declared(item: Field) -> Setting | None:
    """The declaration a dataclass field carries (:meth:`Setting.field`), if any."""
    return item.metadata.get("setting")


def problems(declarations: Mapping[str, Setting], values: Mapping[str, Any]) -> list[str]:
    """The message of each of ``values``' declared keys that fails its check, in declaration order."""
    found = (setting.problem(key, values[key]) for key, setting in declarations.items() if key in values)
    return [problem for problem in found if problem is not None]


def defaults(declarations: Mapping[str, Setting]) -> dict[str, Any]:
    """Each declared key's default (a fresh copy of lists and dicts)."""
    return {key: copy.deepcopy(setting.default) for key, setting in declarations.items()}
