"""Bad files through the public API: torn checkpoints (with the fallback to older ones), unwritable
checkpoint folders, data files that are not what their name says, edited replay files, and the mode
result files get. No Ray."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import torch

from tcnvae.checkpoints import load_checkpoint, save_checkpoint, write_json
from tcnvae.data import load_source
from tcnvae.data.loaders import WindowLoader
from tcnvae.model import TCNVAE
from tcnvae.trainer import OvernightTrainer, TCNVAETrainer
from tcnvae.tuning.config import validate_config
from tcnvae.tuning.trial import CHECKPOINT_FILE, TrialState, load_trial_checkpoint, save_trial_checkpoint
from tcnvae.tuning.trial import history_entry, load_replay, write_replay


def tiny_model(seed: int = 0) -> TCNVAE:
    torch.manual_seed(seed)
    return TCNVAE(input_dim=3, latent_dim=2, num_activities=2, num_domains=2, hidden_dims=[4], head_hidden=4,
                  decoder_channels=4)


def tiny_loaders() -> tuple[WindowLoader, WindowLoader]:
    generator = torch.Generator().manual_seed(0)
    windows = torch.randn(32, 16, 3, generator=generator)
    activity = torch.randint(0, 2, (32,), generator=generator)
    domain = torch.randint(0, 2, (32,), generator=generator)
    return (WindowLoader(windows, activity, domain, batch_size=16, shuffle=True, seed=0),
            WindowLoader(windows, activity, domain, batch_size=16))


def overnight(folder) -> OvernightTrainer:
    trainer = OvernightTrainer(tiny_model(), "cpu", checkpoint_dir=folder, keep_last=3)
    trainer.verbose = False
    return trainer


def truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture
def unwritable(tmp_path):
    """A folder this process may not create files in (sysfs for root, which ignores permissions)."""
    if os.geteuid() == 0:
        return "/sys/tcnvae-checkpoints"
    place = tmp_path / "read-only"
    place.mkdir(mode=0o500)
    return place


# -- checkpoints ------------------------------------------------------------------------------------------

def test_overnight_trainer_checks_its_checkpoint_folder_at_construction(tmp_path, unwritable):
    blocker = tmp_path / "checkpoints"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(ValueError, match=f"checkpoint_dir {blocker}: {blocker} is a file"):
        overnight(blocker)
    with pytest.raises(ValueError, match="checkpoint_dir .* cannot be written"):
        overnight(f"{unwritable}/run")
    overnight(tmp_path / "new" / "run")  # a folder still to be made is fine, and not made yet
    assert not (tmp_path / "new").exists()


def test_a_truncated_newest_checkpoint_falls_back_to_the_older_one_and_is_kept_aside(tmp_path):
    train, val = tiny_loaders()
    overnight(tmp_path).fit(train, val, epochs=2)
    newest = tmp_path / "epoch_00002.pt"
    truncate(newest)
    resumed = overnight(tmp_path)
    with pytest.warns(UserWarning, match=f"checkpoint {newest} is truncated.*set aside as epoch_00002.pt.corrupt"):
        resumed.fit(train, val, epochs=3)
    assert [record["epoch"] for record in resumed.history] == [1, 2, 3]  # epoch 2 redone from epoch 1's state
    assert (tmp_path / "epoch_00002.pt.corrupt").is_file()
    assert load_checkpoint(tmp_path / "epoch_00002.pt")["epoch"] == 2  # rewritten by the redone epoch


def test_when_every_checkpoint_is_torn_the_error_names_them(tmp_path):
    train, val = tiny_loaders()
    overnight(tmp_path).fit(train, val, epochs=1)
    truncate(tmp_path / "epoch_00001.pt")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no readable checkpoint: .*epoch_00001.pt"):
        overnight(tmp_path).fit(train, val, epochs=2)


def test_a_trial_resumes_from_its_previous_checkpoint_when_the_latest_is_torn(tmp_path):
    trainer = TCNVAETrainer(tiny_model(), "cpu")
    for epoch in (1, 2):
        trainer.epoch = epoch
        folder = tmp_path / f"checkpoint_{epoch:06d}"
        folder.mkdir()
        save_trial_checkpoint(folder, trainer, TrialState([{"epoch": epoch - 1}], {}), {})
    truncate(tmp_path / "checkpoint_000002" / CHECKPOINT_FILE)
    restored = TCNVAETrainer(tiny_model(seed=1), "cpu")
    with pytest.warns(UserWarning, match=f"{tmp_path / 'checkpoint_000002' / CHECKPOINT_FILE} is truncated"):
        state = load_trial_checkpoint(tmp_path / "checkpoint_000002", restored)
    assert restored.epoch == 1 and state.hyperparameter_history == [{"epoch": 0}]
    assert (tmp_path / "checkpoint_000002" / f"{CHECKPOINT_FILE}.corrupt").is_file()


def test_a_downloaded_trial_checkpoint_never_falls_back_to_an_unrelated_folder(tmp_path):
    """Tune's copies of remote checkpoints live in temporary folders: their neighbours are other copies."""
    trainer = TCNVAETrainer(tiny_model(), "cpu")
    for name in ("checkpoint_000001", "checkpoint_tmp_f00d"):
        (tmp_path / name).mkdir()
        save_trial_checkpoint(tmp_path / name, trainer, TrialState([], {}), {})
    truncate(tmp_path / "checkpoint_tmp_f00d" / CHECKPOINT_FILE)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no readable checkpoint: .*checkpoint_tmp_f00d"):
        load_trial_checkpoint(tmp_path / "checkpoint_tmp_f00d", TCNVAETrainer(tiny_model(), "cpu"))


