"""Multi-worker trials (tcnvae.tuning.trainables) through Tune: one Ray Train run per trial, its epochs
streamed to Tune as they come, and an ASHA stop that takes the run's workers and placement group with it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import ray
import ray._private.state
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tcnvae.checkpoints import load_checkpoint
from tcnvae.tuning import CHECKPOINT_FILE, cli, make_trainable, tune_logger_callbacks
from tcnvae.tuning.config import validate_config
from tcnvae.tuning.trainables import WORKER_STARTS_DIR, worker_group_starts
from helpers import LOOP_METRICS, TINY_TRIAL as TINY, arrays_file

CLEAN_UP_SECONDS = 60  # Ray removes a stopped run's actors and placement group asynchronously


class ResultArrivals(tune.Callback):
    """When each trial's results reach the Tune driver: (trial id, epoch) -> wall time."""

    def __init__(self):
        self.arrived: dict[tuple[str, int], float] = {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.arrived[(trial.trial_id, int(result["epoch"]))] = time.time()


def _live_placement_groups() -> set[str]:
    return {group_id for group_id, group in ray.util.placement_group_table().items() if group["state"] != "REMOVED"}


def _alive_actors() -> dict[str, str]:
    """Alive actors but Ray's named cluster-wide services (Ray Train's first run starts a detached
    ``AutoscalingCoordinator`` that stays for the cluster's life). From the GCS: ``ray.util.state``
    needs the dashboard, which the tests' Ray runs without."""
    return {actor_id: actor["ActorClassName"] for actor_id, actor in ray._private.state.actors().items()
            if actor["State"] == "ALIVE" and not (actor["IsDetached"] and actor["Name"])}


def _logged_epochs(trial_dir: Path) -> dict[int, float]:
    """Epoch -> when rank 0 logged its validation accuracy to the trial's TensorBoard."""
    events = EventAccumulator(str(trial_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {event.step: event.wall_time for event in events.Scalars("val/accuracy")}


def _settled(check, seconds: float = CLEAN_UP_SECONDS):
    """``check()``'s value once it is empty, or its last value after ``seconds``."""
    deadline = time.monotonic() + seconds
    while (left := check()) and time.monotonic() < deadline:
        time.sleep(1)
    return left


@pytest.mark.ray
def test_a_two_worker_trial_keeps_its_workers_and_asha_stops_it_cleanly(ray_cluster, tmp_path):
    """Two 2-worker trials, one after the other, under ASHA with a rung at epoch 1. The first runs its
    six epochs on one worker-group start, and Tune has each epoch's result while the run goes on. The
    second, far worse at the rung (an activity-loss weight of 1000 inflates its ``loss/total``), is
    stopped there, and its Train run with it: afterwards no actor and no placement group of the search
    is left alive. As in the recipes, the second trial reuses the first one's process (``reuse_actors``),
    so both ways Tune ends a trial's process are taken: reset for another trial, and stop.

    Six epochs, because the run may be a few epochs ahead of Tune (each hand-over holds one: the
    worker's report, the Train controller's callback, the queue to the Tune function), and these tiny
    epochs take milliseconds: by epoch 6 the run must have waited for Tune's decision on epoch 1.

    The workers train on the search's data as the driver prepared it, from a file deleted before the
    search starts: a worker that prepared its data again would fail.
    """
    path = arrays_file(tmp_path / "people.npz")
    config, data = cli.prepare_data(validate_config({**TINY, "datasets": ["arrays"], "source_options": {},
                                                     "data_paths": {"arrays": str(path)}}))
    path.unlink()
    groups_before, actors_before = _live_placement_groups(), set(_alive_actors())
    arrivals = ResultArrivals()
    tuner = tune.Tuner(
        make_trainable(cpus_per_trial=1, workers_per_trial=2, data=data),
        param_space={**config, "max_epochs": 6, "lambda_act": tune.grid_search([1.0, 1000.0])},
        tune_config=tune.TuneConfig(metric="loss/total", mode="min", max_concurrent_trials=1, reuse_actors=True,
                                    scheduler=ASHAScheduler(grace_period=1, max_t=6, reduction_factor=2)),
        run_config=tune.RunConfig(name="asha", storage_path=str(tmp_path), verbose=0,
                                  callbacks=[*tune_logger_callbacks(), arrivals],
                                  sync_config=tune.SyncConfig(sync_artifacts=True)),  # a reused process's folder
    )
    results = tuner.fit()
    assert not results.errors
    kept, stopped = sorted(results, key=lambda result: result.config["lambda_act"])
    assert stopped.metrics["pid"] == kept.metrics["pid"], "the second trial ran in the first one's process"

    # The kept trial: every epoch reported, with the loop's metrics and a checkpoint, one worker-group start.
    assert kept.metrics_dataframe["epoch"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    per_domain = {key for key in LOOP_METRICS if key.startswith("val/domain/")}  # of the synthetic data's domains
    assert {key for key in kept.metrics if "/" in key or key == "epoch"} == LOOP_METRICS - per_domain | {
        "val/domain/arrays"}
    with kept.checkpoint.as_directory() as directory:
        payload = load_checkpoint(Path(directory) / CHECKPOINT_FILE)
    assert payload["trainer"]["epoch"] == 6 and payload["config"]["workers_per_trial"] == 2
    assert not any(key.startswith("module.") for key in payload["trainer"]["model_state"]), "saved unwrapped"
    assert [start["world_size"] for start in worker_group_starts(kept.path)] == [2]
    assert len(list((Path(kept.path) / WORKER_STARTS_DIR).glob("*.json"))) == 2, "each worker started once"
    # Streamed: Tune had epoch 1 before rank 0 logged epoch 6 to TensorBoard (a run reported only when
    # it ends would deliver epoch 1 after that).
    logged = _logged_epochs(Path(kept.path))
    assert sorted(logged) == [1, 2, 3, 4, 5, 6]
    assert arrivals.arrived[(kept.metrics["trial_id"], 1)] < logged[6]

    # The stopped trial: ASHA ended it at the rung; its Train run went with it.
    assert stopped.metrics_dataframe["epoch"].tolist() == [1.0]
    assert stopped.metrics["loss/total"] > kept.metrics_dataframe["loss/total"].iloc[0]
    assert max(_logged_epochs(Path(stopped.path))) < 6, "the run was aborted before its last epoch"
    assert _settled(lambda: _live_placement_groups() - groups_before) == set()
    left = _settled(lambda: {actor: name for actor, name in _alive_actors().items() if actor not in actors_before})
    assert left == {}, f"actors left alive: {sorted(left.values())}"
