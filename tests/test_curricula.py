"""Curricula: the shipped policies' stage sequences, stages applied to a real trainer and loader,
state round trips, user policies from files, composition, clear errors, and pretraining."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from torch import optim

from tcnvae.curriculum import (
    CurriculumContext,
    CurriculumRunner,
    Stage,
    apply_stage,
    check_curriculum_spec,
    curriculum_search_space,
    grouped_optimizer,
    make_curriculum,
    merge_stages,
    parameter_groups,
    per_window_losses,
    set_lr_multipliers,
)
from tcnvae.data import DataConfig, prepare
from tcnvae.model import TCNVAE
from tcnvae.trainer import TCNVAETrainer

from helpers import recipe

DOMAINS = ("synthetic_a", "synthetic_b", "synthetic_c")
GROUPS = ("activity_head", "domain_head", "decoder", "encoder.latent", "encoder.block1", "encoder.block0")
TINY_DATA = {"synthetic": {"num_domains": 3, "subjects_per_domain": 3, "seconds_per_activity": 6}}


@pytest.fixture(scope="module")
def data():
    """3 domains × 3 subjects (2 train, 1 validation each): 168 training windows of 8 activities."""
    return prepare(DataConfig(source_options=TINY_DATA, val_fraction=0.34, test_fraction=0.0, batch_size=16))


def tiny_model(data, seed: int = 0) -> TCNVAE:
    torch.manual_seed(seed)
    return TCNVAE(input_dim=len(data.channel_names), latent_dim=4, num_activities=data.num_activities,
                  num_domains=data.num_domains, hidden_dims=[8, 8], kernel_size=3, head_hidden=8, decoder_channels=8)


def tiny_trainer(data, lr: float = 1e-2, seed: int = 0) -> TCNVAETrainer:
    trainer = TCNVAETrainer(tiny_model(data, seed), "cpu", lr)
    trainer.verbose = False
    trainer.optimizer = grouped_optimizer(trainer.model, optim.Adam, lr=lr)
    return trainer


def context(windows=(60, 50, 58)) -> CurriculumContext:
    return CurriculumContext(domains=DOMAINS, windows_per_domain=dict(zip(DOMAINS, windows)),
                             parameter_groups=GROUPS, max_epochs=20)


def stages(policy, epochs: int, metrics=None) -> list[Stage]:
    """The policy's stages for epochs 0..epochs-1; ``metrics(epoch)`` gives the metrics of that epoch."""
    policy.setup(context(), None)
    return [policy.stage(epoch, None if metrics is None or epoch == 0 else metrics(epoch - 1))
            for epoch in range(epochs)]


def flat_metrics(trainer: TCNVAETrainer) -> dict[str, float]:
    """The metric keys policies read, as the trial loop reports them."""
    val = trainer.last_val_metrics
    return {"val/accuracy": val["accuracy"],
            **{f"val/domain/{name}": value for name, value in val["per_domain_accuracy"].items()}}


def snapshot(trainer: TCNVAETrainer) -> dict[str, list[torch.Tensor]]:
    return {name: [p.detach().clone() for p in params] for name, params in parameter_groups(trainer.model).items()}


def changed(before, after, group: str) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before[group], after[group]))


# -- each policy's stage sequence ---------------------------------------------------------------------

def test_none_keeps_everything_on():
    assert stages(make_curriculum("none"), 5) == [Stage("all")] * 5


def test_none_is_the_platforms_own_and_validates_without_the_optional_policies(monkeypatch):
    """The default config needs no plugin: with the ``curricula`` package unimportable, ``none`` still
    builds and the default config validates; an optional policy's name says what is missing."""
    from tcnvae.curriculum import registry
    from tcnvae.curriculum.none import NoCurriculum
    from tcnvae.tuning import DEFAULT_CONFIG, validate_config

    monkeypatch.setitem(sys.modules, "curricula", None)  # `import curricula` fails
    monkeypatch.setattr(registry, "CURRICULA", {"none": NoCurriculum})
    assert validate_config(DEFAULT_CONFIG)["curriculum"] == "none"
    assert isinstance(make_curriculum("none"), NoCurriculum)
    with pytest.raises(ModuleNotFoundError, match="the shipped curricula .* are not importable"):
        make_curriculum("single_to_cross")


