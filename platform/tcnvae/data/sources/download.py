"""Getting a public dataset's files onto disk: a resumable, checksummed download into a cache, then
extraction, then finding the dataset's folder inside whatever layout the archive has.

The download is pooch's (``pooch.retrieve``, the scientific Python ecosystem's data fetcher): it
streams into a temporary file beside the archive, verifies the sha256 and only then moves the file
under its final name, so a cached archive is always complete. Dataset servers drop long connections
and pooch starts every attempt from zero, so the HTTP transfer is a small pooch downloader that keeps
what arrived in ``<archive>.part`` and continues it with a Range request on the next load.
UCI re-packages archives (it now nests the original zip inside another zip), so the loader looks for
a *marker* file below the extraction folder instead of assuming one path.

Checksums: a sha256 given by the source is verified; sources leave it ``None`` when no published
checksum could be verified, and then the sha256 of the first download is recorded next to the archive
(``<archive>.sha256``) and every later use of the cached archive is checked against it.

Without network access the error names the URL and the path to place the archive at by hand; an
archive placed there is extracted on the next load just like a downloaded one.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
import urllib.parse
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pooch

from tcnvae.checkpoints import atomic_write

logger = logging.getLogger(__name__)

CACHE_ENV = "TCNVAE_CACHE"
EXTRACTED = "extracted"
_CHUNK = 1 << 16
_SEARCH_DEPTH = 4


def default_cache_dir() -> Path:
    """``$TCNVAE_CACHE`` if set, else ``~/.cache/tcnvae``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tcnvae").expanduser()


def archive_name(url: str) -> str:
    """The file name an archive is cached under: the last component of the URL path, unquoted."""
    name = urllib.parse.unquote(urllib.parse.urlparse(url).path).rsplit("/", 1)[-1]
    if not name:
        raise ValueError(f"URL {url!r} does not end in a file name")
    return name


def _manual_placement(url: str, target: Path) -> str:
    return (
        f"download {url} with a browser or another machine and place the file at {target} "
        "(it is extracted on the next load), or extract it anywhere and pass path=<that folder>"
    )


