"""A multi-node Ray cluster on this machine: the session's Ray instance is the head, and two worker
nodes join it (``ray start --address``) for this module, advertising custom resources that stand in
for the GPU node types of cluster.yaml. Measured: trials land on the worker nodes, storage on a path
all nodes share, a local storage folder refused, and a worker node killed mid-search (spot
preemption) whose trials are retried from their checkpoints on the other node.

Joining nodes to the running instance, rather than starting a ``ray.cluster_utils.Cluster``, keeps the
suite at one Ray start-up (a second head cannot start while this process is connected to the first).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import ray
from ray import tune

from tcnvae.tuning import tune_logger_callbacks
from helpers import (PATIENCE_SECONDS, TINY_FLAGS as TINY, TINY_TRIAL, epochs_reported, recipe, trial_with_epoch_hook,
                     wait_for)

GPU_NODE = "gpu_node"  # every worker node has one; trials ask for half, so two trials fit on a node
NODE_TYPES = ("gpu_1x", "gpu_4x")  # one node of each, like cluster.yaml's two GPU worker types


def _alive_nodes() -> list[dict]:
    return [node for node in ray.nodes() if node["Alive"]]


@pytest.fixture(scope="module")
def worker_nodes(ray_cluster):
    """Node type → (node id, the ``ray start`` process of that node), for this module only."""
    address = ray.get_runtime_context().gcs_address
    before = len(_alive_nodes())
    # `ray start` records the cluster it joined in the machine-wide /tmp/ray/ray_current_cluster, which
    # every later bare ray.init() on this machine would then try to join: put back what was there.
    previous_address = ray._private.utils.read_ray_address()
    processes = {}
    try:
        for node_type in NODE_TYPES:  # one at a time: two nodes starting at once on one machine can time out
            processes[node_type] = subprocess.Popen(
                ["ray", "start", "--address", address, "--num-cpus", "1", "--num-gpus", "0",
                 "--resources", json.dumps({GPU_NODE: 1, node_type: 1}), "--object-store-memory",
                 str(100 * 1024**2), "--disable-usage-stats", "--block"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # own process group
            joined = before + len(processes)

            def node_joined() -> bool:
                assert processes[node_type].poll() is None, f"`ray start` of the {node_type} node failed"
                return len(_alive_nodes()) == joined

            wait_for(node_joined, f"the {node_type} node to join")
        _restore_address_file(address, previous_address)
        ids = {node_type: next(node["NodeID"] for node in _alive_nodes() if node_type in node["Resources"])
               for node_type in NODE_TYPES}
        yield {node_type: (ids[node_type], processes[node_type]) for node_type in NODE_TYPES}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes
                process.wait(timeout=120)
        wait_for(lambda: len(_alive_nodes()) == before, "the worker nodes to leave")
        _restore_address_file(address, previous_address)


def _restore_address_file(ours: str, previous: str | None) -> None:
    if ray._private.utils.read_ray_address() != ours:  # someone else's since: leave it
        return
    if previous is None:
        Path(ray._private.utils.get_ray_address_file(None)).unlink(missing_ok=True)
    else:
        ray._private.utils.write_ray_address(previous)


@pytest.mark.ray
def test_a_local_storage_folder_is_refused_on_the_multi_node_cluster(worker_nodes, tmp_path):
    with pytest.raises(ValueError, match="3 live nodes"):
        recipe("loss_weights").main(["--storage-path", str(tmp_path), "--name", "local", *TINY])


@pytest.mark.ray
def test_trials_on_a_preempted_node_finish_on_the_other_node(worker_nodes, tmp_path):
    """Four trials, two per worker node; the trials on the ``gpu_4x`` node park in their third epoch
    and the node is killed (SIGKILL of its whole process group, as a reclaimed spot instance
    vanishes). Each trial logs (trial, node, epoch) as an epoch starts."""
    victim, victim_node = worker_nodes["gpu_4x"]
    survivor, _ = worker_nodes["gpu_1x"]
    epochs_log = tmp_path / "epochs.log"
    parked = tmp_path / "parked"
    parked.mkdir()

    def log_and_park_on_the_victim(epoch: int) -> None:
        node = ray.get_runtime_context().get_node_id()
        trial = tune.get_context().get_trial_id()
        with open(epochs_log, "a") as log:
            log.write(f"{trial} {node} {epoch}\n")
        if epoch == 2 and node == victim:
            (parked / trial).touch()
            time.sleep(PATIENCE_SECONDS)  # the node goes down under it

    def preempt_the_victim_node() -> None:
        wait_for(lambda: len(list(parked.iterdir())) == 2, "two trials to park on the gpu_4x node")
        os.killpg(victim_node.pid, signal.SIGKILL)

    killer = threading.Thread(target=preempt_the_victim_node, daemon=True)
    killer.start()
    tuner = tune.Tuner(
        tune.with_resources(trial_with_epoch_hook(log_and_park_on_the_victim), tune.PlacementGroupFactory([{"CPU": 0.5, GPU_NODE: 0.5}])),
        param_space={**TINY_TRIAL, "max_epochs": 4, "seed": tune.grid_search([0, 1, 2, 3])},
        run_config=tune.RunConfig(name="preempted", storage_path=str(tmp_path), callbacks=tune_logger_callbacks(),
                                  failure_config=tune.FailureConfig(max_failures=2), verbose=0),
    )
    results = tuner.fit()
    killer.join(timeout=PATIENCE_SECONDS)
    victim_node.wait(timeout=60)

    assert not results.errors
    log: dict[str, list[tuple[str, int]]] = {}
    for line in epochs_log.read_text().splitlines():
        trial, node, epoch = line.split()
        log.setdefault(trial, []).append((node, int(epoch)))
    moved = {trial.name for trial in parked.iterdir()}
    assert len(log) == 4 and len(moved) == 2
    for trial, epochs in log.items():
        if trial in moved:  # epochs 0-1 on the lost node, epoch 2 again and 3 on the survivor, from a checkpoint
            assert epochs == [(victim, 0), (victim, 1), (victim, 2), (survivor, 2), (survivor, 3)]
        else:
            assert epochs == [(survivor, epoch) for epoch in range(4)]
    for result in results:  # every trial's reports in the shared storage, once each
        assert Path(result.path).parent == tmp_path / "preempted"
        assert epochs_reported(Path(result.path)) == [1, 2, 3, 4]