def test_single_to_cross_starts_on_the_largest_domain_then_ramps_to_balanced_batches():
    sequence = stages(make_curriculum("single_to_cross", single_epochs=2, ramp_epochs=2), 6)
    assert [stage.name for stage in sequence] == ["single:synthetic_a"] * 2 + ["mixing"] * 2 + ["cross"] * 2
    assert sequence[0].domain_weights == {"synthetic_a": 1.0}
    first_mix = sequence[2].domain_weights  # a third of the way: 1/3 spread evenly, the rest on the start
    assert first_mix["synthetic_a"] == pytest.approx(2 / 3 + 1 / 9) and first_mix["synthetic_b"] == pytest.approx(1 / 9)
    assert sequence[3].domain_weights["synthetic_b"] == pytest.approx(2 / 9)
    assert sequence[5].domain_weights == dict.fromkeys(DOMAINS, 1.0)


def test_single_to_cross_switches_on_a_plateau_of_validation_accuracy():
    accuracy = [0.30, 0.40, 0.402, 0.401, 0.5]  # no gain > 0.005 after epoch 1: a plateau of 2 epochs
    policy = make_curriculum("single_to_cross", start="synthetic_c", switch="plateau", single_epochs=9, patience=2)
    names = [stage.name for stage in stages(policy, 5, lambda e: {"val/accuracy": accuracy[e]})]
    assert names == ["single:synthetic_c"] * 4 + ["cross"]
    assert policy.state_dict()["switched_at"] == 4


def test_single_to_cross_can_pick_the_domain_with_the_best_validation_accuracy_after_a_probe():
    per_domain = {"val/accuracy": 0.5, "val/domain/synthetic_a": 0.4, "val/domain/synthetic_b": 0.7,
                  "val/domain/synthetic_c": 0.5}
    policy = make_curriculum("single_to_cross", start="best_val_accuracy", probe_epochs=1, single_epochs=2)
    names = [stage.name for stage in stages(policy, 4, lambda e: per_domain)]
    assert names == ["probe", "single:synthetic_b", "single:synthetic_b", "cross"]
    with pytest.raises(ValueError, match="needs the metric 'val/domain/synthetic_a'"):
        stages(make_curriculum("single_to_cross", start="best_val_accuracy"), 2, lambda e: {"val/accuracy": 0.5})
    with pytest.raises(ValueError, match="start 'hapt' is neither a training domain"):
        make_curriculum("single_to_cross", start="hapt").setup(context(), None)


def test_freeze_then_finetune_unfreezes_the_deepest_encoder_group_first_at_discounted_rates():
    policy = make_curriculum("freeze_then_finetune", freeze_epochs=2, unfreeze="gradual", unfreeze_interval=1,
                             encoder_lr_multiplier=0.1, layer_decay=0.5)
    sequence = stages(policy, 6)
    assert [stage.name for stage in sequence] == ["frozen", "frozen", "unfreezing:1/3", "unfreezing:2/3",
                                                  "finetune", "finetune"]
    frozen = lambda stage: [group for group, flag in stage.trainable.items() if not flag]
    assert frozen(sequence[0]) == ["encoder.latent", "encoder.block1", "encoder.block0"]
    assert frozen(sequence[2]) == ["encoder.block1", "encoder.block0"]
    assert frozen(sequence[4]) == []
    assert sequence[4].lr_multipliers == pytest.approx({"encoder.latent": 0.1, "encoder.block1": 0.05,
                                                        "encoder.block0": 0.025})
    all_at_once = stages(make_curriculum("freeze_then_finetune", freeze_epochs=1, unfreeze="all"), 3)
    assert [stage.name for stage in all_at_once] == ["frozen", "finetune", "finetune"]


