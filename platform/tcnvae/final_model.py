"""The final model: a search's best config retrained on training + validation subjects, tested once.

A search chooses a config and an epoch count on the validation subjects. Once chosen, those subjects
have done their job and can teach the model too, so the final run trains on training + validation
subjects (``val_fraction=0`` moves the validation subjects to the training side; the test subjects are
the same as in the search, since every split holds its test side out first), with the standardiser
fitted on those subjects. The test subjects are then scored once.

It trains the config's whole schedule, ``max_epochs``, not the epoch at which the winner peaked on
validation. On a few validation people the peak is mostly noise: on real data the winners peaked early
in their schedule and scored higher on test trained over the whole of it (docs/results.md, "Smaller
measurements").
The schedule, not the peak, is what the search tuned the learning rate for. ``epochs="best"`` trains to
the peak instead.

``members`` above 1 trains the config from that many seeds and averages their probabilities (an
:class:`~tcnvae.evaluate.Ensemble`): one seed's initialisation and batch order move the test score by
more than most settings do, and the average is steadier (not always above a lucky seed).

The folder it writes (``MODEL_DIR``) is all a user needs to run the model:

- ``weights.pt``: the model's state dict (``model_state``), or each member's (``member_states``) for an
  ensemble, and the shape (``torch.load(..., weights_only=True)``; :func:`load_weights` builds the model);
- ``model.json``: the model card: activities in head order, channels and their units, sample rate,
  window and hop, the normaliser, the config, the test metrics with the split and its subjects, and a
  fingerprint of the data;
- ``confusion_matrix.png``: the test confusion matrix, labelled;
- ``model.pt2``: a ``torch.export`` program, raw windows in physical units → activity probabilities,
  standardisation included, that runs with torch alone (``torch.export.load(path).module()``);
  checked equal to the eager model on real windows before it is written.

The folder is one unit: it is written whole into a hidden sibling folder, then renamed into place, so a
kill at any moment leaves the old complete folder or the new complete one (:func:`write_model_folder`).
An existing model folder is replaced only when asked (``replace``, the script's ``--force``). Card and
weights are checked to belong together before a prediction (:func:`load_model_folder`): the card
records the weights file's sha256, and the weights carry the facts that give their outputs meaning
(activities in head order, channels, rate, window, normaliser), which the card must repeat unchanged.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from tcnvae.checkpoints import (atomic_write, check_writable_folder, load_checkpoint, read_json_object,
                                 save_checkpoint, write_json)
from tcnvae.data.harmonise import channel_set_names
from tcnvae.data.pipeline import PreparedData, prepare
from tcnvae.data.windows import WindowSet
from tcnvae.data.orientation import input_channels
from tcnvae.evaluate import Ensemble, InferenceModel, activity_probabilities, score, training_activities
from tcnvae.model import TCNVAE
from tcnvae.tuning.config import data_config, validate_config
from tcnvae.tuning.metrics import train_metrics
from tcnvae.tuning.report import TEST_RECORD_KEY, scored_test_windows, trial_settings
from tcnvae.tuning.tensorboard import confusion_image
from tcnvae.tuning.trial import build_curriculum, build_model, build_trainer, seed_everything

FORMAT = "tcnvae-final-model/1"
WEIGHTS_FILE = "weights.pt"
CARD_FILE = "model.json"
EXPORT_FILE = "model.pt2"
CONFUSION_FILE = "confusion_matrix.png"
MODEL_FILES = (WEIGHTS_FILE, CARD_FILE, EXPORT_FILE, CONFUSION_FILE)
"""What a model folder holds; a folder of these files only is one ``replace`` may remove."""
CARD_KEYS = ("activities", "channel_set", "sample_rate", "window_length", "hop_seconds", "normaliser")
"""What predict reads from a model card: a card lacking any of them is refused, naming them."""
INPUT_KEYS = ("gravity_align", "magnitude_channels", "normalise_by")
"""The data settings that make a model's input from a recording (tcnvae.data.orientation, normalise):
predict repeats them; a card without them (written before them) means each one off ("pooled")."""
MEANING_KEYS = ("activities", "channel_set", "sample_rate", "window_length", "normaliser") + INPUT_KEYS
"""Card entries that give the weights' outputs their meaning: weights.pt holds them too (``trained_with``),
and a card whose copy differs (activities reordered, another normaliser) is refused."""
EXPORT_TOLERANCE = 1e-5
"""Largest difference in any probability allowed between the exported program and the eager model."""
MEMBERS = 3
"""Models the final model averages unless told otherwise (``members``). One seed is a lottery: single
seeds of the defaults differ on test by more than most settings do, and three seeds averaged are steadier
(docs/results.md, "Smaller measurements"). The final model trains once, so three times one run is small
beside the search."""
NO_VALIDATION = {"val_fraction": 0.0, "val_folds": 0, "val_fold": 0}
"""The split settings that move a search's validation subjects (a fraction or a fold) to the training side."""
BEST_EPOCH = "best"
"""``epochs`` value meaning: the epoch at which the search's winner peaked on validation."""
UNITS = {"acc": "g (total acceleration, gravity included)", "body_acc": "g (gravity removed)", "gyro": "rad/s"}


