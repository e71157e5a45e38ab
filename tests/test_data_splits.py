"""Splits assign whole subjects: no subject on two sides, on synthetic and real UCI-HAR windows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tcnvae.data import (
    WindowSet,
    leave_one_domain_out,
    leave_one_subject_out,
    split_by_subject,
    stratified_subject_split,
    uci_har_official,
)
from tcnvae.data.splits import UCI_HAR_TEST_SUBJECTS, SubjectFold


def _assert_subject_disjoint(ws: WindowSet, split: dict[str, np.ndarray]) -> None:
    sides = {name: set(ws.subject[index]) for name, index in split.items()}
    for a, b in itertools.combinations(sides, 2):
        assert not sides[a] & sides[b], f"subjects on both {a} and {b}: {sides[a] & sides[b]}"
    every = np.concatenate(list(split.values()))
    assert len(every) == len(np.unique(every)), "a window is on two sides"


def test_subject_split_is_disjoint_complete_and_covers_every_dataset(synthetic_windows):
    split = split_by_subject(synthetic_windows, val_fraction=0.15, test_fraction=0.2, seed=0)
    _assert_subject_disjoint(synthetic_windows, split)
    assert sum(len(v) for v in split.values()) == len(synthetic_windows)
    for dataset in set(synthetic_windows.dataset):
        for side, index in split.items():
            assert (synthetic_windows.dataset[index] == dataset).any(), f"{dataset} has no {side} subject"


def test_subject_split_is_seeded(synthetic_windows):
    first = split_by_subject(synthetic_windows, 0.15, 0.2, seed=1)
    again = split_by_subject(synthetic_windows, 0.15, 0.2, seed=1)
    other = split_by_subject(synthetic_windows, 0.15, 0.2, seed=2)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert any(not np.array_equal(first[k], other[k]) for k in first)


def test_subject_split_rejects_impossible_fractions(synthetic_windows):
    with pytest.raises(ValueError, match="below 1"):
        split_by_subject(synthetic_windows, 0.5, 0.5)
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_subject(synthetic_windows, -0.1, 0.2)


def test_leave_one_domain_out_tests_on_exactly_that_domain(synthetic_windows):
    split = leave_one_domain_out(synthetic_windows, "synthetic_c")
    _assert_subject_disjoint(synthetic_windows, split)
    assert set(synthetic_windows.dataset[split["test"]]) == {"synthetic_c"}
    assert (synthetic_windows.dataset == "synthetic_c").sum() == len(split["test"])
    assert "synthetic_c" not in set(synthetic_windows.dataset[np.concatenate([split["train"], split["val"]])])
    with pytest.raises(ValueError, match="synthetic_z"):
        leave_one_domain_out(synthetic_windows, "synthetic_z")


def test_leave_one_subject_out_visits_every_subject_once(synthetic_windows):
    small = synthetic_windows.subset(np.isin(synthetic_windows.dataset, ["synthetic_a"]))
    seen = []
    for subject, split in leave_one_subject_out(small, val_fraction=0.2):
        _assert_subject_disjoint(small, split)
        assert set(small.subject[split["test"]]) == {subject}
        assert len(split["val"]) > 0
        seen.append(subject)
    assert sorted(seen) == sorted(set(small.subject))


def _toy(subject_classes: list[list[int]]) -> WindowSet:
    activity = np.concatenate(subject_classes)
    subject = np.concatenate([[f"toy:{i}"] * len(c) for i, c in enumerate(subject_classes)])
    return WindowSet(
        signals=np.zeros((len(activity), 4, 1)),
        activity=activity,
        activity_names=["sitting", "standing", "walking"],
        dataset=np.full(len(activity), "toy"),
        subject=subject,
        channel_names=["acc_x"],
        sample_rate=50.0,
    )


def test_stratified_split_finds_the_most_class_balanced_subjects():
    # subjects with very different activity mixes; holding out 2 of 6
    ws = _toy([[0] * 30, [1] * 30, [2] * 30, [0] * 10 + [1] * 10 + [2] * 10, [0] * 20 + [2] * 5, [1] * 25])
    rest, held = stratified_subject_split(ws, fraction=1 / 3, seed=0)
    assert len(set(ws.subject[held])) == 2 and not set(ws.subject[held]) & set(ws.subject[rest])
    target = np.bincount(ws.activity, minlength=3) / len(ws)

    def distance(subjects):
        counts = np.bincount(ws.activity[np.isin(ws.subject, subjects)], minlength=3)
        return np.abs(counts / counts.sum() - target).sum()

    best = min(distance(list(pair)) for pair in itertools.combinations(sorted(set(ws.subject)), 2))
    assert distance(sorted(set(ws.subject[held]))) == pytest.approx(best)


def test_a_dataset_with_one_subject_stays_on_the_training_side():
    ws = _toy([[0, 1, 2] * 5])
    rest, held = stratified_subject_split(ws, fraction=0.3)
    assert len(held) == 0 and len(rest) == len(ws)


def test_real_uci_har_subject_split_is_subject_disjoint(uci_har_windowset):
    split = split_by_subject(uci_har_windowset, 0.15, 0.2, seed=0)
    _assert_subject_disjoint(uci_har_windowset, split)
    assert len(set(uci_har_windowset.subject[split["test"]])) == 6  # 20 % of 30 subjects


def test_uci_har_official_split_uses_the_published_test_subjects(uci_har_windowset):
    split = uci_har_official(uci_har_windowset, val_fraction=0.15, seed=0)
    _assert_subject_disjoint(uci_har_windowset, split)
    assert set(uci_har_windowset.subject[split["test"]]) == {f"uci_har:{s}" for s in UCI_HAR_TEST_SUBJECTS}
    assert len(split["test"]) == 2947  # the size of UCI-HAR's published test set
    assert len(split["train"]) + len(split["val"]) == 7352
    assert len(set(uci_har_windowset.subject[split["val"]])) == 3  # 15 % of the 21 training subjects


def test_uci_har_official_split_needs_uci_har(synthetic_windows):
    with pytest.raises(ValueError, match="uci_har"):
        uci_har_official(synthetic_windows)


@pytest.mark.parametrize("split", [
    lambda ws, fold: split_by_subject(ws, 0.15, 0.2, seed=3, val_fold=fold),
    lambda ws, fold: leave_one_domain_out(ws, "synthetic_c", seed=3, val_fold=fold),
])
def test_subject_folds_validate_everyone_outside_the_test_side_once(synthetic_windows, split):
    folds = [split(synthetic_windows, SubjectFold(index, 3)) for index in range(3)]
    for each in folds:
        _assert_subject_disjoint(synthetic_windows, each)
        assert np.array_equal(each["test"], folds[0]["test"])  # the test side does not move
    validated = [set(synthetic_windows.subject[each["val"]]) for each in folds]
    assert all(validated) and not any(a & b for a, b in itertools.combinations(validated, 2))
    outside_test = set(synthetic_windows.subject) - set(synthetic_windows.subject[folds[0]["test"]])
    assert set().union(*validated) == outside_test
    for dataset in set(synthetic_windows.dataset[folds[0]["train"]]):  # folds of each dataset's people
        sizes = [len(set(synthetic_windows.subject[each["val"]][synthetic_windows.dataset[each["val"]] == dataset]))
                 for each in folds]
        assert max(sizes) - min(sizes) <= 1


def test_subject_folds_need_enough_people(synthetic_windows):
    with pytest.raises(ValueError, match="use at most"):
        split_by_subject(synthetic_windows, 0.15, 0.2, val_fold=SubjectFold(0, 50))
    with pytest.raises(ValueError, match="at least 2 folds"):
        SubjectFold(0, 1)
    with pytest.raises(ValueError, match="0 <= fold < 3"):
        SubjectFold(3, 3)
