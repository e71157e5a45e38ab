"""HuGaDB: the shared .npz (real slices only: HuGaDB has no licence, so none of it lives in the
repository), the official per-recording text files (written to a temporary folder from the shared file,
or generated), canonical units, the label mapping, placements and the amplified-gyroscope check."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tcnvae.data.recordings import ACC, GYRO
from tcnvae.data.sources import available_sources, gyro_check, hugadb, load_source, source_module
from tcnvae.data.taxonomy import ACTIVITIES

NPZ = "hugadb_raw.npz"
AFFECTED = {4, 12, 14, 15, 16, 17, 18}  # participants whose left-leg gyroscopes are amplified in every file
CLEAN = {1, 2, 3, 6, 7, 8, 10, 11}  # participants whose left-leg gyroscopes are sound in every file
COLUMNS = [f"{kind}_{imu}_{axis}" for imu in ("rf", "rs", "rt", "lf", "ls", "lt")
           for kind in ("acc", "gyro") for axis in "xyz"] + ["EMG_r", "EMG_l", "act"]


@pytest.fixture(scope="module")
def npz_path(shared_data_file) -> Path:
    return shared_data_file(NPZ)


@pytest.fixture(scope="module")
def kept(npz_path):
    """Both IMUs of every recording, amplified gyroscopes included (gyro='keep')."""
    return load_source("hugadb", npz_path, placement=["thigh", "shin"], gyro="keep")


def _participant(recording) -> int:
    return int(recording.subject.split(":")[1])


def _names(recording) -> np.ndarray:
    return np.asarray(recording.activity_names)[recording.labels]


def test_source_is_registered_and_follows_the_protocol():
    assert "hugadb" in available_sources()
    module = source_module("hugadb")
    assert module.NAME == "hugadb" and module.SAMPLE_RATE == pytest.approx(58.82)
    assert module.__doc__ and len(module.__doc__) > 200
    own = {a for a in module.ACTIVITY_MAP.values() if a not in ACTIVITIES}
    assert own == {"elevator_up", "elevator_down", "sitting_in_car"}
    assert module.ACTIVITY_MAP[6] == module.ACTIVITY_MAP[7] == "postural_transition"


@pytest.mark.real_data
def test_default_is_the_thigh_with_verified_gyroscopes_only(npz_path):
    recordings = load_source("hugadb", npz_path)
    assert all(r.attributes == {"placement": "thigh", "side": "left", "device": "imu", "gyro": "sound"}
               for r in recordings)
    assert all(r.channel_names == ACC + GYRO and r.sample_rate == 58.82 for r in recordings)
    participants = {_participant(r) for r in recordings}
    assert CLEAN <= participants and not participants & AFFECTED
    # g and rad/s: gravity alone while still; a walking thigh turns at a few rad/s, not hundreds
    still = np.concatenate([r.signal[np.isin(_names(r), ["sitting", "standing"]), :3] for r in recordings])
    assert np.median(np.linalg.norm(still, axis=1)) == pytest.approx(1.0, abs=0.03)
    walking = np.concatenate([r.signal[_names(r) == "walking", 3:] for r in recordings])
    assert 0.5 < np.median(np.linalg.norm(walking, axis=1)) < 5


@pytest.mark.real_data
def test_every_recording_and_label_with_gyro_keep(kept):
    thigh = [r for r in kept if r.attributes["placement"] == "thigh"]
    assert len(thigh) == 635 and len({r.subject for r in thigh}) == 18
    assert sum(len(r) for r in thigh) == 2111869
    counts = Counter(name for r in thigh for name in _names(r).tolist())
    # reference/datasets/hugadb.md's per-activity table, mapped by meaning
    assert counts["walking"] == 679073 and counts["cycling"] == 156560
    assert counts["ascending_stairs"] == 131604 and counts["descending_stairs"] == 116637
    assert counts["postural_transition"] == 24112 + 22373
    assert counts["elevator_up"] == 89144 and counts["sitting_in_car"] == 180573
    assert "stairs" not in counts


@pytest.mark.real_data
def test_amplified_gyroscopes_are_the_participants_the_authors_name(kept):
    verdicts: dict[tuple[str, int], Counter] = {}
    for r in kept:
        verdicts.setdefault((r.attributes["placement"], _participant(r)), Counter())[r.attributes["gyro"]] += 1
    for placement in ("thigh", "shin"):
        assert all(set(verdicts[placement, p]) == {"amplified"} for p in AFFECTED)
        assert all(set(verdicts[placement, p]) == {"sound"} for p in CLEAN)
    # at rest an amplified gyroscope reads its noise amplified
    def rest_noise(verdict: str) -> float:
        rest = [r.signal[np.isin(_names(r), ["sitting", "standing"]), 3:]
                for r in kept if r.attributes["gyro"] == verdict]
        return float(np.degrees(np.median(np.linalg.norm(np.concatenate(rest), axis=1))))

    assert rest_noise("amplified") > 3 * rest_noise("sound")


@pytest.mark.real_data
def test_gyro_check_tells_a_real_sound_gyroscope_from_the_same_one_amplified(kept):
    """A sound recording with walking and standing, and its gyroscope × 8 and clipped, as the corruption."""
    recording = next(r for r in kept if r.attributes["gyro"] == "sound" and r.attributes["placement"] == "thigh"
                     and {"walking", "standing"} <= set(_names(r).tolist()) and len(r) > 3000)
    codes = np.array([{"walking": 1, "standing": 8}.get(n, 0) for n in _names(recording)])
    gyro_dps = np.degrees(recording.signal[:, 3:])

    def verdict(gyro: np.ndarray) -> str:
        signatures = gyro_check.gyro_scale_signatures(
            recording.signal[:, :3], gyro, hugadb.SAMPLE_RATE, acc_full_scale=2.0, gyro_full_scale=2000.0,
            gait=codes == 1, posture=codes == 8)
        return gyro_check.classify(*signatures)

    assert verdict(gyro_dps) == "sound"
    assert verdict(np.clip(8 * gyro_dps, -2000, 2000)) == "amplified"


@pytest.mark.real_data
def test_gyro_omit_keeps_every_person_with_the_accelerometer(npz_path):
    recordings = load_source("hugadb", npz_path, placement="shin", gyro="omit")
    assert len(recordings) == 635 and len({r.subject for r in recordings}) == 18
    assert all(r.channel_names == ACC and r.attributes["gyro"] == "omitted" for r in recordings)
    assert {r.attributes["placement"] for r in recordings} == {"shin"}


# --- the official per-recording files -----------------------------------------------------------


def _write_official(path: Path, activity: str, columns: dict[str, np.ndarray], codes: np.ndarray) -> None:
    """One HuGaDB_v1_*.txt file: '#' lines, column names, tab-separated int rows (unnamed columns 0)."""
    table = np.zeros((len(codes), len(COLUMNS)), dtype=np.int64)
    for name, values in columns.items():
        table[:, COLUMNS.index(name)] = values
    table[:, -1] = codes
    header = f"#Activity\t{activity}\n#ActivityID\t{codes[0]}\n#Date\t2016-10-18 11:03\n" + "\t".join(COLUMNS) + "\n"
    path.write_text(header + "\n".join("\t".join(map(str, row)) for row in table.tolist()) + "\n")


@pytest.mark.real_data
def test_official_files_written_from_real_recordings_read_back_as_the_npz(tmp_path, npz_path, kept):
    with np.load(npz_path) as archive:
        names, offsets = archive["recording_names"], archive["offsets"]
        # walking_01_00's shin gyroscope cannot be judged on its own (too much of its gait is clipped or
        # too little tilts): it takes the verdict of participant 1's other file, as in the full data
        chosen = [int(np.flatnonzero(names == n)[0]) for n in
                  ("HuGaDB_v1_various_01_00.txt", "HuGaDB_v1_walking_01_00.txt", "HuGaDB_v1_various_14_00.txt")]
        files = {str(names[r]): str(r) for r in chosen}
        for r in chosen:
            signals = archive["signals"][offsets[r]:offsets[r + 1]]
            raw = {}
            for imu, first in (("ls", 0), ("lt", 6)):
                for i, axis in enumerate("xyz"):
                    raw[f"acc_{imu}_{axis}"] = np.rint(signals[:, first + i] * 32768 / 2).astype(np.int64)
                    raw[f"gyro_{imu}_{axis}"] = np.rint(signals[:, first + 3 + i] * 32768 / 2000).astype(np.int64)
            _write_official(tmp_path / str(names[r]), "walking", raw, archive["labels"][offsets[r]:offsets[r + 1]])
    from_files = load_source("hugadb", tmp_path, placement=["thigh", "shin"], gyro="keep")
    from_npz = {(r.source.split(" recording ")[1].split(" ")[0], r.attributes["placement"]): r
                for r in kept}
    assert len(from_files) == 6
    for recording in from_files:
        twin = from_npz[files[Path(recording.source.split(" ")[0]).name], recording.attributes["placement"]]
        np.testing.assert_allclose(recording.signal, twin.signal, rtol=1e-6, atol=1e-6)
        assert (recording.labels == twin.labels).all() and recording.subject == twin.subject
        assert recording.attributes == twin.attributes
    assert {r.attributes["gyro"] for r in from_files if r.subject == "hugadb:14"} == {"amplified"}
    assert {r.attributes["gyro"] for r in from_files if r.subject == "hugadb:1"} == {"sound"}


def test_generated_official_file_right_leg_units_and_labels(tmp_path):
    count = 600  # about 10 s of standing then sitting down: a still right thigh, x axis up
    codes = np.where(np.arange(count) < 500, 8, 6)
    columns = {"acc_rt_x": np.full(count, 16384), "gyro_rt_z": np.full(count, 164)}  # 1 g, 10 deg/s
    path = tmp_path / "HuGaDB_v1_standing_07_03.txt"
    _write_official(path, "standing", columns, codes)
    (recording,) = load_source("hugadb", path, placement="right_thigh", gyro="keep")
    assert recording.subject == "hugadb:7"
    assert recording.attributes["placement"] == "thigh" and recording.attributes["side"] == "right"
    np.testing.assert_allclose(recording.signal[0], [1.0, 0, 0, 0, 0, np.deg2rad(164 * 2000 / 32768)], rtol=1e-6)
    assert recording.activity_names[recording.labels[0]] == "standing"
    assert recording.activity_names[recording.labels[-1]] == "postural_transition"
    # a still gyroscope reading 10 deg/s is amplified noise: the one file of participant 7 cannot be
    # used under the default policy
    assert recording.attributes["gyro"] == "amplified"
    with pytest.raises(ValueError, match="none of the 1 recordings has a gyroscope verified sound"):
        load_source("hugadb", path, placement="right_thigh")


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        load_source("hugadb")
    with pytest.raises(ValueError, match="unknown HuGaDB placement"):
        load_source("hugadb", tmp_path, placement="wrist")
    with pytest.raises(ValueError, match="unknown HuGaDB gyro handling 'divide'"):
        load_source("hugadb", tmp_path, gyro="divide")
    with pytest.raises(FileNotFoundError, match="no HuGaDB_v1_"):
        load_source("hugadb", tmp_path)
    bad = tmp_path / "HuGaDB_v1_walking_03_01.txt"
    bad.write_text("#Activity\twalking\n" + "\t".join(COLUMNS) + "\n" + "1\t2\tx\n")
    with pytest.raises(ValueError, match="HuGaDB_v1_walking_03_01.txt is malformed"):
        load_source("hugadb", tmp_path)
    np.savez(tmp_path / "hugadb.npz", signals=np.zeros((4, 12)))
    with pytest.raises(ValueError, match="holds only the left shin and thigh"):
        load_source("hugadb", tmp_path / "hugadb.npz", placement="foot")