def test_objective_ramp_adds_kl_then_the_adversarial_term():
    policy = make_curriculum("objective_ramp", kl_start=1, kl_ramp_epochs=1, domain_delay=1, domain_ramp_epochs=0)
    sequence = stages(policy, 5)
    assert [stage.name for stage in sequence] == ["recon+activity", "kl_ramp", "recon+activity+kl", "all", "all"]
    assert [stage.loss_multiplier("kl") for stage in sequence] == [0, 0.5, 1, 1, 1]
    assert [stage.loss_multiplier("domain") for stage in sequence] == [0, 0, 0, 1, 1]
    assert sequence[0].loss_multiplier("recon") == sequence[0].loss_multiplier("activity") == 1


def test_self_paced_widens_from_the_easiest_windows_to_all():
    sequence = stages(make_curriculum("self_paced", warmup_epochs=1, start_fraction=0.5, ramp_epochs=2), 5)
    assert [stage.name for stage in sequence] == ["warmup", "easiest", "easiest", "all", "all"]
    assert [stage.window_fraction for stage in sequence] == [None, 0.5, 0.75, None, None]


# -- stages applied to a trainer and a loader ---------------------------------------------------------

def test_frozen_groups_stay_unchanged_and_unfrozen_groups_train_at_their_own_rate(data):
    trainer = tiny_trainer(data)
    loader = data.train_loader()
    groups = [group["name"] for group in trainer.optimizer.param_groups]
    assert groups[0] == "activity_head" and sorted(groups) == sorted(parameter_groups(trainer.model))
    policy = make_curriculum("freeze_then_finetune", freeze_epochs=1, unfreeze="all", encoder_lr_multiplier=0.1)
    runner = CurriculumRunner(policy, trainer, loader, max_epochs=2)

    before = snapshot(trainer)
    assert runner.before_epoch(0).name == "frozen"
    trainer.train_epoch(loader, 0)
    after = snapshot(trainer)
    for group in ("encoder.latent", "encoder.block1", "encoder.block0"):
        assert not changed(before, after, group), group
    assert changed(before, after, "activity_head") and changed(before, after, "decoder")
    assert runner.metrics()["curriculum/lr_multiplier/encoder.block0"] == 0.0

    assert runner.before_epoch(1).name == "finetune"
    rates = {group["name"]: group["lr"] for group in trainer.optimizer.param_groups}
    assert rates["encoder.block0"] == pytest.approx(1e-3) and rates["activity_head"] == pytest.approx(1e-2)
    trainer.train_epoch(loader, 1)
    assert all(changed(after, snapshot(trainer), group) for group in parameter_groups(trainer.model))
    assert runner.metrics()["curriculum/trainable_fraction"] == 1.0


@pytest.mark.parametrize("schedule", [
    lambda optimizer: optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4),  # chainable: from the current rate
    lambda optimizer: optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / 4),  # closed form: base_lrs
], ids=["cosine", "lambda"])
def test_lr_multipliers_ride_on_the_schedulers_curve(schedule):
    model = TCNVAE(input_dim=3, latent_dim=2, num_activities=2, num_domains=2, hidden_dims=[4])
    optimizer = grouped_optimizer(model, optim.SGD, lr=1.0)
    scheduler = schedule(optimizer)
    optimizer.step()
    scheduler.step()
    set_lr_multipliers(optimizer, scheduler, {"encoder.block0": 0.1})
    optimizer.step()
    scheduler.step()
    rates = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert rates["activity_head"] == pytest.approx(0.5)  # both schedules are at half height at step 2 of 4
    assert rates["encoder.block0"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="grouped_optimizer"):
        set_lr_multipliers(optim.SGD(model.parameters(), lr=1.0), None, {"decoder": 0.5})


