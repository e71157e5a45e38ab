"""Named parameter groups of a TCN-VAE, and an optimizer with one param group per name.

Curricula freeze, unfreeze and re-rate parts of the model by name ("encoder.block1", "decoder", ...),
so the optimizer must hold each part as its own param group: that is what makes per-part learning
rates (discriminative learning rates) possible without rebuilding the optimizer and losing its state.

Groups run from the output side inward: the heads, the decoder, then the encoder deepest first
(``encoder.latent`` = the μ/log σ² layers, then ``encoder.block{N-1}`` ... ``encoder.block0``). That
is the order "unfreeze gradually, deepest first" walks, and it puts the activity head first among the
optimizer's param groups, so ``trainer.learning_rate`` (group 0) reports the run's reference rate
rather than a discounted encoder rate.

Learning rate of a group = configured rate × the group's ``lr_multiplier`` × the scheduler's progress;
:mod:`tcnvae.learning_rates` is the one writer of that product (``trainer.set_lr_multipliers``).
"""

from __future__ import annotations

from typing import Any

from torch import nn, optim

from tcnvae.model import TCNVAE

ENCODER_PREFIX = "encoder."


def parameter_groups(model: TCNVAE) -> dict[str, list[nn.Parameter]]:
    """The model's parameters by named group, output side first; every parameter in exactly one group."""
    encoder = model.tcn_encoder
    modules: dict[str, list[nn.Module]] = {
        "activity_head": [model.activity_classifier],
        "domain_head": [model.domain_classifier],
        "decoder": [model.decoder],
        "encoder.latent": [encoder.to_mu, encoder.to_logvar],
        **{f"encoder.block{i}": [encoder.blocks[i]] for i in reversed(range(len(encoder.blocks)))},
    }
    groups = {name: [p for module in parts for p in module.parameters()] for name, parts in modules.items()}
    grouped = {id(p) for params in groups.values() for p in params}
    missing = [name for name, p in model.named_parameters() if id(p) not in grouped]
    if missing:
        raise ValueError(f"parameters {missing} belong to no named group; "
                         "tcnvae.curriculum.groups.parameter_groups needs updating for this model")
    return groups


def encoder_groups(group_names: list[str] | tuple[str, ...]) -> list[str]:
    """The encoder's groups among ``group_names``, deepest first (the order to unfreeze them in)."""
    return [name for name in group_names if name.startswith(ENCODER_PREFIX)]


def grouped_optimizer(model: TCNVAE, optimizer_class: type[optim.Optimizer] = optim.Adam, lr: float = 1e-3,
                      weight_decay: float = 0.0, **options: Any) -> optim.Optimizer:
    """``optimizer_class`` over the model with one param group per named group (keys ``name``,
    ``lr_multiplier`` = 1), all at ``lr`` and ``weight_decay``; ``options`` go to the optimizer."""
    param_groups = [{"params": params, "name": name, "lr_multiplier": 1.0}
                    for name, params in parameter_groups(model).items()]
    return optimizer_class(param_groups, lr=lr, weight_decay=weight_decay, **options)


def set_trainable(model: TCNVAE, trainable: dict[str, bool]) -> None:
    """``requires_grad`` of every named group (True when not named).

    A frozen parameter gets no gradient, so the optimizer skips it entirely (no update, no weight
    decay, no change to its moment estimates) until it is unfrozen.
    """
    for name, params in parameter_groups(model).items():
        flag = bool(trainable.get(name, True))
        for param in params:
            param.requires_grad_(flag)


def trainable_fraction(model: TCNVAE) -> float:
    """Share of the model's parameter values that currently train."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad) / total if total else 0.0
