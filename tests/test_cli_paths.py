"""Relative data paths on a search's command line: trials run in their own folders, so the driver
hands them absolute paths (a relative one made every trial fail with 'file not found')."""

from __future__ import annotations

from pathlib import Path

from tcnvae.tuning import cli


def test_relative_data_paths_become_absolute_before_trials_see_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = cli.search_parser("test").parse_args(
        ["--data", "hapt", "uci_har", "--data-path", "hapt=data/hapt_raw.npz", "--data-path", "uci_har=s3://bucket/uci.npz",
         "--set", "data_cache_dir=~/cache"])
    config = cli.base_config(args, {})
    assert config["data_paths"] == {"hapt": str(tmp_path / "data" / "hapt_raw.npz"), "uci_har": "s3://bucket/uci.npz"}
    assert config["data_cache_dir"] == str(Path.home() / "cache")
