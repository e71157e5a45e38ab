"""TensorBoard output of a search: one run per trial, and the experiment's own run at its root.

Each trial writes one TensorBoard run into its own trial directory, so ``tensorboard --logdir
<experiment folder>`` lists every trial as a run and overlays their curves. Scalar tags are the
reported metric names (``loss/kl``, ``schedule/beta``, ``val/domain/<name>`` ...): TensorBoard groups
by the part before the slash. The confusion matrix has a group of its own (``val_confusion_matrix``),
so the ``val`` group holds only validation scalars; :func:`time_series_url` opens Time Series with
the validation metrics pinned on top.

The search driver writes the experiment-level run at the folder's root (:func:`write_search_start`,
:func:`write_search_end`):

- the HParams *experiment summary*: only the searched hyperparameters, each with its domain (an
  interval, or the discrete set of choices), and the metrics with the objective first. TensorBoard
  ticks the first five of each (hyperparameters alphabetically), so what it shows on first open is
  what the search varied, not settings that are equal in every trial;
- the fixed settings, every trial's common config, as a Text table (``search/shared_settings``);
- at the end, the leaderboard as a Markdown table with the best trial marked (``search/leaderboard``)
  and the parameter importance (``search/parameter_importance``);
- at the end, the *session end* of every trial that has none: TensorBoard keeps the first session end
  a run holds, and a trial writes its own only when it runs all its epochs (Tune does not tell a
  function trial that the scheduler stopped it). The status follows the leaderboard (:data:`SESSION_STATUS`).

Every trial's session starts with its real start time and all its config values, so HParams' CSV/JSON
download holds the whole config; the dashboard shows the declared (searched) ones.

Ray Tune's own TensorBoard logger is switched off (:func:`tune_logger_callbacks`): it would write a
second event stream into the same folders, every tag again under ``ray/tune/``, and a second HParams
session with Ray's view of the config, so each trial would show up twice in the HParams table.
Ray's CSV and JSON loggers stay: result grids and ``Tuner.restore`` read them.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import struct_pb2
from PIL import Image, ImageDraw, ImageFont
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.search.sample import Categorical, Domain, Float, Integer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import image as image_summary
from torch.utils.tensorboard.summary import text as text_summary

from tcnvae.curriculum import Stage
from tcnvae.tuning.metrics import (HPARAM_METRICS, OBJECTIVES, STAGE_METRIC, TARGET_METRIC, VAL_ACCURACY, VAL_LOSS,
                                   VAL_MACRO_F1, VAL_WORST_DOMAIN_ACCURACY)

# Time Series groups cards by the tag's part before the first slash, sorts the groups by name and
# opens the first two: this name makes a group of its own, sorted just after ``val`` and closed, so
# a dozen images neither push the validation scalars to a second page nor fill the first screen.
CONFUSION_TAG = "val_confusion_matrix"
FIXED_SETTINGS_TAG = "search/shared_settings"  # sorts after the leaderboard in the Text tab
LEADERBOARD_TAG = "search/leaderboard"
IMPORTANCE_TAG = "search/parameter_importance"
CELL_PIXELS = 28
BEST_MARK = "★"

# Leaderboard status -> HParams session status. TensorBoard knows four (unknown, success, failure,
# running); a trial the scheduler stopped early ended normally but did not run its course, so it is
# neither a success nor a failure: it gets the one status left that claims neither.
SESSION_STATUS: dict[str, int] = {
    "completed": api_pb2.STATUS_SUCCESS,
    "stopped early": api_pb2.STATUS_UNKNOWN,
    "error": api_pb2.STATUS_FAILURE,
}


def hparam_value(value: Any) -> bool | int | float | str:
    """The HParams form of a config value: scalars as they are, anything else (lists, dicts, None)
    as compact JSON, so every trial has every hyperparameter and the table's columns line up."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _hparams_summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    """One HParams plugin record (the plugin reads the metadata; the tensor is a placeholder)."""
    return Summary(value=[Summary.Value(tag=tag, metadata=hparams_metadata.create_summary_metadata(data),
                                        tensor=hparams_metadata.NULL_TENSOR)])


def _proto_value(value: Any) -> struct_pb2.Value:
    value = hparam_value(value)
    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, (int, float)):
        return struct_pb2.Value(number_value=value)
    return struct_pb2.Value(string_value=value)


