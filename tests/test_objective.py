"""The objective as one object, the trainer built explicitly, and the learning rate's one writer."""

import math

import pytest
import torch
from torch import nn, optim

from tcnvae import beta_schedules
from tcnvae.beta_schedules import BETA_SCHEDULES, BetaSchedule, LinearWarmup, register_beta_schedule
from tcnvae.curriculum import grouped_optimizer, per_window_losses
from tcnvae.data.loaders import WindowLoader
from tcnvae.model import TCNVAE
from tcnvae.objective import Objective
from tcnvae.trainer import TCNVAETrainer
from tcnvae.tuning.trial import build_trainer
from tcnvae.tuning.config import mutable_keys, validate_config
from helpers import recipe

CLASSES = 3


def windows(count: int, seed: int = 0) -> WindowLoader:
    """Labelled windows whose class sets a frequency, in one batch."""
    generator = torch.Generator().manual_seed(seed)
    activity = torch.randint(0, CLASSES, (count,), generator=generator)
    domain = torch.randint(0, 2, (count,), generator=generator)
    time = torch.arange(32) / 50.0
    signal = torch.sin(2 * math.pi * (1.0 + activity.float())[:, None, None] * time[None, :, None]).repeat(1, 1, 3)
    signal = signal + 0.3 * torch.randn(count, 32, 3, generator=generator)
    return WindowLoader(signal, activity, domain, batch_size=count)


def small_model(seed: int = 0) -> TCNVAE:
    torch.manual_seed(seed)
    return TCNVAE(input_dim=3, latent_dim=4, num_activities=CLASSES, num_domains=2, hidden_dims=[8, 8],
                  kernel_size=3, head_hidden=8, decoder_channels=8)


# -- one loss formula --------------------------------------------------------------------------------

def test_the_self_paced_score_and_the_trainers_loss_are_one_formula():
    loader = windows(48)
    objective = Objective(beta=0.7, lambda_act=1.8, lambda_dom=0.0, label_smoothing=0.2,
                          beta_schedule=LinearWarmup(warmup_epochs=4))
    trainer = TCNVAETrainer(small_model(), "cpu", objective=objective, verbose=False)
    trainer.applied_beta = objective.beta_at(2.0)  # half-way up the warm-up
    assert trainer.applied_beta == pytest.approx(0.35)
    # The self-paced difficulty of each window, averaged, is the trainer's loss on the batch (the
    # adversarial term, which difficulty leaves out, weighs 0 here).
    difficulty = objective.total(per_window_losses(trainer.model, loader, objective), trainer.applied_beta)
    assert trainer.evaluate(loader)["loss"] == pytest.approx(float(difficulty.mean()), rel=1e-5)
    # ... and both see the objective's label smoothing: the plain cross-entropy gives another score.
    plain = Objective(beta=0.7, lambda_act=1.8, lambda_dom=0.0)
    unsmoothed = plain.total(per_window_losses(trainer.model, loader, plain), trainer.applied_beta)
    assert float(unsmoothed.mean()) != pytest.approx(float(difficulty.mean()), rel=1e-3)


def test_the_trainers_loss_settings_are_its_objectives():
    config = validate_config({})
    objective = Objective.from_config(config)
    assert (objective.beta, objective.lambda_act, objective.lambda_dom, objective.label_smoothing) == (0.1, 2.5, 0.1, 0.1)
    trainer = TCNVAETrainer(small_model(), "cpu", objective=objective, verbose=False)
    trainer.beta = 0.3
    assert trainer.objective.beta == 0.3 and objective.beta == 0.1  # replaced, never mutated under a reader
    assert trainer.objective.configured({**config, "lambda_act": 4.0}).lambda_act == 4.0
    with pytest.raises(ValueError, match=r"trainer.label_smoothing = 1.0: expected a fraction in \[0, 1\)"):
        trainer.label_smoothing = 1.0
    trainer.alpha_ramp_epochs = 4.0
    restored = TCNVAETrainer(small_model(seed=1), "cpu", verbose=False)
    restored.load_state_dict(trainer.state_dict())  # a checkpoint holds every setting of the objective
    assert restored.objective == trainer.objective
    with pytest.raises(ValueError, match="unknown loss terms"):
        Objective(loss_multipliers={"reconstruction": 0.5})
    with pytest.raises(ValueError, match=r"label_smoothing=1.5: expected a fraction in \[0, 1\)"):
        validate_config({"label_smoothing": 1.5})


# -- a β schedule is declared in one place ----------------------------------------------------------

class StepUp(BetaSchedule):
    """β off until ``step_epoch``, then on."""

    name = "step_up_test"

    def __init__(self, step_epoch: float = 3.0):
        if isinstance(step_epoch, bool) or not isinstance(step_epoch, (int, float)) or not step_epoch > 0:
            raise ValueError(f"step_epoch must be a positive number, got {step_epoch!r}")
        self.step_epoch = float(step_epoch)

    def __call__(self, progress: float) -> float:
        return float(progress >= self.step_epoch)

    @classmethod
    def search_bounds(cls) -> dict[str, tuple[float, float]]:
        return {"step_epoch": (1.0, 6.0)}


@pytest.fixture
def step_up():
    register_beta_schedule(StepUp)
    yield StepUp
    del BETA_SCHEDULES[StepUp.name]


