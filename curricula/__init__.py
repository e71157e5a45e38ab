"""The optional curriculum policies, one module each, registered by name on import.

The platform's own default, ``none``, is not here: it lives in ``tcnvae.curriculum.none``.

``tcnvae.curriculum.make_curriculum("single_to_cross")`` imports this package on first use; add
your own with ``tcnvae.curriculum.register_curriculum`` or name a file: ``mypolicies.py:MyPolicy``.
"""

from curricula.freeze_then_finetune import FreezeThenFinetune
from curricula.objective_ramp import ObjectiveRamp
from curricula.self_paced import SelfPaced
from curricula.single_to_cross import SingleToCross
from tcnvae.curriculum import register_curriculum

SHIPPED = (SingleToCross, FreezeThenFinetune, ObjectiveRamp, SelfPaced)
for _policy in SHIPPED:
    register_curriculum(_policy.name, _policy)

__all__ = ["SHIPPED", "FreezeThenFinetune", "ObjectiveRamp", "SelfPaced", "SingleToCross"]
