"""Curricula by name: the registry, user policies from files, composition and parameter routing.

A spec names what to build:

- a registered name, e.g. ``"single_to_cross"`` (``none``, the platform's default, is registered here;
  the optional shipped policies live in the top-level ``curricula`` package and register the first
  time a name not registered yet is asked for; add yours with :func:`register_curriculum`);
- ``"path/to/file.py:ClassName"``: a :class:`CurriculumPolicy` subclass defined in a file;
- several of those joined by ``"+"``, e.g. ``"single_to_cross+freeze_then_finetune"``: all at once
  (:class:`~tcnvae.curriculum.policy.Compose`).

Parameters are the policies' constructor arguments. In a composition a parameter may be written
``"<policy>.<parameter>"``; a bare name goes to the one policy that has it (a name two policies
share must be prefixed). :func:`curriculum_search_space` uses the same keys, so a sampled
configuration goes straight back into :func:`make_curriculum`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from typing import Any

from tcnvae.curriculum.none import NoCurriculum
from tcnvae.curriculum.policy import (
    Compose,
    CurriculumPolicy,
    constructor_parameters,
    prefixed,
)

CURRICULA: dict[str, type[CurriculumPolicy]] = {NoCurriculum.name: NoCurriculum}
"""Registered policy classes by name: ``none`` from the start, the optional shipped ones once a name
not registered yet is first asked for (:func:`curriculum_class`)."""

BUILTIN_PACKAGE = "curricula"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def register_curriculum(name: str, cls: type[CurriculumPolicy]) -> None:
    """Make ``cls`` available as ``name``; re-registering the same class is harmless."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"curriculum name {name!r} must be an identifier (letters, digits, underscores)")
    if not (inspect.isclass(cls) and issubclass(cls, CurriculumPolicy)) or inspect.isabstract(cls):
        raise ValueError(f"curriculum {name!r}: {cls!r} is not a concrete subclass of CurriculumPolicy")
    registered = CURRICULA.get(name)
    if registered is not None and registered is not cls:
        raise ValueError(f"curriculum name {name!r} is taken by {registered.__module__}.{registered.__qualname__}")
    CURRICULA[name] = cls


def _load_builtin() -> None:
    try:
        importlib.import_module(BUILTIN_PACKAGE)
    except ModuleNotFoundError as error:
        if error.name != BUILTIN_PACKAGE:
            raise
        raise ModuleNotFoundError(
            f"the shipped curricula (package {BUILTIN_PACKAGE!r}, the repository's curricula/ folder) are not "
            "importable: install the project (pip install -e .) or put the repository root on PYTHONPATH"
        ) from None


def load_policy_class(path: str | Path, class_name: str) -> type[CurriculumPolicy]:
    """The class ``class_name`` from the Python file ``path`` (a user's own policy)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"curriculum file {path} does not exist")
    module_name = f"tcnvae_user_curriculum_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ValueError(f"curriculum file {path} cannot be imported as Python (expected a .py file)")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # so dataclasses and pickling inside the file resolve it
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
    cls = getattr(module, class_name, None)
    if cls is None:
        found = sorted(name for name, value in vars(module).items()
                       if inspect.isclass(value) and issubclass(value, CurriculumPolicy)
                       and value is not CurriculumPolicy and value.__module__ == module_name)
        raise ValueError(f"curriculum file {path} has no class {class_name!r}; "
                         f"its CurriculumPolicy classes: {', '.join(found) or 'none'}")
    if not (inspect.isclass(cls) and issubclass(cls, CurriculumPolicy)):
        raise ValueError(f"{class_name!r} in {path} is not a subclass of tcnvae.curriculum.CurriculumPolicy")
    if inspect.isabstract(cls):
        raise ValueError(f"{class_name!r} in {path} is abstract: implement "
                         f"{', '.join(sorted(cls.__abstractmethods__))}")
    return cls


def curriculum_class(component: str) -> type[CurriculumPolicy]:
    """The class one spec component names: a registered name or ``file.py:ClassName``."""
    path, colon, class_name = component.rpartition(":")
    if colon:
        if not path or not class_name:
            raise ValueError(f"curriculum {component!r}: expected path/to/file.py:ClassName")
        return load_policy_class(path, class_name)
    if component not in CURRICULA:
        _load_builtin()
    if component not in CURRICULA:
        raise ValueError(f"unknown curriculum {component!r}; registered: {', '.join(sorted(CURRICULA))} "
                         "(or give path/to/file.py:ClassName)")
    return CURRICULA[component]


def _components(spec: str) -> list[tuple[str, type[CurriculumPolicy]]]:
    """(name, class) of each ``+``-joined component; the name prefixes its parameters."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"curriculum spec must be a non-empty string, got {spec!r}")
    components = []
    for component in spec.split("+"):
        cls = curriculum_class(component.strip())
        components.append((cls.name or cls.__name__, cls))
    names = [name for name, _ in components]
    if len(set(names)) != len(names):
        raise ValueError(f"curriculum {spec!r} names the same policy twice")
    return components


def check_curriculum_spec(spec: str) -> str:
    """Validate ``spec`` (names exist, files hold the classes) and return it with file paths made
    absolute, so the spec still resolves in Ray workers that run in another directory."""
    _components(spec)
    parts = []
    for component in spec.split("+"):
        path, colon, class_name = component.strip().rpartition(":")
        parts.append(f"{Path(path).expanduser().resolve()}:{class_name}" if colon else component.strip())
    return "+".join(parts)


def _route(spec: str, components: list[tuple[str, type[CurriculumPolicy]]],
           params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    accepted = {name: constructor_parameters(cls) for name, cls in components}
    valid = [f"{name}.{key}" if len(components) > 1 else key for name, keys in accepted.items() for key in keys]
    routed: dict[str, dict[str, Any]] = {name: {} for name, _ in components}
    for key, value in params.items():
        prefix, dot, bare = key.rpartition(".")
        if dot and prefix in accepted:
            owners = [prefix] if bare in accepted[prefix] else []
        else:
            bare = key
            owners = [name for name, keys in accepted.items() if key in keys]
        if len(owners) > 1:
            raise ValueError(f"curriculum {spec!r}: parameter {key!r} belongs to {owners}; "
                             f"write it as one of {[f'{o}.{key}' for o in owners]}")
        if not owners:
            raise ValueError(f"curriculum {spec!r} has no parameter {key!r}; its parameters: "
                             f"{', '.join(valid) or 'none'}")
        routed[owners[0]][bare] = value
    return routed


def make_curriculum(spec: str, **params: Any) -> CurriculumPolicy:
    """Build the policy (or composition) ``spec`` names with ``params``; unknown names, files,
    classes and parameters, and bad parameter values, raise a ValueError (FileNotFoundError for a
    missing file) that lists what is valid."""
    components = _components(spec)
    routed = _route(spec, components, params)
    policies = []
    for name, cls in components:
        try:
            policies.append(cls(**routed[name]))
        except (TypeError, ValueError) as error:
            parameters = ", ".join(constructor_parameters(cls)) or "none"
            raise ValueError(f"curriculum {name!r}: {error} (its parameters: {parameters})") from None
    return policies[0] if len(policies) == 1 else Compose(*policies)


def curriculum_search_space(spec: str) -> dict[str, Any]:
    """The Tune search space of ``spec``'s tunable parameters, keyed as :func:`make_curriculum` takes
    them (``"<policy>.<parameter>"`` in a composition)."""
    components = _components(spec)
    if len(components) == 1:
        return components[0][1].search_space()
    return prefixed((name, cls.search_space()) for name, cls in components)
