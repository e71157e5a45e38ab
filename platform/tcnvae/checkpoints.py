"""Checkpoint files: tensors and plain data only, written atomically, read with ``weights_only=True``.

A checkpoint never holds pickled code, so loading one cannot run anything; and a kill at any moment
leaves either the old file or the new one, never a torn one (write to a temporary file beside the
target, fsync, then ``os.replace``).
"""

from __future__ import annotations

import json
import os
import pickle
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a file through ``write(handle)`` so readers see the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> None:
    atomic_write(path, lambda stream: torch.save(payload, stream))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint of tensors and plain data; refuse anything that needs unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"refusing to load {path}: it holds pickled objects beyond tensors and plain data "
            f"(weights_only=True). Re-save it as a state dict. Details: {error}"
        ) from None


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
    python_state = state["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
