"""The training objective as one object:
``total = recon + β·s(t)·KL + λ_act·activity + λ_dom·domain + λ_ent·entropy``.

:class:`Objective` owns everything that shapes the loss: the weights (β, λ_act, λ_dom, λ_ent), the β schedule
``s`` and its parameters, the gradient-reversal ramp α, label smoothing and the curricula's per-term
multipliers. Its :meth:`~Objective.window_terms` and :meth:`~Objective.total` are the one loss formula:
the trainer's batch loss and the self-paced curriculum's per-window difficulty both come from them.

Each setting is declared once, as a field with its :class:`~tcnvae.settings.Setting` (the trial config's
default, its check, help text), and the flat trial config derives from the declarations: its keys
and defaults (:meth:`Objective.config_defaults`), its checks (:func:`settings`)
and what PBT may mutate. Adding a loss weight is a field here (and its term in
:meth:`Objective.window_terms` when the term is new; a search that should vary it says its range in its
``SPACE``, in ``searches/``); adding a β schedule is a class in :mod:`tcnvae.beta_schedules`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

import torch
from torch import nn

from tcnvae import beta_schedules
from tcnvae.beta_schedules import BetaSchedule, Constant
from tcnvae.settings import Setting, declared, number

UNLABELLED = -1
"""Activity label of a window without one: it trains reconstruction, KL and the domain head, never
the activity head, and is left out of accuracy and F1. As a domain label, a window of unknown domain."""

RECON = "recon"
"""The reconstruction term: the one without a weight of its own, the others are weighed against it."""


def _setting(seed_default: float, setting: Setting) -> Any:
    """A field of the objective: ``seed_default`` is :class:`Objective`'s own (the original training
    module's, what ``TCNVAETrainer(model, device, learning_rate)`` trains with); the declaration's
    default is the trial config's, the searches' starting point."""
    return field(default=seed_default, metadata={"setting": setting})


# A negative weight turns a minimised term into a maximised one and the loss runs off to -∞.
_WEIGHT = number(0, expected="a finite number >= 0")


def adversarial_alpha(batch_idx: int, epoch: int, num_batches: int, ramp_epochs: float = 10.0) -> float:
    """Gradient-reversal strength: ``p = (batch_idx + epoch·N) / (ramp_epochs·N)``, ``α = 2/(1+e^(-10p)) - 1``.

    α starts at 0 so the encoder first learns activity features, then rises to 1 over ``ramp_epochs``.
    """
    p = (batch_idx + epoch * num_batches) / (ramp_epochs * num_batches)
    return 2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0


def reconstruction(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Each window's mean squared reconstruction error, shape (batch,)."""
    return ((recon - target) ** 2).flatten(1).mean(dim=1)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Each window's KL(q(z|x) ‖ N(0, I)), summed over latent dimensions, shape (batch,)."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Each window's entropy of the softmax over ``logits`` (nats), shape (batch,)."""
    log_p = torch.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


Values = TypeVar("Values")  # a tensor (the trainer's batch loss) or an array (a per-window score)


@dataclass(frozen=True)
class Objective:
    """The loss of a TCN-VAE run. Immutable: change a setting with :func:`dataclasses.replace` (which
    checks it again) or :meth:`configured`. The defaults are the original training module's."""

    beta: float = _setting(1.0, Setting(0.1, _WEIGHT, "the KL weight β", term="kl", mutable=True))
    lambda_act: float = _setting(1.0, Setting(2.5, _WEIGHT, "the activity-loss weight λ_act", term="activity",
                                              mutable=True))
    lambda_dom: float = _setting(0.1, Setting(0.1, _WEIGHT, "the domain-loss weight λ_dom", term="domain",
                                              mutable=True))
    # The shape of β over training (tcnvae.beta_schedules): config keys beta_schedule and beta_<parameter>.
    beta_schedule: BetaSchedule = field(default_factory=Constant)
    alpha_ramp_epochs: float = _setting(10.0, Setting(
        10.0, number(0, low_open=True, expected="a positive number of epochs"),
        "epochs until the reversed gradient reaches full strength", mutable=True))
    label_smoothing: float = _setting(0.0, Setting(0.1, number(0, 1, high_open=True),
                                                   "the activity targets' label smoothing", mutable=True))
    # Conditional-entropy minimisation (VADA: Shu, Bui, Narui and Ermon, ICLR 2018; Grandvalet and Bengio,
    # 2005): confident activity predictions on unlabelled windows push the activity boundaries into the
    # target's low-density gaps, which the domain head alone does not. It only means something with
    # unlabelled windows, so only the adaptation searches vary it (searches/loss_weights.py's ADAPTATION_SPACE).
    lambda_ent: float = _setting(0.0, Setting(0.0, _WEIGHT, "the weight λ_ent of the activity head's prediction "
                                              "entropy on unlabelled windows", term="entropy", mutable=True))
    # Extra weight of each term on top of β and the λs, set by curricula per epoch (e.g. the adversarial
    # term at 0 while one domain is in the batches); validation leaves them out, so the validation loss
    # stays the configured objective and compares across stages. Not a config key.
    loss_multipliers: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, setting in settings():
            value = getattr(self, name)
            if not setting.check(value):
                raise ValueError(f"{name} = {value!r}: expected {setting.expected} ({setting.help})")
            object.__setattr__(self, name, float(value))
        if not isinstance(self.beta_schedule, BetaSchedule):
            raise ValueError(f"beta_schedule = {self.beta_schedule!r}: expected a tcnvae.beta_schedules.BetaSchedule")
        unknown = sorted(set(self.loss_multipliers) - set(LOSS_TERMS))
        if unknown:
            raise ValueError(f"loss_multipliers names unknown loss terms {unknown}; the terms are {', '.join(LOSS_TERMS)}")
        multipliers = {term: self.loss_multipliers.get(term, 1.0) for term in LOSS_TERMS}
        bad = {term: value for term, value in multipliers.items() if not _WEIGHT(value)}
        if bad:
            raise ValueError(f"loss_multipliers {bad}: expected {_WEIGHT.expected} for each term")
        object.__setattr__(self, "loss_multipliers", {term: float(value) for term, value in multipliers.items()})

    # -- the flat trial config ---------------------------------------------------------------------
    @staticmethod
    def config_defaults() -> dict[str, Any]:
        """The objective's keys of a flat trial config, with their defaults, in declaration order
        (the β schedule's as ``beta_schedule`` and one ``beta_<parameter>`` per registered parameter)."""
        defaults: dict[str, Any] = {}
        for item in fields(Objective):
            setting = declared(item)
            if item.name == "beta_schedule":
                defaults["beta_schedule"] = Constant.name
                defaults.update(beta_schedules.config_defaults())
            elif setting is not None:
                defaults[item.name] = setting.default
        return defaults

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loss_multipliers: Mapping[str, float] | None = None) -> Objective:
        """The objective a (checked) flat trial config describes."""
        return cls(**{name: config[name] for name, _ in settings()}, beta_schedule=beta_schedules.from_config(config),
                   loss_multipliers=dict(loss_multipliers or {}))

    def configured(self, config: Mapping[str, Any]) -> Objective:
        """This objective with the settings of ``config`` (a PBT mutation, a replayed epoch); the
        curriculum's loss multipliers stay."""
        return Objective.from_config(config, self.loss_multipliers)

    def state(self) -> dict[str, Any]:
        """The settings as plain data, for checkpoints (the multipliers are the curriculum's to restore)."""
        return {"loss_weights": {name: getattr(self, name) for name, _ in settings()},
                "beta_schedule": self.beta_schedule.to_config()}

    def restored(self, state: Mapping[str, Any]) -> Objective:
        """This objective with the settings of :meth:`state`; a checkpoint from before a setting was
        saved keeps this objective's value of it."""
        schedule = dict(state["beta_schedule"])
        return replace(self, **state["loss_weights"],
                       beta_schedule=beta_schedules.make_beta_schedule(schedule.pop("name"), **schedule))

    # -- the loss ----------------------------------------------------------------------------------
    def beta_at(self, progress: float) -> float:
        """β as applied ``progress`` epochs into training: ``beta × beta_schedule(progress)``."""
        return self.beta * self.beta_schedule(progress)

    def alpha_at(self, batch_idx: int, epoch: int, num_batches: int) -> float:
        """The gradient-reversal strength at a batch (:func:`adversarial_alpha` over ``alpha_ramp_epochs``)."""
        return adversarial_alpha(batch_idx, epoch, num_batches, self.alpha_ramp_epochs)

    def window_terms(self, outputs: tuple[torch.Tensor, ...], target: torch.Tensor, activity_labels: torch.Tensor,
                     domain_labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each window's value of each loss term, shape (batch,), from the model's outputs
        ``(recon, mu, logvar, activity_logits, domain_logits)``. Windows without an activity label
        (or of unknown domain) have 0 for that term, labelled windows 0 for the entropy term;
        :meth:`batch_terms` leaves them out of its mean."""
        recon, mu, logvar, activity_logits, domain_logits = outputs
        return {
            RECON: reconstruction(recon, target),
            "kl": kl_divergence(mu, logvar),
            "activity": nn.functional.cross_entropy(activity_logits, activity_labels, ignore_index=UNLABELLED,
                                                    label_smoothing=self.label_smoothing, reduction="none"),
            "domain": nn.functional.cross_entropy(domain_logits, domain_labels, ignore_index=UNLABELLED,
                                                  reduction="none"),
            "entropy": prediction_entropy(activity_logits) * (activity_labels == UNLABELLED),
        }

    @staticmethod
    def batch_terms(window_terms: Mapping[str, torch.Tensor], activity_labels: torch.Tensor,
                    domain_labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each term averaged over the windows it applies to: the activity term over labelled windows,
        the entropy term over unlabelled ones, the domain term over windows of known domain, the others
        over all. A term with no window to average is a zero that keeps the graph (a mean over nothing
        would be NaN)."""
        counted = {"activity": activity_labels >= 0, "domain": domain_labels >= 0,
                   "entropy": activity_labels == UNLABELLED}
        means = {}
        for term, values in window_terms.items():
            mask = counted.get(term)
            means[term] = values.mean() if mask is None else (values * mask).sum() / mask.sum().clamp(min=1)
        return means

    def total(self, terms: Mapping[str, Values], applied_beta: float,
              multipliers: Mapping[str, float] | None = None) -> Values:
        """``Σ multiplier · weight · term`` over the terms given: the one loss formula.

        The weights are 1 for reconstruction, ``applied_beta`` (β × schedule at this point of training)
        for KL and each λ for its term; ``multipliers`` (absent: all 1) are the curriculum's. Works on
        batch means (the trainer's loss) and per-window arrays (the self-paced difficulty) alike.
        """
        weights = {RECON: 1.0, **{setting.term: getattr(self, name) for name, setting in settings() if setting.term}}
        weights["kl"] = applied_beta
        multipliers = multipliers or {}
        return sum(multipliers.get(term, 1.0) * weights[term] * value for term, value in terms.items())


def settings() -> list[tuple[str, Setting]]:
    """The objective's declared numeric settings, ``(name, Setting)`` in declaration order."""
    return [(item.name, declared(item)) for item in fields(Objective) if declared(item) is not None]


LOSS_TERMS: tuple[str, ...] = (RECON, *(setting.term for _, setting in settings() if setting.term))
"""The terms of the loss, in the order the formula adds them: what curricula's multipliers name."""
