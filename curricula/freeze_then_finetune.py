"""`freeze_then_finetune`: an encoder curriculum — pretrained encoder frozen, heads first, then unfreeze.

Setup loads the encoder saved by ``searches/pretrain.py`` (``model.load_pretrained_encoder``, which
reads with ``torch.load(weights_only=True)``). For ``freeze_epochs`` epochs the encoder is frozen and
the heads and decoder learn on top of it. Then the encoder unfreezes, all at once
(``unfreeze="all"``) or one group every ``unfreeze_interval`` epochs, deepest first
(``encoder.latent``, then the last TCN block, ..., the first), as in ULMFiT's gradual unfreezing.

Discriminative learning rates: the encoder trains at ``encoder_lr_multiplier`` × the run's rate,
and each group nearer the input at a further ``layer_decay`` × the group above it, so general
low-level features move least. (Needs the optimizer from ``tcnvae.curriculum.grouped_optimizer``.)

The epoch unfreezing began is kept in the policy's state and never undone: a PBT clone whose
perturbed ``freeze_epochs`` lies ahead does not freeze a fine-tuned encoder again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray import tune

from tcnvae.curriculum import (
    CurriculumContext,
    CurriculumPolicy,
    Stage,
    check_choice,
    check_int,
    check_number,
    encoder_groups,
)
from tcnvae.model import TCNVAE

logger = logging.getLogger(__name__)

UNFREEZE_MODES = ("all", "gradual")


class FreezeThenFinetune(CurriculumPolicy):
    name = "freeze_then_finetune"

    def __init__(self, encoder_path: str | None = None, freeze_epochs: int = 3, unfreeze: str = "gradual",
                 unfreeze_interval: int = 1, encoder_lr_multiplier: float = 0.1, layer_decay: float = 1.0):
        if encoder_path is not None and not Path(encoder_path).expanduser().is_file():
            raise FileNotFoundError(f"freeze_then_finetune: encoder_path {encoder_path} does not exist "
                                    "(make one with searches/pretrain.py)")
        self.encoder_path = None if encoder_path is None else str(encoder_path)
        self.freeze_epochs = check_int("freeze_epochs", freeze_epochs, 0)
        self.unfreeze = check_choice("unfreeze", unfreeze, UNFREEZE_MODES)
        self.unfreeze_interval = check_int("unfreeze_interval", unfreeze_interval, 1)
        self.encoder_lr_multiplier = check_number("encoder_lr_multiplier", encoder_lr_multiplier, 0.0, 1.0,
                                                  low_open=True)
        self.layer_decay = check_number("layer_decay", layer_decay, 0.0, 1.0, low_open=True)
        self._unfreezing_from: int | None = None

    @classmethod
    def search_space(cls) -> dict[str, Any]:
        return {
            "freeze_epochs": tune.randint(1, 6),
            "unfreeze": tune.choice(list(UNFREEZE_MODES)),
            "unfreeze_interval": tune.randint(1, 3),
            "encoder_lr_multiplier": tune.loguniform(0.01, 1.0),
            "layer_decay": tune.uniform(0.3, 1.0),
        }

    def setup(self, context: CurriculumContext, model: TCNVAE) -> None:
        super().setup(context, model)
        if self.encoder_path is None:
            logger.warning("freeze_then_finetune without encoder_path: the encoder is frozen as initialised, "
                           "not pretrained")
            return
        model.load_pretrained_encoder(self.encoder_path)
        logger.info("freeze_then_finetune: loaded the pretrained encoder %s", self.encoder_path)

    def stage(self, epoch: int, metrics: Mapping[str, float] | None) -> Stage:
        encoder = encoder_groups(self.require_context().parameter_groups)
        if self._unfreezing_from is None and epoch >= self.freeze_epochs:
            self._unfreezing_from = epoch
        if self._unfreezing_from is None:
            thawed = 0
        elif self.unfreeze == "all":
            thawed = len(encoder)
        else:
            thawed = min(len(encoder), 1 + (epoch - self._unfreezing_from) // self.unfreeze_interval)
        rates = {group: self.encoder_lr_multiplier * self.layer_decay**depth for depth, group in enumerate(encoder)}
        if thawed == 0:
            name = "frozen"
        elif thawed == len(encoder):
            name = "finetune"
        else:
            name = f"unfreezing:{thawed}/{len(encoder)}"
        return Stage(name, trainable={group: depth < thawed for depth, group in enumerate(encoder)},
                     lr_multipliers=rates)

    def state_dict(self) -> dict[str, Any]:
        return {"unfreezing_from": self._unfreezing_from}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._unfreezing_from = state["unfreezing_from"]
