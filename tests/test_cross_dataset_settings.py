"""The cross-dataset data settings (issue 28): magnitude channels, gravity alignment, per-dataset
normalisation, rotations uniform over the sphere, the activities a deployment holds, and a held-out
dataset scored on the activities the sources teach.

On the synthetic source, whose domains differ as datasets do (each its own sensor placement, device
rotation and gain), so orientation and per-dataset statistics really differ between them."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from tcnvae.data.augment import Augmentation, xyz_triples
from tcnvae.data.normalise import Standardiser
from tcnvae.data.orientation import orient
from tcnvae.data.pipeline import DataConfig, build_windows, data_settings, prepare, split_windows
from tcnvae.evaluate import restrict_probabilities, score, training_activities
from tcnvae.model import TCNVAE

SOURCE = {"synthetic": {"num_domains": 3, "subjects_per_domain": 3, "seconds_per_activity": 10}}
TARGET = "synthetic_c"


def config(**settings) -> DataConfig:
    return DataConfig(datasets=["synthetic"], source_options=SOURCE, **settings)


def turned(signals: np.ndarray, channel_names: list[str], rotation: np.ndarray) -> np.ndarray:
    """Windows as a device turned by ``rotation`` would have recorded them: every triple alike."""
    out = signals.copy()
    for triple in xyz_triples(channel_names):
        out[..., triple] = signals[..., triple] @ rotation.T
    return out


def tiny_model(prepared) -> TCNVAE:
    torch.manual_seed(0)
    return TCNVAE(input_dim=len(prepared.channel_names), num_activities=prepared.num_activities,
                  num_domains=prepared.num_domains, hidden_dims=[8], latent_dim=4, head_hidden=16,
                  decoder_channels=8).eval()


@pytest.fixture(scope="module")
def plain():
    return build_windows(config())


def test_the_settings_are_declared_data_settings_off_by_default():
    declared = data_settings()
    assert {name: declared[name].default for name in
            ("magnitude_channels", "gravity_align", "normalise_by", "activities_present")} == {
        "magnitude_channels": False, "gravity_align": False, "normalise_by": "pooled", "activities_present": None}
    with pytest.raises(ValueError, match="normalise_by='window': expected one of pooled, dataset"):
        config(normalise_by="window").validate()
    with pytest.raises(ValueError, match="magnitude_channels=True needs xyz channel triples"):
        config(channel_set=["acc_x", "acc_y"], magnitude_channels=True).validate()
    with pytest.raises(ValueError, match="gravity_align=True needs total acceleration acc_x, acc_y, acc_z"):
        config(channel_set=["body_acc_x", "body_acc_y", "body_acc_z"], gravity_align=True).validate()
    with pytest.raises(ValueError, match="activities_present=\\[\\]: expected None or a non-empty list"):
        config(activities_present=[]).validate()


def test_magnitude_channels_are_each_triples_norm_and_no_rotation_changes_them(plain):
    names = plain.channel_names
    with_magnitudes = build_windows(config(magnitude_channels=True))
    assert with_magnitudes.channel_names == names + ["acc_mag", "gyro_mag"]
    np.testing.assert_array_equal(with_magnitudes.signals[..., :6], plain.signals)
    np.testing.assert_allclose(with_magnitudes.signals[..., 6], np.linalg.norm(plain.signals[..., :3], axis=-1),
                               rtol=1e-6)
    np.testing.assert_allclose(with_magnitudes.signals[..., 7], np.linalg.norm(plain.signals[..., 3:6], axis=-1),
                               rtol=1e-6)
    worn_otherwise, _ = orient(turned(plain.signals, names, Rotation.random(random_state=0).as_matrix()), names,
                               magnitude_channels=True)
    np.testing.assert_allclose(worn_otherwise[..., 6:], with_magnitudes.signals[..., 6:], rtol=1e-4, atol=1e-5)
    # The model is sized from them, and the run's metadata names them.
    prepared = prepare(config(magnitude_channels=True))
    assert prepared.metadata()["channel_names"] == names + ["acc_mag", "gyro_mag"]
    assert prepared.train.signals.shape[-1] == 8


def test_gravity_alignment_puts_mean_acceleration_on_z_and_leaves_only_the_heading(plain):
    names = plain.channel_names
    aligned = build_windows(config(gravity_align=True))
    mean = aligned.signals[..., :3].mean(axis=1)
    assert np.abs(mean[:, :2]).max() < 1e-4
    np.testing.assert_allclose(mean[:, 2], np.linalg.norm(plain.signals[..., :3].mean(axis=1), axis=1), rtol=1e-4)
    # Every triple turns alike: lengths and the angle between acceleration and rotation rate are kept.
    for signals in (aligned.signals, plain.signals):
        assert signals.shape == plain.signals.shape
    np.testing.assert_allclose(np.linalg.norm(aligned.signals[..., 3:], axis=-1),
                               np.linalg.norm(plain.signals[..., 3:], axis=-1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose((aligned.signals[..., :3] * aligned.signals[..., 3:]).sum(-1),
                               (plain.signals[..., :3] * plain.signals[..., 3:]).sum(-1), rtol=1e-3, atol=1e-4)
    # The same movement with the device worn at another angle aligns to the same windows up to a heading:
    # vertical components equal, horizontal lengths equal.
    again, _ = orient(turned(plain.signals, names, Rotation.random(random_state=1).as_matrix()), names,
                      gravity_align=True)
    for triple in ([0, 1, 2], [3, 4, 5]):
        np.testing.assert_allclose(again[..., triple[2]], aligned.signals[..., triple[2]], atol=1e-4)
        np.testing.assert_allclose(np.linalg.norm(again[..., triple[:2]], axis=-1),
                                   np.linalg.norm(aligned.signals[..., triple[:2]], axis=-1), atol=1e-4)
    # A device worn at different angles in two datasets: before alignment their gravity points apart.
    assert np.abs(plain.signals[..., :2].mean(axis=1)).max() > 0.2


def test_normalise_by_dataset_fits_each_dataset_on_its_training_side_and_a_held_out_one_on_its_own(caplog):
    settings = config(normalise_by="dataset", split=f"lodo:{TARGET}")
    with caplog.at_level(logging.WARNING, logger="tcnvae.data.normalise"):
        prepared = prepare(settings)
    assert f"{TARGET} has no training-side windows" in caplog.text and "transductive" in caplog.text
    raw = build_windows(settings)
    train = raw.subset(split_windows(raw, settings)["train"])
    for name in ("synthetic_a", "synthetic_b"):
        own = Standardiser.fit(train.signals[train.dataset == name])
        np.testing.assert_allclose(prepared.dataset_standardisers[name].mean, own.mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(prepared.dataset_standardisers[name].std, own.std, rtol=1e-5)
    target = raw.signals[raw.dataset == TARGET]
    np.testing.assert_allclose(prepared.dataset_standardisers[TARGET].mean, Standardiser.fit(target).mean,
                               rtol=1e-5, atol=1e-6)
    # Each dataset reaches the model standardised by its own statistics, the held-out one included.
    test = prepared.test.signals.reshape(-1, 6)
    assert np.abs(test.mean(axis=0)).max() < 1e-3 and np.abs(test.std(axis=0) - 1).max() < 1e-3
    pooled = prepare(config(split=f"lodo:{TARGET}"))
    assert pooled.dataset_standardisers is None
    assert np.abs(pooled.test.signals.reshape(-1, 6).mean(axis=0)).max() > 0.1  # what per-dataset removes
    assert sorted(prepared.metadata()["dataset_standardisers"]) == ["synthetic_a", "synthetic_b", TARGET]


def test_windows_trained_on_without_labels_get_the_same_channels_and_their_datasets_statistics():
    settings = config(split=f"unlabelled:{TARGET}", unlabelled_stretches=True, magnitude_channels=True,
                      gravity_align=True, normalise_by="dataset")
    prepared = prepare(settings)
    assert prepared.unlabelled.signals.shape[1:] == prepared.train.signals.shape[1:] == (128, 8)
    # The target's statistics are its training side's: its unlabelled windows, not its test windows.
    raw = build_windows(settings)
    unlabelled = raw.subset(split_windows(raw, settings)["unlabelled"])
    assert len(unlabelled) < (raw.dataset == TARGET).sum()
    target_side = prepared.unlabelled.signals[prepared.unlabelled.dataset == TARGET]
    raw_target_side = (target_side * prepared.standardiser.std + prepared.standardiser.mean)
    fitted = prepared.dataset_standardisers[TARGET]
    np.testing.assert_allclose(raw_target_side.reshape(-1, 8).mean(0), 0, atol=0.05)
    assert not np.allclose(fitted.mean, Standardiser.fit(raw.signals[raw.dataset == TARGET]).mean, atol=1e-3)


def test_sphere_rotations_are_uniform_over_orientations_and_turn_every_triple_alike(plain):
    window, names = orient(plain.signals[:1], plain.channel_names, magnitude_channels=True)
    batch = torch.as_tensor(np.repeat(window, 4000, axis=0))
    out = Augmentation(rotation_deg="sphere").build(names)(batch, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(out[..., :3].norm(dim=-1), batch[..., :3].norm(dim=-1), rtol=1e-4)
    np.testing.assert_allclose(out[..., 3:6].norm(dim=-1), batch[..., 3:6].norm(dim=-1), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose((out[..., :3] * out[..., 3:6]).sum(-1), (batch[..., :3] * batch[..., 3:6]).sum(-1),
                               rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(out[..., 6:], batch[..., 6:])  # the magnitudes

    def share_near_gravity(rotated: torch.Tensor) -> float:
        before = batch[0, :, :3].mean(0)
        after = rotated[..., :3].mean(1)
        cosine = after @ before / (after.norm(dim=1) * before.norm())
        return float((cosine > math.cos(math.radians(30))).float().mean())

    # Uniform orientations leave gravity within 30° of where it was in 1 - cos 30° over 2 = 6.7 % of windows;
    # a uniform angle up to 180° (rotation_deg=180, kept as it was) in about a quarter.
    assert abs(share_near_gravity(out) - (1 - math.cos(math.radians(30))) / 2) < 0.02
    half_turns = Augmentation(rotation_deg=180).build(names)(batch, torch.Generator().manual_seed(0))
    assert share_near_gravity(half_turns) > 0.2
    with pytest.raises(ValueError, match="rotation_deg=sphere needs xyz channel triples"):
        Augmentation(rotation_deg="sphere").for_channels(["acc_x", "acc_y"])


def test_activities_present_mask_the_others_and_unknown_names_are_refused_with_the_models_list():
    activities = ["sitting", "standing", "walking"]
    probabilities = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]], dtype=np.float32)
    np.testing.assert_allclose(restrict_probabilities(probabilities, activities, ["sitting", "standing"]),
                               [[0.625, 0.375, 0.0], [0.5, 0.5, 0.0]], rtol=1e-6)
    assert restrict_probabilities(probabilities, activities, None) is probabilities
    with pytest.raises(ValueError, match=r"unknown activities \['typing'\]; the model knows sitting, standing, "
                                         "walking"):
        restrict_probabilities(probabilities, activities, ["sitting", "typing"])
    with pytest.raises(ValueError, match="activities_present names \\['typing'\\], which synthetic do not hold; "
                                         "their activities: lying, sitting"):
        prepare(config(activities_present=["walking", "typing"]))


def test_a_held_out_dataset_is_scored_on_the_activities_the_sources_teach_and_names_the_others():
    prepared = prepare(config(split=f"lodo:{TARGET}"))
    model = tiny_model(prepared)
    running = prepared.activity_names.index("running")
    sources = prepared.train.subset(prepared.train.activity != running)  # sources that never ran
    scored = score(model, prepared.test, "dataset", prepared.domain_names,
                   scored_activities=training_activities(sources))
    shared = prepared.test.subset(prepared.test.activity != running)
    expected = score(model, shared, "dataset", prepared.domain_names)
    assert scored["unscored_activities"] == {"running": int((prepared.test.activity == running).sum())} != {}
    assert "running" not in scored["scored_activities"]
    assert {key: scored[key] for key in expected} == expected
    assert "unscored_activities" not in expected  # without scored_activities: as before
    # Restricted to the activities present, nothing else is ever predicted.
    present = ["sitting", "walking"]
    restricted = score(model, prepared.test, "dataset", prepared.domain_names, activities_present=present)
    others = [i for i, name in enumerate(prepared.activity_names) if name not in present]
    assert np.asarray(restricted["confusion"])[:, others].sum() == 0
    assert restricted["activities_present"] == present
    with pytest.raises(ValueError, match="nothing can be scored"):
        score(model, prepared.test.subset(prepared.test.activity == running), "dataset", prepared.domain_names,
              scored_activities=training_activities(sources))


def test_predict_makes_the_models_input_as_training_did_and_keeps_to_the_activities_named(plain):
    from tcnvae.final_model import model_channels
    from tcnvae.predict import PredictWarning, Predictor

    settings = config(split=f"lodo:{TARGET}", gravity_align=True, magnitude_channels=True, normalise_by="dataset")
    prepared = prepare(settings)
    model = tiny_model(prepared)
    card = {"activities": prepared.activity_names, "channel_set": "acc_gyro", "sample_rate": 50.0,
            "window_length": prepared.window_length, "hop_seconds": settings.step_seconds,
            "normaliser": prepared.standardiser.state_dict(), "gravity_align": True, "magnitude_channels": True,
            "normalise_by": "dataset"}
    assert model_channels(card) == prepared.channel_names
    predictor = Predictor(card, model)
    target = plain.subset(plain.dataset == TARGET)  # raw windows, in physical units, as a user has them
    assert np.array_equal(target.activity, prepared.test.activity)
    predictions = predictor.predict(target, top_k=len(prepared.activity_names))
    rows = predictions.rows
    suffixes = [""] + [f"_{k}" for k in range(2, len(prepared.activity_names) + 1)]
    predicted = np.array([[dict((row[f"activity{s}"], row[f"probability{s}"]) for s in suffixes)[name]
                           for name in prepared.activity_names] for row in rows])
    with torch.no_grad():
        expected = torch.softmax(model(torch.as_tensor(prepared.test.signals))[3], dim=1).numpy()
    np.testing.assert_allclose(predicted, expected, atol=2e-6)
    assert [row["activity"] for row in rows] == [prepared.activity_names[i] for i in expected.argmax(1)]
    # Only the activities named are predicted, each row renormalised over them.
    named = predictor.predict(target, activities=["sitting", "walking"])
    assert {row["activity"] for row in named.rows} <= {"sitting", "walking"}
    assert all(abs(row["probability"] + row["probability_2"] - 1) < 1e-5 for row in named.rows)
    with pytest.raises(ValueError, match=r"unknown activities \['typing'\]; the model knows lying"):
        predictor.predict(target, activities=["typing"])
    # A short input stands for little movement: standardised by its own statistics, with a warning.
    with pytest.warns(PredictWarning, match="normalise_by=dataset.*input has 5 windows"):
        predictor.predict(target.subset(np.arange(5)))


def test_a_final_model_records_them_on_its_card_and_predict_repeats_them(plain, tmp_path, capsys):
    import contextlib
    import io
    import json

    from helpers import TINY_MODEL_FLAGS, recipe
    from tcnvae.predict import main as predict_main

    best_config = tmp_path / "best_config.json"
    best_config.write_text("{}")
    flags = ["--set", 'datasets=["synthetic"]', "--set", f"source_options={json.dumps(SOURCE)}",
             "--set", f"split=lodo:{TARGET}", "--set", "magnitude_channels=true", "--set", "gravity_align=true",
             "--set", "normalise_by=dataset", "--set", 'activities_present=["sitting", "standing", "walking"]']
    with contextlib.redirect_stdout(io.StringIO()):
        folder = recipe("final_model").main(["--config", str(best_config), *TINY_MODEL_FLAGS, *flags, "--epochs", "1",
                                             "--members", "1", "--output", str(tmp_path / "model")])
    card = json.loads((folder / "model.json").read_text())
    assert [channel["name"] for channel in card["channels"]][-2:] == ["acc_mag", "gyro_mag"]
    assert card["channels"][-1]["unit"] == "rad/s"
    assert (card["gravity_align"], card["magnitude_channels"], card["normalise_by"]) == (True, True, "dataset")
    assert card["activities_present"] == ["sitting", "standing", "walking"]
    assert card["test"]["activities_present"] == card["activities_present"]
    assert card["test"]["unscored_activities"] == {}  # the sources taught every activity the target holds

    recording = tmp_path / "target.npz"
    target = plain.subset(plain.dataset == TARGET)
    np.savez(recording, signals=target.signals, channel_names=np.array(target.channel_names),
             sample_rate=target.sample_rate)
    predictions = predict_main([str(folder), str(recording)])
    assert {row["activity"] for row in predictions.rows} <= {"sitting", "standing", "walking"}  # the card's
    capsys.readouterr()
    narrowed = predict_main([str(folder), str(recording), "--activities", "walking, sitting"])
    assert {row["activity"] for row in narrowed.rows} <= {"walking", "sitting"}
    with pytest.raises(SystemExit) as exit_info:
        predict_main([str(folder), str(recording), "--activities", "walking,typing"])
    assert exit_info.value.code == 2
    assert "error: activities present: unknown activities ['typing']; the model knows lying" in capsys.readouterr().err