def test_domain_shares_are_honoured_and_one_domain_turns_the_adversarial_term_off(data):
    trainer = tiny_trainer(data)
    loader = data.train_loader()
    weights = {"synthetic_a": 0.6, "synthetic_b": 0.3, "synthetic_c": 0.1}
    applied = apply_stage(Stage("mix", domain_weights=weights), trainer, loader)
    assert trainer.loss_multipliers["domain"] == 1.0 and applied.loss_multiplier("domain") == 1.0
    drawn = np.concatenate([index for epoch in range(20) for index in loader.batch_indices(epoch)])
    shares = np.bincount(loader.domain[drawn], minlength=3) / len(drawn)
    assert shares == pytest.approx([0.6, 0.3, 0.1], abs=0.02)

    apply_stage(Stage("single", domain_weights={"synthetic_b": 1.0}), trainer, loader)
    assert trainer.loss_multipliers["domain"] == 0.0
    assert set(loader.domain[np.concatenate(loader.batch_indices(0))]) == {1}
    assert len(loader) == math.ceil((loader.domain == 1).sum() / 16)
    apply_stage(Stage("all"), trainer, loader)
    assert loader.domain_weights is None and trainer.loss_multipliers["domain"] == 1.0


def test_self_paced_stage_trains_on_the_lowest_loss_windows_of_every_activity(data):
    trainer = tiny_trainer(data)
    loader = data.train_loader()
    trainer.train_epoch(loader, 0)
    losses = per_window_losses(trainer.model, loader)
    np.testing.assert_array_equal(losses["activity"], per_window_losses(trainer.model, loader)["activity"])
    apply_stage(Stage("easy", window_fraction=0.25), trainer, loader)
    difficulty = losses["recon"] + trainer.applied_beta * losses["kl"] + losses["activity"]
    for label in range(data.num_activities):
        members = np.flatnonzero(loader.activity == label)
        chosen = np.intersect1d(loader.subset, members)
        assert len(chosen) == math.ceil(0.25 * len(members))
        assert difficulty[chosen].max() <= np.sort(difficulty[members])[len(chosen) - 1] + 1e-6
    apply_stage(Stage("all"), trainer, loader)
    assert loader.subset is None


def test_a_stage_naming_unknown_groups_changes_nothing(data):
    trainer = tiny_trainer(data)
    with pytest.raises(ValueError, match=r"unknown parameter groups \['encoder.block7'\]"):
        apply_stage(Stage("bad", trainable={"encoder.block7": False}), trainer, data.train_loader())
    assert all(p.requires_grad for p in trainer.model.parameters())
    with pytest.raises(ValueError, match="lr_multipliers.*positive"):
        Stage("bad", lr_multipliers={"decoder": 0.0})
    with pytest.raises(ValueError, match="unknown loss terms"):
        Stage("bad", loss_multipliers={"reconstruction": 1.0})


# -- state: resume in the middle of a curriculum ------------------------------------------------------

