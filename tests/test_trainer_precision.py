"""Mixed precision in the trainer: what "auto" means per device, bf16 autocast on a CPU, and the fp16
loss scaler's interplay with gradient clipping, the divergence guard and checkpoints.

fp16 itself needs a GPU; the scaler's logic runs here through a CPU ``GradScaler`` on an fp32 forward.
"""

from __future__ import annotations

import math

import pytest
import torch

from tcnvae.trainer import PRECISIONS, TCNVAETrainer, resolve_precision
from helpers import loaders, quiet, small_model


@pytest.mark.parametrize("requested, device, bf16_supported, expected", [
    ("auto", "cpu", None, "off"),
    ("bf16", "cpu", None, "bf16"),
    ("off", "cpu", None, "off"),
    ("auto", "cuda", True, "bf16"),
    ("auto", "cuda", False, "fp16"),
    ("fp16", "cuda", True, "fp16"),
    ("bf16", "cuda", True, "bf16"),
])
def test_precision_resolution(requested, device, bf16_supported, expected):
    assert resolve_precision(requested, device, bf16_supported) == expected


def test_impossible_precisions_are_refused_with_the_alternatives():
    with pytest.raises(ValueError, match="'fp16' needs a CUDA GPU.*'bf16'"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="does not support bf16"):
        resolve_precision("bf16", "cuda", bf16_supported=False)
    with pytest.raises(ValueError, match="expected one of off, bf16, fp16, auto"):
        resolve_precision("half", "cpu")
    trainer = TCNVAETrainer(small_model(), "cpu")
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        trainer.mixed_precision = "fp16"
    assert set(PRECISIONS) == {"off", "bf16", "fp16", "auto"}


@pytest.mark.filterwarnings("ignore:validation accuracy")  # two epochs of a tiny model: near chance is expected
def test_bf16_autocast_on_cpu_trains_with_finite_losses():
    train, val = loaders(count=128)
    trainer = quiet(TCNVAETrainer(small_model(), "cpu"))
    trainer.mixed_precision = "bf16"
    assert trainer.mixed_precision == "bf16" and trainer.scaler is None
    forward_dtypes = []
    trainer.model.activity_classifier.register_forward_hook(lambda module, args, out: forward_dtypes.append(out.dtype))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    loss = trainer.train_epoch(train, 0)
    val_loss, accuracy = trainer.validate(val)
    assert torch.bfloat16 in forward_dtypes
    assert math.isfinite(loss) and math.isfinite(val_loss) and 0 <= accuracy <= 1
    assert trainer.last_train_metrics["steps"] == len(train)
    assert trainer.last_train_metrics["skipped_steps"] == 0
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # weights stay fp32


def test_auto_is_plain_fp32_on_cpu():
    trainer = TCNVAETrainer(small_model(), "cpu")
    trainer.mixed_precision = "auto"
    assert trainer.mixed_precision == "off" and trainer.scaler is None
    assert trainer.state_dict()["scaler_state"] is None


def test_scaler_overflows_are_skipped_steps_not_divergence():
    """A loss scale far too high overflows every gradient until the scaler has backed off: the scaler
    skips those steps and lowers the scale; the divergence guard (which halves the learning rate and
    stops after five non-finite steps in a row) must not count them."""
    train, _ = loaders(count=256)
    trainer = quiet(TCNVAETrainer(small_model(), "cpu", learning_rate=1e-3))
    trainer.grad_clip = 0.5
    trainer.lambda_act = 1e4  # gradients in the thousands: they overflow fp32 at scales above ~2^114
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 124)
    epochs = []
    for epoch in range(2):
        trainer.train_epoch(train, epoch)
        epochs.append(dict(trainer.last_train_metrics))
    overflowed = sum(metrics["overflow_steps"] for metrics in epochs)
    assert overflowed > trainer.max_consecutive_nonfinite  # would have stopped training if counted
    assert trainer.scaler.get_scale() == 2.0 ** (124 - overflowed)  # halved once per skipped step
    assert all(metrics["skipped_steps"] == 0 for metrics in epochs)
    assert trainer.learning_rate == pytest.approx(1e-3)
    assert epochs[-1]["steps"] > 0
    assert sum(metrics["overflow_steps"] + metrics["steps"] for metrics in epochs) == 2 * len(train)


def test_scaled_steps_are_unscaled_before_clipping():
    """With the scaler the clipped gradient norm is the true one: the same step as without a scaler."""
    train, _ = loaders(count=64, batch_size=64)
    plain = quiet(TCNVAETrainer(small_model(seed=3), "cpu"))
    scaled = quiet(TCNVAETrainer(small_model(seed=3), "cpu"))
    for trainer in (plain, scaled):
        trainer.grad_clip = 0.05  # tight enough that every step clips
        trainer.optimizer = torch.optim.SGD(trainer.model.parameters(), lr=0.1)
    scaled.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    torch.manual_seed(0)
    plain.train_epoch(train, 0)
    torch.manual_seed(0)
    scaled.train_epoch(train, 0)
    for a, b in zip(plain.model.parameters(), scaled.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_checkpoints_carry_the_loss_scale(tmp_path):
    train, _ = loaders(count=64)
    trainer = quiet(TCNVAETrainer(small_model(), "cpu"))
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 127)
    trainer.train_epoch(train, 0)
    scale = trainer.scaler.get_scale()
    path = tmp_path / "state.pt"
    trainer.save_checkpoint(path)  # read back with weights_only=True

    resumed = quiet(TCNVAETrainer(small_model(), "cpu"))
    resumed.scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    resumed.load_checkpoint(path)
    assert resumed.scaler.get_scale() == scale

    fp32 = quiet(TCNVAETrainer(small_model(), "cpu"))
    fp32.load_checkpoint(path)  # another precision: the scale is dropped, the rest restored
    assert fp32.scaler is None and fp32.epoch == trainer.epoch
    older = fp32.state_dict()
    del older["scaler_state"]  # a checkpoint from before the scaler existed
    fp32.load_state_dict(older)
