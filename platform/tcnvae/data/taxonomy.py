"""One activity taxonomy for every dataset.

Datasets are pooled by *meaning*, never by raw label id: each source maps its own label codes to the
canonical names below. The system this replaces pooled raw integer ids, so PAMAP2 "lying" and UCI
"walking" became one class; a per-dataset map by name makes that impossible.

The canonical order below fixes the order of the model's activity head: a head built for a set of
datasets covers the union of their activities, in this order (see :func:`label_space`).

A user's own data may bring activities the taxonomy lacks (``pendulum``, ``squat``): they need no
code. They follow the taxonomy's activities in alphabetical order, an order that depends only on the
names, so every process that loads the same data (the driver and each Ray trial) builds the same
head without a registry to share. To pool such data with other datasets, map its names onto the
taxonomy's (the arrays source's ``label_map``).
"""

from __future__ import annotations

from collections.abc import Iterable

ACTIVITIES: list[str] = [
    "lying",
    "sitting",
    "standing",
    "walking",
    "running",
    "cycling",
    "nordic_walking",
    "ascending_stairs",
    "descending_stairs",
    "stairs",  # up or down, not told apart (WISDM 2019): never to be guessed into one of the two above
    "vacuum_cleaning",
    "ironing",
    "rope_jumping",
    "postural_transition",
]
TAXONOMY: tuple[str, ...] = tuple(ACTIVITIES)  # the built-in names, whose order leads every label space


def check_name(name: str) -> str:
    """Return ``name`` if it is a well-formed activity name (lower_snake_case), else raise a ValueError."""
    if not isinstance(name, str) or not name or not name.replace("_", "").isalnum() or name != name.lower():
        raise ValueError(f"activity name {name!r} must be lower_snake_case letters and digits")
    return name


def register_activity(name: str) -> None:
    """Make ``name`` known to :func:`check_activity` (data with new names needs no registration)."""
    if check_name(name) not in ACTIVITIES:
        ACTIVITIES.append(name)


def check_activity(name: str) -> str:
    """Return ``name`` if it is a known activity, else raise a ValueError listing the known ones."""
    if name not in ACTIVITIES:
        raise ValueError(
            f"unknown activity {name!r}; known activities: {', '.join(ACTIVITIES)} "
            "(add one with tcnvae.data.taxonomy.register_activity)"
        )
    return name


def label_space(names: Iterable[str]) -> list[str]:
    """The given activities, validated, deduplicated and in canonical order: the taxonomy's first, in
    its order, then any others alphabetically (see the module docstring)."""
    wanted = {check_name(n) for n in names}
    return [a for a in TAXONOMY if a in wanted] + sorted(wanted - set(TAXONOMY))
