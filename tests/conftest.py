"""Shared fixtures: one torch thread, a state directory of the suite's own, the synthetic and (when present) real
UCI-HAR windows, one Ray instance, Ray refused; every test that uses Ray marked ``slow``.

Plain helpers shared by several test modules live in helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tcnvae.data import WindowSet, load_source, window_recordings
from tcnvae.tuning.cluster import STATE_ENV

SHARED_DATA = Path(
    os.environ.get("TCNVAE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


@pytest.hookimpl(tryfirst=True)  # before the -m filter reads the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test marked ``ray`` or using the Ray cluster (directly or through another fixture) is also
    ``slow``, so ``pytest -m "not slow"`` leaves Ray out without each test having to say so."""
    for item in items:
        if item.get_closest_marker("ray") or "ray_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny models on a 2-core machine: a second intra-op thread only adds synchronisation, and Ray
    trials run one thread each (a 1-CPU actor), so plain runs here compute exactly what trials do."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def provenance_state_dir(tmp_path_factory):
    """Searches record the digests of the pickled files they write (for ``--resume``) in the user's state
    directory; the suite's go to a folder of its own instead of ~/.local/state. Set before Ray starts,
    so the drivers the tests start in subprocesses inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(STATE_ENV, str(tmp_path_factory.mktemp("tcnvae_state")))
        yield


@pytest.fixture(scope="session")
def synthetic_windows() -> WindowSet:
    """The default synthetic data set (4 domains x 6 subjects x 8 activities), windowed at 50 Hz."""
    recordings = load_source("synthetic")
    return window_recordings(recordings, 2.56, 1.28, 50.0, "acc_gyro")


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """Where the real data lives: ../shared/data beside the checkout, or $TCNVAE_SHARED_DATA."""
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_data_file(shared_data_dir: Path):
    """``shared_data_file(name)``: the path of a real-data file; skips the test when it is absent."""

    def find(name: str) -> Path:
        path = shared_data_dir / name
        if not path.is_file():
            pytest.skip(f"real data {path} not present (set TCNVAE_SHARED_DATA)")
        return path

    return find


@pytest.fixture(scope="session")
def uci_har_windowset(shared_data_file) -> WindowSet:
    """UCI-HAR's 10,299 windows (N, 128, 9) from the shared npz; skips when the file is absent."""
    return load_source("uci_har", path=shared_data_file("uci_har_windows.npz"))


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray instance for the whole session: starting Ray takes seconds, so tests share it.

    Two CPUs, like the CI machine; searches and trainables skip ``ray.init`` when Ray is running.
    """
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, object_store_memory=500 * 1024**2,
                 logging_level="WARNING")
    yield ray
    if started_here:
        ray.shutdown()


@pytest.fixture
def no_ray(monkeypatch):
    """Ray absent, and starting it fails the test: every check the test makes must answer before."""
    import ray

    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started before the bad input was refused")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
