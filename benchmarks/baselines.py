"""Does the platform's default search beat a random forest on people it never saw? Per data set:

1. the default search, ``searches/loss_weights.py`` with no settings but the data's own (budget: flags);
2. the final model, as ``searches/final_model.py`` makes it: the best trial's config trained on the
   training *and* validation subjects for its whole schedule, then scored once on the test subjects
   (``--compare-best-epoch`` also trains one to the epoch at which the winner peaked on validation);
3. the random-forest baseline (``tcnvae.baselines``) fitted on exactly those training windows and
   scored on the same test subjects.

Data sets: UCI-HAR with its official split (9 published test subjects) and HAPT split by subject
(``split=subject``: a fifth of the 30 people held out as test, never seen in training or selection).

    python benchmarks/baselines.py                                    # both, the default budget
    python benchmarks/baselines.py --data hapt --num-samples 4 --max-epochs 4   # a small budget

Last lines, one per data set:
``baselines: data=uci_har platform_macro_f1=… baseline_macro_f1=… platform_acc=… baseline_acc=… minutes=… members=…
cross_validated=…``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from tcnvae.baselines import evaluate_baseline
from tcnvae.evaluate import score
from tcnvae.final_model import BEST_EPOCH, MEMBERS, NO_VALIDATION, final_data, read_search_choice, train_final_model
from tcnvae.tuning.config import validate_config
from tcnvae.tuning.report import scored_test_windows
from tcnvae.tuning.selection import FOLDS

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TCNVAE_SHARED_DATA", ROOT.parent / "shared" / "data"))
# What a user states about each data set: where it is, its channels, its split. Nothing else is set.
DATA_SETTINGS = {
    "uci_har": {"datasets": ["uci_har"], "data_paths": {"uci_har": str(SHARED_DATA / "uci_har_windows.npz")},
                "channel_set": "uci9", "split": "uci_har_official"},
    "hapt": {"datasets": ["hapt"], "data_paths": {"hapt": str(SHARED_DATA / "hapt_raw.npz")}, "split": "subject"},
}
# The default budget; its time per data set: docs/results.md, "Smaller measurements".
NUM_SAMPLES = 12
MAX_EPOCHS = 15


def default_search(settings: dict[str, Any], storage: Path, name: str, num_samples: int, max_epochs: int,
                   cross_validate: int = 0, folds: int = FOLDS) -> Path:
    """Run searches/loss_weights.py on its defaults with the data's settings (and ``--cross-validate``);
    the experiment folder."""
    spec = importlib.util.spec_from_file_location("searches_loss_weights", ROOT / "searches" / "loss_weights.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    flags = [flag for key, value in settings.items() for flag in ("--set", f"{key}={json.dumps(value)}")]
    recipe.main(["--storage-path", str(storage), "--name", name, "--num-samples", str(num_samples),
                 "--max-epochs", str(max_epochs), "--cross-validate", str(cross_validate), "--folds", str(folds),
                 *flags])
    return storage / name


def final_model_and_baseline(config: dict[str, Any], epochs: int,
                             members: int = MEMBERS) -> tuple[dict[str, float], dict[str, float]]:
    """``config`` trained as ``searches/final_model.py`` trains it (on training + validation subjects, for
    ``epochs``, its schedules spanning its ``max_epochs``; ``members`` seeds averaged) and scored once on
    the test subjects; the baseline fitted on the same training windows. Returns (platform, baseline)
    test scores."""
    config = validate_config({**config, **NO_VALIDATION})
    data = final_data(config)
    model = train_final_model(config, data, epochs, members=members)
    metrics = score(model, scored_test_windows(data, config), config["domain_by"], data.domain_names)
    return ({key: metrics[key] for key in ("accuracy", "macro_f1")},
            evaluate_baseline(data, config["seed"]).test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", choices=sorted(DATA_SETTINGS), default=["uci_har", "hapt"])
    parser.add_argument("--num-samples", type=int, default=NUM_SAMPLES, help=f"trials (default: {NUM_SAMPLES})")
    parser.add_argument("--max-epochs", type=int, default=MAX_EPOCHS, help=f"per trial (default: {MAX_EPOCHS})")
    parser.add_argument("--storage-path", type=Path, default=None,
                        help="where the searches are kept (default: a temporary folder)")
    parser.add_argument("--members", type=int, default=MEMBERS,
                        help=f"seeds the final model averages, as searches/final_model.py --members (default: {MEMBERS})")
    parser.add_argument("--cross-validate", type=int, default=0, metavar="N",
                        help="choose among the search's N best trials over --folds folds of people, as "
                             "searches/loss_weights.py --cross-validate (default: 0, off)")
    parser.add_argument("--folds", type=int, default=FOLDS, help=f"for --cross-validate (default: {FOLDS})")
    parser.add_argument("--compare-best-epoch", action="store_true",
                        help="also train the final model to the winner's validation peak (epochs=best)")
    args = parser.parse_args()
    missing = [name for name in args.data if not Path(DATA_SETTINGS[name]["data_paths"][name]).is_file()]
    if missing:
        parser.error(f"no data file for {missing} under {SHARED_DATA}; set TCNVAE_SHARED_DATA")
    if args.num_samples < 1 or args.max_epochs < 1 or args.members < 1:
        parser.error("--num-samples, --max-epochs and --members must be at least 1")

    lines = []
    with tempfile.TemporaryDirectory(prefix="tcnvae-baselines-") as scratch:
        storage = (args.storage_path or Path(scratch)).resolve()
        for name in args.data:
            started = time.perf_counter()
            experiment = default_search(DATA_SETTINGS[name], storage, f"{name}-{time.strftime('%Y%m%d-%H%M%S')}",
                                        args.num_samples, args.max_epochs, args.cross_validate, args.folds)
            choice = read_search_choice(experiment)  # the whole schedule, as searches/final_model.py
            platform, baseline = final_model_and_baseline(choice.config, choice.epochs, args.members)
            minutes = (time.perf_counter() - started) / 60
            print(f"{name}: final model ({choice.epochs} epochs, the whole schedule, on training + validation "
                  f"subjects; {args.members} member(s)) test accuracy {platform['accuracy']:.4f} macro-F1 {platform['macro_f1']:.4f}; "
                  f"random forest {baseline['accuracy']:.4f} / {baseline['macro_f1']:.4f}", flush=True)
            if args.compare_best_epoch:  # the former default, for comparison; not in minutes
                peak = read_search_choice(experiment, epochs=BEST_EPOCH)
                platform_peak, _ = final_model_and_baseline(peak.config, peak.epochs, args.members)
                print(f"{name}: final model trained to the winner's validation peak ({peak.epochs} epochs): test "
                      f"accuracy {platform_peak['accuracy']:.4f} macro-F1 {platform_peak['macro_f1']:.4f}", flush=True)
            lines.append(f"baselines: data={name} platform_macro_f1={platform['macro_f1']:.4f} "
                         f"baseline_macro_f1={baseline['macro_f1']:.4f} platform_acc={platform['accuracy']:.4f} "
                         f"baseline_acc={baseline['accuracy']:.4f} minutes={minutes:.1f} members={args.members} "
                         f"cross_validated={args.cross_validate}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
