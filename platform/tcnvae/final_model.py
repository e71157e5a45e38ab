"""The final model: a search's best config retrained on training + validation subjects, tested once.

A search chooses a config and an epoch count on the validation subjects. Once chosen, those subjects
have done their job and can teach the model too, so the final run trains on training + validation
subjects (``val_fraction=0`` moves the validation subjects to the training side; the test subjects are
the same as in the search, since every split holds its test side out first), with the standardiser
fitted on those subjects. The test subjects are then scored once.

It trains the config's whole schedule, ``max_epochs``, not the epoch at which the winner peaked on
validation. On a few validation people the peak is mostly noise: both default-budget searches on real
data peaked at epoch 3–4 of 15, and the same winners scored 0.9310 (UCI-HAR) and 0.9437 (HAPT) test
macro-F1 trained to the peak, 0.9375 and 0.9507 over their whole cosine schedule (README, "Results").
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
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from tcnvae.checkpoints import atomic_write, load_checkpoint, read_json_object, save_checkpoint, write_json
from tcnvae.data.harmonise import channel_set_names
from tcnvae.data.pipeline import PreparedData, prepare
from tcnvae.data.windows import WindowSet
from tcnvae.evaluate import Ensemble, InferenceModel, activity_probabilities, score
from tcnvae.model import TCNVAE
from tcnvae.tuning.config import data_config, validate_config
from tcnvae.tuning.loop import build_curriculum, build_model, build_trainer, seed_everything
from tcnvae.tuning.results import TEST_RECORD_KEY, trial_settings
from tcnvae.tuning.scoring import scored_test_windows
from tcnvae.tuning.tensorboard import confusion_image

FORMAT = "tcnvae-final-model/1"
WEIGHTS_FILE = "weights.pt"
CARD_FILE = "model.json"
EXPORT_FILE = "model.pt2"
CONFUSION_FILE = "confusion_matrix.png"
EXPORT_TOLERANCE = 1e-5
"""Largest difference in any probability allowed between the exported program and the eager model."""
MEMBERS = 3
"""Models the final model averages unless told otherwise (``members``). One seed is a lottery: three
single seeds of the defaults scored 0.9273–0.9418 test macro-F1 on UCI-HAR. Three seeds averaged, against
the first seed alone, moved test macro-F1 by −0.3 to +0.8 points over six comparisons (+0.2 on average;
README, "Results") and sat at or above the single seeds' mean. The final model trains once, so three
times one run is small beside the search."""
NO_VALIDATION = {"val_fraction": 0.0, "val_folds": 0, "val_fold": 0}
"""The split settings that move a search's validation subjects (a fraction or a fold) to the training side."""
BEST_EPOCH = "best"
"""``epochs`` value meaning: the epoch at which the search's winner peaked on validation."""
UNITS = {"acc": "g (total acceleration, gravity included)", "body_acc": "g (gravity removed)", "gyro": "rad/s"}


def channel_unit(channel: str) -> str:
    """The unit of a canonical channel name (``acc_x`` → g)."""
    return UNITS[channel.rsplit("_", 1)[0]]


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
    trained = []
    for member in range(members):
        seed = config["seed"] + member
        seed_everything(seed)
        trainer = build_trainer(config, build_model(config, data), device)
        loader = data.train_loader(pin_memory=device.type == "cuda", seed=seed)
        runner = build_curriculum(config, trainer, loader)
        for epoch in range(epochs):
            runner.before_epoch(epoch)
            trainer.train_epoch(loader, epoch)
            trainer.epoch = epoch + 1
            train = trainer.last_train_metrics
            runner.after_epoch({"epoch": trainer.epoch, **{f"loss/{term}": train[term] for term in
                                                           ("total", "recon", "kl", "activity", "domain")}})
            print(f"final model{f' member {member + 1}/{members}' if members > 1 else ''}: epoch "
                  f"{trainer.epoch}/{epochs} loss {train['total']:.4f}", flush=True)
        trained.append(trainer.model.eval())
    return trained[0] if members == 1 else Ensemble(trained).eval()


def ensemble_members(model: TCNVAE | Ensemble) -> list[TCNVAE]:
    """The models whose probabilities ``model`` averages (itself alone when it is one model)."""
    return list(model.members) if isinstance(model, Ensemble) else [model]


def load_weights(path: str | Path) -> TCNVAE | Ensemble:
    """The model a final-model folder's ``weights.pt`` holds: one model, or an ensemble of them."""
    payload = load_checkpoint(path)
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
    for name, path in sorted(config["data_paths"].items()):
        if Path(path).is_file():
            files[name] = {"path": str(path), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}
    return {"windows_sha256": digest.hexdigest(), "files": files,
            "of": "the standardised training and test windows, their activities and subjects"}


def write_final_model(output: str | Path, model: TCNVAE | Ensemble, data: PreparedData,
                      choice: SearchChoice) -> dict[str, Any]:
    """Score ``model`` once on the test subjects and write the model folder; returns the model card."""
    output = Path(output)
    config = {**choice.config, **NO_VALIDATION}
    model = model.cpu().eval()
    test = scored_test_windows(data, config)
    metrics = score(model, test, config["domain_by"], data.domain_names) if len(test) else None
    inference = InferenceModel(model, data.standardiser)
    check_on = physical(test if len(test) else data.train, data)
    program = export_model(inference, check_on)

    members = ensemble_members(model)
    weights = ({"model_state": members[0].state_dict()} if len(members) == 1 else
               {"member_states": [member.state_dict() for member in members]})
    save_checkpoint({**weights, "model_config": members[0].config}, output / WEIGHTS_FILE)
    atomic_write(output / EXPORT_FILE, lambda stream: torch.export.save(program, stream))
    if metrics is not None:
        image = io.BytesIO()
        Image.fromarray(confusion_image(np.asarray(metrics["confusion"]), data.activity_names)).save(image, "PNG")
        atomic_write(output / CONFUSION_FILE, lambda stream: stream.write(image.getvalue()))
    channels = channel_set_names(config["channel_set"])
    card = {
        "format": FORMAT,
        "activities": data.activity_names,
        "channels": [{"name": name, "unit": channel_unit(name)} for name in channels],
        "sample_rate": data.train.sample_rate,
        "window_seconds": config["window_seconds"],
        "hop_seconds": config["step_seconds"],
        "window_length": data.window_length,
        "channel_set": config["channel_set"],
        "normaliser": data.standardiser.state_dict(),
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
                          "normalised (the program normalises); returns (batch, activities) probabilities",
    }
    write_json(card, output / CARD_FILE)
    return card


def read_card(model_dir: str | Path) -> dict[str, Any]:
    """The model card of a final-model folder, checked for its format."""
    card = read_json_object(Path(model_dir) / CARD_FILE, "model card")
    if card.get("format") != FORMAT:
        raise ValueError(f"{Path(model_dir) / CARD_FILE} is not a {FORMAT} model card "
                         f"(format {card.get('format')!r}); write one with searches/final_model.py")
    return card


def card_text(card: Mapping[str, Any]) -> str:
    """One line for the command line: test scores and where the model came from."""
    test = card["test"]
    if "accuracy" not in test:
        return f"final model: {test['note']}"
    return (f"final model: test accuracy={test['accuracy']:.4f} macro_f1={test['macro_f1']:.4f} "
            f"windows={test['windows']} subjects={len(test['subjects'])} epochs={card['trained_on']['epochs']} "
            f"members={card['trained_on'].get('members', 1)}")

