import json
import math
import re

import pytest
import torch
from torch import optim
from torch.utils.data import DataLoader, TensorDataset

from tcnvae.beta_schedules import make_beta_schedule
from tcnvae.model import TCNVAE
from tcnvae.trainer import (
    OvernightTrainer,
    TCNVAETrainer,
    TrainingDivergedError,
    TrainingHealthWarning,
    adversarial_alpha,
)

from helpers import CHANNELS, NUM_CLASSES, loaders, oscillation_windows, quiet, small_model


def test_alpha_schedule_values():
    assert adversarial_alpha(0, 0, 50) == 0.0
    assert adversarial_alpha(5, 0, 50) == pytest.approx(2 / (1 + math.exp(-0.1)) - 1)
    assert adversarial_alpha(0, 1, 50) == pytest.approx(2 / (1 + math.exp(-1)) - 1)  # p = 0.1
    assert adversarial_alpha(0, 10, 50) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert adversarial_alpha(0, 2, 50, ramp_epochs=2) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    values = [adversarial_alpha(b, e, 10) for e in range(12) for b in range(10)]
    assert all(a < b for a, b in zip(values, values[1:]))


def test_kl_is_normalised_per_sample():
    trainer = TCNVAETrainer(small_model(), "cpu")
    mu, logvar = torch.randn(4, 8), torch.randn(4, 8) * 0.1
    x = torch.randn(4, 10, CHANNELS)
    _, _, kl_small = trainer.vae_loss(x, x, mu, logvar)
    _, _, kl_doubled = trainer.vae_loss(x.repeat(2, 1, 1), x.repeat(2, 1, 1), mu.repeat(2, 1), logvar.repeat(2, 1))
    assert kl_small == pytest.approx(kl_doubled.item())
    expected = (-0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(dim=1)).mean()
    assert kl_small == pytest.approx(expected.item())
    trainer.beta, trainer.applied_beta = 0.5, 0.5
    total, recon, kl = trainer.vae_loss(x + 1.0, x, mu, logvar)
    assert recon == pytest.approx(1.0)
    assert total == pytest.approx(recon.item() + 0.5 * kl.item())


def test_a_few_epochs_reduce_the_loss_and_beat_chance():
    train_loader, val_loader = loaders(count=512)
    trainer = quiet(TCNVAETrainer(small_model(), "cpu", learning_rate=3e-3))
    trainer.beta, trainer.lambda_act = 0.1, 2.0
    losses, activity_losses = [], []
    for epoch in range(12):
        losses.append(trainer.train_epoch(train_loader, epoch))
        activity_losses.append(trainer.last_train_metrics["activity"])
    _, accuracy = trainer.validate(val_loader)
    assert losses[-1] < 0.8 * losses[0]
    assert activity_losses[-1] < 0.5 * activity_losses[0]
    assert accuracy > 0.6  # chance is 0.25
    metrics = trainer.last_train_metrics
    for key in ("total", "recon", "kl", "beta", "activity", "domain", "alpha", "lr", "domain_accuracy"):
        assert math.isfinite(metrics[key]), key
    assert set(trainer.last_val_metrics) >= {"accuracy", "macro_f1", "worst_domain_accuracy",
                                            "domain_classifier_accuracy", "loss"}


def test_documented_log_line_every_100_batches(capsys):
    signal, activity, domain = oscillation_windows(220, length=32)
    loader = DataLoader(TensorDataset(signal, activity, domain), batch_size=2)
    trainer = TCNVAETrainer(small_model(), "cpu")
    trainer.train_epoch(loader, 10)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Epoch: ")]
    assert len(lines) == 1
    assert lines[0].startswith("Epoch: 10, Batch: 100, VAE Loss: ")
    assert ", Activity Loss: " in lines[0] and ", Domain Loss: " in lines[0]


def test_beta_schedule_sets_the_applied_kl_weight():
    train_loader, _ = loaders(count=64)
    trainer = quiet(TCNVAETrainer(small_model(), "cpu"))
    trainer.beta = 0.8
    trainer.beta_schedule = make_beta_schedule("linear", warmup_epochs=4)
    applied = []
    for epoch in range(5):
        trainer.train_epoch(train_loader, epoch)
        applied.append(trainer.last_train_metrics["beta"])
    assert applied[0] < applied[1] < applied[2] < applied[3] <= 0.8
    assert applied[4] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="unknown beta schedule 'cosine'"):
        make_beta_schedule("cosine")
    with pytest.raises(ValueError, match="warmup_epochs must be a positive number"):
        make_beta_schedule("linear", warmup_epochs=-1)


