"""WISDM 2019 phone and watch: the shared .npz files, the official raw text layout (written here from a
slice of the real data, and generated), canonical units, the label mapping, pooling with HAPT."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from tcnvae.data import prepare
from tcnvae.data.recordings import ACC, GYRO, STANDARD_GRAVITY
from tcnvae.data.sources import available_sources, load_source, source_module, wisdm2019
from tcnvae.data.taxonomy import ACTIVITIES
from tcnvae.tuning.config import data_config, validate_config

NPZ = {"wisdm2019_phone": "wisdm2019_phone_raw.npz", "wisdm2019_watch": "wisdm2019_watch_raw.npz"}
STILL = ["sitting", "standing"]


@pytest.fixture(scope="module")
def phone(shared_data_file):
    return load_source("wisdm2019_phone", shared_data_file(NPZ["wisdm2019_phone"]))


@pytest.fixture(scope="module")
def watch(shared_data_file):
    return load_source("wisdm2019_watch", shared_data_file(NPZ["wisdm2019_watch"]))


def _samples_of(recordings, activity: str) -> int:
    return sum(int((np.asarray(r.activity_names)[r.labels] == activity).sum()) for r in recordings)


def _still_gravity(recordings) -> float:
    magnitude = [np.linalg.norm(r.signal[np.isin(np.asarray(r.activity_names)[r.labels], STILL), :3], axis=1)
                 for r in recordings]
    return float(np.median(np.concatenate(magnitude)))


@pytest.mark.parametrize("name", sorted(NPZ))
def test_sources_are_registered_and_follow_the_protocol(name):
    assert name in available_sources()
    module = source_module(name)
    assert module.NAME == name and module.SAMPLE_RATE == 20.0
    assert module.__doc__ and len(module.__doc__) > 200
    # five activities have a taxonomy name, the other thirteen keep their own
    in_taxonomy = {a for a in module.ACTIVITY_MAP.values() if a in ACTIVITIES}
    assert in_taxonomy == {"walking", "running", "stairs", "sitting", "standing"}
    assert len(set(module.ACTIVITY_MAP.values())) == 18


@pytest.mark.real_data
def test_phone_npz(phone):
    assert len(phone) == 433 and len({r.subject for r in phone}) == 21
    assert sum(len(r) for r in phone) == 1343711
    first = phone[0]
    assert first.channel_names == ACC + GYRO and first.dataset == "wisdm2019_phone"
    assert first.subject == "wisdm2019_phone:1600"
    assert all(r.attributes == {"placement": "pocket", "device": "phone"} for r in phone)
    assert {r.sample_rate for r in phone} == {20.0}  # nominal; measured_rate=True: each recording's own
    # m/s² became g: gravity alone while sitting or standing
    assert _still_gravity(phone) == pytest.approx(1.0, abs=0.03)
    # the dataset's per-activity sample counts (reference/datasets/wisdm2019.md)
    assert _samples_of(phone, "stairs") == 75044
    assert _samples_of(phone, "running") == 71509  # B jogging
    assert _samples_of(phone, "playing_catch") == 71483  # O
    assert _samples_of(phone, "ascending_stairs") == _samples_of(phone, "descending_stairs") == 0
    names = first.activity_names
    assert "stairs" in names and "ascending_stairs" not in names and "descending_stairs" not in names
    assert all((r.labels >= 0).all() for r in phone)


@pytest.mark.real_data
def test_watch_npz(watch):
    assert len(watch) == 1244 and len({r.subject for r in watch}) == 46
    assert all(r.attributes == {"placement": "wrist", "device": "watch"} for r in watch)
    assert {r.sample_rate for r in watch} == {20.0}
    assert _still_gravity(watch) == pytest.approx(1.0, abs=0.03)
    assert _samples_of(watch, "stairs") == 161705
    assert _samples_of(watch, "walking") == 165292
    # the gyroscope is already rad/s: a resting wrist turns at a few hundredths of a rad/s
    still = np.concatenate([r.signal[np.isin(np.asarray(r.activity_names)[r.labels], STILL), 3:] for r in watch])
    assert 0.01 < np.median(np.linalg.norm(still, axis=1)) < 0.2


@pytest.mark.real_data
def test_measured_rates_on_request(shared_data_file):
    phone = load_source("wisdm2019_phone", shared_data_file(NPZ["wisdm2019_phone"]), measured_rate=True)
    watch = load_source("wisdm2019_watch", shared_data_file(NPZ["wisdm2019_watch"]), measured_rate=True)
    assert np.median([r.sample_rate for r in phone]) == pytest.approx(19.86, abs=0.01)
    assert np.median([r.sample_rate for r in watch]) == pytest.approx(20.03, abs=0.01)
    with pytest.raises(ValueError, match="measured_rate must be true or false"):
        load_source("wisdm2019_phone", shared_data_file(NPZ["wisdm2019_phone"]), measured_rate="yes")


# --- the official raw layout -------------------------------------------------------------------


def _write_stream(path: Path, subject: int, rows: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
    """Lines 'subject,letter,timestamp,x,y,z;' for each (letter, timestamps, xyz) block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as stream:
        for letter, times, xyz in rows:
            for t, (x, y, z) in zip(times.tolist(), xyz.tolist()):
                stream.write(f"{subject},{letter},{t},{x:.9g},{y:.9g},{z:.9g};\n")


