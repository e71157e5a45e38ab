"""The soak benchmark (benchmarks/many_trials.py) at a dozen trials on the suite's Ray cluster: every trial
in the leaderboard once, nothing left running, and its leak detector sees an actor that is left running.
Then what the soak found and fixed: --max-concurrent ignored by random search, the provenance record
listing every trial folder at each of Tune's steps, and a search joining another job's Ray."""

from __future__ import annotations

import importlib.util
import math
import pickle
import sys
from pathlib import Path

import pytest
import ray
from ray.tune.search.basic_variant import BasicVariantGenerator

from tcnvae.tuning import cli, cluster, search, validate_config

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "many_trials.py"


@pytest.fixture(scope="module")
def many_trials():
    spec = importlib.util.spec_from_file_location("benchmarks_many_trials", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.ray
def test_a_dozen_trials_each_in_the_leaderboard_once_and_nothing_left_behind(ray_cluster, many_trials, tmp_path):
    found = many_trials.main(["--num-samples", "12", "--max-concurrent", "2", "--storage-path", str(tmp_path),
                              "--name", "soak"])
    assert found.trials == 12
    assert found.duplicates == [] and found.missing == []
    assert found.leaked_placement_groups == 0
    assert found.leaked_processes == 0
    assert found.idle_workers <= ray.cluster_resources()["CPU"]
    assert found.in_trial_seconds > 0 and math.isfinite(found.per_trial_overhead)
    assert found.driver_rss_mb_start > 0 and found.driver_rss_mb_end > 0
    assert math.isfinite(found.trial_open_files_end) and math.isfinite(found.trial_threads_end)  # trials were seen
    folders = sorted(path.name for path in (tmp_path / "soak").iterdir() if path.is_dir() and path.name[0].isdigit())
    assert sorted(many_trials.leaderboard_trials(tmp_path / "soak")) == folders and len(folders) == 12


@pytest.mark.ray
def test_the_leak_checks_see_an_actor_and_its_placement_group_left_running(ray_cluster, many_trials):
    workers, groups = many_trials.ray_workers(), many_trials.live_placement_groups()

    @ray.remote(num_cpus=0)
    class Straggler:
        def ping(self) -> int:
            return 1

    group = ray.util.placement_group([{"CPU": 0.01}])
    ray.get(group.ready())
    straggler = Straggler.remote()
    try:
        ray.get(straggler.ping.remote())
        assert any("Straggler" in title for title in many_trials.busy_workers(workers).values())
        assert many_trials.live_placement_groups() - groups == {group.id.hex()}
    finally:
        ray.kill(straggler)
        ray.util.remove_placement_group(group)
    many_trials.settle(lambda: many_trials.busy_workers(workers) or many_trials.live_placement_groups() - groups, 30)
    assert many_trials.busy_workers(workers) == {}
    assert many_trials.live_placement_groups() == groups


def test_max_concurrent_limits_a_random_search_too(tmp_path):
    """Tune applies max_concurrent_trials to a Searcher only; a random search's generator gets the limit itself."""
    searcher, limit = search.search_algorithm(search.RandomSearch(), tmp_path, {"seed": 0}, {}, max_concurrent=1)
    assert isinstance(searcher, BasicVariantGenerator) and searcher.max_concurrent == 1 and limit is None
    optuna_searcher, limit = search.search_algorithm(search.OptunaTPE(["val/accuracy"]), tmp_path, {"seed": 0}, {},
                                                     max_concurrent=1)
    assert limit == 1  # Tune limits a Searcher itself


def test_the_digest_recorder_checks_known_files_every_step_and_lists_for_new_ones_now_and_then(tmp_path, monkeypatch):
    """Listing the experiment folder at each of Tune's steps took a fifth of a 300-trial search's driver time:
    a changed state file is still recorded at the next step, a new one at the next listing."""
    monkeypatch.setenv(cluster.STATE_ENV, str(tmp_path / "state"))
    folder = tmp_path / "experiment"
    (folder / "000_trial").mkdir(parents=True)
    (folder / "tuner.pkl").write_bytes(pickle.dumps({"tuner": 1}))
    recorder = cluster.DigestRecorder(str(folder))
    recorder.on_step_end(iteration=1, trials=[])  # the first step lists
    (folder / "tuner.pkl").write_bytes(pickle.dumps({"tuner": 2}))
    (folder / "000_trial" / "error.pkl").write_bytes(pickle.dumps("boom"))
    recorder.on_step_end(iteration=2, trials=[])
    with pytest.raises(ValueError, match=r"000_trial/error.pkl cannot be verified"):  # tuner.pkl is not named
        cluster.verify_experiment(str(folder))
    monkeypatch.setattr(cluster, "LISTING_SECONDS", 0.0)
    recorder.on_step_end(iteration=3, trials=[])
    cluster.verify_experiment(str(folder))


def test_without_address_a_search_starts_its_own_ray_instead_of_joining_another_jobs(monkeypatch, tmp_path):
    """A bare ray.init() joins the Ray another job on the machine started last (the soak once ran on a test's
    three-node cluster); without --address a search starts Ray of its own."""
    started = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **options: started.append(options))
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}])
    cluster.start_ray(cli.search_parser("test").parse_args(["--storage-path", str(tmp_path)]), validate_config({}))
    assert [options["address"] for options in started] == ["local"]  # other options: the console's logging