def test_a_registered_beta_schedule_is_a_checked_config_key_with_no_other_edit(step_up):
    config = validate_config({"beta_schedule": "step_up_test", "beta_step_epoch": 2.0})
    assert config["beta_step_epoch"] == 2.0 and "beta_step_epoch" in mutable_keys()
    assert validate_config({})["beta_step_epoch"] == 3.0  # its constructor's default
    # Checked by its own constructor, even while another schedule is chosen (PBT may switch to it).
    with pytest.raises(ValueError, match=r"beta_step_epoch=-1.0: beta schedule 'step_up_test': step_epoch must be "
                                         r"a positive number"):
        validate_config({"beta_step_epoch": -1.0})
    with pytest.raises(ValueError, match=r"replay_schedule epoch 1: beta_step_epoch=0"):
        validate_config({"replay_schedule": [{"epoch": 1, "beta_step_epoch": 0}]})
    schedule = Objective.from_config(config).beta_schedule
    assert isinstance(schedule, StepUp) and schedule.step_epoch == 2.0
    assert beta_schedules.search_bounds("step_up_test") == {"beta_step_epoch": [1.0, 6.0]}
    # PBT's recipe offers it, and would move beta_step_epoch within those bounds.
    assert recipe("beta_annealing").parse_args(["--beta-schedule", "step_up_test"]).beta_schedule == "step_up_test"
    trainer = build_trainer(config, small_model(), torch.device("cpu"))
    trainer.train_epoch(windows(24), 0)
    assert trainer.last_train_metrics["beta"] == 0.0  # before the step

    class Clash(BetaSchedule):
        name = "clash_test"

        def __init__(self, warmup_epochs: float = 3.0):
            self.warmup_epochs = warmup_epochs

        def __call__(self, progress: float) -> float:
            return 1.0

    with pytest.raises(ValueError, match="share the config key 'beta_warmup_epochs'"):
        register_beta_schedule(Clash)
    assert "clash_test" not in BETA_SCHEDULES


# -- the trainer, built explicitly ------------------------------------------------------------------

class CountingWrapper(nn.Module):
    """Stands in for DistributedDataParallel: the same parameters, a count of forward passes."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        self.calls = 0

    def forward(self, *inputs):
        self.calls += 1
        return self.module(*inputs)


def test_a_data_parallel_wrapper_trains_while_the_model_stays_the_model():
    model = small_model()
    trainer = TCNVAETrainer(model, "cpu", parallelize=CountingWrapper, verbose=False)
    assert trainer.model is model and trainer.forward_module.module is model
    before = [p.detach().clone() for p in model.parameters()]
    trainer.train_epoch(windows(24), 0)
    assert trainer.forward_module.calls == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the wrapper's steps train it
    trainer.evaluate(windows(12, seed=1))
    assert trainer.forward_module.calls == 1  # evaluation reads the model itself
    with pytest.raises(AttributeError):
        trainer.model = CountingWrapper(model)


def test_evaluate_changes_nothing_and_validate_keeps_the_metrics_and_steps_the_plateau_scheduler():
    model = small_model()
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    trainer = TCNVAETrainer(model, "cpu", optimizer=optimizer, verbose=False,
                            scheduler=optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0))
    loader = windows(24)
    model.train()
    for _ in range(3):
        metrics = trainer.evaluate(loader)
    assert model.training and trainer.last_val_metrics == {} and trainer.learning_rate == 1e-3
    assert trainer.scheduler.num_bad_epochs == 0 and trainer.scheduler.best == math.inf
    assert trainer.validate(loader)[0] == metrics["loss"] == trainer.last_val_metrics["loss"]
    trainer.validate(loader)  # no improvement on a patience of 0: the plateau scheduler halves the rate
    assert trainer.learning_rate == pytest.approx(5e-4)


# -- the learning rate: one writer ------------------------------------------------------------------

def test_a_curriculum_multiplier_a_pbt_rate_and_the_schedule_compose():
    model = small_model()
    optimizer = grouped_optimizer(model, optim.SGD, lr=1.0)
    trainer = TCNVAETrainer(model, "cpu", optimizer=optimizer, verbose=False,
                            scheduler=optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=6))

    def height(step: int) -> float:
        return (1 + math.cos(math.pi * step / 6)) / 2

    def rates() -> dict[str, float]:
        return {group["name"]: group["lr"] for group in optimizer.param_groups}

    def step() -> None:
        optimizer.step()
        trainer.scheduler.step()

    step()
    trainer.set_lr_multipliers({"encoder.block0": 0.1})  # a curriculum stage
    assert rates()["encoder.block0"] == pytest.approx(0.1 * height(1))
    trainer.set_learning_rate(2.0)  # a PBT mutation: the multiplier and the schedule's progress stay
    assert rates()["activity_head"] == pytest.approx(2.0 * height(1))
    assert rates()["encoder.block0"] == pytest.approx(0.2 * height(1))
    step()
    assert rates()["activity_head"] == pytest.approx(2.0 * height(2))
    assert rates()["encoder.block0"] == pytest.approx(0.2 * height(2))
    trainer.set_lr_multipliers({})  # the stage ends
    step()
    assert rates()["encoder.block0"] == pytest.approx(2.0 * height(3))
    assert trainer.scheduler.base_lrs == pytest.approx([2.0] * len(optimizer.param_groups))
