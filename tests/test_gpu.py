"""The GPU paths, on a GPU: bf16 autocast, fp16 with its loss scaler, pinned batches and their copies.

Skipped without CUDA (CI has none); ``bash benchmarks/gpu.sh`` runs them on a GPU machine. Their CPU
stand-ins (bf16 autocast on the CPU, a CPU ``GradScaler``) are in test_trainer_precision.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from tcnvae.data.loaders import WindowLoader
from tcnvae.trainer import TCNVAETrainer
from helpers import loaders, oscillation_windows, quiet, small_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.filterwarnings("ignore:validation accuracy")  # a tiny model for two epochs: near chance is fine
@pytest.mark.parametrize("precision", ["auto", "bf16", "fp16", "off"])
def test_each_precision_trains_on_the_gpu_with_fp32_weights(precision):
    train, val = loaders(count=256)
    trainer = quiet(TCNVAETrainer(small_model(), "cuda"))
    trainer.mixed_precision = precision
    expected = {"auto": "bf16" if torch.cuda.is_bf16_supported() else "fp16"}.get(precision, precision)
    assert trainer.mixed_precision == expected
    assert (trainer.scaler is not None) == (expected == "fp16")
    before = [p.detach().clone() for p in trainer.model.parameters()]
    losses = [trainer.train_epoch(train, epoch) for epoch in range(2)]
    val_loss, accuracy = trainer.validate(val)
    assert all(math.isfinite(loss) for loss in losses) and math.isfinite(val_loss) and 0 <= accuracy <= 1
    assert all(p.is_cuda and p.dtype == torch.float32 for p in trainer.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))


@pytest.mark.filterwarnings("ignore:validation accuracy")
def test_fp16_loss_scale_survives_a_checkpoint(tmp_path):
    train, _ = loaders(count=128)
    trainer = quiet(TCNVAETrainer(small_model(), "cuda"))
    trainer.mixed_precision = "fp16"
    trainer.train_epoch(train, 0)
    trainer.save_checkpoint(tmp_path / "checkpoint.pt")
    restored = quiet(TCNVAETrainer(small_model(seed=1), "cuda"))
    restored.mixed_precision = "fp16"
    restored.load_checkpoint(tmp_path / "checkpoint.pt")
    assert restored.scaler.get_scale() == trainer.scaler.get_scale()
    for a, b in zip(trainer.model.parameters(), restored.model.parameters()):
        assert torch.equal(a, b)


def test_pinned_batches_reach_the_gpu_and_train():
    loader = WindowLoader(*oscillation_windows(128, seed=0), batch_size=32, shuffle=True, seed=0, pin_memory=True)
    assert loader.pin_memory
    assert all(tensor.is_pinned() for tensor in next(iter(loader)))
    trainer = quiet(TCNVAETrainer(small_model(), "cuda"))
    assert math.isfinite(trainer.train_epoch(loader, 0))
