"""``--resume`` restores only pickled files this user's own searches wrote (tcnvae.tuning.cluster).

The experiment folders here are made by hand, in Tune's layout: what matters is which files
``Tuner.restore`` would unpickle and whether the record in the user's state directory vouches for them.
The end-to-end record-then-resume path runs in tests/test_searches.py and tests/test_fault_tolerance.py.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from tcnvae.tuning import cluster

from helpers import refused


@pytest.fixture(autouse=True)
def own_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(cluster.STATE_ENV, str(tmp_path / "state"))


def experiment(root: Path) -> Path:
    """A folder with the files Tune restores from, as a search leaves it."""
    folder = root / "storage" / "e"
    (folder / "tcnvae_trial_1").mkdir(parents=True)
    (folder / "tuner.pkl").write_bytes(pickle.dumps({"tuner": 1}))
    (folder / "experiment_state-2026.json").write_text('{"trial_data": []}')
    (folder / "best_config.json").write_text('{"lr": 0.001}')  # the search's own result: plain JSON
    (folder / "tcnvae_trial_1" / "error.pkl").write_bytes(pickle.dumps("boom"))
    return folder


def test_files_the_search_recorded_are_restored(tmp_path):
    folder = experiment(tmp_path)
    cluster.DigestRecorder(str(folder)).record([])
    (folder / "best_config.json").write_text('{"lr": 0.002}')  # not something restore unpickles
    cluster.verify_experiment(str(folder))


@pytest.mark.parametrize("planted", ["tuner.pkl", "experiment_state-2026.json", "tcnvae_trial_1/error.pkl",
                                     "searcher-state-2027.pkl"])
def test_a_changed_or_planted_pickled_file_is_refused_and_named(tmp_path, planted):
    folder = experiment(tmp_path)
    cluster.DigestRecorder(str(folder)).record([])
    (folder / planted).write_bytes(b"cos\nsystem\n(S'touch /tmp/owned'\ntR.")
    with pytest.raises(ValueError, match=f"--resume refused: .*{planted} cannot be verified") as error:
        cluster.verify_experiment(str(folder))
    assert cluster.TRUST_FLAG in str(error.value) and "can run any code" in str(error.value)


def test_an_experiment_without_a_record_is_refused(tmp_path):
    with pytest.raises(ValueError, match="there is no record of it in your state directory"):
        cluster.verify_experiment(str(experiment(tmp_path)))


def test_trust_experiment_restores_anyway_and_says_what_it_skipped(tmp_path, capsys):
    folder = experiment(tmp_path)
    cluster.verify_experiment(str(folder), trust=True)
    assert "--trust-experiment: restoring" in capsys.readouterr().out


def test_an_older_version_the_search_wrote_is_accepted(tmp_path):
    """After a killed driver the folder may hold the state before the newest one Tune staged."""
    folder = experiment(tmp_path)
    recorder = cluster.DigestRecorder(str(folder))
    recorder.record([])
    old = (folder / "tuner.pkl").read_bytes()
    (folder / "tuner.pkl").write_bytes(pickle.dumps({"tuner": 2}))
    recorder.record([])
    (folder / "tuner.pkl").write_bytes(old)
    cluster.verify_experiment(str(folder))


def test_the_recorder_survives_pickling_into_tuner_pkl(tmp_path):
    folder = experiment(tmp_path)
    recorder = pickle.loads(pickle.dumps(cluster.DigestRecorder(str(folder))))
    recorder.record([])
    cluster.verify_experiment(str(folder))


def test_the_state_directory_follows_xdg_state_home(tmp_path, monkeypatch):
    monkeypatch.delenv(cluster.STATE_ENV)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert cluster.record_path("/x/e").parent == tmp_path / "xdg" / "tcnvae" / "experiments"


def test_resume_of_a_tampered_experiment_is_refused_before_ray(no_ray, tmp_path):
    folder = experiment(tmp_path)
    cluster.DigestRecorder(str(folder)).record([])
    (folder / "tuner.pkl").write_bytes(b"planted")
    refused(["--storage-path", str(folder.parent), "--name", "e", "--resume"], "tuner.pkl cannot be verified")


def test_an_unwritable_state_directory_warns_but_never_stops_the_search(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv(cluster.STATE_ENV, str(blocker))
    recorder = cluster.DigestRecorder(str(experiment(tmp_path)))
    recorder.on_step_end(iteration=1, trials=[])
    recorder.on_experiment_end(trials=[])  # tried again, warned once
    assert caplog.text.count("resuming it will need --trust-experiment") == 1
    monkeypatch.setenv(cluster.STATE_ENV, str(tmp_path / "state"))  # writable again: recorded next time
    recorder.on_experiment_end(trials=[])
    cluster.verify_experiment(recorder.location)
