"""What ASHA saves: the same trials searched with ASHA and run to completion, best accuracy and epochs.

Both runs are searches/loss_weights.py with random search under one seed, so they draw the same
configurations; trials are seeded, so a configuration computes the same epochs in both runs. ASHA's
best can therefore only match the full run's best (when it kept the best configuration to the end)
or fall short of it; the question is how many epochs it spends to get there.

    python benchmarks/search_efficiency.py [--num-samples 8] [--max-epochs 8]

Last line:

    search_efficiency: asha_best=A full_best=B asha_epochs=E1 full_epochs=E2
"""

from __future__ import annotations

import argparse
import runpy
import sys
import tempfile
from pathlib import Path

import ray

from tcnvae.tuning.metrics import VAL_ACCURACY

LOSS_WEIGHTS = Path(__file__).resolve().parents[1] / "searches" / "loss_weights.py"


def search(scheduler: str, args: argparse.Namespace, storage: str) -> dict[str, tuple[float, int]]:
    """Final validation accuracy and epochs run of each trial, by its lr (unique per drawn configuration)."""
    main = runpy.run_path(str(LOSS_WEIGHTS))["main"]
    results = main(["--search", "random", "--scheduler", scheduler, "--num-samples", str(args.num_samples),
                    "--max-epochs", str(args.max_epochs), "--seed", str(args.seed),
                    "--storage-path", storage, "--name", scheduler])
    return {f"{result.config['lr']:.6g}": (result.metrics[VAL_ACCURACY], result.metrics["training_iteration"])
            for result in results}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=8)
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    with tempfile.TemporaryDirectory() as storage:
        asha = search("asha", args, storage)
        full = search("fifo", args, storage)
    ray.shutdown()
    if set(asha) != set(full):
        raise RuntimeError("the two searches drew different configurations; the comparison is void")

    print(f"\n{'lr':>12} {'full: accuracy':>15} {'ASHA: accuracy':>15} {'ASHA: epochs':>13}")
    for lr in sorted(full, key=lambda key: -full[key][0]):
        print(f"{lr:>12} {full[lr][0]:>15.4f} {asha[lr][0]:>15.4f} {asha[lr][1]:>13d}")
    asha_best = max(accuracy for accuracy, _ in asha.values())  # what the search reports as its best
    full_best = max(accuracy for accuracy, _ in full.values())
    asha_epochs = sum(epochs for _, epochs in asha.values())
    full_epochs = sum(epochs for _, epochs in full.values())
    print(f"search_efficiency: asha_best={asha_best:.4f} full_best={full_best:.4f} "
          f"asha_epochs={asha_epochs} full_epochs={full_epochs}")


if __name__ == "__main__":
    main(sys.argv[1:])