@pytest.mark.real_data
def test_raw_layout_written_from_a_real_slice_reads_back_as_the_npz(tmp_path, shared_data_file):
    """Three real recordings of subject 1600, written as the official accel and gyro files (the gyro
    stream 3 ms behind the accelerometer's, as separate sensors are), read back to the same data."""
    path = shared_data_file(NPZ["wisdm2019_phone"])
    with np.load(path) as archive:
        offsets, rates, t0 = archive["offsets"], archive["rec_sample_rate"], archive["rec_t0_ns"]
        chosen = [r for r in range(len(archive["user"])) if archive["user"][r] == 1600][:3]
        pieces = [(archive["signals"][offsets[r]:offsets[r + 1]], archive["labels"][offsets[r]]) for r in chosen]
    accel_rows, gyro_rows = [], []
    for r, (signal, code) in zip(chosen, pieces):
        times = t0[r] + np.rint(np.arange(len(signal)) * 1e9 / rates[r]).astype(np.int64)
        letter = chr(65 + int(code))
        accel_rows.append((letter, times, signal[:, :3]))
        gyro_rows.append((letter, times + 3_000_000, signal[:, 3:]))
    root = tmp_path / "wisdm-dataset"
    _write_stream(root / "raw" / "phone" / "accel" / "data_1600_accel_phone.txt", 1600, accel_rows)
    _write_stream(root / "raw" / "phone" / "gyro" / "data_1600_gyro_phone.txt", 1600, gyro_rows)

    from_raw = load_source("wisdm2019_phone", tmp_path, measured_rate=True)
    from_npz = [r for r in load_source("wisdm2019_phone", path, measured_rate=True)
                if r.subject == "wisdm2019_phone:1600"]
    expected = {r.activity_names[r.labels[0]]: r for r in from_npz[:3]}
    assert sorted(r.activity_names[r.labels[0]] for r in from_raw) == sorted(expected)
    for recording in from_raw:
        twin = expected[recording.activity_names[recording.labels[0]]]
        assert len(recording) == len(twin) and recording.sample_rate == twin.sample_rate
        np.testing.assert_allclose(recording.signal, twin.signal, rtol=1e-6, atol=1e-7)
        assert recording.attributes == twin.attributes and recording.subject == twin.subject


def _block(letter: str, start_ns: int, count: int, step_ns: int = 50_000_000) -> tuple[str, np.ndarray, np.ndarray]:
    times = start_ns + step_ns * np.arange(count, dtype=np.int64)
    xyz = np.column_stack([np.zeros(count), np.full(count, STANDARD_GRAVITY), 0.01 * np.arange(count)])
    return letter, times, xyz


def test_raw_layout_gaps_split_and_short_pieces_drop(tmp_path, caplog):
    """Generated watch files: a 2 s hole in the gyro stream of block A splits it; a 0.5 s block is dropped."""
    letter, times, xyz = _block("A", 10**12, 200)
    keep = (times < times[80]) | (times >= times[120])
    accel = [(letter, times, xyz), _block("C", 2 * 10**12, 100), _block("D", 3 * 10**12, 10),
             _block("E", 4 * 10**12, 100)]  # no gyro block: left out
    gyro = [(letter, times[keep] + 1_000_000, xyz[keep] * 0.0), _block("C", 2 * 10**12, 100),
            _block("D", 3 * 10**12, 10)]
    root = tmp_path / "wisdm-dataset" / "raw" / "watch"
    _write_stream(root / "accel" / "data_1601_accel_watch.txt", 1601, accel)
    _write_stream(root / "gyro" / "data_1601_gyro_watch.txt", 1601, gyro)
    _write_stream(root / "accel" / "data_1602_accel_watch.txt", 1602, accel)  # no gyro file: left out
    with caplog.at_level(logging.INFO, logger="tcnvae.data.sources.wisdm2019"):
        recordings = load_source("wisdm2019_watch", tmp_path / "wisdm-dataset")
    summary = [(r.subject, r.activity_names[r.labels[0]], len(r)) for r in recordings]
    assert summary == [("wisdm2019_watch:1601", "walking", 80), ("wisdm2019_watch:1601", "walking", 80),
                       ("wisdm2019_watch:1601", "stairs", 100)]
    assert "subjects [1602] have only one of accel/gyro files" in caplog.text
    assert "subject 1601 has activities ['E'] in only one of its accel/gyro files" in caplog.text
    assert "1 subject-activity blocks gave no piece of at least 1 s" in caplog.text
    assert recordings[0].sample_rate == 20.0
    np.testing.assert_allclose(recordings[0].signal[:, :3].mean(axis=0)[:2], [0.0, 1.0], atol=1e-6)


