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


@pytest.mark.parametrize("overrides, plain_sampling, adapted_sampling", [
    ([], "domain_balanced", "target_balanced"),  # the recipe's transfer defaults; adaptation keeps its own batches
    (["sampling=uniform"], "uniform", "uniform"),  # --set fixes it for every method
])
def test_the_tcnvae_trains_with_the_cross_dataset_recipes_transfer_defaults(
        tmp_path, overrides, plain_sampling, adapted_sampling):
    module = benchmark()
    _, args = module.parse_args(["--target", "field", *(flag for value in overrides for flag in ("--set", value))])
    args.overrides = module.parse_assignments(args.overrides, "--set")
    files = [str(arrays_file(tmp_path / "lab.npz")), str(arrays_file(tmp_path / "field.npz"))]
    run = module.Run(args, "field", {"arrays": files})
    plain = run.config(target_domain="field")
    adapted = run.config(target_domain="field", adapt="unlabelled", transductive=True)
    assert plain["magnitude_channels"] and adapted["magnitude_channels"]
    assert (plain["sampling"], adapted["sampling"]) == (plain_sampling, adapted_sampling)


TRANSFER_LINE = re.compile(rf"^transfer_settings: target=(\S+) seed=(\d+) settings=(\S+) macro_f1=({FIGURE}) "
                           rf"minutes=(\d+\.\d)$")
TRANSFER_MEAN = re.compile(rf"^transfer_settings: target=mean settings=(\S+) macro_f1=({FIGURE}) "
                           rf"better_targets=(\d+)/(\d+)$")


@pytest.mark.slow
def test_transfer_settings_pairs_candidates_on_the_trial_defaults(shared_data_file, monkeypatch, capsys):
    for name in ("hapt_raw.npz", "wisdm2019_phone_raw.npz", "wisdm2019_watch_raw.npz", "hugadb_raw.npz"):
        shared_data_file(name)
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("benchmarks_transfer_settings",
                                                  SCRIPT.parent / "transfer_settings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # The reference is the trial defaults, not the recipe's transfer defaults: spelt out, it scores the same.
    module.main(["--targets", "wisdm2019_watch", "--seeds", "0", "--epochs", "1", "--max-windows", "40",
                 "--candidate", "", "--candidate", "magnitude_channels=false sampling=uniform",
                 "--candidate", "magnitude_channels=true"])
    out = [line for line in capsys.readouterr().out.splitlines() if line.startswith("transfer_settings:")]
    rows, means = [TRANSFER_LINE.match(line) for line in out[:3]], [TRANSFER_MEAN.match(line) for line in out[3:]]
    assert len(out) == 6 and all(rows) and all(means), out
    assert [row[3] for row in rows] == ["-", "magnitude_channels=false,sampling=uniform", "magnitude_channels=true"]
    assert rows[0][4] == rows[1][4] and means[0][2] == means[1][2]
    assert (means[0][3], means[0][4], means[1][3]) == ("0", "1", "0")  # the reference never beats itself
