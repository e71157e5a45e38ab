"""Where a search keeps its results: URIs reach Tune intact, and a local folder is refused on a multi-node cluster.

The multi-node decision is tested on node lists shaped like ``ray.nodes()``; no cluster is started.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tcnvae.tuning import cli, cluster


def node(alive: bool = True) -> dict:
    return {"NodeID": "n", "Alive": alive, "Resources": {"CPU": 2.0}}


def test_uris_are_kept_verbatim_and_local_paths_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cluster.storage_location("s3://bucket/tcnvae/") == "s3://bucket/tcnvae"
    assert cluster.storage_location("gs://bucket/x") == "gs://bucket/x"
    assert cluster.storage_location("results") == str(tmp_path.resolve() / "results")
    assert cluster.storage_location("file:///srv/results") == "/srv/results"
    assert cluster.storage_location("~/runs") == str(Path.home().resolve() / "runs")
    with pytest.raises(ValueError, match="--storage-path is empty"):
        cluster.storage_location("")


def test_a_uri_storage_path_goes_to_tune_and_the_search_files_stay_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = cli.search_parser("x").parse_args(["--storage-path", "s3://bucket/tcnvae", "--name", "e1"])
    experiment = cli.experiment_path(args, "loss_weights")
    assert experiment == tmp_path.resolve() / "results" / "e1"
    assert cluster.tune_storage(args, experiment) == "s3://bucket/tcnvae"

    local = cli.search_parser("x").parse_args(["--storage-path", str(tmp_path / "runs"), "--name", "e2"])
    experiment = cli.experiment_path(local, "loss_weights")
    assert experiment == tmp_path / "runs" / "e2"
    assert cluster.tune_storage(local, experiment) == str(tmp_path / "runs")


def test_the_storage_variable_is_the_default_storage_path(monkeypatch):
    monkeypatch.setenv(cluster.STORAGE_ENV, "s3://bucket/from-env")
    assert cli.search_parser("x").parse_args([]).storage_path == "s3://bucket/from-env"
    monkeypatch.delenv(cluster.STORAGE_ENV)
    assert cli.search_parser("x").parse_args([]).storage_path == "results"


def test_local_storage_is_refused_on_a_multi_node_cluster():
    with pytest.raises(ValueError) as error:
        cluster.check_shared_storage("/home/ray/results", False, [node(), node(), node()])
    message = str(error.value)
    assert "/home/ray/results" in message and "3 live nodes" in message
    assert "not visible on another" in message
    assert "s3://" in message and "--shared-storage" in message


@pytest.mark.parametrize("storage, shared, nodes", [
    ("/home/ray/results", False, [node()]),                      # one machine
    ("/home/ray/results", False, [node(), node(alive=False)]),   # the other node is gone
    ("/mnt/efs/results", True, [node(), node()]),                # declared shared (EFS, NFS)
    ("s3://bucket/results", False, [node(), node()]),            # every node reaches a URI
])
def test_storage_every_trial_can_reach_is_accepted(storage, shared, nodes):
    cluster.check_shared_storage(storage, shared, nodes)