def channel_unit(channel: str) -> str:
    """The unit of a canonical channel name (``acc_x`` → g)."""
    return UNITS[channel.rsplit("_", 1)[0]]


class ModelCardWarning(UserWarning):
    """A model folder that can be used, but not checked as fully as a current one."""


@dataclass
class SearchChoice:
    """What a search chose: the config, the epochs to train, and the search's own test record."""

    config: dict[str, Any]
    epochs: int
    source: Path
    search_test: dict[str, Any] | None


def read_search_choice(results_dir: str | Path | None = None, config_file: str | Path | None = None,
                       epochs: int | str | None = None, overrides: Mapping[str, Any] | None = None) -> SearchChoice:
    """The best config of a search folder (or a best_config.json), and its epochs: ``epochs`` if a
    number, the epoch of the checkpoint the search scored (its best on validation) if ``"best"``, else
    the config's ``max_epochs`` (see the module docstring)."""
    if (results_dir is None) == (config_file is None):
        raise ValueError("give a search's results folder or --config FILE (one of them)")
    source = Path(config_file) if config_file is not None else Path(results_dir) / "best_config.json"
    loaded = read_json_object(source, "best config")
    record = loaded.get(TEST_RECORD_KEY)
    config = validate_config({**trial_settings(loaded), **(overrides or {})})
    if epochs == BEST_EPOCH:
        if not record:
            raise ValueError(f"epochs={BEST_EPOCH!r}: {source} records no scored checkpoint (its search kept "
                             "none); give a number of epochs")
        epochs = record["epoch"]
    elif epochs is None:
        epochs = config["max_epochs"]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs:
        raise ValueError(f"epochs must be a positive integer or {BEST_EPOCH!r}, got {epochs!r}")
    if epochs > config["max_epochs"]:
        config["max_epochs"] = epochs  # the schedules must span the run
    return SearchChoice(config, epochs, source, record)


def final_data(config: Mapping[str, Any]) -> PreparedData:
    """The search's split with the validation subjects on the training side (see the module docstring)."""
    return prepare(data_config({**config, **NO_VALIDATION}))


def train_final_model(config: Mapping[str, Any], data: PreparedData, epochs: int,
                      device: torch.device = torch.device("cpu"), members: int = MEMBERS) -> TCNVAE | Ensemble:
    """Train ``config``'s model on ``data``'s training side for ``epochs`` epochs; returns it in eval mode.

    With ``members`` above 1, that many models, member i from seed ``config["seed"] + i`` (its
    initialisation and batch order), returned as an :class:`Ensemble` that averages their probabilities.

    A curriculum runs as in the search, but its decisions see training metrics only: a policy that
    decides on validation metrics (``single_to_cross`` with ``switch=plateau`` or
    ``start=best_val_accuracy``) stops with an error naming the metric it needs.
    """
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise ValueError(f"members must be a positive integer (models averaged), got {members!r}")
    trained = [_train_member(config, data, epochs, device, config["seed"] + member,
                             f"final model{f' member {member + 1}/{members}' if members > 1 else ''}")
               for member in range(members)]
    return trained[0] if members == 1 else Ensemble(trained).eval()


