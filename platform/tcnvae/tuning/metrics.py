"""Every metric name: what a trial reports each epoch, and what searches, TensorBoard, selection and the
report read.

A trial reports one flat dict per epoch (:func:`epoch_metrics`): its keys are Tune's result keys, the
leaderboard's columns and TensorBoard's tags, which group by the part before the first slash:

- ``loss/<term>`` (:func:`loss_metric`, one per term of the objective, and ``loss/total``),
  ``schedule/*`` (β, α, the learning rate) and ``train/*``: the epoch's training;
- ``val/*``: validation on held-out people of the training domains, ``val/domain/<name>`` per domain
  (:func:`domain_accuracy_metric`);
- ``target/accuracy`` (:data:`TARGET_METRIC`): the labelled slice of a held-out target domain;
- ``select/*``: the label-free selection scores (:mod:`tcnvae.tuning.selection`);
- ``analysis/*``: the unlabelled target's accuracy, reported for analysis and never read by an objective;
- ``curriculum/*``: the curriculum's stage and multipliers, named by :mod:`tcnvae.curriculum.runner`,
  which reports them (the curriculum package sits below ``tcnvae.tuning`` and cannot import from it).

A search maximises one of :data:`OBJECTIVES`; the test split, scored once after selection, has its own
names (:data:`TEST_METRICS`, :func:`test_split_metric`) so no test figure is mistaken for a validation one.
"""

from __future__ import annotations

from tcnvae.curriculum.runner import STAGE_METRIC as STAGE_METRIC  # reported by the runner: see the module doc
from tcnvae.objective import LOSS_TERMS
from tcnvae.trainer import TCNVAETrainer

VAL_PREFIX = "val/"
VAL_LOSS = "val/loss"
VAL_ACCURACY = "val/accuracy"
VAL_MACRO_F1 = "val/macro_f1"
VAL_WORST_DOMAIN_ACCURACY = "val/worst_domain_accuracy"
VAL_DOMAIN_CLASSIFIER_ACCURACY = "val/domain_classifier_accuracy"
TARGET_METRIC = "target/accuracy"
SOURCE_SCORE = "select/source_score"
DEV_SCORE = "select/dev_score"
DEV_WEIGHT_MEAN = "select/dev_weight_mean"

SCHEDULE_BETA = "schedule/beta"
SCHEDULE_ALPHA = "schedule/alpha"
SCHEDULE_LR = "schedule/lr"

ANALYSIS_PREFIX = "analysis/"
"""Metrics logged for analysis only, never an objective: the target's accuracy with adapt="unlabelled"."""
TARGET_ANALYSIS_ACCURACY = f"{ANALYSIS_PREFIX}target_accuracy"
TARGET_ANALYSIS_MACRO_F1 = f"{ANALYSIS_PREFIX}target_macro_f1"

LOSS_PREFIX = "loss/"


def loss_metric(term: str) -> str:
    """The reported name of a loss term (``loss/kl``), or of the total (``loss/total``)."""
    return f"{LOSS_PREFIX}{term}"


def domain_accuracy_metric(domain: str) -> str:
    """The validation accuracy of one domain: ``val/domain/<name>``."""
    return f"{VAL_PREFIX}domain/{domain}"


TOTAL_LOSS = loss_metric("total")

