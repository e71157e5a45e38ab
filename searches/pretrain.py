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
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

import torch

from tcnvae.checkpoints import write_json
from tcnvae.data.windows import concat
from tcnvae.trainer import TrainingHealthWarning
from tcnvae.tuning import cli
from tcnvae.tuning.loop import build_model, build_trainer, seed_everything

# β: the KL is summed over latent dimensions while reconstruction is a mean over elements, so at the
# trial default β = 1 the KL wins and the posterior collapses: nothing is learnt, where β = 0.01 learns
# (docs/results.md, "Smaller measurements"). Override with --set beta=...
RECIPE_DEFAULTS = {"max_epochs": 10, "beta": 0.01}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.run_parser(__doc__)
    parser.add_argument("--max-epochs", type=int, default=None,
                        help=f"epochs of pretraining (default: {RECIPE_DEFAULTS['max_epochs']})")
    parser.add_argument("--output", type=Path, default=None,
                        help="encoder file to write (default: encoder.pt in --storage-path/--name)")
    parser.add_argument("--all-windows", action="store_true",
                        help="pretrain on every window of the datasets, validation and test subjects included")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    """Pretrain and save; returns the encoder file's path."""
    args = parse_args(argv)
    config = cli.base_config(args, RECIPE_DEFAULTS)
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
    return output


if __name__ == "__main__":
    cli.run_command(main)