def _train_member(config: Mapping[str, Any], data: PreparedData, epochs: int, device: torch.device, seed: int,
                  name: str) -> TCNVAE:
    """One model of :func:`train_final_model`, trained from ``seed`` through the trainer's loop, as a trial is."""
    seed_everything(seed)
    trainer = build_trainer(config, build_model(config, data), device)
    loader = data.train_loader(pin_memory=device.type == "cuda", seed=seed)
    runner = build_curriculum(config, trainer, loader)

    def after_epoch() -> None:
        # The curriculum sees what it sees in a trial, less validation: every term of the same objective.
        runner.after_epoch({**train_metrics(trainer), **runner.metrics()})
        print(f"{name}: epoch {trainer.epoch}/{epochs} loss {trainer.last_train_metrics['total']:.4f}", flush=True)

    trainer.train_epochs(loader, epochs, before_epoch=runner.before_epoch, after_epoch=after_epoch)
    return trainer.model.eval()


def ensemble_members(model: TCNVAE | Ensemble) -> list[TCNVAE]:
    """The models whose probabilities ``model`` averages (itself alone when it is one model)."""
    return list(model.members) if isinstance(model, Ensemble) else [model]


def load_weights(path: str | Path) -> TCNVAE | Ensemble:
    """The model a final-model folder's ``weights.pt`` holds: one model, or an ensemble of them
    (:func:`load_model_folder` also checks it against the folder's card)."""
    return _weights_model(load_checkpoint(path), Path(path))


def _weights_model(payload: Mapping[str, Any], path: Path) -> TCNVAE | Ensemble:
    if "model_config" not in payload or not {"model_state", "member_states"} & set(payload):
        raise ValueError(f"{path} is not a final model's weights file (it holds {sorted(payload)}); "
                         "write one with searches/final_model.py")
    members = []
    for state in payload["member_states"] if "member_states" in payload else [payload["model_state"]]:
        member = TCNVAE.from_config(payload["model_config"])
        member.load_state_dict(state)
        members.append(member.eval())
    return members[0] if len(members) == 1 else Ensemble(members).eval()


