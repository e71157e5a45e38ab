"""Pretrain the encoder unsupervised: train the VAE part (reconstruction + β·KL) and save the encoder.

The activity and domain terms are off (λ_act = λ_dom = 0), so labels play no part; what the encoder
learns is to summarise windows well enough to rebuild them. The saved encoder is what the
`freeze_then_finetune` curriculum starts from (its ``encoder_path`` parameter):

    python searches/pretrain.py                              # synthetic data, about half a minute on a CPU
    python searches/pretrain.py --data uci_har hapt --max-epochs 30 --output encoder.pt \\
        --set hidden_dims=[64,64,128] --set latent_dim=64

The model's shape comes from the same trial settings as a search (``--set hidden_dims=...``,
``latent_dim``, ``kernel_size``, ``channel_set``), so give both the same ones or the encoder will not
load. Windows: the training side of ``split`` (default: subject-disjoint; ``--set split=lodo:NAME``
keeps a target domain out), standardised with its own statistics; validation subjects measure the
held-out reconstruction loss. ``--all-windows`` pretrains on every window of the datasets instead
(train, validation and test subjects): more data, but a model evaluated later on those subjects has
then seen their (unlabelled) windows — say so when reporting its accuracy.

Writes the encoder (``model.save_encoder``: tensors and plain data, loaded with weights_only=True)
and, beside it, a JSON summary: data, settings, and the loss of every epoch.

**A new dataset from a few labelled people, in one command.** ``--finetune-epochs N`` goes on to
fine-tune from the encoder just written with the ``freeze_then_finetune`` curriculum, on the same split,
and scores the epoch of best validation (the trial's ``objective``) once on the test:

    python searches/pretrain.py --data hapt wisdm2019_phone --all-windows --finetune-epochs 10 \\
        --set split=lodo:wisdm2019_phone --set target_labelled_people=2 --set sample_rate=20

Here K = 2 of WISDM 2019 phone's people (drawn by the seed) are labelled training data beside HAPT,
validation is on HAPT's people, and the test is the phone's other people; ``--all-windows`` lets
pretraining read every pooled window without labels, the test people's included, as unsupervised
adaptation does (the test score is then transductive: say so). Fine-tuning takes the trial defaults
with the same ``--set``/``--config`` settings (model shape, data, split), except β: this recipe's
0.01 is pretraining's (``--set beta=...`` sets both). Give the curriculum's parameters with
``--set curriculum=freeze_then_finetune --set curriculum.freeze_epochs=2``. The summary of the fine-tuning
(each epoch's metrics, the chosen epoch, the test figures) goes to ``<encoder>.finetune.json``, and its
TensorBoard run beside it.
"""

from __future__ import annotations

import argparse
import copy
import warnings
from pathlib import Path
from typing import Any

import torch

from tcnvae.checkpoints import write_json
from tcnvae.data.pipeline import PreparedData
from tcnvae.data.windows import concat
from tcnvae.trainer import TrainingHealthWarning
from tcnvae.tuning import DEFAULT_CONFIG, OBJECTIVES, cli, validate_config
from tcnvae.tuning.config import CURRICULUM_PREFIX
from tcnvae.tuning.report import scored_test_windows
from tcnvae.tuning.trial import Trial, build_model, build_trainer, seed_everything

# β: the KL is summed over latent dimensions while reconstruction is a mean over elements, so at the
# trial default β = 1 the KL wins and the posterior collapses: nothing is learnt, where β = 0.01 learns
# (docs/results.md, "Smaller measurements"). Override with --set beta=...
RECIPE_DEFAULTS = {"max_epochs": 10, "beta": 0.01}
FINETUNE_POLICY = "freeze_then_finetune"  # the curriculum --finetune-epochs fine-tunes with


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.run_parser(__doc__)
    parser.add_argument("--max-epochs", type=int, default=None,
                        help=f"epochs of pretraining (default: {RECIPE_DEFAULTS['max_epochs']})")
    parser.add_argument("--output", type=Path, default=None,
                        help="encoder file to write (default: encoder.pt in --storage-path/--name)")
    parser.add_argument("--all-windows", action="store_true",
                        help="pretrain on every window of the datasets, validation and test subjects included")
    parser.add_argument("--finetune-epochs", type=int, default=0,
                        help=f"then fine-tune from the encoder with {FINETUNE_POLICY} for this many epochs on the "
                             "same split, and score it on the test (default: 0, pretraining only)")
    return parser.parse_args(argv)


def finetune_config(args: argparse.Namespace, config: dict[str, Any], encoder: Path | None) -> dict[str, Any]:
    """The fine-tuning trial's config: the pretraining's (its data, split and model shape) with the trial's β
    unless --set/--config gave one, ``--finetune-epochs`` epochs, and freeze_then_finetune from ``encoder``
    (None: checked before the encoder exists)."""
    beta = cli.fixed_settings(args).get("beta", DEFAULT_CONFIG["beta"])
    return validate_config({**config, "beta": beta, "max_epochs": args.finetune_epochs, "curriculum": FINETUNE_POLICY,
                            f"{CURRICULUM_PREFIX}encoder_path": None if encoder is None else str(encoder)})