def test_a_resumed_run_continues_in_the_same_stage(data, tmp_path):
    spec = "single_to_cross+freeze_then_finetune"
    params = {"switch": "plateau", "patience": 1, "min_delta": 1.0, "single_epochs": 9, "freeze_epochs": 2,
              "unfreeze_interval": 2, "encoder_lr_multiplier": 0.2}
    trainer, loader = tiny_trainer(data), data.train_loader()
    runner = CurriculumRunner(make_curriculum(spec, **params), trainer, loader, max_epochs=6)
    names = []

    def after_epoch() -> None:
        trainer.validate(data.val_loader())
        runner.after_epoch(flat_metrics(trainer))

    trainer.train_epochs(loader, 3, before_epoch=lambda epoch: names.append(runner.before_epoch(epoch).name),
                         after_epoch=after_epoch)
    trainer.save_checkpoint(tmp_path / "trainer.pt")
    saved = runner.state_dict()
    next_stage = runner.before_epoch(3)
    largest = max(runner.context.domains, key=runner.context.windows_per_domain.get)
    # The plateau (no gain of 1.0) shows at epoch 2, after the first accuracy set the bar at epoch 1.
    assert names == [f"single:{largest}+frozen"] * 2 + ["cross+unfreezing:1/3"]
    assert next_stage.name == "cross+unfreezing:1/3"  # a fresh policy at epoch 3 would still be single

    resumed_trainer, resumed_loader = tiny_trainer(data, seed=1), data.train_loader()
    resumed = CurriculumRunner(make_curriculum(spec, **params), resumed_trainer, resumed_loader, max_epochs=6)
    resumed_trainer.load_checkpoint(tmp_path / "trainer.pt")
    resumed.load_state_dict(saved)
    assert resumed.before_epoch(3) == next_stage
    assert resumed.metrics() == runner.metrics()
    for original, restored in zip(trainer.optimizer.param_groups, resumed_trainer.optimizer.param_groups):
        assert (original["name"], original["lr"]) == (restored["name"], restored["lr"])
    np.testing.assert_array_equal(np.concatenate(loader.batch_indices(3)),
                                  np.concatenate(resumed_loader.batch_indices(3)))
    with pytest.raises(ValueError, match="cannot change curriculum"):
        CurriculumRunner(make_curriculum("none"), tiny_trainer(data), data.train_loader(), 6).load_state_dict(saved)


# -- registry: user policies, composition, errors -----------------------------------------------------

USER_POLICY = '''
from tcnvae.curriculum import CurriculumPolicy, Stage, check_int


class HeadsFirst(CurriculumPolicy):
    def __init__(self, epochs: int = 1):
        self.epochs = check_int("epochs", epochs, 0)

    def stage(self, epoch, metrics):
        if epoch < self.epochs:
            return Stage("heads", trainable={"decoder": False})
        return Stage("all")


class NotAPolicy:
    pass
'''


def test_a_user_policy_from_a_file_runs_alone_and_composed(tmp_path, data, monkeypatch):
    path = tmp_path / "mypolicies.py"
    path.write_text(USER_POLICY)
    monkeypatch.chdir(tmp_path)  # a relative path is resolved once, so Ray workers elsewhere find the file
    assert check_curriculum_spec("none+mypolicies.py:HeadsFirst") == f"none+{path}:HeadsFirst"
    policy = make_curriculum(f"{path}:HeadsFirst", epochs=2)
    assert [stage.name for stage in stages(policy, 3)] == ["heads", "heads", "all"]
    assert policy.params() == {"epochs": 2}
    composed = make_curriculum(f"objective_ramp+{path}:HeadsFirst", **{"HeadsFirst.epochs": 1, "kl_start": 1})
    assert [stage.name for stage in stages(composed, 2)] == ["recon+activity+heads", "kl_ramp+all"]
    trainer = tiny_trainer(data)
    CurriculumRunner(policy, trainer, data.train_loader(), 3).before_epoch(0)
    assert not any(p.requires_grad for p in trainer.model.decoder.parameters())


