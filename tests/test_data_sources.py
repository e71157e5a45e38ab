"""Source registry and the download/extract/locate machinery, against a local HTTP server."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import io
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from tcnvae.data import sources
from tcnvae.data.recordings import ACC, Recording
from tcnvae.data.sources import download
from tcnvae.data.taxonomy import ACTIVITIES

OWN_SOURCES = ["uci_har", "hapt", "pamap2", "wisdm", "mhealth", "arrays"]


class _ArchiveHandler(BaseHTTPRequestHandler):
    """Serves ``server.files``; honours Range unless ``server.ignore_range``; cuts a response short once
    if ``server.cut`` says so."""

    def do_GET(self) -> None:
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = (
            int(self.headers["Range"].split("=")[1].split("-")[0])
            if self.headers.get("Range") and not server.ignore_range
            else 0
        )
        if start >= len(body):
            self.send_error(416)
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        stop = server.cut.pop(self.path, len(body))
        self.wfile.write(body[start:stop])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _ArchiveHandler)
    httpd.files, httpd.cut, httpd.requests, httpd.ignore_range = {}, {}, [], False
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name, content in files.items():
            bundle.writestr(name, content)
    return buffer.getvalue()


def _tar_gz_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            bundle.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/data.zip"


# --- registry ---------------------------------------------------------------------------------


def test_registry_lists_every_dataset_source():
    assert set(OWN_SOURCES + ["synthetic"]) <= set(sources.available_sources())


@pytest.mark.parametrize("name", OWN_SOURCES)
def test_source_modules_follow_the_protocol(name):
    module = sources.source_module(name)
    assert module.NAME == name
    assert module.__doc__ and len(module.__doc__) > 200
    assert callable(module.load)
    assert set(module.ACTIVITY_MAP.values()) <= set(ACTIVITIES)
    assert module.SAMPLE_RATE is None or module.SAMPLE_RATE > 0


def test_unknown_source_name_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown data source 'ucihar'.*uci_har"):
        sources.load_source("ucihar")


def test_registered_loader_function_is_called_with_the_protocol_arguments(tmp_path):
    calls = []

    def load_mine(path, *, cache_dir=None, download=False, scale=1.0):
        calls.append((path, cache_dir, download, scale))
        signal = np.full((50, 3), scale, dtype=np.float32)
        return [Recording(signal, np.zeros(50), ["walking"], ACC, 25.0, "mine", "mine:1")]

    sources.register_source("mine", load_mine)
    try:
        with pytest.raises(ValueError, match="already registered"):
            sources.register_source("mine", load_mine)
        recordings = sources.load_source("mine", tmp_path, scale=2.0)
        assert calls == [(tmp_path, None, False, 2.0)]
        assert recordings[0].signal[0, 0] == 2.0
        sources.register_source(
            "mine", importlib.import_module("tcnvae.data.sources.arrays"), replace=True
        )
        assert sources.SOURCES["mine"] == "tcnvae.data.sources.arrays"
    finally:
        sources.SOURCES.pop("mine", None)
        sources._CALLABLES.pop("mine", None)
    assert "mine" not in sources.available_sources()


def test_register_rejects_a_bad_name():
    with pytest.raises(ValueError, match="lower_snake_case"):
        sources.register_source("My Data", lambda path, **kw: [])


# --- fetch ------------------------------------------------------------------------------------


def test_fetch_resumes_an_interrupted_download(server, tmp_path):
    payload = _zip_bytes({"data/a.bin": np.random.default_rng(1).bytes(5000)})
    server.files["/archive.zip"] = payload
    server.cut["/archive.zip"] = 300
    target = tmp_path / "cache" / "archive.zip"
    with pytest.raises(ConnectionError, match=r"stopped at 300 of \d+ bytes.*resumes") as error:
        download.fetch(f"{server.url}/archive.zip", target)
    assert str(target) in str(error.value)
    assert (tmp_path / "cache" / "archive.zip.part").stat().st_size == 300
    assert not target.exists()

    download.fetch(f"{server.url}/archive.zip", target)
    assert target.read_bytes() == payload
    assert server.requests[-1] == ("/archive.zip", "bytes=300-")
    assert not (tmp_path / "cache" / "archive.zip.part").exists()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["archive.zip", "archive.zip.sha256"]


def test_a_server_that_ignores_the_range_gets_a_fresh_download(server, tmp_path):
    payload = _zip_bytes({"data/a.bin": np.random.default_rng(2).bytes(3000)})
    server.files["/archive.zip"], server.ignore_range = payload, True
    target = tmp_path / "archive.zip"
    (tmp_path / "archive.zip.part").write_bytes(payload[:100])
    assert download.fetch(f"{server.url}/archive.zip", target).read_bytes() == payload
    assert server.requests == [("/archive.zip", "bytes=100-")]


def test_fetch_verifies_a_known_checksum(server, tmp_path):
    payload = _zip_bytes({"a.txt": b"abc"})
    server.files["/a.zip"] = payload
    target = tmp_path / "a.zip"
    with pytest.raises(ValueError, match=r"sha256 .* expected 0000"):
        download.fetch(f"{server.url}/a.zip", target, sha256="0" * 64)
    assert not target.exists() and not (tmp_path / "a.zip.part").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind either
    good = hashlib.sha256(payload).hexdigest()
    assert download.fetch(f"{server.url}/a.zip", target, sha256=good).read_bytes() == payload


def test_first_download_records_a_checksum_later_uses_check_it(server, tmp_path):
    payload = _zip_bytes({"a.txt": b"abc"})
    server.files["/a.zip"] = payload
    target = download.fetch(f"{server.url}/a.zip", tmp_path / "a.zip")
    recorded = (tmp_path / "a.zip.sha256").read_text().split()[0]
    assert recorded == hashlib.sha256(payload).hexdigest()
    target.write_bytes(payload[:-10])
    with pytest.raises(ValueError, match=f"cached archive {target}"):
        download.fetch(f"{server.url}/a.zip", target)


def test_fetch_without_network_says_where_to_put_the_file(tmp_path):
    url = _closed_port_url()
    target = tmp_path / "data.zip"
    with pytest.raises(ConnectionError) as error:
        download.fetch(url, target, timeout=5)
    message = str(error.value)
    assert url in message and str(target) in message and "place the file at" in message


def test_http_error_names_the_url(server, tmp_path):
    with pytest.raises(ConnectionError, match=r"HTTP 404 for .*/missing.zip"):
        download.fetch(f"{server.url}/missing.zip", tmp_path / "missing.zip")


# --- extract ----------------------------------------------------------------------------------


def test_extract_unpacks_nested_zips_and_tars(tmp_path):
    inner = _zip_bytes({"Inner Data/values.txt": b"42\n"})
    outer = tmp_path / "outer.zip"
    outer.write_bytes(_zip_bytes({"Inner Data.zip": inner, "readme.txt": b"hi"}))
    folder = download.extract(outer, tmp_path / "out")
    assert (folder / "Inner Data" / "values.txt").read_text() == "42\n"
    assert not (folder / "Inner Data.zip").exists()

    tar = tmp_path / "data.tar.gz"
    tar.write_bytes(_tar_gz_bytes({"set/raw.txt": b"1,2\n"}))
    assert (
        download.extract(tar, tmp_path / "tar_out") / "set" / "raw.txt"
    ).read_bytes() == b"1,2\n"


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_truncated_archive_is_reported_and_leaves_no_folder(tmp_path, kind):
    files = {"d/values.txt": np.random.default_rng(0).bytes(20000)}
    payload = _zip_bytes(files) if kind == "zip" else _tar_gz_bytes(files)
    archive = tmp_path / f"data.{kind}"
    archive.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(ValueError, match=f"{archive}.*(truncated|corrupt)"):
        download.extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == [archive.name]


def test_extract_refuses_paths_leaving_the_folder(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(_tar_gz_bytes({"../escape.txt": b"x"}))
    with pytest.raises(ValueError, match="unsafe path"):
        download.extract(archive, tmp_path / "out")


# --- Archive.root -----------------------------------------------------------------------------

DEMO = download.Archive(
    "demo", "https://example.org/files/Demo%20Set.zip", ("raw/*.txt",), "raw/*.txt files"
)


def test_missing_dataset_error_gives_url_and_manual_placement(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        DEMO.root(cache_dir=tmp_path)
    message = str(error.value)
    assert "https://example.org/files/Demo%20Set.zip" in message
    assert str(tmp_path / "demo" / "Demo Set.zip") in message
    assert "download=True" in message


def test_manually_placed_archive_is_extracted_and_searched(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "Demo Set.zip").write_bytes(_zip_bytes({"Demo/raw/a.txt": b"1\n"}))
    root = DEMO.root(cache_dir=tmp_path)
    assert root == tmp_path / "demo" / download.EXTRACTED / "Demo"


def test_user_path_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        DEMO.root(tmp_path / "nowhere")
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong" / "notes.txt").write_text("not the dataset")
    with pytest.raises(
        FileNotFoundError, match=rf"no raw/\*\.txt files found in {tmp_path / 'wrong'}"
    ):
        DEMO.root(tmp_path / "wrong")
    with pytest.raises(ValueError, match="notes.txt is a file"):
        DEMO.root(tmp_path / "wrong" / "notes.txt")


def test_default_cache_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / "c"))
    assert download.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv(download.CACHE_ENV)
    assert download.default_cache_dir() == Path.home() / ".cache" / "tcnvae"


def test_load_source_downloads_extracts_and_parses(server, tmp_path, monkeypatch):
    """End to end: WISDM's tar.gz served locally, fetched into the cache, parsed."""
    wisdm = sources.source_module("wisdm")
    lines = "".join(
        f"7,Walking,{1_000_000_000 + i * 50_000_000},0.0,9.80665,0.0;\n" for i in range(40)
    )
    server.files["/WISDM_ar_latest.tar.gz"] = _tar_gz_bytes(
        {"WISDM_ar_v1.1/WISDM_ar_v1.1_raw.txt": lines.encode()}
    )
    monkeypatch.setattr(
        wisdm,
        "ARCHIVE",
        dataclasses.replace(wisdm.ARCHIVE, url=f"{server.url}/WISDM_ar_latest.tar.gz"),
    )
    with pytest.raises(FileNotFoundError, match="download=True"):
        sources.load_source("wisdm", cache_dir=tmp_path)
    recordings = sources.load_source("wisdm", cache_dir=tmp_path, download=True)
    assert [len(r) for r in recordings] == [40]
    np.testing.assert_allclose(recordings[0].signal[:, 1], 1.0, rtol=1e-6)
    server.files.clear()  # a second load must come from the cache
    assert len(sources.load_source("wisdm", cache_dir=tmp_path)[0]) == 40
