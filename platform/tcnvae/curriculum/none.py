"""`none`: everything on from the first epoch — every domain, every parameter, every loss term.

The platform's own default policy (``DEFAULT_CONFIG["curriculum"]``), so it lives here and is
registered with the registry itself: a default config validates and trains without the optional
policies of the top-level ``curricula`` package.

The baseline every curriculum is compared against: a run with this policy trains exactly as a run
without a curriculum does (except that the adversarial term is off when the training data hold a
single domain, where a domain classifier has nothing to tell apart).
"""

from __future__ import annotations

from collections.abc import Mapping

from tcnvae.curriculum.policy import CurriculumPolicy
from tcnvae.curriculum.stage import Stage


class NoCurriculum(CurriculumPolicy):
    name = "none"

    def stage(self, epoch: int, metrics: Mapping[str, float] | None) -> Stage:
        return Stage("all")
