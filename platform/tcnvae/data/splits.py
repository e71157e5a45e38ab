"""Subject-disjoint splits: every split assigns whole subjects, so no person is on two sides.

Overlapping windows of one subject are near-copies of each other; splitting windows at random (what
the replaced system did) puts those copies on both sides and inflates accuracy. Here a subject's
windows always go together, and since windows never cross recordings, no sample leaks either.

Every function returns index arrays into the given WindowSet, as a dict with keys "train", "val" and
"test" (``leave_one_subject_out`` yields one such dict per subject). Fractions are fractions of
*subjects*, counted per dataset so each dataset has subjects on each side where it has enough.

One deliberate exception: a transductive unlabelled target (``unlabelled_target_split(...,
transductive=True)``) is adapted on, without labels, and tested on the very same windows; no labelled
side shares a subject with any other.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from tcnvae.data.windows import WindowSet

logger = logging.getLogger(__name__)

UCI_HAR_TEST_SUBJECTS = (2, 4, 9, 10, 12, 13, 18, 20, 24)
SELECTION_ATTEMPTS = 200


def _check_fraction(name: str, value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"{name} must lie in [0, 1), got {value}")


def _indices(mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask).astype(np.int64)


def _held_count(num_subjects: int, fraction: float, keep_at_least: int) -> int:
    """Subjects to hold out: ``fraction`` rounded, at least one if asked for and enough remain."""
    if fraction <= 0:
        return 0
    count = max(1, int(round(fraction * num_subjects)))
    return max(0, min(count, num_subjects - keep_at_least))


def stratified_subject_split(
    ws: WindowSet,
    fraction: float,
    seed: int = 0,
    index: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``fraction`` of the subjects (per dataset) so the held part keeps the class balance.

    Among ``index`` (default: all windows), tries random subject choices and keeps the one whose
    class proportions are closest to those of all the windows considered. Returns (rest, held).
    """
    _check_fraction("fraction", fraction)
    index = np.arange(len(ws)) if index is None else np.asarray(index, dtype=np.int64)
    rng = np.random.default_rng(seed)
    held_subjects: list[str] = []
    for dataset in sorted(set(ws.dataset[index].tolist())):
        in_dataset = index[ws.dataset[index] == dataset]
        subjects = np.array(sorted(set(ws.subject[in_dataset].tolist())))
        count = _held_count(len(subjects), fraction, keep_at_least=1)
        if fraction > 0 and count == 0:
            logger.warning(
                "dataset %s has %d subject(s); none can be held out (fraction %.2f)",
                dataset, len(subjects), fraction,
            )
        if count:
            held_subjects += _balanced_choice(ws, in_dataset, subjects, count, rng).tolist()
    held = np.isin(ws.subject[index], held_subjects)
    return index[~held], index[held]


def _balanced_choice(
    ws: WindowSet, index: np.ndarray, subjects: np.ndarray, count: int, rng: np.random.Generator
) -> np.ndarray:
    """``count`` of ``subjects`` whose windows' class proportions best match those of ``index``."""
    num_classes = len(ws.activity_names)
    position = np.searchsorted(subjects, ws.subject[index])
    per_subject = np.zeros((len(subjects), num_classes))
    np.add.at(per_subject, (position, ws.activity[index]), 1)
    target = per_subject.sum(0) / per_subject.sum()
    best, best_distance = None, np.inf
    for _ in range(SELECTION_ATTEMPTS):
        choice = rng.choice(len(subjects), size=count, replace=False)
        counts = per_subject[choice].sum(0)
        distance = np.abs(counts / max(counts.sum(), 1) - target).sum()
        if distance < best_distance - 1e-12:
            best, best_distance = choice, distance
    return subjects[np.sort(best)]


@dataclass(frozen=True)
class SubjectFold:
    """Validation on fold ``index`` of ``count``: the subjects outside the test side, per dataset,
    shuffled (seeded) and cut into ``count`` groups of nearly equal size, so that over the ``count``
    folds every one of those people validates exactly once (cross-validation over people)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not (isinstance(self.count, int) and self.count >= 2 and isinstance(self.index, int)
                and 0 <= self.index < self.count):
            raise ValueError(f"subject fold {self.index} of {self.count}: expected at least 2 folds and "
                             f"0 <= fold < {self.count}")


def subject_fold_split(
    ws: WindowSet, fold: SubjectFold, seed: int = 0, index: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Among ``index`` (default: all windows), hold out ``fold``'s subjects; returns (rest, held).

    The shuffle depends on ``seed`` only, not on the fold's index, so the folds of one seed partition
    the subjects. Not class-balanced: the folds must partition, and ``count`` folds cover everyone.
    """
    index = np.arange(len(ws)) if index is None else np.asarray(index, dtype=np.int64)
    rng = np.random.default_rng([seed, fold.count])
    held_subjects: list[str] = []
    for dataset in sorted(set(ws.dataset[index].tolist())):
        subjects = np.array(sorted(set(ws.subject[index][ws.dataset[index] == dataset].tolist())))
        if len(subjects) < fold.count:
            raise ValueError(
                f"val_folds={fold.count}: dataset {dataset} has {len(subjects)} subject(s) outside the test "
                f"side, too few for {fold.count} folds of people; use at most {len(subjects)} folds"
            )
        held_subjects += np.array_split(rng.permutation(subjects), fold.count)[fold.index].tolist()
    held = np.isin(ws.subject[index], held_subjects)
    return index[~held], index[held]


