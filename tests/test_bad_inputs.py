"""Bad command-line input to the searches: each answered before Ray starts (or, for ``--address``,
within seconds), with a message that names the problem and the fix.

Ray is never started here: the in-process probes replace ``ray.init`` with a function that fails the
test, and the command-line probes run the search as a subprocess with a timeout and check its output.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import ray

from tcnvae.tuning import cli, cluster, config

from helpers import SEARCHES, refused


def run_search(argv: list[str], timeout: float, **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(SEARCHES / "loss_weights.py"), *argv], capture_output=True,
                            text=True, timeout=timeout, **kwargs)
    return result, time.monotonic() - started


# -- resources -----------------------------------------------------------------------------------------

def test_more_cpus_per_trial_than_this_machine_has_is_refused_before_ray(no_ray, tmp_path):
    message = refused(["--storage-path", str(tmp_path), "--cpus-per-trial", "4096"], "fits on no node")
    assert "this machine" in message and "wait forever" in message
    assert list(tmp_path.iterdir()) == []


def test_resources_are_checked_against_live_nodes_and_the_node_types_the_autoscaler_can_start(monkeypatch, caplog):
    """As on cluster.yaml's cluster: a CPU head is running, GPU worker types start on demand."""
    group = SimpleNamespace(name="ray.worker.gpu4", resources={"CPU": 48.0, "GPU": 4.0}, max_count=2)
    never = SimpleNamespace(name="ray.worker.disabled", resources={"CPU": 96.0, "GPU": 8.0}, max_count=0)
    from ray._private import state

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "nodes", lambda: [{"NodeManagerAddress": "10.0.0.1", "NodeID": "ab" * 28,
                                                "Alive": True, "Resources": {"CPU": 8.0}}])
    monkeypatch.setattr(state.state, "get_cluster_config",
                        lambda: SimpleNamespace(node_group_configs=[group, never]))
    config.check_resources(cpus_per_trial=8, gpus_per_trial=0, workers_per_trial=1)  # fits the live head
    assert "autoscaler" not in caplog.text
    config.check_resources(cpus_per_trial=8, gpus_per_trial=4, workers_per_trial=1)  # fits a gpu4 node
    assert "trials wait until the autoscaler starts a node of type ray.worker.gpu4" in caplog.text
    config.check_resources(cpus_per_trial=16, gpus_per_trial=8, workers_per_trial=2)  # one gpu4 node per worker
    with pytest.raises(ValueError, match="fits on no node.*node types its autoscaler may start, from cluster.yaml") \
            as error:
        config.check_resources(cpus_per_trial=64, gpus_per_trial=1)
    assert "node type ray.worker.gpu4: 48 CPU, 4 GPU" in str(error.value)
    assert "ray.worker.disabled" not in str(error.value)  # max_workers 0: it never starts
    with pytest.raises(ValueError, match="2 workers get 1 CPU and 6 GPU each"):
        config.check_resources(cpus_per_trial=2, gpus_per_trial=12, workers_per_trial=2)
    with pytest.raises(ValueError, match="each worker fits on a node, but .* 8 GPU in all"):
        config.check_resources(cpus_per_trial=12, gpus_per_trial=12, workers_per_trial=3)  # 3 of 2 gpu4 nodes


def test_a_multi_worker_trial_larger_than_this_machine_in_all_is_refused_before_ray(no_ray, tmp_path):
    cpus = config.cluster_nodes()[0][0].cpus  # each worker asks for all of them: fits alone, not twice
    refused(["--storage-path", str(tmp_path), "--workers-per-trial", "2", "--cpus-per-trial", f"{2 * cpus:g}"],
            "each worker fits on a node, but this machine has")


# -- joining a cluster -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_an_address_with_no_cluster_fails_in_seconds_without_starting_ray(tmp_path):
    result, seconds = run_search(["--storage-path", str(tmp_path), "--address", "127.0.0.1:1"], timeout=120)
    assert result.returncode != 0
    assert "--address 127.0.0.1:1: no Ray cluster answers there" in result.stderr
    assert "ray start --head" in result.stderr
    assert "Started a local Ray instance" not in result.stderr + result.stdout
    assert "Connecting to existing Ray cluster" not in result.stderr  # refused before ray.init
    assert seconds < 60  # mostly importing torch and Ray on a shared machine; the refusal itself is at once


