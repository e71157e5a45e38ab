"""TensorBoard output of a trial: grouped scalars, an HParams session, a confusion-matrix image.

Each trial writes one TensorBoard run into its own trial directory, so ``tensorboard --logdir
<experiment folder>`` lists every trial as a run and overlays their curves. Scalar tags are the
reported metric names (``loss/kl``, ``schedule/beta``, ``val/domain/<name>`` ...): TensorBoard groups
by the part before the slash. The HParams session (written into the same run, not a sub-run) records
the trial's hyperparameters and names the metrics whose latest values fill the HParams table,
parallel-coordinates and scatter views.

Ray Tune's own TensorBoard logger is switched off (:func:`tune_logger_callbacks`): it would write a
second event stream into the same folders, every tag again under ``ray/tune/``, and a second HParams
session with Ray's view of the config, so each trial would show up twice in the HParams table.
Ray's CSV and JSON loggers stay: result grids and ``Tuner.restore`` read them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from tcnvae.beta_schedules import BETA_SCHEDULES
from tcnvae.curriculum import Stage
from tcnvae.tuning.config import LR_SCHEDULES, OBJECTIVES, OPTIMIZERS

# Metrics the HParams dashboard shows against the hyperparameters (their latest values).
HPARAM_METRICS: tuple[str, ...] = (
    "val/accuracy", "val/macro_f1", "val/worst_domain_accuracy", "val/loss",
    "val/domain_classifier_accuracy", "loss/total", "loss/recon", "loss/kl",
)
TARGET_METRIC = "target/accuracy"
STAGE_METRIC = "curriculum/stage"
# The allowed values of categorical hyperparameters: TensorBoard shows one trial's experiment summary
# for all runs, so each run declares every value any trial may have (for HParams' value filters).
CHOICES: dict[str, list[str]] = {
    "beta_schedule": list(BETA_SCHEDULES), "optimizer": list(OPTIMIZERS), "lr_schedule": list(LR_SCHEDULES),
    "objective": list(OBJECTIVES),
}
CONFUSION_TAG = "val/confusion_matrix"
CELL_PIXELS = 28


def hparam_value(value: Any) -> bool | int | float | str:
    """The HParams form of a config value: scalars as they are, anything else (lists, dicts, None)
    as compact JSON, so every trial has every hyperparameter and the table's columns line up."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def confusion_image(matrix: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """A confusion matrix as an RGB image (H, W, 3) uint8: rows true classes, columns predictions.

    Cell shade is the row-normalised rate (recall per true class, so rare classes stay visible) and
    each cell prints its count. Rows are labelled "i name", columns "i" to keep the image compact.
    """
    matrix = np.asarray(matrix)
    count = len(class_names)
    if matrix.shape != (count, count):
        raise ValueError(f"confusion matrix has shape {matrix.shape}, expected ({count}, {count}) "
                         f"for classes {list(class_names)}")
    font = ImageFont.load_default()
    labels = [f"{i} {name}" for i, name in enumerate(class_names)]
    corner = "true \\ predicted"
    left = max(int(font.getlength(text)) for text in [*labels, corner]) + 8
    top = 18
    image = Image.new("RGB", (left + count * CELL_PIXELS + 2, top + count * CELL_PIXELS + 2), "white")
    draw = ImageDraw.Draw(image)
    totals = matrix.sum(axis=1, keepdims=True)
    rates = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    for row in range(count):
        y = top + row * CELL_PIXELS
        draw.text((2, y + CELL_PIXELS // 3), labels[row], fill="black", font=font)
        for column in range(count):
            x = left + column * CELL_PIXELS
            shade = int(255 * (1 - rates[row, column]))
            draw.rectangle([x, y, x + CELL_PIXELS, y + CELL_PIXELS], fill=(shade, shade, 255), outline="grey")
            text = str(int(matrix[row, column]))
            ink = "white" if rates[row, column] > 0.5 else "black"
            draw.text((x + 3, y + CELL_PIXELS // 3), text, fill=ink, font=font)
    draw.text((2, 3), corner, fill="grey", font=font)
    for column in range(count):
        draw.text((left + column * CELL_PIXELS + 8, 3), str(column), fill="black", font=font)
    return np.asarray(image, dtype=np.uint8)


class TrialBoard:
    """The TensorBoard run of one trial (rank 0 of a multi-worker trial writes it alone).

    ``first_step`` > 1 means the trial resumed from a checkpoint (a crash, a PBT exploit, the next fit
    of a multi-worker trial): events a previous attempt wrote at or after that step are purged, so a
    crash between logging and checkpointing leaves no duplicates. The HParams session starts with the
    trial, so HParams shows the hyperparameters a trial *started* with (TensorBoard keeps the first
    session of a run); a PBT trial's later values are in its checkpoints' hyperparameter history.
    """

    def __init__(self, log_dir: str | Path, config: Mapping[str, Any], metric_tags: Sequence[str],
                 first_step: int = 1):
        self.writer = SummaryWriter(str(log_dir), purge_step=first_step if first_step > 1 else None)
        hparam_dict = {key: hparam_value(value) for key, value in sorted(config.items())}
        experiment, session_start, self._session_end = hparams(
            hparam_dict, dict.fromkeys(metric_tags, 0.0), hparam_domain_discrete=CHOICES)
        if first_step == 1:
            for summary in (experiment, session_start):
                self.writer.file_writer.add_summary(summary)

    def log_epoch(self, metrics: Mapping[str, float], step: int, confusion: np.ndarray | None = None,
                  class_names: Sequence[str] = ()) -> None:
        """Every metric as a scalar at ``step``; the confusion matrix as an image, latest = trial's end.

        The image is written every epoch because a trial can end at any report (ASHA stops it, PBT
        replaces it): the slider's last image is always the state the trial ended in.
        """
        for tag, value in metrics.items():
            if tag != "epoch":
                self.writer.add_scalar(tag, value, step)
        if confusion is not None:
            self.writer.add_image(CONFUSION_TAG, confusion_image(confusion, class_names), step, dataformats="HWC")
        self.writer.flush()

    def log_stage(self, stage: Stage, step: int, max_epochs: int) -> None:
        """A text entry (tag ``curriculum/stage``) where the curriculum enters a new stage: the
        ``curriculum/stage`` scalar shows *that* it changed, the text says what the stage does."""
        text = f"epoch {step} of {max_epochs}: **{stage.name}** — {stage.describe()}"
        self.writer.add_text(STAGE_METRIC, text, step)
        self.writer.flush()

    def close(self, completed: bool) -> None:
        """End the HParams session (status success) when the trial ran to its end, then close."""
        if completed:
            self.writer.file_writer.add_summary(self._session_end)
        self.writer.close()


def tune_logger_callbacks() -> list[Any]:
    """Ray Tune's CSV and JSON loggers, with its automatic TensorBoard logger switched off.

    Pass the result as ``RunConfig(callbacks=...)``. Sets ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1`` in
    this process (read when ``Tuner.fit`` starts), which is Ray's only switch for the TBX logger.
    """
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    return [CSVLoggerCallback(), JsonLoggerCallback()]
