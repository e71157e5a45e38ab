"""The trainer under NaN and wrong labels, through the seed API with plain torch loaders (issue 13)."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from tcnvae.trainer import NonFiniteDataError, TCNVAETrainer, TrainingDivergedError, TrainingHealthWarning
from helpers import oscillation_windows, quiet, small_model


def loader(data, activity, domain, batch_size=16):
    return DataLoader(TensorDataset(data, activity, domain), batch_size=batch_size)


def trainer():
    return quiet(TCNVAETrainer(small_model(), "cpu", learning_rate=1e-3))


def test_an_epoch_whose_every_batch_is_non_finite_raises_at_once_naming_the_skipped_batches():
    data, activity, domain = oscillation_windows(32)
    data = data.clone()
    data[:, 0, 0] = 1e30  # finite inputs whose loss overflows: divergence, not bad data
    subject = trainer()
    with pytest.raises(TrainingDivergedError, match=r"epoch 0: all 2 batches were skipped \(2 with a non-finite loss"):
        subject.train_epoch(loader(data, activity, domain), 0)


def test_nan_inputs_are_skipped_counted_and_reported_without_touching_the_learning_rate():
    data, activity, domain = oscillation_windows(64)
    data = data.clone()
    data[20, 3, 1] = float("nan")  # window 20: batch 1
    subject = trainer()
    subject.train_epoch(loader(data, activity, domain), 0)
    assert subject.learning_rate == pytest.approx(1e-3)
    metrics = subject.last_train_metrics
    assert (metrics["nonfinite_input_batches"], metrics["skipped_steps"], metrics["steps"]) == (1, 0, 3)
    assert subject.nonfinite_input_batches == [(0, 1)]
    subject.train_epoch(loader(data, activity, domain), 1)
    with pytest.raises(NonFiniteDataError, match=r"batch 1 of epoch 2 has NaN or infinite input values in 1 of its "
                                                 r"16 windows \(positions \[4\].*epoch 0 batch 1, epoch 1 batch 1"):
        subject.train_epoch(loader(data, activity, domain), 2)
    assert subject.learning_rate == pytest.approx(1e-3)


def test_non_finite_validation_data_says_what_is_wrong():
    data, activity, domain = oscillation_windows(32)
    data = data.clone()
    data[17, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"validation batch 1: 1 of its 16 windows contain NaN or infinite values "
                                         r"\(first at position 1"):
        trainer().validate(loader(data, activity, domain))


@pytest.mark.parametrize("label, classes, match", [
    ("activity", 99, r"epoch 0, training batch 1: activity label 99 is outside 0\.\.3 \(the model has 4 activity"),
    ("domain", 7, r"epoch 0, training batch 1: domain label 7 is outside 0\.\.1 \(the model has 2 domain"),
    ("activity", -3, r"activity label -3 is outside 0\.\.3 .*-1 marks an unlabelled window"),
])
def test_a_label_outside_the_models_classes_is_named_with_its_range_and_batch(label, classes, match):
    data, activity, domain = oscillation_windows(32)
    labels = {"activity": activity.clone(), "domain": domain.clone()}
    labels[label][20] = classes
    with pytest.raises(ValueError, match=match):
        trainer().train_epoch(loader(data, labels["activity"], labels["domain"]), 0)


def test_float_labels_are_refused():
    data, activity, domain = oscillation_windows(16)
    with pytest.raises(TypeError, match=r"activity labels are torch.float32; labels must be integer class ids"):
        trainer().train_epoch(loader(data, activity.float() + 0.7, domain), 0)
    with pytest.raises(TypeError, match=r"validation batch 0: domain labels are torch.float64"):
        trainer().validate(loader(data, activity, domain.double()))


@pytest.mark.parametrize("name", ["beta", "lambda_act", "lambda_dom"])
@pytest.mark.parametrize("value", [-5, float("nan"), float("inf"), "1"])
def test_assignable_loss_weights_are_validated(name, value):
    subject = trainer()
    with pytest.raises(ValueError, match=rf"trainer.{name} = .*: expected a finite number >= 0"):
        setattr(subject, name, value)
    setattr(subject, name, 0.25)
    assert getattr(subject, name) == 0.25


def test_windows_shorter_than_the_receptive_field_warn_and_length_zero_is_refused():
    subject = trainer()
    field = subject.model.tcn_encoder.receptive_field
    data, activity, domain = oscillation_windows(16, length=field - 2)
    with pytest.warns(TrainingHealthWarning, match=rf"windows of {field - 2} samples are shorter than the encoder's "
                                                   rf"receptive field of {field} samples"):
        subject.train_epoch(loader(data, activity, domain), 0)
    with pytest.raises(ValueError, match=r"windows of length 0"):
        subject.train_epoch(loader(torch.zeros(16, 0, data.shape[2]), activity, domain), 1)
