"""The test split, scored once after a search has chosen its model, and the near-chance alarm.

Selection uses validation only: the search ranks trials on the validation objective, and the best
trial's checkpoint is the epoch with the best validation value among those Tune kept. Only then is
that one checkpoint scored on the test subjects, in the driver: the data is prepared from the trial's
own config (same split, same training-side standardisation), the weights are loaded, and the model
runs deterministically. Nothing downstream reads the test figures to choose anything.

With a target domain (``lodo:<target>``), the labelled slice of the target that selection used is left
out of the test windows, so the test is on target people the search never looked at.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tcnvae.checkpoints import load_checkpoint
from tcnvae.data.pipeline import PreparedData, prepare
from tcnvae.data.windows import WindowSet
from tcnvae.evaluate import score
from tcnvae.tuning.config import data_config
from tcnvae.tuning.loop import CHECKPOINT_FILE, build_model, target_slice_subjects

NEAR_CHANCE_MARGIN = 0.1
"""Validation accuracy within this many points of the majority-class rate counts as near chance."""
FEW_STEPS_PER_EPOCH = 20
FEW_WINDOWS_PER_ACTIVITY = 20
FEW_EPOCHS = 4
ONE_CLASS_SHARE = 0.8


@dataclass
class HeldOutScore:
    """The test-split metrics of one checkpoint, and what they were measured on."""

    metrics: dict[str, Any]  # tcnvae.evaluate.score's output
    epoch: int  # the checkpoint's epoch (chosen on validation)
    selection: dict[str, float]  # the checkpoint's validation metrics, what it was chosen by
    split: str
    subjects: list[str]
    data: PreparedData = field(repr=False)

    def record(self) -> dict[str, Any]:
        """JSON-ready, for best_config.json."""
        return {"note": "scored once on the test split after selection; never used for choosing",
                "epoch": self.epoch, "split": self.split, "subjects": self.subjects,
                "selected_on": self.selection, **self.metrics}


def scored_test_windows(data: PreparedData, config: Mapping[str, Any]) -> WindowSet:
    """The test side of ``data``, less the target domain's labelled slice when selection used one."""
    if not config["target_domain"]:
        return data.test
    labelled = target_slice_subjects(data, config["target_labelled_fraction"], config["seed"])
    return data.test.subset(~np.isin(data.test.subject, labelled))


def best_checkpoint(result: Any, metric: str) -> tuple[Any, dict[str, Any]] | None:
    """The kept checkpoint of a Tune ``Result`` with the highest ``metric``, and its reported metrics."""
    kept = [(checkpoint, metrics) for checkpoint, metrics in (result.best_checkpoints or [])
            if isinstance(metrics.get(metric), (int, float)) and not math.isnan(metrics[metric])]
    if not kept:
        return None
    return max(kept, key=lambda pair: pair[1][metric])


def load_trial_model(directory: str | Path) -> tuple[torch.nn.Module, PreparedData, dict[str, Any]]:
    """(model, prepared data, trial config) of a trial checkpoint directory, on the CPU.

    The data comes from the checkpoint's own config; its activity order and standardisation must match
    what the checkpoint was trained with, or the weights would be read against the wrong labels.
    """
    payload = load_checkpoint(Path(directory) / CHECKPOINT_FILE)
    config = payload["config"]  # the trial's validated config, as it trained
    data = prepare(data_config(config))
    trained_on = payload["trainer"]["metadata"]["data"]
    if trained_on["activity_names"] != data.activity_names:
        raise ValueError(f"the data prepared now has activities {data.activity_names}, the checkpoint was "
                         f"trained on {trained_on['activity_names']}: has the data changed since the search?")
    if not np.allclose(trained_on["standardiser"]["mean"], data.standardiser.mean):
        raise ValueError("the training windows prepared now differ from the search's (another standardisation): "
                         "has the data changed since the search?")
    model = build_model(config, data)
    model.load_state_dict(payload["trainer"]["model_state"])
    return model, data, config


def score_best_trial(result: Any, metric: str) -> HeldOutScore:
    """Score the best-on-``metric`` checkpoint of the trial behind Tune ``Result`` on its test split."""
    chosen = best_checkpoint(result, metric)
    if chosen is None:
        raise FileNotFoundError(f"trial {Path(result.path).name} kept no checkpoint with {metric}")
    checkpoint, reported = chosen
    with checkpoint.as_directory() as directory:
        model, data, config = load_trial_model(directory)
    windows = scored_test_windows(data, config)
    selection = {key: float(value) for key, value in reported.items()
                 if key.startswith("val/") and isinstance(value, (int, float))}
    return HeldOutScore(metrics=score(model, windows, config["domain_by"], data.domain_names),
                     epoch=int(reported["training_iteration"]), selection=selection, split=data.config.split,
                     subjects=sorted(set(windows.subject.tolist())), data=data)


def near_chance_warning(accuracy: float, data: PreparedData, config: Mapping[str, Any], epochs: int,
                        stopped_early: bool, test: Mapping[str, Any] | None = None) -> str | None:
    """A warning with the likely causes when validation ``accuracy`` is near what always answering the
    most common validation activity scores; None when it is clearly above that."""
    counts = data.val.class_counts() if len(data.val) else data.train.class_counts()
    majority = max(counts, key=counts.get)
    chance = counts[majority] / max(sum(counts.values()), 1)
    chance = max(chance, 1 / max(len(counts), 1))
    if not accuracy < chance + NEAR_CHANCE_MARGIN:
        return None
    causes = []
    steps = math.ceil(len(data.train) / config["batch_size"])
    if steps < FEW_STEPS_PER_EPOCH:
        causes.append(f"only {steps} optimiser steps per epoch ({len(data.train)} training windows, batch_size "
                      f"{config['batch_size']}): lower batch_size (--set batch_size=8) or add data")
    if epochs <= FEW_EPOCHS or stopped_early:
        stop = " (stopped early by the scheduler)" if stopped_early else ""
        causes.append(f"the best trial trained {epochs} epochs{stop}: raise --max-epochs, or ASHA's "
                      f"--grace-period so trials are not judged before they learn")
    scarce = {name: n for name, n in data.train.class_counts().items() if n < FEW_WINDOWS_PER_ACTIVITY}
    if scarce:
        causes.append(f"few training windows for {scarce}: more data, or shorter --set step_seconds=...")
    if test is not None:
        predicted = np.asarray(test["confusion"]).sum(axis=0)
        top = int(predicted.argmax())
        if predicted.sum() and predicted[top] / predicted.sum() >= ONE_CLASS_SHARE:
            causes.append(f"the model answers {test['activities'][top]!r} for {predicted[top] / predicted.sum():.0%} "
                          "of test windows: it learned the class frequencies, not the signals")
    causes.append("labels or units that do not match the signals (acc in g, gyro in rad/s; see 'Your own data')")
    return (f"the best trial is near chance: validation accuracy {accuracy:.3f} against {chance:.3f} for always "
            f"answering {majority!r}. Likely causes:\n" + "\n".join(f"  - {cause}" for cause in causes))