def finetune(config: dict[str, Any], data: PreparedData, log_dir: Path) -> dict[str, Any]:
    """Run the fine-tuning trial on ``data``; the epoch of best validation ``objective`` is scored once on
    the test (less a target slice that selection read, as a search's test is)."""
    metric = OBJECTIVES[config["objective"]]
    history: list[dict[str, float]] = []
    best: dict[str, Any] = {}
    with Trial(config, data=data, log_dir=log_dir) as trial:
        def keep_best(metrics: dict[str, float]) -> None:
            history.append(metrics)
            print(f"fine-tuning epoch {int(metrics['epoch'])}: {metric} {metrics[metric]:.4f}", flush=True)
            if not best or metrics[metric] > best["metrics"][metric]:
                best.update(metrics=metrics, weights=copy.deepcopy(trial.trainer.model.state_dict()))

        trial.run(config["max_epochs"], keep_best)
        trial.trainer.model.load_state_dict(best["weights"])
        tested = scored_test_windows(trial.data, config)
        test = trial.trainer.evaluate(trial.data.loader(tested))
    return {"split": trial.data.config.split, "chosen_epoch": int(best["metrics"]["epoch"]),
            "selected_on": {metric: best["metrics"][metric]},
            "test": {"accuracy": test["accuracy"], "macro_f1": test["macro_f1"], "windows": len(tested),
                     "subjects": sorted(set(tested.subject.tolist()))},
            "training_people": sorted(set(trial.data.train.subject.tolist())), "history": history}


def main(argv: list[str] | None = None) -> Path:
    """Pretrain and save; returns the encoder file's path."""
    args = parse_args(argv)
    config = cli.base_config(args, RECIPE_DEFAULTS)
    if args.finetune_epochs < 0:
        raise ValueError(f"--finetune-epochs {args.finetune_epochs}: expected an integer >= 0")
    if args.finetune_epochs and config["curriculum"] not in ("none", FINETUNE_POLICY):
        raise ValueError(f"--finetune-epochs fine-tunes with {FINETUNE_POLICY}, not curriculum="
                         f"{config['curriculum']!r}: leave curriculum unset, or set curriculum={FINETUNE_POLICY} to "
                         f"give its parameters (--set {CURRICULUM_PREFIX}freeze_epochs=2)")
    if args.finetune_epochs:
        finetune_config(args, config, None)  # a bad fine-tuning setting fails now, not after pretraining
    output = args.output if args.output is not None else cli.experiment_path(args, "pretrain") / "encoder.pt"
    if output.suffix == ".json":
        raise ValueError(f"--output {output}: the summary goes to a .json beside the encoder; name a .pt file")

    seed_everything(config["seed"])
    config, data = cli.prepare_data(config)
    device = torch.device("cuda" if config["use_gpu"] else "cpu")
    model = build_model(config, data)
    trainer = build_trainer(config, model, device)
    trainer.lambda_act = trainer.lambda_dom = 0.0  # the VAE part only
    windows = concat([data.train, data.val, data.test]) if args.all_windows else data.train
    train_loader = data.loader(windows, augmented=True, shuffle=True)
    val_loader = data.val_loader() if len(data.val) and not args.all_windows else None

    history: list[dict[str, Any]] = []

    def after_epoch() -> None:
        record = {"epoch": trainer.epoch, **{key: trainer.last_train_metrics[key] for key in ("recon", "kl", "beta")}}
        if val_loader is not None:
            with warnings.catch_warnings():  # the untrained activity head is at chance by design
                warnings.simplefilter("ignore", TrainingHealthWarning)
                record["val_loss"], _ = trainer.validate(val_loader)
        history.append(record)
        print(f"epoch {record['epoch']}: recon {record['recon']:.4f}, KL {record['kl']:.3f}"
              + (f", validation recon + β·KL {record['val_loss']:.4f}" if "val_loss" in record else ""), flush=True)

    trainer.train_epochs(train_loader, config["max_epochs"], after_epoch=after_epoch)

    model.save_encoder(output)
    write_json({"encoder": str(output), "windows": len(windows), "all_windows": args.all_windows,
                "model_config": model.config, "config": config, "data": data.metadata(), "history": history},
               output.with_suffix(".json"))
    print(f"Encoder: {output} (pretrained on {len(windows)} windows of {', '.join(config['datasets'])})")
    if args.finetune_epochs:
        tuned = finetune_config(args, config, output)
        result = finetune(tuned, data, output.parent / f"{output.stem}_finetune")
        write_json({"encoder": str(output), "config": tuned, **result},
                   output.with_suffix(".finetune.json"))
        test = result["test"]
        print(f"Fine-tuned: epoch {result['chosen_epoch']} chosen on {OBJECTIVES[tuned['objective']]}; test on "
              f"{len(test['subjects'])} people ({test['windows']} windows): accuracy {test['accuracy']:.4f}, "
              f"macro-F1 {test['macro_f1']:.4f}")
    return output


if __name__ == "__main__":
    cli.run_command(main)