def test_checkpoint_errors_name_the_path_and_the_problem(tmp_path):
    with pytest.raises(ValueError, match=f"checkpoint {tmp_path} is a directory: pass the checkpoint file"):
        load_checkpoint(tmp_path)
    torn = tmp_path / "model.pt"
    save_checkpoint({"weights": torch.zeros(100)}, torn)
    truncate(torn)
    with pytest.raises(ValueError, match=f"checkpoint {torn} is truncated or not a checkpoint"):
        load_checkpoint(torn)
    with pytest.raises(ValueError, match="truncated or not a checkpoint"):
        tiny_model().load_pretrained_encoder(torn)  # the public model loader says the same


def test_result_files_honour_the_umask(tmp_path):
    previous = os.umask(0o002)  # a team's shared folder
    try:
        write_json({"a": 1}, tmp_path / "best_config.json")
        save_checkpoint({"w": torch.zeros(1)}, tmp_path / "encoder.pt")
    finally:
        os.umask(previous)
    for name in ("best_config.json", "encoder.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o664


# -- data files -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["uci_har", "hapt"])
def test_a_text_file_named_npz_is_called_not_an_npz_without_numpys_pickle_advice(tmp_path, source):
    fake = tmp_path / "data.npz"
    fake.write_text("subject,activity,acc_x\n1,walking,0.1\n")
    with pytest.raises(ValueError, match=f"{fake} is not a valid .npz archive") as error:
        load_source(source, path=fake)
    assert "pickle" not in str(error.value)


def test_a_truncated_npz_names_the_file(tmp_path):
    torn = tmp_path / "windows.npz"
    np.savez(torn, x=np.zeros((4, 9, 128), np.float32), y=np.zeros(4, np.int64), subject=np.ones(4, np.int64))
    truncate(torn)
    with pytest.raises(ValueError, match=f"UCI-HAR windows file {torn} is (not a valid .npz|truncated)"):
        load_source("uci_har", path=torn)


def test_an_unknown_uci_har_label_is_reported_as_written_in_the_file(tmp_path):
    path = tmp_path / "windows.npz"
    np.savez(path, x=np.zeros((2, 9, 128), np.float32), y=np.array([0, 17]), subject=np.ones(2, np.int64))
    with pytest.raises(ValueError, match=r"y values \[17\] are not UCI-HAR activities; .* 0\.\.5"):
        load_source("uci_har", path=path)


# -- replay files -----------------------------------------------------------------------------------------

def _replay(tmp_path, edit) -> str:
    """A replay file of a 3-epoch run, as write_replay writes it, then edited by ``edit(payload)``."""
    history = [history_entry(epoch, validate_config({})) for epoch in range(3)]
    path = write_replay(tmp_path / "replay.json", history, {})
    payload = json.loads(path.read_text())
    edit(payload)
    path.write_text(json.dumps(payload))
    return path


def test_a_replay_file_that_repeats_an_epoch_is_refused(tmp_path):
    path = _replay(tmp_path, lambda payload: payload["schedule"].append(dict(payload["schedule"][1], lr=0.5)))
    with pytest.raises(ValueError, match=r"lists epochs \[1\] more than once"):
        load_replay(path)


def test_a_replay_file_that_names_epochs_past_the_run_is_refused(tmp_path):
    path = _replay(tmp_path, lambda payload: payload["base_config"].update(max_epochs=2))
    with pytest.raises(ValueError, match=r"sets epochs \[2\], but its run has max_epochs=2"):
        load_replay(path)
