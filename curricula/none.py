"""`none`: everything on from the first epoch — every domain, every parameter, every loss term.

The baseline every curriculum is compared against: a run with this policy trains exactly as a run
without a curriculum does (except that the adversarial term is off when the training data hold a
single domain, where a domain classifier has nothing to tell apart).
"""

from __future__ import annotations

from collections.abc import Mapping

from tcnvae.curriculum import CurriculumPolicy, Stage


class NoCurriculum(CurriculumPolicy):
    name = "none"

    def stage(self, epoch: int, metrics: Mapping[str, float] | None) -> Stage:
        return Stage("all")