def test_schedule_shapes():
    cyclical = make_beta_schedule("cyclical", cycle_epochs=4, ramp_fraction=0.5)
    assert [cyclical(p) for p in (0, 1, 2, 3, 4, 5)] == [0, 0.5, 1, 1, 0, 0.5]
    sigmoid = make_beta_schedule("sigmoid", center_epoch=5, steepness=2)
    assert sigmoid(5) == pytest.approx(0.5) and sigmoid(0) < 0.001 and sigmoid(10) > 0.999
    assert make_beta_schedule("constant")(123.0) == 1.0


class _NaNAt:
    """Wraps a loader and poisons the inputs of chosen batches (by index) with ``value``: NaN (bad
    data) or a huge finite number (finite inputs whose loss overflows, as a diverging run's does)."""

    def __init__(self, loader, poisoned, value=float("nan")):
        self.loader, self.poisoned, self.value = loader, poisoned, value

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for index, (data, activity, domain) in enumerate(self.loader):
            if index in self.poisoned:
                data = data.clone()
                data[0, 0, 0] = self.value
            yield data, activity, domain


def test_nan_loss_skips_the_step_and_lowers_the_learning_rate(capsys):
    train_loader, _ = loaders(count=128)
    trainer = TCNVAETrainer(small_model(), "cpu", learning_rate=1e-3)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    loss = trainer.train_epoch(_NaNAt(train_loader, {0}, value=1e30), 0)
    assert math.isfinite(loss)
    assert trainer.learning_rate == pytest.approx(5e-4)
    assert trainer.last_train_metrics["skipped_steps"] == 1
    assert re.search(r"Non-finite loss \((nan|inf)\) at epoch 0, batch 0: skipped the step", capsys.readouterr().out)
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters())


def test_repeated_nan_stops_with_a_clear_error():
    train_loader, _ = loaders(count=256)
    trainer = quiet(TCNVAETrainer(small_model(), "cpu"))
    with pytest.raises(TrainingDivergedError, match="non-finite for 5 consecutive steps"):
        trainer.train_epoch(_NaNAt(train_loader, set(range(100)), value=1e30), 0)


def test_health_warnings_for_kl_collapse_and_chance_accuracy():
    train_loader, val_loader = loaders(count=64)
    trainer = quiet(TCNVAETrainer(small_model(), "cpu", learning_rate=1e-2))
    trainer.beta = 50.0  # squeezes the posterior onto the prior
    trainer.lambda_act = 0.0
    with pytest.warns(TrainingHealthWarning, match="KL collapse"):
        for epoch in range(6):
            trainer.train_epoch(train_loader, epoch)
    constant = TensorDataset(torch.zeros(64, 64, CHANNELS), torch.arange(64) % NUM_CLASSES, torch.zeros(64).long())
    with pytest.warns(TrainingHealthWarning, match="near chance"):
        trainer.validate(DataLoader(constant, batch_size=16))


def test_best_model_starts_from_no_prior_best_and_early_stopping(tmp_path):
    train_loader, val_loader = loaders(count=64)
    trainer = quiet(TCNVAETrainer(small_model(), "cpu", learning_rate=1e-9))  # too small to improve
    trainer.best_model_path = tmp_path / "best.pt"
    trainer.patience = 2
    history = trainer.fit(train_loader, val_loader, epochs=20)
    assert trainer.best_val_accuracy == history[0]["val"]["accuracy"]  # any first score is a best
    assert (tmp_path / "best.pt").exists()
    assert len(history) <= 1 + 2 + 5  # stops once nothing improves for `patience` epochs
    assert trainer.epochs_since_best == 2


def test_replacing_optimizer_and_scheduler_just_works():
    train_loader, _ = loaders(count=64)
    model = small_model()
    trainer = quiet(TCNVAETrainer(model, "cpu"))
    trainer.optimizer = optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-4, betas=(0.9, 0.999))
    trainer.scheduler = optim.lr_scheduler.CosineAnnealingWarmRestarts(trainer.optimizer, T_0=20, T_mult=2)
    trainer.train_epoch(train_loader, 0)
    assert trainer.learning_rate < 3e-4  # the scheduler stepped the new optimizer
    trainer.optimizer = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="bound to a different optimizer"):
        trainer.train_epoch(train_loader, 1)

    overnight = quiet(OvernightTrainer(small_model(), "cpu"))
    overnight.optimizer = optim.Adam(overnight.model.parameters(), lr=1e-3)
    assert overnight.scheduler.optimizer is overnight.optimizer  # its own scheduler follows


