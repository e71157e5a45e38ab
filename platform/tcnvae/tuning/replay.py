"""Hyperparameter schedules: what a trial ran with at each epoch, and replaying that in a plain run.

PBT changes a trial's hyperparameters while it trains (each exploit copies a better trial's weights
and perturbs its hyperparameters), so the winner's *final* config is not what produced its weights;
the whole sequence is. Every trial checkpoint therefore carries its ``hyperparameter_history`` — one
entry per epoch, ``{"epoch": e, <every mutable hyperparameter>}`` — which a clone inherits from the
trial it copies and then continues. Written to a file with the trial's base config, the history turns
a PBT discovery into a recipe: ``load_replay`` gives a config whose ``replay_schedule`` makes a single
plain run set each epoch's hyperparameters exactly as the population did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tcnvae.checkpoints import read_json_object, write_json
from tcnvae.tuning.config import mutable_keys, validate_config

REPLAY_FORMAT = "tcnvae-replay/1"


def history_entry(epoch: int, config: Mapping[str, Any]) -> dict[str, Any]:
    """The record of one epoch: the mutable hyperparameters it ran with."""
    return {"epoch": int(epoch), **{key: config[key] for key in mutable_keys()}}


def scheduled_values(schedule: Sequence[Mapping[str, Any]] | None, epoch: int) -> dict[str, Any]:
    """The hyperparameters a replay schedule sets at ``epoch`` (empty if it has no entry there)."""
    for entry in schedule or ():
        if entry["epoch"] == epoch:
            return {key: value for key, value in entry.items() if key != "epoch"}
    return {}


def _replay_config(base_config: Mapping[str, Any], schedule: Any) -> dict[str, Any]:
    """The validated trial config that replays ``schedule`` from ``base_config``: where a replay enters."""
    return validate_config({**base_config, "replay_schedule": schedule})


def write_replay(path: str | Path, history: Sequence[Mapping[str, Any]], base_config: Mapping[str, Any]) -> Path:
    """Write a replay file: ``base_config`` plus the per-epoch ``history`` (atomic JSON).

    ``max_epochs`` becomes the number of epochs the history covers, so the replay ends where the
    trial did (a PBT trial may have been stopped before its configured end).
    """
    if not history:
        raise ValueError("the hyperparameter history is empty: the trial completed no epoch")
    epochs = [entry["epoch"] for entry in history]
    if epochs != list(range(len(epochs))):
        raise ValueError(f"the history must cover epochs 0, 1, ... in order; it has epochs {epochs}")
    schedule = [dict(entry) for entry in history]
    config = _replay_config({**base_config, "max_epochs": len(schedule)}, schedule)
    base = {key: value for key, value in config.items() if key != "replay_schedule"}
    path = Path(path)
    write_json({"format": REPLAY_FORMAT, "base_config": base, "schedule": schedule}, path)
    return path


def load_replay(path: str | Path) -> dict[str, Any]:
    """The validated trial config of a replay file, with its ``replay_schedule`` set.

    Refuses a schedule that names an epoch twice (which values would win is arbitrary) or names epochs
    the run never reaches (``max_epochs``): an edited file that does either would silently replay
    something else than it says.
    """
    payload = read_json_object(path, "replay file")
    if payload.get("format") != REPLAY_FORMAT:
        raise ValueError(f"{path} is not a replay file (expected a JSON object with format {REPLAY_FORMAT!r})")
    try:
        config = _replay_config(payload["base_config"], payload["schedule"])
    except (KeyError, ValueError) as error:
        raise ValueError(f"replay file {path} is malformed: {error}") from None
    epochs = [entry["epoch"] for entry in config["replay_schedule"]]
    repeated = sorted({epoch for epoch in epochs if epochs.count(epoch) > 1})
    if repeated:
        raise ValueError(f"replay file {path} lists epochs {repeated} more than once; keep one entry per epoch")
    beyond = sorted(epoch for epoch in epochs if epoch >= config["max_epochs"])
    if beyond:
        raise ValueError(f"replay file {path} sets epochs {beyond}, but its run has max_epochs="
                         f"{config['max_epochs']} (epochs 0..{config['max_epochs'] - 1}); drop those entries or "
                         "raise base_config.max_epochs")
    return config
