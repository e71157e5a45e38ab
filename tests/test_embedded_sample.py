"""The embedded sample: the main job's default data, shipped in the package, real, small and attributed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from tcnvae.data.sources import available_sources, load_source, sample
from tcnvae.model import TCNVAE
from tcnvae.tuning import cli
from tcnvae.tuning.config import DEFAULT_CONFIG
from helpers import recipe

ROOT = Path(__file__).resolve().parents[1]


def test_the_sample_is_a_registered_source_in_the_package_under_5_mb_with_its_licence_beside_it():
    assert "sample" in available_sources()
    path = sample.data_file()
    assert path.parent == Path(sample.__file__).resolve().parents[1] / "embedded"
    assert path.stat().st_size < 5_000_000
    attribution = (path.parent / "ATTRIBUTION.txt").read_text()
    for required in ("CC BY 4.0", "Reyes-Ortiz", "Weiss", "archive.ics.uci.edu/dataset/341",
                     "archive.ics.uci.edu/dataset/507", "python -m tcnvae.data.sources.sample"):
        assert required in attribution
    assert "hugadb" not in attribution.lower()  # no licence: never shipped
    assert 'tcnvae = ["data/embedded/*.npz", "data/embedded/*.txt"]' in (ROOT / "pyproject.toml").read_text()


def test_its_people_datasets_and_activities_are_the_documented_ones():
    recordings = load_source("sample")
    assert {r.dataset for r in recordings} == set(sample.PEOPLE)
    people = {dataset: sorted(int(r.subject.partition(":")[2]) for r in recordings if r.dataset == dataset)
              for dataset in sample.PEOPLE}
    assert {dataset: sorted(set(ids)) for dataset, ids in people.items()} == sample.PEOPLE
    # WISDM 2019's phone and watch are the same people: each person is in the sample through one device
    assert not set(people["wisdm2019_phone"]) & set(people["wisdm2019_watch"])
    assert {tuple(r.activity_names) for r in recordings} == {("sitting", "standing", "walking", "stairs")}
    assert {(r.dataset, r.attributes["placement"]) for r in recordings} == {
        ("hapt", "waist"), ("wisdm2019_phone", "pocket"), ("wisdm2019_watch", "wrist")}
    samples: dict[tuple[str, int], int] = defaultdict(int)
    for recording in recordings:
        assert recording.sample_rate == 20.0 and recording.channel_names == sample.CHANNEL_NAMES
        assert recording.signal.dtype == np.float32 and (recording.labels >= 0).all()
        for code in np.unique(recording.labels):
            samples[recording.subject, code] += int((recording.labels == code).sum())
    assert max(samples.values()) == sample.MAX_SECONDS_PER_ACTIVITY * 20.0
    assert len(samples) == sum(map(len, sample.PEOPLE.values())) * 4 == 45 * 4  # everyone does everything
    acc = np.concatenate([r.signal[:, :3] for r in recordings])
    assert 0.9 < np.median(np.linalg.norm(acc, axis=1)) < 1.1  # g, gravity included


def _fresh_clone(tmp_path: Path) -> Path:
    """The package and the recipes, copied where no ../shared lies beside them."""
    clone = tmp_path / "clone"
    for folder in ("platform", "searches", "curricula"):
        shutil.copytree(ROOT / folder, clone / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return clone


OFFLINE_MAIN_JOB_DATA = """
import json, socket, sys
def refuse(*args, **kwargs):
    raise OSError("network used")
socket.socket.connect = socket.socket.connect_ex = socket.create_connection = refuse
sys.path.insert(0, "searches")
import tcnvae, loss_weights
from tcnvae.tuning import cli
args = loss_weights.parse_args([])
config, data = cli.prepare_data(cli.base_config(args, loss_weights.recipe_defaults(args)))
print(json.dumps({"package": tcnvae.__file__, "datasets": config["datasets"],
                  "sample_rate": config["sample_rate"], "window_seconds": config["window_seconds"],
                  "window_length": data.train.window_length, "domains": data.domain_names,
                  "activities": data.activity_names,
                  "sides": {side: sorted(set(getattr(data, side).subject.tolist()))
                            for side in ("train", "val", "test")}}))
"""


def test_the_main_jobs_default_data_loads_in_a_clone_with_no_network_and_no_shared_data(tmp_path):
    clone = _fresh_clone(tmp_path)
    assert not (clone.parent / "shared").exists()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "PYTHONPATH": f"{clone / 'platform'}:{clone}",
           "TCNVAE_SHARED_DATA": str(tmp_path / "no_shared"), "TCNVAE_CACHE": str(tmp_path / "empty_cache")}
    run = subprocess.run([sys.executable, "-c", OFFLINE_MAIN_JOB_DATA], cwd=clone, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    printed = json.loads(run.stdout.strip().splitlines()[-1])
    assert printed["package"].startswith(str(clone))
    assert printed["datasets"] == ["sample"]
    assert (printed["sample_rate"], printed["window_seconds"]) == (20.0, 5.12)
    model = TCNVAE(input_dim=6, num_activities=4, num_domains=3)
    assert printed["window_length"] >= model.tcn_encoder.receptive_field  # no window is mostly padding
    assert printed["domains"] == ["hapt", "wisdm2019_phone", "wisdm2019_watch"]
    assert printed["activities"] == ["sitting", "standing", "walking", "stairs"]
    sides = {side: set(subjects) for side, subjects in printed["sides"].items()}
    assert not (sides["train"] & sides["test"]) and not (sides["val"] & sides["test"])
    assert {subject.partition(":")[0] for subject in sides["test"]} == set(sample.PEOPLE)


def test_the_recipe_defaults_to_the_sample_and_synthetic_is_one_flag_away():
    loss_weights = recipe("loss_weights")
    assert loss_weights.RECIPE_DEFAULTS["datasets"] == ["sample"]
    args = loss_weights.parse_args([])
    config = cli.base_config(args, loss_weights.recipe_defaults(args))
    assert (config["datasets"], config["sample_rate"], config["window_seconds"]) == (["sample"], 20.0, 5.12)
    args = loss_weights.parse_args(["--data", "synthetic"])
    config = cli.base_config(args, loss_weights.recipe_defaults(args))
    assert config["datasets"] == ["synthetic"]
    assert (config["sample_rate"], config["window_seconds"]) == (DEFAULT_CONFIG["sample_rate"],
                                                                 DEFAULT_CONFIG["window_seconds"])


@pytest.mark.real_data
def test_the_builder_remakes_the_shipped_arrays_from_the_shared_files(shared_data_file, tmp_path):
    shared = shared_data_file("hapt_raw.npz").parent
    for name in sample.SHARED_FILES.values():
        shared_data_file(name)
    rebuilt = sample.build(shared, tmp_path / "sample.npz")
    with np.load(rebuilt) as new, np.load(sample.data_file()) as shipped:
        assert sorted(new.files) == sorted(shipped.files)
        for key in shipped.files:
            np.testing.assert_array_equal(new[key], shipped[key], err_msg=key)