@pytest.mark.slow
def test_a_listener_that_is_not_ray_is_given_up_on_in_bounded_time(tmp_path):
    """A port that accepts connections but never speaks Ray: Ray retries in native code, where neither
    Ctrl-C nor SIGTERM is handled, so a watchdog ends the process (here after 3 s, 30 s by default)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        code = ("import sys; from tcnvae.tuning import cluster; cluster.CONNECT_SECONDS = 3; "
                f"cluster.join_cluster('127.0.0.1:{port}'); sys.exit('joined')")
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        seconds = time.monotonic() - started
    assert result.returncode == 2
    assert f"error: --address 127.0.0.1:{port}: joining the Ray cluster did not finish in 3 s" in result.stderr
    assert seconds < 60


@pytest.mark.parametrize("address", ["127.0.0.1", "ray://:10001", "host:port"])
def test_a_malformed_address_is_refused(address):
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        cluster.join_cluster(address)


# -- where results go ---------------------------------------------------------------------------------------

def test_a_storage_path_that_is_a_file_is_refused_before_ray(no_ray, tmp_path):
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder")
    refused(["--storage-path", str(blocker / "sub")], f"{blocker} is a file, not a folder")


def test_a_storage_path_nobody_may_write_is_refused_before_ray(no_ray, tmp_path):
    if os.geteuid() == 0:
        place = Path("/sys/tcnvae-results")  # even root may not create files in sysfs
    else:
        place = tmp_path / "read-only"
        place.mkdir(mode=0o500)
    refused(["--storage-path", str(place)], f"--storage-path {place} cannot be written")


@pytest.mark.parametrize("uri, message", [
    ("ftp://host/results", "unknown storage scheme 'ftp'"),
    ("s3://CHANGE-ME-your-bucket/tcnvae", "not a valid s3 bucket name.*replace cluster.yaml's CHANGE-ME placeholder"),
    ("s3:///tcnvae", "'' is not a valid s3 bucket name"),
])
def test_a_storage_uri_with_an_unknown_scheme_or_an_impossible_bucket_is_refused_before_ray(
        no_ray, tmp_path, monkeypatch, uri, message):
    monkeypatch.chdir(tmp_path)
    refused(["--storage-path", uri], message)


@pytest.mark.parametrize("name", ["../..", "../outside", "a/b", ".."])
def test_a_name_that_leaves_the_storage_path_is_refused(no_ray, tmp_path, name):
    storage = tmp_path / "storage"
    refused(["--storage-path", str(storage), "--name", name], "expected a plain folder name.*stay inside")
    assert list(tmp_path.iterdir()) == []


def test_num_samples_with_resume_is_warned_about(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv(cluster.STATE_ENV, str(tmp_path / "state"))
    (tmp_path / "e").mkdir()  # no pickled files yet: nothing to verify
    args = cli.search_parser("test").parse_args(["--storage-path", str(tmp_path), "--name", "e", "--resume",
                                                 "--num-samples", "20"])
    assert cli.experiment_path(args, "x") == tmp_path / "e"
    assert "--num-samples 20 is ignored with --resume" in caplog.text


@pytest.mark.ray
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_stop_a_running_search(ray_cluster, tmp_path, stop):
    """The search runs as its own driver joined to this session's cluster; once a trial has reported,
    the signal ends it within seconds, SIGTERM as Ctrl-C does (Tune's graceful stop): the resume hint,
    exit status 128 + the signal, no native stack dump."""
    argv = ["--storage-path", str(tmp_path), "--name", "stopped", "--num-samples", "4", "--max-epochs", "50",
            "--max-concurrent", "1", "--scheduler", "fifo", "--address", ray.get_runtime_context().gcs_address,
            "--set", "hidden_dims=[8]", "--set", "latent_dim=4", "--set", "head_hidden=16",
            "--set", "decoder_channels=8", "--data", "synthetic"]
    driver = subprocess.Popen([sys.executable, str(SEARCHES / "loss_weights.py"), *argv],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not list(tmp_path.glob("stopped/*/progress.csv")) and driver.poll() is None:
            assert time.monotonic() < deadline, "no trial reported within 180 s"
            time.sleep(0.2)
        assert driver.poll() is None, f"the search ended by itself ({driver.returncode}) before the signal"
        driver.send_signal(stop)
        started = time.monotonic()
        _, err = driver.communicate(timeout=60)
        assert time.monotonic() - started < 60
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert not (tmp_path / "stopped" / "leaderboard.csv").exists()  # stopped, not run to the end
    assert driver.returncode == 128 + stop  # 130, 143
    assert f"--name stopped --resume ({signal.Signals(stop).name})" in err
    assert "Fatal Python error" not in err and "Stack trace" not in err


def test_set_reads_each_value_as_its_declared_setting_takes_it():
    """JSON where it parses, except where the setting takes text: a domain named 2 stays a name."""
    assert cli.parse_assignments(["target_domain=2", "batch_size=8", "activities=null", "split=subject"], "--set") == {
        "target_domain": "2", "batch_size": 8, "activities": None, "split": "subject"}
    with pytest.raises(ValueError, match="batch_size='eight': expected an integer >= 1"):
        config.validate_config(cli.parse_assignments(["batch_size=eight"], "--set"))
