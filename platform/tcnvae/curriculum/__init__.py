"""Curricula: policies that decide, epoch by epoch, which data, parameters and loss terms train.

- :class:`Stage` — one epoch's regime (domain shares, trainable groups and their learning-rate
  multipliers, loss-term multipliers, self-paced window fraction), plain data.
- :class:`CurriculumPolicy` — the abstract policy: ``stage(epoch, metrics)``, ``search_space()``,
  ``state_dict()``; :class:`Compose` runs several at once.
- :func:`make_curriculum` — a policy from a spec: a registered name, ``file.py:Class``, or ``a+b``.
  ``none`` (the default) is the platform's own; the optional shipped policies live in the top-level
  ``curricula`` package.
- :func:`apply_stage`, :class:`CurriculumRunner` — putting stages into effect on a trainer and loader.
- :func:`grouped_optimizer` — the optimizer with one param group per named part of the model, which
  per-group learning rates need.
"""

from tcnvae.curriculum.apply import (
    apply_stage,
    easiest_windows,
    effective_stage,
    per_window_losses,
)
from tcnvae.curriculum.groups import (
    encoder_groups,
    grouped_optimizer,
    parameter_groups,
    set_trainable,
)
from tcnvae.curriculum.policy import (
    Compose,
    CurriculumContext,
    CurriculumPolicy,
    check_choice,
    check_int,
    check_number,
    linear_ramp,
    require_metric,
)
from tcnvae.curriculum.registry import (
    CURRICULA,
    check_curriculum_spec,
    curriculum_class,
    curriculum_search_space,
    load_policy_class,
    make_curriculum,
    register_curriculum,
)
from tcnvae.curriculum.runner import CurriculumRunner
from tcnvae.curriculum.stage import Stage, merge_stages
from tcnvae.learning_rates import set_lr_multipliers  # here too: curricula's per-part rates

__all__ = [
    "CURRICULA",
    "Compose",
    "CurriculumContext",
    "CurriculumPolicy",
    "CurriculumRunner",
    "Stage",
    "apply_stage",
    "check_choice",
    "check_curriculum_spec",
    "check_int",
    "check_number",
    "curriculum_class",
    "curriculum_search_space",
    "easiest_windows",
    "effective_stage",
    "encoder_groups",
    "grouped_optimizer",
    "linear_ramp",
    "load_policy_class",
    "make_curriculum",
    "merge_stages",
    "parameter_groups",
    "per_window_losses",
    "register_curriculum",
    "require_metric",
    "set_lr_multipliers",
    "set_trainable",
]
