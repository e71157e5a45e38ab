"""`objective_ramp`: a loss curriculum — start simple, add the multi-objective terms progressively.

Reconstruction + activity only for ``kl_start`` epochs; then the KL term ramps in linearly over
``kl_ramp_epochs`` epochs (0: at once); ``domain_delay`` epochs after KL is fully on, the
adversarial domain term ramps in over ``domain_ramp_epochs``. The multipliers scale the configured
β (including its own β schedule) and λ_dom, so they shape *when* a term counts, not how much.

Note the trainer's gradient-reversal strength α rises with the absolute epoch (``alpha_ramp_epochs``):
by the time the domain term comes in, α may already be near 1, which is what ``domain_ramp_epochs``
softens. Stateless: every stage follows from the epoch, so PBT moves the schedule directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray import tune

from tcnvae.curriculum import CurriculumPolicy, Stage, check_int, linear_ramp


class ObjectiveRamp(CurriculumPolicy):
    name = "objective_ramp"

    def __init__(self, kl_start: int = 2, kl_ramp_epochs: int = 2, domain_delay: int = 1,
                 domain_ramp_epochs: int = 2):
        self.kl_start = check_int("kl_start", kl_start, 0)
        self.kl_ramp_epochs = check_int("kl_ramp_epochs", kl_ramp_epochs, 0)
        self.domain_delay = check_int("domain_delay", domain_delay, 0)
        self.domain_ramp_epochs = check_int("domain_ramp_epochs", domain_ramp_epochs, 0)

    @classmethod
    def search_space(cls) -> dict[str, Any]:
        return {
            "kl_start": tune.randint(0, 5),
            "kl_ramp_epochs": tune.randint(0, 5),
            "domain_delay": tune.randint(0, 5),
            "domain_ramp_epochs": tune.randint(0, 5),
        }

    def stage(self, epoch: int, metrics: Mapping[str, float] | None) -> Stage:
        kl = linear_ramp(epoch, self.kl_start, self.kl_ramp_epochs)
        domain_start = self.kl_start + self.kl_ramp_epochs + self.domain_delay
        domain = linear_ramp(epoch, domain_start, self.domain_ramp_epochs)
        if kl == 0:
            name = "recon+activity"
        elif kl < 1:
            name = "kl_ramp"
        elif domain == 0:
            name = "recon+activity+kl"
        elif domain < 1:
            name = "domain_ramp"
        else:
            name = "all"
        return Stage(name, loss_multipliers={"kl": kl, "domain": domain})
