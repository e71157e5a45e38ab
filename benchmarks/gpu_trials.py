"""Trials per hour of the default search on one GPU, packed 1, 2 and 4 to the GPU; bf16 against fp32.

Runs `searches/loss_weights.py` (its defaults: Optuna's TPE, the default model and ranges) on real data
at each `--gpus-per-trial`, in one Ray instance, so Ray's start-up is paid once and measured apart.
Every setting runs the same number of trials for the same epochs with FIFO (ASHA's stops would make
the trial counts differ between settings), with `--cpus-per-trial` CPUs each. GPU utilisation is
nvidia-smi's, sampled every half second while the setting runs. The epoch timing trains the default
model on the same data with the seed API, fp32 then bf16 autocast, after a warm-up epoch each.

    python benchmarks/gpu_trials.py --data-path hapt=../shared/data/hapt_raw.npz

Prints one line per setting, then `gpu_trials: ...` and `gpu_precision: ...`. `benchmarks/gpu.sh` runs it.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ray
import torch

from tcnvae.model import TCNVAE
from tcnvae.trainer import TCNVAETrainer
from tcnvae.tuning import cli
from tcnvae.tuning.config import validate_config

ROOT = Path(__file__).resolve().parents[1]


def loss_weights_recipe():
    spec = importlib.util.spec_from_file_location("loss_weights", ROOT / "searches" / "loss_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class UtilisationSampler:
    """nvidia-smi's GPU utilisation (%) and memory (MiB), every 500 ms, while the ``with`` block runs."""

    def __enter__(self) -> "UtilisationSampler":
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".csv")
        self.process = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-lms", "500"],
            stdout=self.log, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait()
        self.log.seek(0)
        rows = [line.split(",") for line in self.log.read().splitlines() if line.count(",") == 1]
        samples = [(float(util), float(memory)) for util, memory in rows if util.strip().isdigit()]
        self.mean_utilisation = statistics.fmean(s[0] for s in samples) if samples else float("nan")
        self.peak_memory_mib = max((s[1] for s in samples), default=float("nan"))


def trials_per_hour(args: argparse.Namespace, gpus_per_trial: float, storage: Path) -> dict[str, float]:
    paths = [flag for path in args.data_path for flag in ("--data-path", path)]
    argv = ["--data", "hapt", *paths, "--gpus-per-trial", str(gpus_per_trial),
            "--cpus-per-trial", str(args.cpus_per_trial), "--num-samples", str(args.num_samples),
            "--max-epochs", str(args.max_epochs), "--scheduler", "fifo", "--storage-path", str(storage),
            "--name", f"gpus_per_trial_{gpus_per_trial:g}", "--seed", "0"]
    with UtilisationSampler() as gpu:
        start = time.perf_counter()
        results = loss_weights_recipe().main(argv)
        seconds = time.perf_counter() - start
    finished = sum(result.error is None for result in results)
    return {"gpus_per_trial": gpus_per_trial, "trials": finished, "seconds": seconds,
            "trials_per_hour": finished / seconds * 3600, "gpu_util": gpu.mean_utilisation,
            "gpu_mem_mib": gpu.peak_memory_mib}


def epoch_seconds(args: argparse.Namespace) -> dict[str, float]:
    """Seconds per training epoch of the default model on the data: fp32, then bf16 autocast."""
    config, data = cli.prepare_data(validate_config({
        "datasets": ["hapt"], "data_paths": cli.parse_assignments(args.data_path, "--data-path"), "use_gpu": True}))
    loader = data.train_loader(batch_size=config["batch_size"], pin_memory=True)
    seconds = {}
    for precision in ("off", "bf16"):
        torch.manual_seed(0)
        model = TCNVAE(input_dim=len(data.channel_names), latent_dim=config["latent_dim"],
                       num_activities=data.num_activities, num_domains=data.num_domains,
                       hidden_dims=config["hidden_dims"], kernel_size=config["kernel_size"],
                       dropout=config["dropout"], head_hidden=config["head_hidden"],
                       decoder_channels=config["decoder_channels"])
        trainer = TCNVAETrainer(model, "cuda", config["lr"])
        trainer.verbose = False
        trainer.mixed_precision = precision
        trainer.train_epochs(loader, 1)  # warm-up: cuDNN autotuning, allocator
        torch.cuda.synchronize()
        start = time.perf_counter()
        trainer.train_epochs(loader, 1 + args.timed_epochs)
        torch.cuda.synchronize()
        seconds[precision] = (time.perf_counter() - start) / args.timed_epochs
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-path", nargs="+", default=["hapt=../shared/data/hapt_raw.npz"])
    parser.add_argument("--gpus-per-trial", nargs="+", type=float, default=[1.0, 0.5, 0.25])
    parser.add_argument("--num-samples", type=int, default=8)
    parser.add_argument("--max-epochs", type=int, default=4)
    parser.add_argument("--cpus-per-trial", type=float, default=3)
    parser.add_argument("--timed-epochs", type=int, default=3, help="0: skip the bf16/fp32 epoch timing")
    parser.add_argument("--skip-search", action="store_true", help="only the bf16/fp32 epoch timing")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("error: no CUDA GPU: this benchmark measures GPU throughput")

    if args.timed_epochs > 0:
        precision = epoch_seconds(args)
        print(f"gpu_precision: device={torch.cuda.get_device_name()} fp32_epoch_s={precision['off']:.2f} "
              f"bf16_epoch_s={precision['bf16']:.2f} speedup={precision['off'] / precision['bf16']:.2f}", flush=True)
    if args.skip_search:
        return
    start = time.perf_counter()
    ray.init(include_dashboard=False, logging_level="WARNING")
    ray_start = time.perf_counter() - start
    rows = []
    with tempfile.TemporaryDirectory(prefix="tcnvae-gpu-") as storage:
        for gpus in args.gpus_per_trial:
            row = trials_per_hour(args, gpus, Path(storage))
            rows.append(row)
            print("gpu_trials_setting: " + " ".join(f"{k}={v:.4g}" for k, v in row.items()), flush=True)
    ray.shutdown()
    base = rows[0]["trials_per_hour"]
    settings = " ".join(f"tph@{row['gpus_per_trial']:g}={row['trials_per_hour']:.0f}" for row in rows)
    utils = " ".join(f"util@{row['gpus_per_trial']:g}={row['gpu_util']:.0f}%" for row in rows)
    print(f"gpu_trials: trials={args.num_samples} epochs={args.max_epochs} {settings} "
          f"speedup@{rows[-1]['gpus_per_trial']:g}={rows[-1]['trials_per_hour'] / base:.2f} {utils} "
          f"ray_start_s={ray_start:.1f}")


if __name__ == "__main__":
    main()
