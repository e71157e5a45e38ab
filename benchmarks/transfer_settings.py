"""Which cross-dataset settings hold up on every target: the pooled TCN-VAE's held-out macro-F1 for each
candidate, target and seed, paired (the same data, draws and seeds for every candidate).

Each figure is benchmarks/cross_dataset.py's k=0 ``pooled`` figure (the same sources, 20 Hz, window cap,
scoring on the shared activities with predictions restricted to them), trained with a candidate's settings
on top of the **trial defaults** (searches/cross_dataset.py's ``TRANSFER_DEFAULTS`` are not applied here:
they are what this script judges). A candidate is a space-separated list of KEY=VALUE trial settings; ``""``
is the trial defaults. One line per candidate, target and seed, then one per candidate averaged over the
targets and seeds, with how many targets its own mean over seeds raised above the first candidate's::

    transfer_settings: target=NAME seed=S settings=KEY=VALUE,… macro_f1=… minutes=…
    transfer_settings: target=mean settings=KEY=VALUE,… macro_f1=… better_targets=N/T

    python benchmarks/transfer_settings.py                       # the three candidates below, all targets, seeds 0-2
    python benchmarks/transfer_settings.py --targets hugadb --seeds 0 --candidate "" --candidate "beta=0.01"

Data: ``$TCNVAE_SHARED_DATA`` (default ``../shared/data``), as the other benchmarks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from tcnvae.tuning.cli import parse_assignments
from tcnvae.tuning.config import DEFAULT_CONFIG

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import cross_dataset  # noqa: E402  (the same protocol: sources, window cap, scoring)

CANDIDATES = ["", "magnitude_channels=true", "magnitude_channels=true sampling=domain_balanced"]


def run_for(target: str, seed: int, settings: dict, args: argparse.Namespace) -> cross_dataset.Run:
    """benchmarks/cross_dataset.py's run for ``target`` with ``settings`` on top of the trial defaults."""
    transfer = cross_dataset.recipe("cross_dataset")["TRANSFER_DEFAULTS"]
    overrides = {**{key: DEFAULT_CONFIG[key] for key in transfer}, **settings}
    pool = {name: str(args.shared / file) for name, file in cross_dataset.DATA_FILES.items()}
    return cross_dataset.Run(argparse.Namespace(seed=seed, epochs=args.epochs, max_windows=args.max_windows,
                                                overrides=overrides), target, pool)


def pooled_f1(run: cross_dataset.Run) -> float:
    """The k=0 ``pooled`` figure of benchmarks/cross_dataset.py for ``run``."""
    config = run.config(target_domain=run.target)
    data = run.data(config)
    run.scope(data)
    return run.model_f1(run.trained(config, data), data)


def main(argv: list[str] | None = None) -> dict[str, dict[tuple[str, int], float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", nargs="+", choices=list(cross_dataset.DATA_FILES),
                        default=list(cross_dataset.DATA_FILES), help="held-out datasets (default: all four)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="(default: 0 1 2)")
    parser.add_argument("--candidate", action="append", default=None, metavar='"KEY=VALUE ..."',
                        help=f"settings on top of the trial defaults, repeatable; the first is the reference "
                             f"(default: {' | '.join(repr(c) for c in CANDIDATES)})")
    parser.add_argument("--epochs", type=int, default=cross_dataset.EPOCHS,
                        help=f"of each training (default: {cross_dataset.EPOCHS}, the benchmark's)")
    parser.add_argument("--max-windows", type=int, default=cross_dataset.MAX_WINDOWS,
                        help=f"training windows per dataset (default: {cross_dataset.MAX_WINDOWS})")
    args = parser.parse_args(argv)
    args.shared = cross_dataset.SHARED_DATA
    candidates = args.candidate if args.candidate is not None else CANDIDATES
    try:
        parsed = {candidate: parse_assignments(candidate.split(), "--candidate") for candidate in candidates}
    except ValueError as error:
        parser.error(str(error))
    missing = [str(args.shared / cross_dataset.DATA_FILES[name]) for name in cross_dataset.DATA_FILES
               if not (args.shared / cross_dataset.DATA_FILES[name]).exists()]
    if missing:
        parser.error(f"no data file {', '.join(missing)}; set TCNVAE_SHARED_DATA to their folder")
    if args.epochs < 1 or args.max_windows < 1:
        parser.error("--epochs and --max-windows must be at least 1")
    for candidate, settings in parsed.items():  # every candidate checked before anything trains
        try:
            run_for(args.targets[0], args.seeds[0], settings, args).config(target_domain=args.targets[0])
        except ValueError as error:
            parser.error(f"--candidate {candidate!r}: {error}")

    figures: dict[str, dict[tuple[str, int], float]] = {candidate: {} for candidate in candidates}
    for target in args.targets:
        for seed in args.seeds:
            for candidate, settings in parsed.items():
                started = time.perf_counter()
                f1 = pooled_f1(run_for(target, seed, settings, args))
                figures[candidate][target, seed] = f1
                print(f"transfer_settings: target={target} seed={seed} settings={candidate.replace(' ', ',') or '-'} "
                      f"macro_f1={f1:.4f} minutes={(time.perf_counter() - started) / 60:.1f}", flush=True)
    reference = candidates[0]
    for candidate in candidates:
        per_target = {target: np.mean([figures[candidate][target, seed] for seed in args.seeds])
                      for target in args.targets}
        better = sum(per_target[target] > np.mean([figures[reference][target, seed] for seed in args.seeds])
                     for target in args.targets)
        print(f"transfer_settings: target=mean settings={candidate.replace(' ', ',') or '-'} "
              f"macro_f1={np.mean(list(per_target.values())):.4f} better_targets={better}/{len(args.targets)}",
              flush=True)
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
