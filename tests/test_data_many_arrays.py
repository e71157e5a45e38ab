"""Several of your own arrays files pooled with built-in sources, from the command line: each file its
own dataset (named by its `datasets` field, else its file stem), at one rate and channel set, checked
before Ray; two files that would share a name are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tcnvae.tuning import cli

from helpers import NEW_NAMES, arrays_file

SYNTHETIC = ["--set", 'source_options={"synthetic": {"num_domains": 2, "subjects_per_domain": 3, '
                      '"seconds_per_activity": 10}}']


def _at_half_rate(source: Path, path: Path, dataset: str) -> Path:
    """``source``'s recordings at half its rate, under the dataset name ``dataset`` (its `datasets` field)."""
    with np.load(source) as archive:
        fields = dict(archive)
    np.savez(path, **{**fields, "signals": fields["signals"][::2], "labels": fields["labels"][::2],
                      "offsets": (fields["offsets"] + 1) // 2, "sample_rate": fields["sample_rate"] / 2,
                      "datasets": np.array(dataset)})
    return path


def _prepared(argv: list[str]):
    return cli.prepare_data(cli.base_config(cli.search_parser("test").parse_args(argv), {}))


def test_two_arrays_files_pool_with_a_builtin_source_each_its_own_dataset(tmp_path):
    lab = arrays_file(tmp_path / "lab.npz")
    home = _at_half_rate(lab, tmp_path / "recorded_at_home.npz", "home")
    config, data = _prepared(["--data", "synthetic", "arrays", "--data-path", f"arrays={lab}",
                              "--data-path", f"arrays={home}", "--set", "sample_rate=20", *SYNTHETIC])
    assert config["data_paths"] == {"arrays": [str(lab), str(home)]}  # absolute: a trial runs elsewhere
    assert data.domain_names == ["home", "lab", "synthetic_a", "synthetic_b"]  # field, else stem
    windows = [data.train, data.val, data.test]
    datasets = set(np.concatenate([side.dataset for side in windows]).tolist())
    assert {"home", "lab"} <= datasets
    subjects = set(np.concatenate([side.subject for side in windows]).tolist())
    assert {"lab:p0", "home:p0"} <= subjects  # the same ids in two files are two people
    assert data.train.sample_rate == 20 and data.channel_names == data.test.channel_names
    assert set(NEW_NAMES.values()) | {"walking", "sitting", "running"} <= set(config["activities"])
    # A file is a dataset like any other: it can be the held-out target.
    _, held_out = _prepared(["--data", "synthetic", "arrays", "--data-path", f"arrays={lab}",
                             "--data-path", f"arrays={home}", "--set", "split=lodo:home", *SYNTHETIC])
    assert set(held_out.test.dataset.tolist()) == {"home"} and "home" not in set(held_out.train.dataset.tolist())


def test_two_files_of_one_name_are_refused_with_the_fix(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    argv = ["--data", "arrays", "--data-path", f"arrays={arrays_file(first / 'walks.npz')}",
            "--data-path", f"arrays={arrays_file(second / 'walks.npz')}"]
    with pytest.raises(ValueError, match=r"walks.npz and .*b/walks.npz both hold dataset 'walks'.*"
                                         r"rename one file, or save it with its own name"):
        _prepared(argv)


def test_a_file_named_like_a_pooled_dataset_is_refused(tmp_path):
    home = arrays_file(tmp_path / "home.npz")
    clashing = _at_half_rate(home, tmp_path / "other.npz", "synthetic_a")
    with pytest.raises(ValueError, match=r"holds datasets \['synthetic_a'\], as synthetic does"):
        _prepared(["--data", "synthetic", "arrays", "--data-path", f"arrays={home}",
                   "--data-path", f"arrays={clashing}", *SYNTHETIC])


def test_several_paths_for_a_builtin_source_are_refused_before_loading(tmp_path):
    with pytest.raises(ValueError, match="hapt is one dataset, of one file or folder, got 2 paths"):
        cli.base_config(cli.search_parser("test").parse_args(
            ["--data", "hapt", "--data-path", "hapt=a.npz", "--data-path", "hapt=b.npz"]), {})