def test_overnight_defaults():
    trainer = OvernightTrainer(small_model(), "cpu")
    assert isinstance(trainer.optimizer, optim.AdamW)
    group = trainer.optimizer.param_groups[0]
    assert group["lr"] == 3e-4 and group["weight_decay"] == 1e-4
    assert isinstance(trainer.scheduler, optim.lr_scheduler.CosineAnnealingWarmRestarts)
    assert (trainer.scheduler.T_0, trainer.scheduler.T_mult) == (20, 2)
    assert (trainer.beta, trainer.lambda_act, trainer.lambda_dom) == (0.4, 2.5, 0.05)
    assert (trainer.grad_clip, trainer.label_smoothing, trainer.patience) == (0.8, 0.1, 50)


def _overnight(tmp_path, seed=0):
    trainer = quiet(OvernightTrainer(small_model(seed=seed), "cpu", checkpoint_dir=tmp_path, keep_last=2))
    return trainer


def test_resume_gives_the_same_next_epoch_as_an_uninterrupted_run(tmp_path):
    train_loader, val_loader = loaders(count=96, seed=3)
    straight = _overnight(tmp_path / "straight")
    straight.fit(train_loader, val_loader, epochs=4)

    interrupted = _overnight(tmp_path / "interrupted")
    interrupted.fit(train_loader, val_loader, epochs=3)
    resumed = _overnight(tmp_path / "interrupted", seed=99)  # a fresh process: other weights, other RNG
    torch.manual_seed(1234)
    resumed.fit(train_loader, val_loader, epochs=4)

    assert resumed.epoch == straight.epoch == 4
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert resumed.history[-1]["train"] == straight.history[-1]["train"]
    assert sorted(p.name for p in (tmp_path / "interrupted").glob("epoch_*.pt")) == ["epoch_00003.pt",
                                                                                     "epoch_00004.pt"]
    log = [json.loads(line) for line in (tmp_path / "interrupted" / "metrics.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in log] == [1, 2, 3, 4]
    assert (tmp_path / "interrupted" / "best.pt").exists()


# -- the documentation's snippets, unchanged apart from imports -------------------------------------
def test_documented_basic_training(capsys):
    # The documentation's shapes: 9 channels, 13 activities, windows of 100 samples.
    train_loader = DataLoader(TensorDataset(torch.randn(64, 100, 9), torch.randint(0, 13, (64,)),
                                            torch.randint(0, 3, (64,))), batch_size=16)
    val_loader = DataLoader(TensorDataset(torch.randn(32, 100, 9), torch.randint(0, 13, (32,)),
                                          torch.randint(0, 3, (32,))), batch_size=16)

    # Initialize model and trainer
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    model = TCNVAE(input_dim=9, latent_dim=64, num_activities=13)
    trainer = TCNVAETrainer(model, device, learning_rate=1e-3)

    # Training loop
    for epoch in range(2):
        train_loss = trainer.train_epoch(train_loader, epoch)
        val_loss, val_accuracy = trainer.validate(val_loader)
        print(f'Epoch {epoch+1}: Train Loss: {train_loss:.4f}, Val Acc: {val_accuracy:.4f}')

    assert "Epoch 2: Train Loss: " in capsys.readouterr().out


def test_documented_custom_loss_weights_and_advanced_configuration():
    model = small_model()
    device = torch.device("cpu")

    trainer = TCNVAETrainer(model, device)
    trainer.beta = 0.5        # Adjust VAE weight
    trainer.lambda_act = 2.0  # Increase classification focus
    trainer.lambda_dom = 0.01 # Reduce domain adversarial weight

    # Custom optimizer settings
    trainer.optimizer = optim.AdamW(
        model.parameters(),
        lr=3e-4,
        weight_decay=1e-4,
        betas=(0.9, 0.999)
    )

    # Learning rate scheduler
    trainer.scheduler = optim.lr_scheduler.CosineAnnealingWarmRestarts(
        trainer.optimizer, T_0=20, T_mult=2
    )

    train_loader, _ = loaders(count=64)
    trainer.verbose = False
    trainer.train_epoch(train_loader, 0)
    assert trainer.last_train_metrics["beta"] == 0.5
    assert trainer.last_train_metrics["lr"] == pytest.approx(3e-4)