def _choices_info(name: str, choices: Sequence[Any]) -> api_pb2.HParamInfo:
    values = [hparam_value(choice) for choice in choices]
    if all(isinstance(value, bool) for value in values):
        kind = api_pb2.DATA_TYPE_BOOL
    elif all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values):
        kind = api_pb2.DATA_TYPE_FLOAT64
    else:
        kind, values = api_pb2.DATA_TYPE_STRING, [str(value) for value in values]
    info = api_pb2.HParamInfo(name=name, type=kind, differs=True)
    info.domain_discrete.values.extend(_proto_value(value) for value in values)
    return info


def _interval_info(name: str, low: float, high: float) -> api_pb2.HParamInfo:
    return api_pb2.HParamInfo(name=name, type=api_pb2.DATA_TYPE_FLOAT64, differs=True,
                              domain_interval=api_pb2.Interval(min_value=float(low), max_value=float(high)))


def hparam_info(name: str, domain: Any) -> api_pb2.HParamInfo:
    """The HParams declaration of a searched key from its search-space entry: a Tune domain
    (``tune.uniform``, ``tune.choice`` ...), a ``tune.grid_search`` dict, PB2's ``[low, high]`` bounds
    or an Optuna distribution. Ranges become intervals, choices discrete sets."""
    # Imported here, in the search driver: trial processes import this module too, and Optuna is no
    # part of a trial, and its import would slow every trial process's start (docs/results.md, "Smaller
    # measurements").
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(domain, (Float, Integer)):
        return _interval_info(name, domain.lower, domain.upper)
    if isinstance(domain, Categorical):
        return _choices_info(name, domain.categories)
    if isinstance(domain, Mapping) and "grid_search" in domain:
        return _choices_info(name, domain["grid_search"])
    if isinstance(domain, (FloatDistribution, IntDistribution)):
        return _interval_info(name, domain.low, domain.high)
    if isinstance(domain, CategoricalDistribution):
        return _choices_info(name, domain.choices)
    if isinstance(domain, (list, tuple)) and len(domain) == 2 and all(isinstance(v, (int, float)) for v in domain):
        return _interval_info(name, *domain)
    raise ValueError(f"search space key {name!r}: cannot declare {domain!r} to HParams; expected a Tune domain, "
                     "a grid_search, [low, high] bounds or an Optuna distribution")


def is_search_domain(value: Any) -> bool:
    """Whether a ``param_space`` value is searched (a Tune domain or a grid) rather than a fixed setting."""
    return isinstance(value, Domain) or (isinstance(value, Mapping) and "grid_search" in value)


def hparam_metrics(config: Mapping[str, Any]) -> list[str]:
    """The HParams metrics of a search on ``config``: its objective first, then :data:`HPARAM_METRICS`
    (and ``target/accuracy`` when a target domain is set)."""
    target = [TARGET_METRIC] if config.get("target_domain") else []
    return list(dict.fromkeys([OBJECTIVES[config["objective"]], *HPARAM_METRICS, *target]))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (TensorBoard's Text tab renders it); ``|`` in cells escaped."""
    def cell(value: Any) -> str:
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def _text(tag: str, markdown: str) -> Summary:
    """A Text-tab entry under exactly ``tag`` (``SummaryWriter.add_text`` appends ``/text_summary``)."""
    summary = text_summary(tag, markdown)
    summary.value[0].tag = tag
    return summary


def write_search_start(experiment: str | Path, searched: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """The experiment's own run at its root: the HParams experiment summary (the ``searched`` keys and
    their domains, the metrics objective first) and the fixed settings as a Text table.

    ``searched`` maps each searched config key to its search-space entry (see :func:`hparam_info`);
    ``config`` is the base config every trial starts from.
    """
    if not searched:
        raise ValueError("write_search_start needs the searched hyperparameters and their domains")
    infos = [hparam_info(name, domain) for name, domain in searched.items()]
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag), display_name=tag)
               for tag in hparam_metrics(config)]
    experiment_proto = api_pb2.Experiment(
        description=f"Searched: {', '.join(searched)}. Objective: {metrics[0].display_name} (maximised).",
        time_created_secs=time.time(), hparam_infos=infos, metric_infos=metrics)
    fixed = [(key, hparam_value(value)) for key, value in sorted(config.items()) if key not in searched]
    with SummaryWriter(str(experiment)) as writer:
        writer.file_writer.add_summary(_hparams_summary(
            hparams_metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment_proto)))
        writer.file_writer.add_summary(_text(FIXED_SETTINGS_TAG, "Settings every trial shares (the searched "
                                             "ones are in HParams):\n\n" + markdown_table(["setting", "value"], fixed)))


