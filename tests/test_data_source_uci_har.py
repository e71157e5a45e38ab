"""UCI-HAR: the official archive layout and the pre-extracted npz give the same windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tcnvae.data.sources import uci_har

TEST_IDS = [int(s.split(":")[1]) for s in uci_har.OFFICIAL_TEST_SUBJECTS]


@pytest.fixture(scope="module")
def windows(shared_data_dir: Path) -> dict[str, np.ndarray]:
    """A few windows per split: a slice of the real npz when present, else generated ones."""
    real_npz = shared_data_dir / "uci_har_windows.npz"
    if real_npz.is_file():
        with np.load(real_npz) as real:
            subject = real["subject"]
            take = np.concatenate(
                [np.flatnonzero(subject == 1)[:6], np.flatnonzero(subject == 2)[:5]]
            )
            return {"x": real["x"][take], "y": real["y"][take], "subject": subject[take]}
    rng = np.random.default_rng(0)
    return {
        "x": rng.normal(0, 0.5, (11, 9, 128)).astype(np.float32),
        "y": rng.integers(0, 6, 11),
        "subject": np.array([1] * 6 + [2] * 5),
    }


def write_archive(root: Path, x: np.ndarray, y: np.ndarray, subject: np.ndarray) -> Path:
    """The official ``UCI HAR Dataset`` layout for windows ``x`` (N, 9, 128), codes ``y + 1``."""
    dataset = root / "UCI HAR Dataset"
    for split in uci_har.SPLITS:
        chosen = np.isin(subject, TEST_IDS) == (split == "test")
        folder = dataset / split / "Inertial Signals"
        folder.mkdir(parents=True)
        np.savetxt(dataset / split / f"y_{split}.txt", y[chosen] + 1, fmt="%d")
        np.savetxt(dataset / split / f"subject_{split}.txt", subject[chosen], fmt="%d")
        for channel, (prefix, axis) in enumerate((p, a) for p, _ in uci_har.SIGNALS for a in "xyz"):
            np.savetxt(folder / f"{prefix}_{axis}_{split}.txt", x[chosen, channel], fmt="%.9e")
    return dataset


def test_archive_layout_equals_npz_content(tmp_path, windows):
    write_archive(tmp_path, **windows)
    from_archive = uci_har.load(tmp_path)
    np.savez(tmp_path / "w.npz", **windows)
    from_npz = uci_har.load(tmp_path / "w.npz")
    np.testing.assert_array_equal(from_archive.signals, from_npz.signals)
    np.testing.assert_array_equal(from_archive.activity, from_npz.activity)
    np.testing.assert_array_equal(from_archive.subject, from_npz.subject)
    assert from_archive.activity_names == from_npz.activity_names
    # channel-first (9, 128) in the npz becomes (128, 9) in canonical channel order
    np.testing.assert_array_equal(from_npz.signals[:, :, 6], windows["x"][:, 6, :])
    assert from_npz.channel_names[6:] == ["acc_x", "acc_y", "acc_z"]
    assert from_npz.channel_names[3:6] == ["gyro_x", "gyro_y", "gyro_z"]


def test_labels_subjects_and_attributes(tmp_path, windows):
    write_archive(tmp_path, **windows)
    data = uci_har.load(tmp_path / "UCI HAR Dataset", splits=("test",))
    assert len(data) == 5 and set(data.subject) == {"uci_har:2"}
    assert set(data.subject) <= set(uci_har.OFFICIAL_TEST_SUBJECTS)
    names = [data.activity_names[i] for i in data.activity]
    expected = [uci_har.ACTIVITY_MAP[code + 1] for code in windows["y"][6:]]
    assert names == expected
    assert set(data.dataset) == {"uci_har"} and set(data.attributes["placement"]) == {"waist"}
    assert data.sample_rate == 50.0 and data.window_length == 128


def test_activity_codes_map_by_meaning():
    assert uci_har.ACTIVITY_MAP[2] == "ascending_stairs"
    assert uci_har.ACTIVITY_MAP[6] == "lying"
    assert len(uci_har.OFFICIAL_TEST_SUBJECTS) == 9


def test_truncated_signal_file_is_named(tmp_path, windows):
    dataset = write_archive(tmp_path, **windows)
    broken = dataset / "train" / "Inertial Signals" / "body_gyro_y_train.txt"
    lines = broken.read_text().splitlines()
    broken.write_text("\n".join(lines[:-1] + [" ".join(lines[-1].split()[:60])]) + "\n")
    with pytest.raises(ValueError, match="body_gyro_y_train.txt.*truncated"):
        uci_har.load(dataset)


def test_missing_window_rows_are_reported(tmp_path, windows):
    dataset = write_archive(tmp_path, **windows)
    shortened = dataset / "test" / "Inertial Signals" / "total_acc_z_test.txt"
    shortened.write_text("\n".join(shortened.read_text().splitlines()[:-2]) + "\n")
    with pytest.raises(
        ValueError, match=r"total_acc_z_test.txt has 3 windows but .*y_test.txt has 5"
    ):
        uci_har.load(dataset)


def test_missing_file_and_wrong_folder_name_the_path(tmp_path, windows):
    dataset = write_archive(tmp_path, **windows)
    (dataset / "train" / "subject_train.txt").unlink()
    with pytest.raises(FileNotFoundError, match="subject_train.txt"):
        uci_har.load(dataset)
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "elsewhere")):
        uci_har.load(tmp_path / "elsewhere")


def test_npz_with_wrong_keys_or_shape(tmp_path, windows):
    np.savez(tmp_path / "bad.npz", x=windows["x"], y=windows["y"])
    with pytest.raises(ValueError, match=r"lacks keys \['subject'\]"):
        uci_har.load(tmp_path / "bad.npz")
    np.savez(
        tmp_path / "last.npz",
        x=windows["x"].transpose(0, 2, 1),
        y=windows["y"],
        subject=windows["subject"],
    )
    with pytest.raises(ValueError, match=r"x has shape \(11, 128, 9\), expected \(N, 9, 128\)"):
        uci_har.load(tmp_path / "last.npz")