def _validation_split(
    ws: WindowSet, index: np.ndarray, val_fraction: float, val_fold: SubjectFold | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) among ``index``: ``val_fold``'s people if given, else a class-balanced ``val_fraction``."""
    if val_fold is not None:
        return subject_fold_split(ws, val_fold, seed, index=index)
    return stratified_subject_split(ws, val_fraction, seed, index=index)


def split_by_subject(
    ws: WindowSet, val_fraction: float = 0.15, test_fraction: float = 0.2, seed: int = 0,
    val_fold: SubjectFold | None = None,
) -> dict[str, np.ndarray]:
    """Train/val/test by subject, per dataset, class-balanced where the subjects allow it.

    ``val_fold``, if given, replaces the ``val_fraction`` draw (:class:`SubjectFold`); the test side is
    the same either way."""
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1:
        raise ValueError(
            f"val_fraction + test_fraction must be below 1, got {val_fraction} + {test_fraction}"
        )
    # Hold test first, then val as a share of what remains, so both are shares of all subjects.
    rest, test = stratified_subject_split(ws, test_fraction, seed)
    val_share = val_fraction / (1 - test_fraction) if val_fraction else 0.0
    train, val = _validation_split(ws, rest, val_share, val_fold, seed + 1)
    return _checked({"train": train, "val": val, "test": test}, ws)


def _target_mask(ws: WindowSet, target: str, by: str) -> np.ndarray:
    """Which windows have ``by`` grouping ``target``; refuses a target absent from the data or covering it all."""
    column = ws.grouping(by)
    is_target = column == target
    if not is_target.any():
        raise ValueError(
            f"no windows with {by} {target!r}; present: {', '.join(sorted(set(column.tolist())))}"
        )
    if is_target.all():
        raise ValueError(f"every window has {by} {target!r}; nothing is left to train on")
    return is_target


def leave_one_domain_out(
    ws: WindowSet, target: str, by: str = "dataset", val_fraction: float = 0.15, seed: int = 0,
    val_fold: SubjectFold | None = None, labelled_people: int = 0,
) -> dict[str, np.ndarray]:
    """Test on the windows whose ``by`` grouping (dataset, subject, attribute) equals ``target``.

    Train/val are split by subject from the other windows: cross-domain evaluation. With
    ``labelled_people`` K, K of the target's people (:func:`labelled_target_people`) join training with
    their labels and the test is the target's other people: adapting to a new dataset from a few
    labelled people. Validation stays on the other windows' people either way.
    """
    is_target = _target_mask(ws, target, by)
    train, val = _validation_split(ws, _indices(~is_target), val_fraction, val_fold, seed)
    labelled = is_target & np.isin(ws.subject, labelled_target_people(ws, is_target, labelled_people, seed))
    if labelled.any():
        logger.info("%s %r: %d of its people labelled in training (%s); tested on the other %d", by, target,
                    labelled_people, ", ".join(sorted(set(ws.subject[labelled].tolist()))),
                    len(set(ws.subject[is_target & ~labelled].tolist())))
    return _checked({"train": np.concatenate([train, _indices(labelled)]), "val": val,
                     "test": _indices(is_target & ~labelled)}, ws)


def labelled_target_people(ws: WindowSet, is_target: np.ndarray, count: int, seed: int) -> list[str]:
    """``count`` of the people of the windows ``is_target`` marks, drawn at random by ``seed`` alone: never
    by their labels or by any score, so nothing about the people tested on chooses them. The draw is a
    seeded shuffle of the people cut after ``count``, so one seed's people for K include its people for
    any smaller K. At least one person is left to test on."""
    if count < 0:
        raise ValueError(f"target_labelled_people={count}: expected an integer >= 0")
    if count == 0:
        return []
    people = np.array(sorted(set(ws.subject[is_target].tolist())))
    if count >= len(people):
        domains = ", ".join(sorted(set(ws.dataset[is_target].tolist())))
        raise ValueError(
            f"target_labelled_people={count}: the target ({domains}) has {len(people)} people, and at least one "
            f"must stay out of training to be tested on; use target_labelled_people={len(people) - 1} or fewer"
        )
    return sorted(np.random.default_rng([seed, 13]).permutation(people)[:count].tolist())