def _load_run(log_dir: str | Path) -> EventAccumulator:
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 1, "images": 1, "tensors": 1})
    events.Reload()
    return events


def _end_status(events: EventAccumulator) -> int | None:
    content = events.PluginTagToContent(hparams_metadata.PLUGIN_NAME).get(hparams_metadata.SESSION_END_INFO_TAG)
    return None if content is None else hparams_metadata.parse_session_end_info_plugin_data(content).status


def session_status(log_dir: str | Path) -> int | None:
    """The HParams session-end status a run holds (the first one written), None without one."""
    return _end_status(_load_run(log_dir))


def _last_logged(events: EventAccumulator) -> float | None:
    """When the run last logged a scalar (its last epoch), to the microsecond; None before any."""
    times = [events.Scalars(tag)[-1].wall_time for tag in events.Tags()["scalars"]]
    return max(times) if times else None


def _session_end(status: int, end_time: float) -> Summary:
    info = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=end_time)
    return _hparams_summary(hparams_metadata.SESSION_END_INFO_TAG,
                            plugin_data_pb2.HParamsPluginData(session_end_info=info))


def time_series_url(tags: Sequence[str], port: int = 6006) -> str:
    """TensorBoard's Time Series with the scalar cards of ``tags`` pinned on top (its ``pinnedCards``
    URL parameter), for a ``tensorboard --logdir ...`` on ``port``."""
    cards = json.dumps([{"plugin": "scalars", "tag": tag} for tag in tags], separators=(",", ":"))
    return f"http://localhost:{port}/?pinnedCards={urllib.parse.quote(cards)}#timeseries"


def _index(trial: str) -> str:
    return trial.split("_", 1)[0]


def end_sessions(rows: Sequence[Mapping[str, Any]]) -> None:
    """End the HParams session of every trial in ``rows`` (leaderboard rows) that has no end yet,
    with its leaderboard status (:data:`SESSION_STATUS`), at the time it last logged (else its last
    report's). Trials stored at a URI (``s3://``) are not local files and keep their sessions as they are.
    """
    for row in rows:
        path = Path(str(row["path"]))
        if not path.is_dir():
            continue
        events = _load_run(path)
        if _end_status(events) is None:
            end_time = _last_logged(events) or float((row["result"].metrics or {}).get("timestamp", time.time()))
            with SummaryWriter(str(path)) as writer:
                writer.file_writer.add_summary(_session_end(SESSION_STATUS[row["status"]], end_time))


def write_search_end(experiment: str | Path, rows: Sequence[Mapping[str, Any]], best: Mapping[str, Any],
                     hyperparameters: Sequence[str], metrics: Sequence[str],
                     importance: Mapping[str, float] | None) -> None:
    """At the end of a search: :func:`end_sessions`, then the leaderboard (best trial marked, with a
    link to Time Series with its metrics pinned) and the parameter importance as Text in the
    experiment's root run; prints that link.

    ``rows`` are the ranked leaderboard rows and ``best`` the chosen one
    (:func:`tcnvae.tuning.report.summarise_search`); ``importance`` maps hyperparameters to their
    share (:mod:`tcnvae.tuning.report`), empty or None when there is none.
    """
    end_sessions(rows)
    columns = list(dict.fromkeys([*metrics, VAL_ACCURACY, VAL_MACRO_F1, VAL_WORST_DOMAIN_ACCURACY]))
    pinned = time_series_url([*columns, VAL_LOSS])
    shown = [key for key in hyperparameters if any(row.get(key) is not None for row in rows)]
    # A trial by its index, the start of its run name: the name's other parts are the columns beside it.
    table = [[row["rank"], f"{BEST_MARK} {_index(row['trial'])}" if row["trial"] == best["trial"] else _index(row["trial"]),
              row["status"], row["epochs"], *(hparam_value(row.get(key)) for key in shown),
              *(row.get(key) for key in columns)] for row in rows]
    text = (f"{BEST_MARK} marks the best trial, **{best['trial']}**. Trials (by the index their run name starts "
            f"with) ranked by {metrics[0]} at their last epoch; stopped early = stopped by the scheduler "
            f"(HParams status Unknown). [Time Series with these metrics pinned]({pinned[pinned.index('/?'):]})\n\n"
            + markdown_table(["rank", "trial", "status", "epochs", *shown, *columns], table))
    print(f"TensorBoard Time Series with the validation metrics pinned: {pinned}")
    with SummaryWriter(str(experiment)) as writer:
        writer.file_writer.add_summary(_text(LEADERBOARD_TAG, text))
        if importance:
            bars = [[name, round(share, 3), "█" * max(1, round(share * 40))] for name, share in importance.items()]
            writer.file_writer.add_summary(_text(
                IMPORTANCE_TAG, f"fANOVA importance of the searched hyperparameters for {metrics[0]} (shares of "
                "its variance across trials; importance.json):\n\n"
                + markdown_table(["hyperparameter", "importance", ""], bars)))


