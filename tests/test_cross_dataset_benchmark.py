"""benchmarks/cross_dataset.py: its lines keep the contract other tools read, on a tiny run of two arrays
files (one the sources, one the target), and bad input is ``error: …`` with exit status 2."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from tests.helpers import arrays_file

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "cross_dataset.py"
FIGURE = r"(?:[01]\.\d{4}|nan)"
K0_LINE = re.compile(rf"^cross_dataset: target=(\S+) k=0 forest=({FIGURE}) pooled=({FIGURE}) adapted=({FIGURE}) "
                     rf"searched=({FIGURE}) activities=(\d+) minutes=(\d+\.\d)$")
K_LINE = re.compile(rf"^cross_dataset: target=(\S+) k=([1-9]\d*) forest=({FIGURE}) forest_pooled=({FIGURE}) "
                    rf"scratch=({FIGURE}) finetuned=({FIGURE}) searched=({FIGURE}) ceiling=({FIGURE}) "
                    rf"activities=(\d+) minutes=(\d+\.\d)$")


def benchmark():
    spec = importlib.util.spec_from_file_location("benchmarks_cross_dataset", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_tiny_run_prints_every_line_of_the_contract(tmp_path, capsys):
    source, target = arrays_file(tmp_path / "lab.npz"), arrays_file(tmp_path / "field.npz")
    benchmark().main(["--extra", f"arrays={source}", "--extra", f"arrays={target}", "--target", "field",
                      "--sources", "--ks", "1", "--epochs", "1", "--search-trials", "2", "--pretrain-epochs", "1",
                      "--max-windows", "60"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("cross_dataset:")]
    assert len(lines) == 4, lines  # field k=0, field k=1, then the means
    k0, k1, mean0, mean1 = (K0_LINE.match(lines[0]), K_LINE.match(lines[1]), K0_LINE.match(lines[2]),
                            K_LINE.match(lines[3]))
    assert all((k0, k1, mean0, mean1)), lines
    assert (k0[1], k1[1], k1[2], mean0[1], mean1[1]) == ("field", "field", "1", "mean", "mean")
    figures = [float(value) for value in (*k0.groups()[1:5], *k1.groups()[2:8])]
    assert all(0 <= value <= 1 for value in figures), figures  # every method ran, none is nan
    assert k0[6] == k1[9] == "3"  # the three activities both files hold
    assert mean0.groups()[1:5] == k0.groups()[1:5]  # one target: its mean is itself


@pytest.mark.parametrize("argv, message", [
    (["--target", "nowhere", "--sources"], "--target nowhere"),
    (["--extra", "arrays=missing.npz", "--target", "missing", "--sources"], "missing.npz"),
    (["--ks", "0"], "--ks"),
])
def test_bad_input_is_an_error_with_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark().main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "error:" in error and message in error, error


def test_a_missing_shared_file_names_the_setting(tmp_path, monkeypatch, capsys):
    module = benchmark()
    monkeypatch.setattr(module, "SHARED_DATA", tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--target", "hugadb"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "error:" in error and "TCNVAE_SHARED_DATA" in error and "hugadb_raw.npz" in error