def unlabelled_target_split(
    ws: WindowSet,
    target: str,
    by: str = "dataset",
    val_fraction: float = 0.15,
    target_test_fraction: float = 0.5,
    seed: int = 0,
    val_fold: SubjectFold | None = None,
    transductive: bool = False,
) -> dict[str, np.ndarray]:
    """Unsupervised domain adaptation: ``target``'s people split into a training side whose windows
    are used *without labels* ("unlabelled") and a held-out side ("test"); the other windows form the
    labelled source, split by subject into "train" and "val" (source risk is measured on "val").

    The target subjects are drawn at random (seeded), not class-balanced: balancing would read the
    target's labels, which this setting must not use.

    ``transductive``: every target window is both unlabelled training data and test data (the usual
    protocol of unsupervised domain adaptation: adapt on the recordings whose labels you want), so a
    single target person will do and ``target_test_fraction`` is not used. The test score then says how
    well the target's own windows are labelled, not how well unseen people of the target would be.
    """
    _check_fraction("target_test_fraction", target_test_fraction)
    is_target = _target_mask(ws, target, by)
    train, val = _validation_split(ws, _indices(~is_target), val_fraction, val_fold, seed)
    if transductive:
        test = _checked({"train": train, "val": val, "test": _indices(is_target)}, ws)
        return {**test, "unlabelled": test["test"]}
    subjects = np.array(sorted(set(ws.subject[is_target].tolist())))
    if len(subjects) < 2:
        raise ValueError(
            f"{by} {target!r} has {len(subjects)} subject; unlabelled adaptation needs at least 2 target "
            "subjects, some to adapt on (unlabelled) and others to test on (or transductive=True: adapt on "
            "the test person's own windows)"
        )
    count = _held_count(len(subjects), target_test_fraction, keep_at_least=1)
    if count == 0:
        raise ValueError(f"target_test_fraction {target_test_fraction} holds out no target subject to test on")
    held = np.random.default_rng([seed, 11]).choice(subjects, size=count, replace=False)
    is_test = is_target & np.isin(ws.subject, held)
    return _checked(
        {"train": train, "val": val, "test": _indices(is_test), "unlabelled": _indices(is_target & ~is_test)}, ws
    )


def with_subject_groups(ws: WindowSet, groups: dict[str, list[str]]) -> WindowSet:
    """Only the windows of the listed subjects, each tagged with its group in the attribute
    ``subject_group`` (a domain grouping like any other: ``domain_by="subject_group"``).

    For cross-person adaptation: ``{"source": [...], "target": [...]}`` makes one group of people the
    labelled source and another the target. Subjects are full ids (``"uci_har:7"``).
    """
    owner: dict[str, str] = {}
    for group, members in groups.items():
        for subject in members:
            if subject in owner:
                raise ValueError(f"subject {subject!r} is in subject groups {owner[subject]!r} and {group!r}")
            owner[subject] = group
    present = set(ws.subject.tolist())
    missing = sorted(set(owner) - present)
    if missing:
        raise ValueError(f"subject_groups name subjects with no windows: {missing[:5]}; subjects look like "
                         f"{sorted(present)[:3]}")
    keep = np.isin(ws.subject, sorted(owner))
    kept = ws.subset(keep)
    kept.attributes["subject_group"] = np.array([owner[s] for s in kept.subject], dtype=str)
    return kept


def leave_one_subject_out(
    ws: WindowSet, val_fraction: float = 0.0, seed: int = 0
) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """(subject, split) for every subject in turn, that subject being the test set."""
    for subject in sorted(set(ws.subject.tolist())):
        yield subject, leave_one_domain_out(
            ws, subject, by="subject", val_fraction=val_fraction, seed=seed
        )


def uci_har_official(ws: WindowSet, val_fraction: float = 0.15, seed: int = 0,
                     val_fold: SubjectFold | None = None) -> dict[str, np.ndarray]:
    """UCI-HAR's published test subjects as the test set; validation carved by subject from the rest.

    Windows of other datasets pooled alongside go to train/val, so results on the test set stay
    comparable to published UCI-HAR numbers.
    """
    if not (ws.dataset == "uci_har").any():
        raise ValueError(
            "the uci_har_official split needs windows of dataset 'uci_har'; present: "
            f"{', '.join(sorted(set(ws.dataset.tolist())))}"
        )
    official = {f"uci_har:{s}" for s in UCI_HAR_TEST_SUBJECTS}
    is_test = np.isin(ws.subject, sorted(official))
    train, val = _validation_split(ws, _indices(~is_test), val_fraction, val_fold, seed)
    return _checked({"train": train, "val": val, "test": _indices(is_test)}, ws)


def _checked(split: dict[str, np.ndarray], ws: WindowSet) -> dict[str, np.ndarray]:
    """Guard the invariant every split promises: no subject on two sides."""
    sides = {name: set(ws.subject[index].tolist()) for name, index in split.items()}
    names = list(sides)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = sides[a] & sides[b]
            if shared:
                raise AssertionError(f"subjects {sorted(shared)[:5]} are in both {a} and {b}")
    return {name: np.sort(index) for name, index in split.items()}