def test_malformed_policies_get_clear_errors(tmp_path):
    path = tmp_path / "mypolicies.py"
    path.write_text(USER_POLICY)
    with pytest.raises(ValueError, match=r"unknown curriculum 'single_to_crosss'; registered: freeze_then_finetune"):
        make_curriculum("single_to_crosss")
    with pytest.raises(ValueError, match="has no parameter 'switch_epoch'; its parameters: start, switch, single_epochs"):
        make_curriculum("single_to_cross", switch_epoch=3)
    with pytest.raises(ValueError, match="curriculum 'single_to_cross': switch must be one of 'epoch', 'plateau'"):
        make_curriculum("single_to_cross", switch="sometimes")
    with pytest.raises(ValueError, match="ramp_epochs must be an integer >= 1, got 0"):
        make_curriculum("self_paced", ramp_epochs=0)
    with pytest.raises(ValueError, match="has no class 'Missing'; its CurriculumPolicy classes: HeadsFirst"):
        make_curriculum(f"{path}:Missing")
    with pytest.raises(ValueError, match="'NotAPolicy' .* is not a subclass of"):
        make_curriculum(f"{path}:NotAPolicy")
    with pytest.raises(FileNotFoundError, match="nowhere.py does not exist"):
        make_curriculum(f"{tmp_path / 'nowhere.py'}:HeadsFirst")
    with pytest.raises(ValueError, match="belongs to .*'single_to_cross', 'self_paced'.*single_to_cross.ramp_epochs"):
        make_curriculum("single_to_cross+self_paced", ramp_epochs=2)
    with pytest.raises(FileNotFoundError, match="encoder_path .*missing.pt does not exist"):
        make_curriculum("freeze_then_finetune", encoder_path=str(tmp_path / "missing.pt"))


def test_composed_stages_merge_and_conflicting_domain_weights_are_refused():
    merged = merge_stages([
        Stage("a", trainable={"decoder": False}, lr_multipliers={"encoder.block0": 0.5}, loss_multipliers={"kl": 0.5},
              window_fraction=0.8),
        Stage("b", domain_weights={"x": 2.0}, trainable={"decoder": True, "encoder.block0": False},
              lr_multipliers={"encoder.block0": 0.5}, loss_multipliers={"kl": 0.5, "domain": 0.0}, window_fraction=0.5),
    ])
    assert merged == Stage("a+b", domain_weights={"x": 2.0}, trainable={"decoder": False, "encoder.block0": False},
                           lr_multipliers={"encoder.block0": 0.25}, loss_multipliers={"kl": 0.25, "domain": 0.0},
                           window_fraction=0.5)
    assert merge_stages([Stage("a", domain_weights={"x": 1.0}), Stage("b", domain_weights={"x": 3.0})]).name == "a+b"
    with pytest.raises(ValueError, match="disagree on the domain weights"):
        merge_stages([Stage("a", domain_weights={"x": 1.0}), Stage("b", domain_weights={"x": 1.0, "y": 1.0})])


def test_search_spaces_sample_valid_policies_and_compositions():
    for spec in ("none", "single_to_cross", "freeze_then_finetune", "objective_ramp", "self_paced",
                 "single_to_cross+objective_ramp+self_paced"):
        space = curriculum_search_space(spec)
        for _ in range(5):
            policy = make_curriculum(spec, **{key: domain.sample() for key, domain in space.items()})
            assert set(space) <= set(policy.params())
    composed = make_curriculum("single_to_cross+objective_ramp")
    assert set(composed.search_space()) == set(curriculum_search_space("single_to_cross+objective_ramp"))
    assert "single_to_cross.switch" in composed.search_space()


# -- pretraining --------------------------------------------------------------------------------------

def test_pretrain_writes_an_encoder_that_freeze_then_finetune_loads(tmp_path, data):
    pretrain = recipe("pretrain")
    output = pretrain.main(["--max-epochs", "1", "--output", str(tmp_path / "encoder.pt"),
                            "--set", f"source_options={{\"synthetic\": {TINY_DATA['synthetic']}}}".replace("'", '"'),
                            "--set", "hidden_dims=[8,8]", "--set", "latent_dim=4", "--set", "kernel_size=3",
                            "--set", "val_fraction=0.34",
                            "--set", "test_fraction=0.0"])
    assert output.is_file() and output.with_suffix(".json").is_file()
    trainer = tiny_trainer(data)
    CurriculumRunner(make_curriculum("freeze_then_finetune", encoder_path=str(output)), trainer,
                     data.train_loader(), max_epochs=3)
    saved = torch.load(output, weights_only=True)["encoder_state"]
    for name, value in trainer.model.tcn_encoder.state_dict().items():
        assert torch.equal(value, saved[name]), name