def export_model(inference: InferenceModel, windows: np.ndarray) -> torch.export.ExportedProgram:
    """``inference`` as a ``torch.export`` program taking any batch size, checked against the eager model
    on ``windows`` (raw, physical units): every probability within :data:`EXPORT_TOLERANCE`."""
    inference = inference.cpu().eval()
    example = torch.as_tensor(windows[:2], dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(inference, (example,), dynamic_shapes={"windows": {0: batch}})
    check_export(program.module(), inference, windows)
    return program


def check_export(exported: torch.nn.Module, inference: InferenceModel, windows: np.ndarray) -> float:
    """The largest probability difference of ``exported`` from ``inference`` on ``windows``; raises if
    any exceeds :data:`EXPORT_TOLERANCE` or any window's activity differs."""
    eager = activity_probabilities(inference, windows)
    with torch.no_grad():
        loaded = torch.cat([exported(torch.as_tensor(windows[i:i + 512], dtype=torch.float32))
                            for i in range(0, len(windows), 512)]).numpy()
    difference = float(np.abs(loaded - eager).max())
    if difference > EXPORT_TOLERANCE or not np.array_equal(loaded.argmax(1), eager.argmax(1)):
        raise RuntimeError(f"the exported model differs from the eager model by {difference:.3g} "
                           f"(tolerance {EXPORT_TOLERANCE}) on {len(windows)} windows")
    return difference


def physical(windows: WindowSet, data: PreparedData) -> np.ndarray:
    """Standardised windows back in physical units (what the exported model and predict take)."""
    return (windows.signals * data.standardiser.std + data.standardiser.mean).astype(np.float32)


def data_fingerprint(data: PreparedData, config: Mapping[str, Any]) -> dict[str, Any]:
    """sha256 of the training and test windows (signals, activities, subjects) and of the data files."""
    digest = hashlib.sha256()
    for windows in (data.train, data.test):
        for array in (windows.signals, windows.activity, windows.subject.astype("U")):
            digest.update(np.ascontiguousarray(array).tobytes())
    files = {}
    for name, paths in sorted(config["data_paths"].items()):
        for path in paths if isinstance(paths, list) else [paths]:  # several arrays files: one entry each
            if Path(path).is_file():
                key = name if not isinstance(paths, list) else f"{name}:{Path(path).name}"
                files[key] = {"path": str(path), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}
    return {"windows_sha256": digest.hexdigest(), "files": files,
            "of": "the standardised training and test windows, their activities and subjects"}


def write_final_model(output: str | Path, model: TCNVAE | Ensemble, data: PreparedData,
                      choice: SearchChoice, replace: bool = False) -> dict[str, Any]:
    """Score ``model`` once on the test subjects and write the model folder as one unit
    (:func:`write_model_folder`; an existing one only with ``replace``); returns the model card."""
    output = check_model_folder(output, replace)
    config = {**choice.config, **NO_VALIDATION}
    model = model.cpu().eval()
    test = scored_test_windows(data, config)
    # Scored on the activities training taught (a held-out dataset's others are named, unscored).
    metrics = score(model, test, config["domain_by"], data.domain_names, scored_activities=training_activities(
        data.train), activities_present=data.config.activities_present) if len(test) else None
    inference = InferenceModel(model, data.standardiser)
    check_on = physical(test if len(test) else data.train, data)
    program = export_model(inference, check_on)

    members = ensemble_members(model)
    weights = ({"model_state": members[0].state_dict()} if len(members) == 1 else
               {"member_states": [member.state_dict() for member in members]})
    channels = data.channel_names
    card = {
        "format": FORMAT,
        "activities": list(data.activity_names),
        "channels": [{"name": name, "unit": channel_unit(name)} for name in channels],
        "sample_rate": float(data.train.sample_rate),
        "window_seconds": config["window_seconds"],
        "hop_seconds": config["step_seconds"],
        "window_length": int(data.window_length),
        "channel_set": config["channel_set"],
        "normaliser": data.standardiser.state_dict(),
        **{key: getattr(data.config, key) for key in INPUT_KEYS},
        "activities_present": data.config.activities_present,
        "model_config": members[0].config,
        "config": config,
        "trained_on": {"split": data.config.split, "epochs": choice.epochs, "windows": len(data.train),
                       "members": len(members), "seeds": [config["seed"] + i for i in range(len(members))],
                       "subjects": sorted(set(data.train.subject.tolist())),
                       "note": "training and validation subjects of the search"},
        "test": ({"note": "scored once, after training; never used for choosing", "split": data.config.split,
                  "subjects": sorted(set(test.subject.tolist())), **metrics}
                 if metrics is not None else {"note": "no test subjects in this split"}),
        "search": {"best_config": str(choice.source), "test": choice.search_test},
        "data_fingerprint": data_fingerprint(data, config),
        "files": {"weights": WEIGHTS_FILE, "exported": EXPORT_FILE,
                  "confusion_matrix": CONFUSION_FILE if metrics is not None else None},
        "exported_model": "torch.export.load('model.pt2').module()(windows) with windows (batch, "
                          f"{data.window_length}, {len(channels)}) float32 in the channels' units, not "
                          "normalised (the program normalises); returns (batch, activities) probabilities"
                          + (". normalise_by=dataset: standardise each channel of the windows by their own mean "
                             "and std first (tcnvae.predict does)" if data.config.normalise_by == "dataset" else ""),
    }

    def write(folder: Path) -> None:
        trained_with = {key: card[key] for key in MEANING_KEYS}
        save_checkpoint({**weights, "model_config": members[0].config, "trained_with": trained_with},
                        folder / WEIGHTS_FILE)
        atomic_write(folder / EXPORT_FILE, lambda stream: torch.export.save(program, stream))
        if metrics is not None:
            image = io.BytesIO()
            Image.fromarray(confusion_image(np.asarray(metrics["confusion"]), data.activity_names)).save(image, "PNG")
            atomic_write(folder / CONFUSION_FILE, lambda stream: stream.write(image.getvalue()))
        card["files"]["sha256"] = {name: file_sha256(folder / name) for name in (WEIGHTS_FILE, EXPORT_FILE)}
        write_json(card, folder / CARD_FILE)

    write_model_folder(output, write, replace)
    return card


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _aside(output: Path) -> Path:
    """Where a replaced model folder waits between the two renames of :func:`write_model_folder`."""
    return output.parent / f".{output.name}.replaced"


def check_model_folder(output: str | Path, replace: bool = False) -> Path:
    """``output`` if a model folder can be written there; checked before any training.

    Refused: a file; a folder holding anything a model folder does not (never removed, even with
    ``replace``); an existing model folder, or one a killed replacement left aside, unless ``replace``;
    a place this process cannot write to.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"model folder {output} is a file; give --output a folder path")
    if output.is_dir():
        contents = sorted(path.name for path in output.iterdir())
        foreign = [name for name in contents if name not in MODEL_FILES
                   and not (name.startswith(".") and name.endswith(".tmp"))]  # atomic_write's leftovers
        if foreign:
            raise ValueError(f"{output} holds what no model folder does ({', '.join(foreign[:5])}"
                             f"{', ...' if len(foreign) > 5 else ''}), which replacing it would lose: move that "
                             "out, or give --output a new folder")
        if contents and not replace:
            raise ValueError(f"{output} already holds a final model; pass --force (replace=True) to replace it "
                             "(the old one stays until the new one is complete), or give --output another folder")
    elif _aside(output).is_dir() and not replace:
        raise ValueError(f"{output} does not exist, but its previous model lies in {_aside(output)} (a replacement "
                         f"was interrupted): rename that folder back to {output.name}, or pass --force "
                         "(replace=True) to write a new model in its place")
    check_writable_folder(output.parent, f"the parent of model folder {output.name},")
    return output


def write_model_folder(output: str | Path, write: Callable[[Path], None], replace: bool = False) -> None:
    """Write a model folder as one unit: ``write(folder)`` fills a hidden sibling folder, then it is
    renamed to ``output``.

    Replacing (``replace``; :func:`check_model_folder` says what may be replaced) moves the old folder
    aside, renames the new one in and removes the old, so a kill at any moment leaves the old complete
    folder or the new one (between the two renames, the old one aside, which :func:`read_card` names).
    A failure while writing removes the new folder and leaves the old one as it was.
    """
    output = check_model_folder(output, replace)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.parent / f".{output.name}.{uuid.uuid4().hex[:8]}.new"
    staging.mkdir()
    aside = _aside(output)
    try:
        write(staging)
        _fsync_folder(staging)
        check_model_folder(output, replace)  # another run may have written it meanwhile
        if output.exists():
            shutil.rmtree(aside, ignore_errors=True)  # left by a replacement killed before it removed it
            os.replace(output, aside)
            try:
                os.replace(staging, output)
            except BaseException:
                os.replace(aside, output)
                raise
        else:
            os.replace(staging, output)
        _fsync_folder(output.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _fsync_folder(path: Path) -> None:
    # The renames are durable only once the folders holding them are synced, as atomic_write syncs files.
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def read_card(model_dir: str | Path) -> dict[str, Any]:
    """The model card of a final-model folder, checked for its format and the entries predict reads."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        if model_dir.exists():
            raise ValueError(f"model folder {model_dir} is a file: pass the folder that holds {CARD_FILE} and "
                             f"{WEIGHTS_FILE}")
        fix = (f"a replacement of it was interrupted, and the previous model lies in {_aside(model_dir)}: rename "
               f"that folder to {model_dir.name}" if _aside(model_dir).is_dir() else
               "write one with searches/final_model.py")
        raise FileNotFoundError(f"model folder {model_dir} does not exist; {fix}")
    card = read_json_object(model_dir / CARD_FILE, "model card")
    if card.get("format") != FORMAT:
        raise ValueError(f"{model_dir / CARD_FILE} is not a {FORMAT} model card "
                         f"(format {card.get('format')!r}); write one with searches/final_model.py")
    missing = [key for key in CARD_KEYS if key not in card]
    problems = [f"lacks {', '.join(missing)}, which predict reads"] if missing else []
    problems += [f"has {key} that is not a JSON {name}" for key, kind, name in
                 (("activities", list, "array"), ("normaliser", dict, "object"))
                 if key in card and not isinstance(card[key], kind)]
    if problems:
        raise ValueError(f"model card {model_dir / CARD_FILE} {'; '.join(problems)}: restore the card "
                         "searches/final_model.py wrote, or write the model again with it")
    return card


def load_model_folder(model_dir: str | Path) -> tuple[dict[str, Any], TCNVAE | Ensemble]:
    """The card and model of a final-model folder, checked to belong together before any prediction:
    the weights file's sha256 against the card's record, the card's activities, channels, rate, window
    and normaliser against those the weights were trained with, and the model's shapes against the card.

    A card written before cards recorded the sha256 is checked by shapes only, with a warning.
    """
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    path = model_dir / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"model folder {model_dir} has no {WEIGHTS_FILE}: copy the model folder whole")
    payload = load_checkpoint(path)  # first: a torn file is named as torn, not as another model's
    files = card.get("files")
    recorded = (files.get("sha256") or {}).get(WEIGHTS_FILE) if isinstance(files, dict) else None
    if recorded is None:
        warnings.warn(f"model card {model_dir / CARD_FILE} predates recorded weight digests: card and weights are "
                      "checked by their shapes only (activities reordered in the card would go unnoticed); "
                      "write the model again with searches/final_model.py --force to have them checked whole",
                      ModelCardWarning, stacklevel=2)
    elif (actual := file_sha256(path)) != recorded:
        raise ValueError(f"{path} does not belong to the card {model_dir / CARD_FILE}: its sha256 is {actual[:12]}..., "
                         f"the card records {recorded[:12]}... (weights of another model, or one of the files "
                         "replaced). Use the folder as searches/final_model.py wrote it: copy it whole, or write "
                         "the model again")
    model = _weights_model(payload, path)
    _check_card_meaning(card, payload.get("trained_with"), model, model_dir)
    return card, model


