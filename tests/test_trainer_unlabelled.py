"""Unlabelled windows (activity label -1) in the seed API: they train the VAE and the domain head,
never the activity head, and are left out of accuracy and F1."""

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from tcnvae.trainer import UNLABELLED, TCNVAETrainer
from helpers import oscillation_windows, quiet, small_model

PARTS = {"activity head": "activity_classifier", "domain head": "domain_classifier", "decoder": "decoder"}


def gradients_after_one_step(data, activity, domain, lambda_ent=0.0):
    """The gradients of one training step on one batch (a plain torch DataLoader), per model part."""
    trainer = quiet(TCNVAETrainer(small_model(seed=0, dropout=0.0), "cpu"))
    trainer.lambda_ent = lambda_ent
    trainer.grad_clip = None  # clipping rescales every gradient by the total norm
    trainer.train_epoch(DataLoader(TensorDataset(data, activity, domain), batch_size=len(data)), 0)
    model = trainer.model
    return {part: torch.cat([p.grad.flatten() for p in getattr(model, name).parameters()])
            for part, name in PARTS.items()}, trainer


def test_an_unlabelled_window_changes_domain_and_reconstruction_gradients_but_not_the_activity_heads():
    data, activity, domain = oscillation_windows(9, seed=3)
    labelled, _ = gradients_after_one_step(data[:8], activity[:8], domain[:8])
    torch.manual_seed(0)
    activity_with_unlabelled = torch.cat([activity[:8], torch.tensor([UNLABELLED])])
    with_unlabelled, trainer = gradients_after_one_step(data, activity_with_unlabelled, domain)
    # The activity loss is a mean over labelled windows only: the same windows, the same gradient.
    torch.testing.assert_close(with_unlabelled["activity head"], labelled["activity head"])
    assert not torch.allclose(with_unlabelled["domain head"], labelled["domain head"])
    assert not torch.allclose(with_unlabelled["decoder"], labelled["decoder"])
    assert trainer.last_train_metrics["labelled"] == 8
    assert trainer.last_train_metrics["unlabelled"] == 1


def test_an_all_unlabelled_batch_trains_everything_but_the_activity_head():
    data, _, domain = oscillation_windows(8, seed=4)
    gradients, trainer = gradients_after_one_step(data, torch.full((8,), UNLABELLED), domain)
    assert torch.count_nonzero(gradients["activity head"]) == 0
    assert torch.count_nonzero(gradients["domain head"]) > 0
    assert torch.count_nonzero(gradients["decoder"]) > 0
    metrics = trainer.last_train_metrics
    assert (metrics["labelled"], metrics["unlabelled"], metrics["steps"]) == (0, 8, 1)
    assert math.isnan(metrics["activity"]) and math.isfinite(metrics["total"])


def test_with_an_entropy_weight_unlabelled_windows_sharpen_the_activity_head_and_labelled_ones_do_not():
    data, activity, domain = oscillation_windows(9, seed=3)
    torch.manual_seed(0)
    labelled, trainer = gradients_after_one_step(data[:8], activity[:8], domain[:8], lambda_ent=1.0)
    assert trainer.last_train_metrics["entropy"] == 0  # no unlabelled window: no entropy term
    torch.manual_seed(0)
    without_entropy, _ = gradients_after_one_step(data[:8], activity[:8], domain[:8])
    torch.testing.assert_close(labelled["activity head"], without_entropy["activity head"])
    activity_with_unlabelled = torch.cat([activity[:8], torch.tensor([UNLABELLED])])
    torch.manual_seed(0)
    with_unlabelled, trainer = gradients_after_one_step(data, activity_with_unlabelled, domain, lambda_ent=1.0)
    assert not torch.allclose(with_unlabelled["activity head"], labelled["activity head"])
    # The term is the entropy of the unlabelled window's prediction: at most log(classes) nats.
    classes = trainer.model.activity_classifier[-1].out_features
    assert 0 < trainer.last_train_metrics["entropy"] <= math.log(classes)


def test_unlabelled_windows_are_left_out_of_accuracy_and_f1():
    data, activity, domain = oscillation_windows(48, seed=5)
    trainer = quiet(TCNVAETrainer(small_model(), "cpu"))
    trainer.validate(DataLoader(TensorDataset(data[:32], activity[:32], domain[:32]), batch_size=16))
    labelled_only = dict(trainer.last_val_metrics)
    mixed_activity = torch.cat([activity[:32], torch.full((16,), UNLABELLED)])
    # Unlabelled windows in their own batch and mixed into a batch: both are left out.
    _, accuracy = trainer.validate(DataLoader(TensorDataset(data, mixed_activity, domain), batch_size=20))
    metrics = trainer.last_val_metrics
    assert accuracy == pytest.approx(labelled_only["accuracy"])
    assert metrics["macro_f1"] == pytest.approx(labelled_only["macro_f1"])
    assert (metrics["labelled"], metrics["unlabelled"]) == (32, 16)
    _, accuracy = trainer.validate(DataLoader(TensorDataset(data, torch.full((48,), UNLABELLED), domain),
                                              batch_size=16))
    assert math.isnan(accuracy) and trainer.last_val_metrics["labelled"] == 0
    assert math.isfinite(trainer.last_val_metrics["loss"])