def test_raw_layout_bad_files_are_named(tmp_path):
    root = tmp_path / "raw" / "phone"
    _write_stream(root / "accel" / "data_1600_accel_phone.txt", 1600, [_block("A", 0, 30)])
    _write_stream(root / "gyro" / "data_1600_gyro_phone.txt", 1600, [_block("A", 0, 30)])
    with open(root / "gyro" / "data_1600_gyro_phone.txt", "a") as stream:
        stream.write("1600,A,99999999999,0.1,abc,0.2;\n")
    with pytest.raises(ValueError, match="data_1600_gyro_phone.txt is malformed"):
        load_source("wisdm2019_phone", tmp_path)
    (root / "gyro" / "data_1600_gyro_phone.txt").write_text("1600,N,0,0.1,0.1,0.2;\n")
    with pytest.raises(ValueError, match=r"activity letters \['N'\]"):
        load_source("wisdm2019_phone", tmp_path)
    with pytest.raises(FileNotFoundError, match="no subject has both raw/watch/accel/data_<id>_accel_watch.txt"):
        load_source("wisdm2019_watch", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no WISDM 2019 folder wisdm-dataset .* found in"):
        load_source("wisdm2019_watch", tmp_path / "empty")


# --- pooled with HAPT through the data API the searches use -------------------------------------------


def _npz_slice(source: Path, target: Path, recordings: list[int], per_recording: tuple[str, ...]) -> Path:
    """The recordings ``recordings`` of a (signals, labels, offsets, user, ...) file as a smaller file."""
    with np.load(source) as archive:
        offsets = archive["offsets"]
        spans = [np.arange(offsets[r], offsets[r + 1]) for r in recordings]
        rows = np.concatenate(spans)
        arrays = {"signals": archive["signals"][rows], "labels": archive["labels"][rows],
                  "offsets": np.concatenate([[0], np.cumsum([len(s) for s in spans])])}
        arrays.update({key: archive[key][recordings] for key in ("user", *per_recording)})
    np.savez(target, **arrays)
    return target


@pytest.mark.real_data
def test_pooled_with_hapt_through_the_search_config(tmp_path, shared_data_file):
    with np.load(shared_data_file("hapt_raw.npz")) as archive:
        hapt_users = archive["user"]
    hapt_recordings = [int(np.flatnonzero(hapt_users == u)[0]) for u in np.unique(hapt_users)[:6]]
    with np.load(shared_data_file(NPZ["wisdm2019_phone"])) as archive:
        phone_users = archive["user"]
    phone_recordings = [int(r) for u in np.unique(phone_users)[:6] for r in np.flatnonzero(phone_users == u)[:5]]
    hapt = _npz_slice(shared_data_file("hapt_raw.npz"), tmp_path / "hapt.npz", hapt_recordings, ())
    phone = _npz_slice(shared_data_file(NPZ["wisdm2019_phone"]), tmp_path / "phone.npz", phone_recordings,
                       ("rec_sample_rate",))
    config = validate_config({
        "datasets": ["hapt", "wisdm2019_phone"],
        "data_paths": {"hapt": str(hapt), "wisdm2019_phone": str(phone)},
        "sample_rate": 20.0, "window_seconds": 2.5, "step_seconds": 1.25,
    })
    prepared = prepare(data_config(config))
    assert prepared.domain_names == ["hapt", "wisdm2019_phone"]
    assert prepared.channel_names == ACC + GYRO and prepared.window_length == 50
    names = prepared.activity_names
    # both kinds of stairs side by side: HAPT's directed ones and WISDM's undirected one
    assert {"ascending_stairs", "descending_stairs", "stairs", "lying", "typing"} <= set(names)
    assert names.index("descending_stairs") < names.index("stairs") < names.index("typing")
    pooled = [prepared.train, prepared.val, prepared.test]
    placements = {
        (d, p) for ws in pooled for d, p in zip(ws.dataset.tolist(), ws.attributes["placement"].tolist())
    }
    assert placements == {("hapt", "waist"), ("wisdm2019_phone", "pocket")}
    stairs_in = {d for ws in pooled for d in ws.dataset[ws.activity == names.index("stairs")].tolist()}
    assert stairs_in == {"wisdm2019_phone"}
