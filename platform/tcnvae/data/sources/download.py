"""Getting a public dataset's files onto disk: a resumable, checksummed download into a cache, then
extraction, then finding the dataset's folder inside whatever layout the archive has.

Dataset servers drop long connections and re-package archives (UCI now nests the original zip inside
another zip), so a download resumes from its ``.part`` file with an HTTP Range request, lands under its
final name only when complete (atomic rename), and the loader looks for a *marker* file below the
extraction folder instead of assuming one path.

Checksums: a sha256 given by the source is verified; sources leave it ``None`` when no published
checksum could be verified, and then the sha256 of the first download is recorded next to the archive
(``<archive>.sha256``) and every later use of the cached archive is checked against it.

Without network access the error names the URL and the path to place the archive at by hand; an
archive placed there is extracted on the next load just like a downloaded one.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CACHE_ENV = "TCNVAE_CACHE"
EXTRACTED = "extracted"
_CHUNK = 1 << 16
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)
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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


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
    actual = file_sha256(target)
    if actual != expected.lower():
        raise ValueError(
            f"cached archive {target} has sha256 {actual}, expected {expected.lower()}; "
            f"delete it (and {recorded.name} if present) to download it again"
        )


def _record_checksum(target: Path, digest: str) -> None:
    recorded = _checksum_file(target)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{recorded.name}.")
    with os.fdopen(handle, "w") as stream:
        stream.write(f"{digest}  {target.name}\n")
    os.replace(temporary, recorded)


def _expected_size(response: http.client.HTTPResponse, resumed: bool) -> int | None:
    """Total archive size announced by the server (Content-Range when resuming, else Content-Length)."""
    if resumed:
        total = response.headers.get("Content-Range", "").rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def fetch(
    url: str, target: str | Path, *, sha256: str | None = None, timeout: float = 60.0
) -> Path:
    """Download ``url`` to ``target`` (resuming ``target.part``); verify or record its sha256.

    An existing ``target`` is only verified. Raises ConnectionError (naming the URL, the target and how
    to place the file by hand) when the server cannot be reached or the transfer stops early (the
    partial file is kept, so the next call resumes), and ValueError on a checksum mismatch (the bad
    partial file is deleted).
    """
    target = Path(target)
    if target.exists():
        _verify_cached(target, sha256)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    offset = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    logger.info(
        "downloading %s to %s%s", url, target, f" (resuming at byte {offset})" if offset else ""
    )
    expected = None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = bool(offset) and response.status == 206
            expected = _expected_size(response, resumed)
            with open(partial, "ab" if resumed else "wb") as stream:
                while block := response.read(_CHUNK):
                    stream.write(block)
    except urllib.error.HTTPError as error:
        # 416: the range starts at or past the end, i.e. the partial file already holds everything.
        if not (error.code == 416 and offset):
            raise ConnectionError(
                f"server answered HTTP {error.code} for {url}; {_manual_placement(url, target)}"
            ) from error
    except _NETWORK_ERRORS as error:
        have = partial.stat().st_size if partial.exists() else 0
        raise ConnectionError(
            f"could not download {url} to {target} ({error}); {have} bytes are kept in {partial} and "
            f"the next load with download=True resumes from there; or {_manual_placement(url, target)}"
        ) from error
    size = partial.stat().st_size
    if expected is not None and size != expected:
        raise ConnectionError(
            f"download of {url} stopped at {size} of {expected} bytes; the partial file {partial} is "
            f"kept and the next load with download=True resumes from it; or {_manual_placement(url, target)}"
        )
    digest = file_sha256(partial)
    if sha256 is not None and digest != sha256.lower():
        partial.unlink()
        raise ValueError(
            f"download of {url} has sha256 {digest}, expected {sha256.lower()}; the file was deleted. "
            "The server may serve a changed archive: check the dataset page before trusting it"
        )
    os.replace(partial, target)
    if sha256 is None:
        _record_checksum(target, digest)
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