def _check_card_meaning(card: Mapping[str, Any], trained_with: Mapping[str, Any] | None,
                        model: TCNVAE | Ensemble, model_dir: Path) -> None:
    where = model_dir / CARD_FILE
    fix = "restore the card searches/final_model.py wrote, or write the model again with it"
    for key in MEANING_KEYS if trained_with is not None else ():
        # Compared as JSON reads them: the card has been through JSON, the weights' copy not.
        written = json.loads(json.dumps(trained_with.get(key)))
        if card.get(key) != written:
            change = ("lists the activities in another order or under other names than the model's outputs"
                      if key == "activities" else f"has another {key} than the weights were trained with")
            raise ValueError(f"model card {where} {change}: the card has {_short(card.get(key))}, the weights "
                             f"{_short(written)}; {fix}")
    shape = ensemble_members(model)[0].config
    channels = model_channels(card)
    normaliser = card["normaliser"]
    mismatches = [f"{name}: the card has {has}, the model {wants}" for name, has, wants in (
        ("activities", len(card["activities"]), shape["num_activities"]),
        ("channels", len(channels), shape["input_dim"]),
        ("normaliser mean", len(normaliser.get("mean", ())), shape["input_dim"]),
        ("normaliser std", len(normaliser.get("std", ())), shape["input_dim"])) if has != wants]
    if mismatches:
        raise ValueError(f"model card {where} does not fit the model in {WEIGHTS_FILE} "
                         f"({'; '.join(mismatches)}): the weights are another model's; {fix}")


def model_channels(card: Mapping[str, Any]) -> list[str]:
    """The channels a card's model reads: its channel set's, then their magnitudes if it was trained with them."""
    return input_channels(channel_set_names(card["channel_set"]), bool(card.get("magnitude_channels", False)))


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 200 else f"{text[:200]}..."


def card_text(card: Mapping[str, Any]) -> str:
    """One line for the command line: test scores and where the model came from."""
    test = card["test"]
    if "accuracy" not in test:
        return f"final model: {test['note']}"
    return (f"final model: test accuracy={test['accuracy']:.4f} macro_f1={test['macro_f1']:.4f} "
            f"windows={test['windows']} subjects={len(test['subjects'])} epochs={card['trained_on']['epochs']} "
            f"members={card['trained_on'].get('members', 1)}")