OBJECTIVES: dict[str, str] = {
    "accuracy": VAL_ACCURACY,
    "worst_domain_accuracy": VAL_WORST_DOMAIN_ACCURACY,
    "target_accuracy": TARGET_METRIC,
    "source_risk": SOURCE_SCORE,
    "dev": DEV_SCORE,
}
"""What a search may optimise (all maximised), by flag value → reported metric.

- ``accuracy``: activity accuracy on the validation subjects — people never seen in training, from
  the training domains. The default: it measures generalisation to new people, not to new datasets.
- ``worst_domain_accuracy``: the lowest per-domain validation accuracy. Selects models that do not buy
  their average by failing one dataset (or placement, or subject group); the domain-robust choice.
- ``target_accuracy``: accuracy on a small labelled slice of a *target* domain that is held out of
  training (``target_domain``; ``target_labelled_fraction`` of its subjects are labelled for model
  selection, the rest stay unseen for the final test). The choice when you know where the model will
  be deployed and can label a little of it.
- ``source_risk``: minus the activity cross-entropy on the validation subjects (source risk, as a score
  to maximise). Label-free with respect to the target; assumes the target looks like the source.
- ``dev``: minus the Deep Embedded Validation risk (You et al., ICML 2019) — the same validation loss,
  each window weighted by how target-like its features are (a domain classifier's density ratio), with
  a control variate against the weights' variance. Needs ``adapt="unlabelled"`` (target features, never
  target labels); assumes covariate shift (p(y|x) shared) and overlapping feature distributions.

With ``adapt="unlabelled"`` the target's accuracy is still reported as ``analysis/target_accuracy``
and ``analysis/target_macro_f1``, for analysis only: no objective reads them.
"""
OBJECTIVE_MODE = "max"

SUMMARY_METRICS = (VAL_ACCURACY, VAL_MACRO_F1, VAL_WORST_DOMAIN_ACCURACY, VAL_LOSS)
"""Final metrics listed for every trial besides the objectives."""
# Metrics the HParams dashboard shows against the hyperparameters (their latest values); the
# search's objective goes first (tensorboard.hparam_metrics), and TensorBoard ticks the first five.
HPARAM_METRICS: tuple[str, ...] = (
    *SUMMARY_METRICS, VAL_DOMAIN_CLASSIFIER_ACCURACY, TOTAL_LOSS, loss_metric("recon"), loss_metric("kl"),
)

TEST_METRICS = ("accuracy", "macro_f1", "worst_domain_accuracy")
"""The test split's figures (of :func:`tcnvae.evaluate.score`) printed and written after selection."""


def test_split_metric(name: str) -> str:
    """The printed name of a test-split figure: ``test/accuracy``."""
    return f"test/{name}"


def leaderboard_test_column(metric: str) -> str:
    """The leaderboard column of a test-split figure, which says it chose nothing."""
    return f"{test_split_metric(metric)} (never used for choosing)"


def train_metrics(trainer: TCNVAETrainer) -> dict[str, float]:
    """The flat training metrics of the epoch just run (every loss term of the objective, the schedules):
    what a trial reports and what a run without validation (the final model) gives its curriculum."""
    train = trainer.last_train_metrics
    metrics = {
        "epoch": trainer.epoch,
        TOTAL_LOSS: train["total"], **{loss_metric(term): train[term] for term in LOSS_TERMS},
        SCHEDULE_BETA: train["beta"], SCHEDULE_ALPHA: train["alpha"], SCHEDULE_LR: train["lr"],
        "train/domain_accuracy": train["domain_accuracy"],
        "train/unlabelled": train["unlabelled"], "train/nonfinite_input_batches": train["nonfinite_input_batches"],
    }
    return {key: float(value) for key, value in metrics.items()}


def epoch_metrics(trainer: TCNVAETrainer, target_accuracy: float | None) -> dict[str, float]:
    """The flat metrics of the epoch just run and validated (:func:`train_metrics` and the validation
    metrics); the keys are also the TensorBoard tags."""
    val = trainer.last_val_metrics
    metrics = {
        **train_metrics(trainer),
        VAL_LOSS: val["loss"], VAL_ACCURACY: val["accuracy"], VAL_MACRO_F1: val["macro_f1"],
        VAL_WORST_DOMAIN_ACCURACY: val["worst_domain_accuracy"],
        VAL_DOMAIN_CLASSIFIER_ACCURACY: val["domain_classifier_accuracy"],
    }
    metrics.update({domain_accuracy_metric(name): value for name, value in val["per_domain_accuracy"].items()})
    if target_accuracy is not None:
        metrics[TARGET_METRIC] = target_accuracy
    return {key: float(value) for key, value in metrics.items()}

