"""A model folder is one unit: written whole and renamed into place, replaced only with --force; predict
checks that card and weights belong together, and refuses an input CSV it would misread.

One tiny final model (1 member, 1 epoch, synthetic data, ~10 s) serves the module; each test works on a
copy of it."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tcnvae.final_model as final_model
from tcnvae.checkpoints import load_checkpoint, save_checkpoint
from tcnvae.data import load_source
from tcnvae.final_model import (CARD_FILE, WEIGHTS_FILE, ModelCardWarning, final_data, load_model_folder,
                                read_search_choice, write_final_model)
from tcnvae.model import TCNVAE
from tcnvae.predict import Predictor, main as predict_main
from tcnvae.tuning.cli import parse_assignments

from helpers import SEARCHES, TINY_FLAGS, recipe

FINAL = [*TINY_FLAGS, "--epochs", "1", "--members", "1"]


def quietly(function, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args, **kwargs)


@pytest.fixture(scope="module")
def best_config(tmp_path_factory) -> Path:
    """A best_config.json of the defaults (the tiny model and data come from FINAL's --set flags)."""
    path = tmp_path_factory.mktemp("search") / "best_config.json"
    path.write_text("{}")
    return path


@pytest.fixture(scope="module")
def built(best_config) -> Path:
    """The model folder searches/final_model.py wrote."""
    return quietly(recipe("final_model").main, ["--config", str(best_config), *FINAL])


@pytest.fixture(scope="module")
def recording_csv(tmp_path_factory) -> Path:
    """An unseen synthetic recording (50 Hz, 20 s) as a CSV with a time column in seconds."""
    unseen = load_source("synthetic", num_domains=1, subjects_per_domain=1, seconds_per_activity=20, seed=99)[0]
    signal_ = unseen.signal[: 20 * 50]
    path = tmp_path_factory.mktemp("recording") / "recording.csv"
    times = np.arange(len(signal_)) / unseen.sample_rate
    np.savetxt(path, np.column_stack([times, signal_]), delimiter=",", comments="",
               header=",".join(["time", *unseen.channel_names]), fmt="%.6f")
    return path


@pytest.fixture
def model(built, tmp_path) -> Path:
    """A copy of the module's model folder, for this test to change."""
    return Path(shutil.copytree(built, tmp_path / "model"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def siblings(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.parent.iterdir() if path.name != folder.name)


def refused(function, argv: list[str], capsys) -> str:
    """The `error:` line with which a command line ``function(argv)`` exits with status 2."""
    with pytest.raises(SystemExit) as exit_info:
        quietly(function, argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def rewrite_card(folder: Path, change) -> None:
    card = json.loads((folder / CARD_FILE).read_text())
    change(card)
    (folder / CARD_FILE).write_text(json.dumps(card))


# -- the model folder is written as one unit ----------------------------------------------------------

def test_an_existing_model_folder_is_refused_without_force_before_training(best_config, model, monkeypatch, capsys):
    script = recipe("final_model")
    monkeypatch.setattr(script, "train_final_model", lambda *args: pytest.fail("trained before refusing"))
    before = snapshot(model)
    message = refused(script.main, ["--config", str(best_config), *FINAL, "--output", str(model)], capsys)
    assert f"error: {model} already holds a final model; pass --force" in message
    assert snapshot(model) == before

    # A folder that is not a model folder is never replaced, --force or not; nor is a file.
    (model / "notes.txt").write_text("mine")
    message = refused(script.main, ["--config", str(best_config), *FINAL, "--output", str(model), "--force"], capsys)
    assert f"{model} holds what no model folder does (notes.txt), which replacing it would lose" in message
    message = refused(script.main, ["--config", str(best_config), *FINAL, "--output", str(model / "notes.txt")], capsys)
    assert "is a file" in message


def test_force_replaces_the_model_folder_whole(best_config, model, recording_csv):
    old = snapshot(model)
    output = quietly(recipe("final_model").main, ["--config", str(best_config), *FINAL, "--output", str(model),
                                                  "--force", "--set", "seed=7"])
    assert output == model
    new = snapshot(model)
    assert set(new) == set(old) and new[WEIGHTS_FILE] != old[WEIGHTS_FILE]
    assert json.loads(new[CARD_FILE])["trained_on"]["seeds"] == [7]
    assert siblings(model) == []  # neither the new folder's staging copy nor the old one left beside it
    assert len(Predictor.load(model).predict(recording_csv).rows) > 0


def test_a_write_failing_midway_leaves_the_old_folder_intact_and_no_half_folder(best_config, model, monkeypatch):
    tiny = parse_assignments(TINY_FLAGS[1::2], "--set")
    choice = read_search_choice(config_file=best_config, epochs=1, overrides=tiny)
    data = final_data(choice.config)
    _, trained = load_model_folder(model)  # the same config's model: any does, only the writing is tested here
    old = snapshot(model)

    def disk_full(*args):  # the weights and the export are written; the card's write fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(final_model, "write_json", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_final_model(model, trained, data, choice, replace=True)
    assert snapshot(model) == old and siblings(model) == []
    monkeypatch.undo()

    # A new folder failing the same way leaves nothing at all.
    monkeypatch.setattr(final_model, "write_json", disk_full)
    with pytest.raises(OSError):
        write_final_model(model.parent / "new", trained, data, choice)
    assert siblings(model) == []


def test_a_replacement_interrupted_between_its_renames_is_named(best_config, model, capsys):
    aside = model.parent / f".{model.name}.replaced"
    model.rename(aside)  # the moment between moving the old folder aside and renaming the new one in
    message = refused(predict_main, [str(model), "unused.csv"], capsys)
    assert f"the previous model lies in {aside}: rename that folder to {model.name}" in message
    argv = ["--config", str(best_config), *FINAL, "--output", str(model)]
    message = refused(recipe("final_model").main, argv, capsys)
    assert f"its previous model lies in {aside}" in message and "--force" in message


@pytest.mark.slow
def test_a_final_model_killed_while_writing_leaves_the_old_folder(best_config, model, recording_csv):
    """SIGKILL the script as soon as its new folder appears beside the old one: the old folder is whole."""
    old = snapshot(model)
    process = subprocess.Popen([sys.executable, str(SEARCHES / "final_model.py"), "--config", str(best_config),
                                *FINAL, "--output", str(model), "--force"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if any(name.endswith(".new") for name in siblings(model)):
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the script ended before its new folder appeared"
    now = snapshot(model)
    # The old folder; or, if the kill came after the rename (a window of microseconds), the new one whole.
    assert now == old or (set(now) == set(old) and now[WEIGHTS_FILE] != old[WEIGHTS_FILE])
    assert len(Predictor.load(model).predict(recording_csv).rows) > 0


# -- card and weights belong together -----------------------------------------------------------------

def test_a_card_with_missing_keys_is_refused_naming_them(model, recording_csv, capsys):
    rewrite_card(model, lambda card: (card.pop("activities"), card.pop("normaliser")))
    message = refused(predict_main, [str(model), str(recording_csv)], capsys)
    assert f"model card {model / CARD_FILE} lacks activities, normaliser, which predict reads" in message
    assert "Traceback" not in message


def test_weights_from_another_model_are_refused(best_config, model, recording_csv, tmp_path, capsys):
    other = quietly(recipe("final_model").main, ["--config", str(best_config), *FINAL, "--set", "seed=5",
                                                 "--output", str(tmp_path / "other")])
    shutil.copy(other / WEIGHTS_FILE, model / WEIGHTS_FILE)
    message = refused(predict_main, [str(model), str(recording_csv)], capsys)
    assert f"{model / WEIGHTS_FILE} does not belong to the card {model / CARD_FILE}: its sha256 is" in message
    assert "copy it whole" in message

    # A weights file cut short is named as such, not as another model's.
    (model / WEIGHTS_FILE).write_bytes((other / WEIGHTS_FILE).read_bytes()[:1000])
    assert "is truncated or not a checkpoint" in refused(predict_main, [str(model), str(recording_csv)], capsys)


@pytest.mark.parametrize("change, expected", [
    (lambda card: card["activities"].reverse(), "lists the activities in another order or under other names"),
    (lambda card: card.update(sample_rate=100.0), "has another sample_rate than the weights were trained with"),
    (lambda card: card["normaliser"]["std"].reverse(), "has another normaliser than the weights were trained with"),
])
def test_a_card_edited_away_from_its_weights_is_refused(model, recording_csv, capsys, change, expected):
    rewrite_card(model, change)
    message = refused(predict_main, [str(model), str(recording_csv)], capsys)
    assert f"model card {model / CARD_FILE} {expected}" in message and "restore the card" in message


def test_a_card_without_a_digest_loads_with_a_warning_and_its_shapes_checked(model, recording_csv):
    rewrite_card(model, lambda card: card["files"].pop("sha256"))
    payload = load_checkpoint(model / WEIGHTS_FILE)
    del payload["trained_with"]  # weights as written before they carried their card's facts
    save_checkpoint(payload, model / WEIGHTS_FILE)
    with pytest.warns(ModelCardWarning, match="checked by their shapes only"):
        card, loaded = load_model_folder(model)
    assert len(Predictor(card, loaded).predict(recording_csv).rows) > 0

    # Weights of a model with another number of activities do not fit the card.
    shape = {**payload["model_config"], "num_activities": payload["model_config"]["num_activities"] - 1}
    save_checkpoint({"model_state": TCNVAE.from_config(shape).state_dict(), "model_config": shape},
                    model / WEIGHTS_FILE)
    with pytest.warns(ModelCardWarning), pytest.raises(ValueError, match=(
            f"does not fit the model in {WEIGHTS_FILE} \\(activities: the card has {len(card['activities'])}, "
            f"the model {shape['num_activities']}\\)")):
        load_model_folder(model)


# -- predict's input ----------------------------------------------------------------------------------

def retimed(source: Path, target: Path, change_times) -> Path:
    """``source``'s CSV with its time column changed by ``change_times(times)``."""
    values = np.loadtxt(source, delimiter=",", skiprows=1)
    values[:, 0] = change_times(values[:, 0])
    header = source.read_text().splitlines()[0]
    np.savetxt(target, values, delimiter=",", comments="", header=header, fmt="%.6f")
    return target


def swapped(times):
    times[[10, 11]] = times[[11, 10]]
    return times


def with_gap(times):
    times[500:] += 30.0  # half a minute lost after row 500
    return times


@pytest.mark.parametrize("change_times, expected", [
    (swapped, "column 'time' must rise (sample times in seconds), but falls or repeats at 1 rows: "
              "line 13 (0.2 after 0.22); sort the rows by time"),
    (lambda times: times * 1000, "column 'time' steps by 20 (median), 0.05 Hz if seconds, slower than any activity "
                                 "sensor; it looks like milliseconds: divide the column by 1000"),
    (lambda times: times * 1e9, "it looks like nanoseconds: divide the column by 1e+09"),
    (with_gap, "column 'time' has 1 gaps of over 10 samples: 30 s before line 502 (9.98 to 40)"),
])
def test_predict_refuses_a_time_column_it_would_misread(built, recording_csv, tmp_path, capsys, change_times, expected):
    table = retimed(recording_csv, tmp_path / "times.csv", change_times)
    assert expected in refused(predict_main, [str(built), str(table)], capsys)


HEADER = "time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n"


@pytest.mark.parametrize("text, expected", [
    ("", "is empty: give a header naming the channels"),
    (HEADER, "has a header (time, acc_x, acc_y, acc_z, gyro_x, gyro_y, gyro_z) but no rows"),
    ((HEADER.replace("\n", ",temp_°C\n") + "0,0,0,1,0,0,0,21\n").encode("latin-1"),
     "is not UTF-8 text (byte 0xb0 on line 1); save it as UTF-8"),
    (HEADER.replace(",", ";") + "0;0;0;1;0;0;0\n", "is separated by semicolons, not commas"),
])
def test_predict_refuses_an_unreadable_csv_with_what_it_is(built, tmp_path, capsys, text, expected):
    table = tmp_path / "input.csv"
    table.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert f"{table} {expected}" in refused(predict_main, [str(built), str(table)], capsys)


def test_predict_reads_a_csv_with_a_byte_order_mark(built, recording_csv, tmp_path):
    marked = tmp_path / "excel.csv"
    marked.write_bytes(b"\xef\xbb\xbf" + recording_csv.read_bytes())
    with_mark = quietly(predict_main, [str(built), str(marked)])
    assert with_mark.rows == quietly(predict_main, [str(built), str(recording_csv)]).rows


def test_predict_refuses_a_folder_as_output_or_input_before_the_model_runs(built, recording_csv, tmp_path,
                                                                          monkeypatch, capsys):
    monkeypatch.setattr("tcnvae.predict.load_model_folder", lambda *args: pytest.fail("loaded the model first"))
    message = refused(predict_main, [str(built), str(recording_csv), "--output", str(tmp_path)], capsys)
    assert (f"error: --output {tmp_path} is a folder; give the CSV file to write, e.g. {tmp_path / 'predicted.csv'}"
            in message)
    monkeypatch.undo()
    assert f"error: input {tmp_path} is a folder" in refused(predict_main, [str(built), str(tmp_path)], capsys)
