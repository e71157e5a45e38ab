"""Weight averaging (tcnvae.weight_average): between epochs the model holds the EMA of its weights, so what
is evaluated is what is saved, and a run resumed from a checkpoint continues exactly."""

from __future__ import annotations

import copy

import pytest
import torch

from tcnvae.checkpoints import load_checkpoint
from tcnvae.data.pipeline import prepare
from tcnvae.trainer import TCNVAETrainer
from tcnvae.tuning import CHECKPOINT_FILE
from tcnvae.tuning.trial import build_model, build_trainer
from tcnvae.tuning.config import data_config, validate_config
from helpers import TINY_TRIAL as TINY, loaders, run, small_model


def _trainer(weight_average_epochs: float, seed: int = 0) -> TCNVAETrainer:
    return TCNVAETrainer(small_model(seed), "cpu", 2e-3, weight_average_epochs=weight_average_epochs, verbose=False)


def _weights(trainer: TCNVAETrainer) -> list[torch.Tensor]:
    return [value.clone() for value in trainer.model.state_dict().values()]


def test_the_model_holds_the_average_between_epochs_and_trains_on_its_own_weights():
    train_loader, val_loader = loaders(count=96, seed=1)
    plain, averaged = _trainer(0), _trainer(1.0)
    for trainer in (plain, averaged):
        torch.manual_seed(3)  # the same sampled latents and dropout masks
        for epoch in range(2):
            trainer.train_epoch(train_loader, epoch)
    # The same steps were taken: the trained weights agree; the model between epochs is their average.
    trained = averaged.weight_average.training_weights
    for (name, a), b in zip(trained.items(), plain.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    assert any(not torch.allclose(a, b) for a, b in zip(_weights(averaged), _weights(plain)))
    # What is evaluated is what a checkpoint's model_state holds (what scoring, export and predict load).
    evaluated = averaged.evaluate(val_loader)["loss"]
    state = averaged.state_dict()
    loaded = copy.deepcopy(small_model(5))
    loaded.load_state_dict(state["model_state"])
    check = TCNVAETrainer(loaded, "cpu", verbose=False)
    check.alpha = averaged.alpha
    assert check.evaluate(val_loader)["loss"] == pytest.approx(evaluated)


def test_a_resumed_run_continues_exactly_with_its_average():
    train_loader, _ = loaders(count=96, seed=2)
    straight = _trainer(0.5)
    torch.manual_seed(3)
    for epoch in range(3):
        straight.train_epoch(train_loader, epoch)
    first = _trainer(0.5)
    torch.manual_seed(3)
    for epoch in range(2):
        first.train_epoch(train_loader, epoch)
    state = copy.deepcopy(first.state_dict())
    resumed = _trainer(0.5, seed=7)  # other initial weights: everything must come from the checkpoint
    resumed.load_state_dict(state)
    resumed.train_epoch(train_loader, 2)
    for a, b in zip(_weights(straight), _weights(resumed)):
        torch.testing.assert_close(a, b)


def test_the_time_constant_is_checked():
    with pytest.raises(ValueError, match="weight_average_epochs"):
        validate_config({"weight_average_epochs": -1})


def test_a_trial_with_weight_averaging_reports_what_its_checkpoint_holds_and_resumes_exactly(tmp_path):
    config = {"weight_average_epochs": 1.0, "max_epochs": 3}
    straight = run(config, checkpoint_root=tmp_path)
    resumed = run(config, restore_dir=straight.checkpoints[0])
    assert resumed.metrics == straight.metrics[1:]
    # The reported validation loss is that of the weights the checkpoint (and the test scoring) holds,
    # not of the weights being trained.
    trial_config = validate_config({**TINY, **config})
    data = prepare(data_config(trial_config))
    state = load_checkpoint(straight.checkpoints[-1] / CHECKPOINT_FILE)["trainer"]
    check = build_trainer(trial_config, build_model(trial_config, data), torch.device("cpu"))
    check.model.load_state_dict(state["model_state"])
    assert check.evaluate(data.val_loader())["loss"] == pytest.approx(straight.metrics[-1]["val/loss"])
    check.model.load_state_dict(state["weight_average"]["training_weights"])
    assert check.evaluate(data.val_loader())["loss"] != pytest.approx(straight.metrics[-1]["val/loss"])