def _text_width(font: ImageFont.ImageFont, text: str) -> int:
    return int(math.ceil(font.getlength(text)))


def confusion_image(matrix: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """A confusion matrix as an RGB image (H, W, 3) uint8: rows true classes, columns predictions.

    Cell shade is the row-normalised rate (recall per true class, so rare classes stay visible) and
    each cell prints its count. Both axes carry the activity names: rows on the left, columns
    written upwards above them, with the axis titles "true (rows)" and "predicted (columns)".
    """
    matrix = np.asarray(matrix)
    count = len(class_names)
    if matrix.shape != (count, count):
        raise ValueError(f"confusion matrix has shape {matrix.shape}, expected ({count}, {count}) "
                         f"for classes {list(class_names)}")
    font = ImageFont.load_default()
    left = max([_text_width(font, name) for name in class_names] + [_text_width(font, "true (rows)")]) + 8
    column_label = max([_text_width(font, name) for name in class_names] + [0]) + 6
    top = 16 + column_label
    image = Image.new("RGB", (left + count * CELL_PIXELS + 2, top + count * CELL_PIXELS + 2), "white")
    draw = ImageDraw.Draw(image)
    # Axis titles in ASCII: PIL's built-in bitmap font has no arrows.
    draw.text((left, 2), "predicted (columns)", fill="grey", font=font)
    draw.text((2, top - 14), "true (rows)", fill="grey", font=font)
    totals = matrix.sum(axis=1, keepdims=True)
    rates = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    for column, name in enumerate(class_names):  # column labels: text drawn sideways, then rotated upright
        label = Image.new("RGB", (column_label, CELL_PIXELS - 4), "white")
        ImageDraw.Draw(label).text((2, 4), name, fill="black", font=font)
        rotated = label.rotate(90, expand=True)
        image.paste(rotated, (left + column * CELL_PIXELS + 2, top - column_label - 1))
    for row in range(count):
        y = top + row * CELL_PIXELS
        draw.text((2, y + CELL_PIXELS // 3), class_names[row], fill="black", font=font)
        for column in range(count):
            x = left + column * CELL_PIXELS
            shade = int(255 * (1 - rates[row, column]))
            draw.rectangle([x, y, x + CELL_PIXELS, y + CELL_PIXELS], fill=(shade, shade, 255), outline="grey")
            ink = "white" if rates[row, column] > 0.5 else "black"
            draw.text((x + 3, y + CELL_PIXELS // 3), str(int(matrix[row, column])), fill=ink, font=font)
    return np.asarray(image, dtype=np.uint8)


def confusion_description(class_names: Sequence[str]) -> str:
    """The image's description (TensorBoard shows it on the card): what each axis is, in order."""
    names = ", ".join(class_names)
    return (f"Rows (y axis): true activity, top to bottom: {names}. Columns (x axis): predicted activity, "
            f"left to right: {names}. Shade: share of the true activity's windows (row-normalised); "
            "numbers: window counts.")


class TrialBoard:
    """The TensorBoard run of one trial (rank 0 of a multi-worker trial writes it alone).

    ``first_step`` > 1 means the trial resumed from a checkpoint (a crash, a PBT exploit, the next fit
    of a multi-worker trial): events a previous attempt wrote at or after that step are purged, so a
    crash between logging and checkpointing leaves no duplicates. The confusion matrix is drawn when
    the objective (``config["objective"]``) improves on this run's best and at the last epoch
    (``max_epochs``), not every epoch: drawing it is most of what logging an epoch costs. The HParams
    session starts with the trial (its start time and config), so HParams shows the hyperparameters a
    trial *started* with (TensorBoard keeps the first session of a run); a PBT trial's later values
    are in its checkpoints' hyperparameter history.
    """

    def __init__(self, log_dir: str | Path, config: Mapping[str, Any], first_step: int = 1):
        self.writer = SummaryWriter(str(log_dir), purge_step=first_step if first_step > 1 else None)
        self.objective = OBJECTIVES[config["objective"]]
        self.last_step = config["max_epochs"]
        self.best = -math.inf  # the objective's best so far in this process (a resumed run draws its first epoch)
        if first_step == 1:
            start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
            for key, value in sorted(config.items()):
                start.hparams[key].CopyFrom(_proto_value(value))
            self.writer.file_writer.add_summary(_hparams_summary(
                hparams_metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)))

    def log_epoch(self, metrics: Mapping[str, float], step: int, confusion: np.ndarray | None = None,
                  class_names: Sequence[str] = ()) -> None:
        """Every metric as a scalar at ``step``; the confusion matrix as an image where the objective
        improved and at the last epoch.

        So the slider's last image shows the trial's best epoch so far, or its end when it ran its
        course; a trial the scheduler stopped early keeps the image of its best epoch.
        """
        for tag, value in metrics.items():
            if tag != "epoch":
                self.writer.add_scalar(tag, value, step)
        score = metrics.get(self.objective, -math.inf)
        improved = score > self.best
        self.best = max(self.best, score)
        if confusion is not None and (improved or step >= self.last_step):
            summary = image_summary(CONFUSION_TAG, confusion_image(confusion, class_names), dataformats="HWC")
            summary.value[0].metadata.summary_description = confusion_description(class_names)
            summary.value[0].metadata.plugin_data.plugin_name = "images"  # what TensorBoard files it under
            self.writer.file_writer.add_summary(summary, step)
        self.writer.flush()

    def log_stage(self, stage: Stage, step: int, max_epochs: int) -> None:
        """A text entry (tag ``curriculum/stage``) where the curriculum enters a new stage: the
        ``curriculum/stage`` scalar shows *that* it changed, the text says what the stage does."""
        text = f"epoch {step} of {max_epochs}: **{stage.name}** — {stage.describe()}"
        self.writer.add_text(STAGE_METRIC, text, step)
        self.writer.flush()

    def close(self, completed: bool) -> None:
        """End the HParams session with success when the trial ran all its epochs, then close.

        Any other ending (stopped by the scheduler, an error) is written by the search driver at the
        end (:func:`write_search_end`), which knows from the leaderboard which it was.
        """
        if completed:
            self.writer.file_writer.add_summary(_session_end(api_pb2.STATUS_SUCCESS, time.time()))
        self.writer.close()


class _KeepsTheDriverCopy:
    """When a failed trial restarts, keeps this driver's log of the trial instead of storage's copy.

    Ray's loggers reopen a restarted trial's ``progress.csv``/``result.json`` by first copying the
    storage folder's copy over the driver's. That copy is uploaded at most every ``sync_period``
    (300 s), so a trial that failed within minutes of the last upload lost the epochs it had reported
    since: its history, best epoch and leaderboard row began again at the retry. The driver's file is
    the one it wrote itself and is never older; storage's copy is read only when the driver has none
    (a search resumed by a new driver, whose staging folder is new).
    """

    def _restore_from_remote(self, file_name: str, trial: Any) -> None:
        if not Path(trial.local_path, file_name).exists():
            super()._restore_from_remote(file_name, trial)


class _CSVLogger(_KeepsTheDriverCopy, CSVLoggerCallback):
    pass


class _JsonLogger(_KeepsTheDriverCopy, JsonLoggerCallback):
    pass


def tune_logger_callbacks() -> list[Any]:
    """Ray Tune's CSV and JSON loggers, with its automatic TensorBoard logger switched off, and a
    restarted trial's log kept whole (:class:`_KeepsTheDriverCopy`).

    Pass the result as ``RunConfig(callbacks=...)``. Sets ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1`` in
    this process (read when ``Tuner.fit`` starts), which is Ray's only switch for the TBX logger.
    """
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    return [_CSVLogger(), _JsonLogger()]