def _checksum_file(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _verify_cached(target: Path, sha256: str | None) -> None:
    recorded = _checksum_file(target)
    expected = sha256 or (recorded.read_text().split()[0] if recorded.exists() else None)
    if expected is None:
        return
    actual = pooch.file_hash(str(target))
    if actual != expected.lower():
        raise ValueError(
            f"cached archive {target} has sha256 {actual}, expected {expected.lower()}; "
            f"delete it (and {recorded.name} if present) to download it again"
        )


def _expected_size(headers: Mapping[str, str], resumed: bool) -> int | None:
    """Total archive size announced by the server (Content-Range when resuming, else Content-Length)."""
    if resumed:
        total = headers.get("Content-Range", "").rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


class _ResumingDownloader:
    """A pooch downloader that keeps what arrived in ``<target>.part`` and resumes it next time.

    pooch calls it with a temporary file to fill; the transfer goes to the ``.part`` file, which is
    moved onto pooch's temporary file once complete, so pooch verifies and places it as usual. A
    transfer that stops early raises ConnectionError and leaves the ``.part`` file for the next load.
    """

    def __init__(self, target: Path, timeout: float) -> None:
        self.target = target
        self.partial = target.with_name(target.name + ".part")
        self.timeout = timeout

    def __call__(self, url: str, output_file: str, pooch_instance: object = None) -> None:
        """pooch's downloader protocol: fill ``output_file`` from ``url`` (``pooch_instance`` unused)."""
        # Imported here, as pooch does: requests takes a fraction of a second to import, and most
        # loads read local files.
        import requests
        import urllib3

        offset = self.partial.stat().st_size if self.partial.exists() else 0
        logger.info(
            "downloading %s to %s%s", url, self.target,
            f" (resuming at byte {offset})" if offset else "",
        )
        expected = None
        try:
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as response:
                # 416: the range starts at or past the end, i.e. the partial file holds everything.
                if not (response.status_code == 416 and offset):
                    response.raise_for_status()
                    resumed = bool(offset) and response.status_code == 206
                    expected = _expected_size(response.headers, resumed)
                    with open(self.partial, "ab" if resumed else "wb") as stream:
                        # read1 hands over what has arrived; iter_content drops the last short
                        # block when the connection breaks, and with it bytes to resume from.
                        while block := response.raw.read1(_CHUNK, decode_content=True):
                            stream.write(block)
        except requests.HTTPError as error:
            raise ConnectionError(
                f"server answered HTTP {error.response.status_code} for {url}; "
                f"{_manual_placement(url, self.target)}"
            ) from error
        except (requests.RequestException, urllib3.exceptions.HTTPError) as error:
            raise ConnectionError(self._stopped(url, expected, error)) from error
        if expected is not None and self.partial.stat().st_size != expected:  # urllib3 1.x: no error
            raise ConnectionError(self._stopped(url, expected, "the connection closed early"))
        os.replace(self.partial, output_file)

    def _stopped(self, url: str, expected: int | None, cause: object) -> str:
        have = self.partial.stat().st_size if self.partial.exists() else 0
        if not have:
            return (
                f"could not download {url} to {self.target} ({cause}); or "
                f"{_manual_placement(url, self.target)}"
            )
        return (
            f"download of {url} stopped at {have} of {expected or 'unknown'} bytes ({cause}); the "
            f"partial file {self.partial} is kept and the next load with download=True resumes "
            f"from it; or {_manual_placement(url, self.target)}"
        )


def fetch(
    url: str, target: str | Path, *, sha256: str | None = None, timeout: float = 60.0
) -> Path:
    """Download ``url`` to ``target`` (resuming ``target.part``); verify or record its sha256.

    An existing ``target`` is only verified. Raises ConnectionError (naming the URL, the target and how
    to place the file by hand) when the server cannot be reached or the transfer stops early (the
    partial file is kept, so the next call resumes), and ValueError on a checksum mismatch (the bad
    download is deleted).
    """
    target = Path(target)
    if target.exists():
        _verify_cached(target, sha256)
        return target
    # pooch logs the transfer again and advises on its own API ("known_hash"); our log says it all.
    pooch_logger = pooch.get_logger()
    level = pooch_logger.level
    pooch_logger.setLevel(logging.WARNING)
    try:
        pooch.retrieve(
            url,
            known_hash=f"sha256:{sha256}" if sha256 else None,
            fname=target.name,
            path=target.parent,
            downloader=_ResumingDownloader(target, timeout),
        )
    except ValueError as error:  # pooch's checksum mismatch; it has deleted the download
        raise ValueError(
            f"the sha256 of the download of {url} is not the expected {sha256.lower()} ({error}). "
            "The server may serve a changed archive: check the dataset page before trusting it"
        ) from error
    finally:
        pooch_logger.setLevel(level)
    if sha256 is None:
        digest = pooch.file_hash(str(target))
        record = f"{digest}  {target.name}\n".encode()
        atomic_write(_checksum_file(target), lambda stream: stream.write(record))
        logger.info("recorded sha256 %s of %s (no published checksum to verify)", digest, target)
    return target


def _check_member(name: str, archive: Path) -> None:
    parts = Path(name).parts
    if name.startswith(("/", "\\")) or ".." in parts:
        raise ValueError(
            f"archive {archive} contains an unsafe path {name!r}; refusing to extract it"
        )


def _unpack(archive: Path, destination: Path) -> None:
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as bundle:
                for name in bundle.namelist():
                    _check_member(name, archive)
                bundle.extractall(destination)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as bundle:
                members = bundle.getmembers()
                for member in members:
                    _check_member(member.name, archive)
                    if member.issym() or member.islnk():
                        raise ValueError(
                            f"archive {archive} contains a link {member.name!r}; refusing it"
                        )
                extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                bundle.extractall(destination, members=members, **extra)
        else:
            raise ValueError(
                f"{archive} is neither a zip nor a tar archive (truncated or not an archive); "
                "delete it and download it again"
            )
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as error:
        raise ValueError(
            f"archive {archive} is truncated or corrupt ({error}); delete it and download it again"
        ) from error


def extract(archive: str | Path, destination: str | Path) -> Path:
    """Unpack a zip or tar archive, and the zips nested inside it, into ``destination`` atomically.

    The archive is unpacked into a temporary sibling folder that is renamed to ``destination`` only
    when everything succeeded, so an existing ``destination`` is always complete and is reused as is.
    """
    archive, destination = Path(archive), Path(destination)
    if destination.exists():
        return destination
    if not archive.is_file():
        raise FileNotFoundError(f"archive {archive} does not exist")
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extracting-", dir=destination.parent))
    try:
        _unpack(archive, staging)
        for _ in range(_SEARCH_DEPTH):  # UCI wraps the original zip in another one
            nested = [p for p in staging.rglob("*.zip") if "__MACOSX" not in p.parts]
            if not nested:
                break
            for inner in nested:
                _unpack(inner, inner.parent)
                inner.unlink()
        os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


def find_root(base: Path, markers: Sequence[str]) -> Path | None:
    """The shallowest folder at or below ``base`` holding a match of a marker glob (markers in order)."""
    levels = [[base]]
    for _ in range(_SEARCH_DEPTH):
        below = [
            child
            for folder in levels[-1]
            for child in sorted(folder.iterdir())
            if child.is_dir() and not child.name.startswith((".", "__MACOSX"))
        ]
        if not below:
            break
        levels.append(below)
    for marker in markers:
        for level in levels:
            for folder in level:
                if next(folder.glob(marker), None) is not None:
                    return folder
    return None


@dataclass(frozen=True)
class Archive:
    """A dataset's official archive and how to recognise the dataset's folder once it is extracted.

    ``markers`` are globs relative to that folder (e.g. ``"RawData/labels.txt"``), tried in order;
    ``expected`` describes the layout for error messages; ``sha256`` is None unless a published
    checksum was verified (then the first download's checksum is recorded instead).
    """

    dataset: str
    url: str
    markers: tuple[str, ...]
    expected: str
    sha256: str | None = None

    def root(
        self,
        path: str | Path | None = None,
        *,
        cache_dir: str | Path | None = None,
        download: bool = False,
    ) -> Path:
        """The dataset's folder: found under ``path``, else in the cache (fetched if ``download``)."""
        if path is not None:
            path = Path(path).expanduser()
            if not path.exists():
                raise FileNotFoundError(
                    f"{self.dataset}: {path} does not exist; expected {self.expected}"
                )
            if not path.is_dir():
                raise ValueError(
                    f"{self.dataset}: {path} is a file; expected a folder holding {self.expected}"
                )
            root = find_root(path, self.markers)
            if root is None:
                raise FileNotFoundError(
                    f"{self.dataset}: no {self.expected} found in {path} or its subfolders"
                )
            return root
        folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        folder = folder / self.dataset
        extracted = folder / EXTRACTED
        if not extracted.exists():
            archive = folder / archive_name(self.url)
            if not archive.exists() and not download:
                raise FileNotFoundError(
                    f"{self.dataset} is not in the cache {folder}: load it with download=True to fetch "
                    f"{self.url}, pass path=<folder holding {self.expected}>, or "
                    f"{_manual_placement(self.url, archive)}"
                )
            extract(fetch(self.url, archive, sha256=self.sha256), extracted)
        root = find_root(extracted, self.markers)
        if root is None:
            raise ValueError(
                f"{self.dataset}: the archive extracted to {extracted} holds no {self.expected}; it may "
                f"be a different file than {self.url} — delete {folder} and load again"
            )
        return root
