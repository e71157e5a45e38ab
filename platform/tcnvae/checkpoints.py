"""Checkpoint files: tensors and plain data only, written atomically, read with ``weights_only=True``.

A checkpoint never holds pickled code, so loading one cannot run anything; and a kill at any moment
leaves either the old file or the new one, never a torn one (write to a temporary file beside the
target, fsync, then ``os.replace``). A file torn anyway (a full disk, a copy cut short) is named in the
error, and :func:`load_newest_intact` falls back to an older checkpoint, keeping the bad one aside.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch


class CorruptCheckpointError(ValueError):
    """A checkpoint file that exists but cannot be read: truncated, or not a checkpoint at all."""


def _umask() -> int:
    # Reading the umask means setting it; set it straight back (the process's only way to read it).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a file through ``write(handle)`` so readers see the old or the new file, never half.

    The file gets the mode any new file gets here (0666 less the umask), not the 0600 of the
    temporary file it starts as: results on shared storage are for teammates and TensorBoard too.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def check_writable_folder(path: str | Path, what: str) -> Path:
    """``path`` (absolute) if this process can create files in it: a folder there, or one it can create.

    For checks before long work: a file in the way, or a place without write permission (a read-only
    mount, another user's folder), is one clear error now instead of an OS error an epoch later.
    Checked by writing a temporary file in the folder, or in its nearest existing parent when the
    folder is still to be made (nothing is created). ``what`` names the setting in the message.
    """
    path = Path(path).expanduser().absolute()
    nearest = next(parent for parent in (path, *path.parents) if parent.exists())
    if not nearest.is_dir():
        raise ValueError(f"{what} {path}: {nearest} is a file, not a folder; pass a folder path")
    try:
        with tempfile.TemporaryFile(dir=nearest, prefix=".tcnvae-write-check."):
            pass
    except OSError as error:
        raise ValueError(f"{what} {path} cannot be written ({nearest}: {error.strerror}): pass a folder "
                              "you may write to, or fix its permissions or mount") from None
    return path


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> None:
    atomic_write(path, lambda stream: torch.save(payload, stream))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint of tensors and plain data; refuse anything that needs unpickling code.

    Raises :class:`CorruptCheckpointError` (naming the file) for a truncated or foreign file.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"checkpoint {path} is a directory: pass the checkpoint file in it "
                                f"({', '.join(sorted(p.name for p in path.glob('*.pt'))) or 'it holds no *.pt file'})")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"refusing to load {path}: it holds pickled objects beyond tensors and plain data "
            f"(weights_only=True). Re-save it as a state dict. Details: {error}"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        # Only torch's zip reader failing (a RuntimeError naming it, or EINVAL from its seeks past the
        # end) means a torn or foreign file; any other error (a CUDA map_location on a CPU machine, a
        # permission) is not the file's fault and must not get it set aside.
        torn = (isinstance(error, EOFError) or "PytorchStreamReader" in str(error)
                or (isinstance(error, OSError) and error.errno == errno.EINVAL))
        if not torn:
            raise
        detail = str(error).split(". ")[0] or "the file ends early"
        raise CorruptCheckpointError(f"checkpoint {path} is truncated or not a checkpoint "
                                     f"({path.stat().st_size} bytes; {detail})") from None


def set_aside(path: Path) -> Path:
    """Rename an unreadable file to ``<name>.corrupt`` (numbered if taken), out of every glob for
    ``*.pt``, kept for inspection rather than deleted."""
    target = path.with_name(f"{path.name}.corrupt")
    number = 1
    while target.exists():
        number += 1
        target = path.with_name(f"{path.name}.corrupt{number}")
    os.replace(path, target)
    return target


def load_newest_intact(candidates: Sequence[Path],
                       map_location: str | torch.device = "cpu") -> tuple[Path, dict[str, Any]]:
    """The first readable checkpoint of ``candidates`` (newest first) and its payload.

    Each unreadable one before it is named in a warning and set aside (:func:`set_aside`), so the next
    resume does not trip over it again. Raises :class:`CorruptCheckpointError` when none is readable.
    """
    bad = []
    for path in candidates:
        try:
            return path, load_checkpoint(path, map_location=map_location)
        except CorruptCheckpointError as error:
            kept = set_aside(path)
            bad.append(str(path))
            warnings.warn(f"{error}; set aside as {kept.name}, trying an older checkpoint", stacklevel=2)
    raise CorruptCheckpointError(f"no readable checkpoint: {', '.join(bad) or 'none given'} "
                                 "(each set aside as <name>.corrupt)")


def write_json(data: Any, path: str | Path) -> None:
    text = json.dumps(data, indent=2, sort_keys=True, default=_json_default)
    atomic_write(path, lambda stream: stream.write(text.encode() + b"\n"))


def read_json_object(path: str | Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; errors name ``what`` the file was meant to be, and the path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        loaded = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} {path} is not valid JSON: {error}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{what} {path} must hold a JSON object, got {type(loaded).__name__}")
    return loaded


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors and plain data (safe for ``weights_only``)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    # A checkpoint loaded with map_location="cuda" brings these tensors to the GPU; RNG states live on the host.
    python_state = state["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].cpu().numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([generator.cpu() for generator in state["cuda"]])
