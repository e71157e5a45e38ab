"""One activity taxonomy for every dataset.

Datasets are pooled by *meaning*, never by raw label id: each source maps its own label codes to the
canonical names below. The system this replaces pooled raw integer ids, so PAMAP2 "lying" and UCI
"walking" became one class; a per-dataset map by name makes that impossible.

The canonical order below fixes the order of the model's activity head: a head built for a set of
datasets covers the union of their activities, in this order (see :func:`label_space`).
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
    "vacuum_cleaning",
    "ironing",
    "rope_jumping",
    "postural_transition",
]


def register_activity(name: str) -> None:
    """Extend the taxonomy with a new activity (appended, so existing orders stay stable)."""
    if not name or not name.replace("_", "").isalnum() or name != name.lower():
        raise ValueError(f"activity name {name!r} must be lower_snake_case letters and digits")
    if name not in ACTIVITIES:
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
    """The given activities, validated, deduplicated and in canonical order."""
    wanted = {check_activity(n) for n in names}
    return [a for a in ACTIVITIES if a in wanted]
