"""Train the TCN-VAE on UCI-HAR with the official subject split and report test accuracy.

The epoch is chosen on validation subjects carved out of the 21 official training subjects; the 9
official test subjects are scored once, with that epoch's weights. Normalisation statistics come from
the training subjects only. Published anchors on this split: a CNN on raw signals 94.8 %, strong
models 96–97 %.

    python benchmarks/uci_har.py [--data ../shared/data/uci_har_windows.npz] [--epochs 30]

Last line: ``uci_har official split: accuracy=0.XXXX macro_f1=0.XXXX epochs=N seconds=S``.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

import torch
from torch import optim

from tcnvae.data import DataConfig, prepare
from tcnvae.model import TCNVAE
from tcnvae.trainer import TCNVAETrainer

SHARED_DATA = Path(os.environ.get("TCNVAE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "uci_har_windows.npz",
                        help="uci_har_windows.npz or the extracted 'UCI HAR Dataset' folder")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.data.exists():
        parser.error(f"{args.data} does not exist; pass --data or set TCNVAE_SHARED_DATA")

    started = time.perf_counter()
    torch.manual_seed(args.seed)
    data = prepare(DataConfig(datasets=["uci_har"], paths={"uci_har": str(args.data)}, channel_set="uci9",
                              split="uci_har_official", val_fraction=0.15, batch_size=args.batch_size,
                              seed=args.seed))
    print(f"train {len(data.train)} / val {len(data.val)} / test {len(data.test)} windows; "
          f"activities {data.activity_names}")

    model = TCNVAE(input_dim=len(data.channel_names), latent_dim=64, num_activities=data.num_activities,
                   num_domains=data.num_domains, hidden_dims=[64, 64, 64, 64], kernel_size=5, dropout=0.2)
    trainer = TCNVAETrainer(model, "cpu", learning_rate=args.lr)
    # One dataset, one domain: the adversarial term has nothing to separate, so it is off.
    trainer.beta, trainer.lambda_act, trainer.lambda_dom = 0.1, 2.5, 0.0
    trainer.label_smoothing, trainer.grad_clip = 0.1, 1.0
    trainer.optimizer = optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    trainer.scheduler = optim.lr_scheduler.CosineAnnealingLR(trainer.optimizer, T_max=args.epochs)
    trainer.verbose = False

    best: dict = {}

    def keep_best(record: dict) -> None:
        if record["improved"]:
            best.update(state=copy.deepcopy(model.state_dict()), epoch=record["epoch"])
        print(f"epoch {record['epoch']}: train loss {record['train']['total']:.4f}, val accuracy "
              f"{record['val']['accuracy']:.4f} ({time.perf_counter() - started:.0f}s)", flush=True)

    trainer.fit(data.train_loader(), data.val_loader(), args.epochs, on_epoch_end=keep_best)
    model.load_state_dict(best["state"])
    trainer.validate(data.test_loader())
    test = trainer.last_val_metrics
    print(f"best validation epoch {best['epoch']} (val accuracy {trainer.best_val_accuracy:.4f})")
    print(f"uci_har official split: accuracy={test['accuracy']:.4f} macro_f1={test['macro_f1']:.4f} "
          f"epochs={args.epochs} seconds={time.perf_counter() - started:.0f}")


if __name__ == "__main__":
    main()
