"""Leave one dataset out: how well does a model trained on other datasets label a new one, and how much do
a few of its labelled people add?

For each target (``--target NAME``, or ``--targets all``: hapt, wisdm2019_phone, wisdm2019_watch,
hugadb in turn; a user's file with ``--extra arrays=PATH --target NAME``, NAME its dataset name) the
sources are the other datasets, **less any dataset of the same people**: wisdm2019_phone and
wisdm2019_watch were worn by the same people at once, so when one is the target the other is left out
of the sources (it would put the target's people, the test people included, on the training side).
UCI-HAR is not a source: its windows were cut from HAPT's recordings. Every dataset is brought to 20 Hz,
2.56 s windows and the ``acc_gyro`` channels (HuGaDB's ``gyro`` option at its default, ``exclude``:
recordings with an amplified or undetermined gyroscope are left out). Training is on the union of the
label spaces; every figure is the macro-F1 on the target's test people over **the activities the target
shares with the sources** (``activities=N``; the others are named in the log, never scored), each model and
forest restricted to those N when it predicts (``activities_present``, as a user who knows which activities
occur restricts ``predict --activities``): a model that knows "typing" is never scored for answering it
on the target's walking windows.

Per target, one line for k=0 (no label of the target; the test is all its people)::

    cross_dataset: target=NAME k=0 forest=… pooled=… adapted=… searched=… activities=N minutes=…

- ``forest``: the random forest (tcnvae.baselines) on the sources' windows;
- ``pooled``: the TCN-VAE on the sources, with the trial defaults and searches/cross_dataset.py's
  ``TRANSFER_DEFAULTS`` (magnitude channels, dataset-balanced batches);
- ``adapted``: with the domain head and the target's windows unlabelled in training (``adapt=unlabelled``,
  ``transductive``: adapt on the windows to be labelled, the usual protocol of unsupervised adaptation);
- ``searched``: the search's choice: ``--search-trials`` configs (the first the defaults, i.e. ``adapted``,
  the others drawn from ``searches/cross_dataset.py``'s space with ``--adapt unlabelled``: rotation, λ_dom,
  α ramp, batch sampling, magnitude channels, per-dataset normalisation, gravity alignment, curriculum),
  each trained as ``adapted`` on data prepared with its settings; kept by the source risk on the sources'
  validation people, never a target label;

and for each K of ``--ks`` (K of the target's people, drawn by the seed, labelled in training:
``target_labelled_people=K``; the test is its other people)::

    cross_dataset: target=NAME k=K forest=… forest_pooled=… scratch=… finetuned=… searched=… ceiling=… activities=N minutes=…

- ``forest``: the forest on the K people alone; ``forest_pooled``: on the sources and the K people;
- ``scratch``: the TCN-VAE on the sources and the K people;
- ``finetuned``: an encoder pretrained (VAE terms only, labels unused, searches/pretrain.py's β) on every
  pooled window, the target's included (transductive, as ``adapted``), for ``--pretrain-epochs``, then
  fine-tuned on the sources and the K people with ``freeze_then_finetune`` (encoder frozen for a third of
  the epochs); ``--pretrain-epochs 0`` skips it (``nan``);
- ``searched``: as for k=0 without the adaptation terms, each draw trained as ``scratch``, kept by the
  source risk;
- ``ceiling``: the TCN-VAE on the target alone, split by subject (a fifth of its people tested: not the
  same test people as the line's), the same on every K line.

The sources' validation people (a fifth of each source's people) are held out of every training, so
the searches have people to select on. The budget: ``--epochs`` per training, ``--search-trials``,
``--pretrain-epochs``, and ``--max-windows``: at most that many training (and validation, and unlabelled)
windows per dataset, a seeded draw across all its people, for every method alike (the K people's windows
count as the target's; the ceiling's too; the test side is never cut). Everything runs in-process, without
Ray (the searches are random draws, as benchmarks/cross_domain.py's). ``minutes`` is each line's own wall
time (pretraining and the ceiling count on the first K line).
The last lines, ``target=mean``, average each figure over the targets (``activities`` the rounded mean,
``minutes`` the sum). The default budget's time per target: docs/results.md, "Cross-dataset".

    python benchmarks/cross_dataset.py                          # wisdm2019_phone, the default budget
    python benchmarks/cross_dataset.py --targets all --seed 1
    python benchmarks/cross_dataset.py --target hugadb --ks 2 --epochs 2 --search-trials 1 --pretrain-epochs 0
    python benchmarks/cross_dataset.py --extra arrays=mine.npz --target mine

Data: ``$TCNVAE_SHARED_DATA`` (default ``../shared/data``), as the other benchmarks.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import runpy
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tcnvae.baselines import evaluate_baseline
from tcnvae.data import prepare
from tcnvae.data.pipeline import PreparedData
from tcnvae.data.sources import available_sources, source_module
from tcnvae.data.windows import concat
from tcnvae.evaluate import score, training_activities
from tcnvae.final_model import NO_VALIDATION, train_final_model
from tcnvae.tuning.cli import parse_assignments, parse_data_paths
from tcnvae.tuning.config import ADAPT_DEFAULTS, CURRICULUM_PREFIX, data_config, validate_config
from tcnvae.tuning.metrics import OBJECTIVES
from tcnvae.tuning.selection import LabelFreeSelection
from tcnvae.tuning.trial import build_model, build_trainer, seed_everything

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TCNVAE_SHARED_DATA", ROOT.parent / "shared" / "data"))
DATA_FILES = {"hapt": "hapt_raw.npz", "wisdm2019_phone": "wisdm2019_phone_raw.npz",
              "wisdm2019_watch": "wisdm2019_watch_raw.npz", "hugadb": "hugadb_raw.npz"}
SETTINGS = {"sample_rate": 20.0, "channel_set": "acc_gyro", "mixed_precision": "off"}
K0_FIGURES = ("forest", "pooled", "adapted", "searched")
K_FIGURES = ("forest", "forest_pooled", "scratch", "finetuned", "searched", "ceiling")
SELECTED_BY = "source_risk"  # label-free: the sources' validation people only
# The default budget: under 45 minutes for one target (docs/results.md, "Cross-dataset": as measured).
EPOCHS = 5
SEARCH_TRIALS = 4
PRETRAIN_EPOCHS = 5
MAX_WINDOWS = 3000


@functools.cache
def recipe(name: str) -> dict[str, Any]:
    """The globals of ``searches/<name>.py`` (its SPACE, defaults), read once."""
    return runpy.run_path(str(ROOT / "searches" / f"{name}.py"))


def same_people_pairs(names: list[str]) -> set[frozenset[str]]:
    """The pairs of ``names`` that recorded the same people (the sources' ``SAME_PEOPLE_AS``)."""
    return {frozenset((name, other)) for name in names if name in available_sources()
            for other in getattr(source_module(name), "SAME_PEOPLE_AS", ()) if other in names}


def pooled_datasets(target: str, pool: list[str]) -> list[str]:
    """The datasets of a run for ``target``: the pool less any dataset of the target's people."""
    pairs = same_people_pairs(pool)
    return [name for name in pool if frozenset((name, target)) not in pairs]


def per_dataset(datasets: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most ``limit`` windows of each dataset of ``datasets`` (a draw of ``rng``), in order."""
    chosen = [rng.permutation(np.flatnonzero(datasets == name))[:limit] for name in np.unique(datasets)]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def capped(data: PreparedData, limit: int, seed: int) -> PreparedData:
    """``data`` with at most ``limit`` training, validation and unlabelled windows per dataset (a seeded draw);
    the test side whole."""
    rng = np.random.default_rng([seed, 29])
    train, val = (windows.subset(per_dataset(windows.dataset, limit, rng)) for windows in (data.train, data.val))
    unlabelled = data.unlabelled
    if unlabelled is not None:
        unlabelled = unlabelled.subset(per_dataset(unlabelled.dataset, limit, rng))
    return replace(data, train=train, val=val, unlabelled=unlabelled)


class Run:
    """One target: builds each method's config and data, trains, and scores on the shared activities."""

    def __init__(self, args: argparse.Namespace, target: str, pool: dict[str, str]):
        self.args, self.target = args, target
        datasets = pooled_datasets(target, list(pool))
        self.base = {**SETTINGS, **recipe("cross_dataset")["TRANSFER_DEFAULTS"], "datasets": datasets,
                     "data_paths": {name: pool[name] for name in datasets},
                     "seed": args.seed, "max_epochs": args.epochs, **args.overrides}
        self.shared: list[str] = []  # the activities the sources teach: all a target can be scored on
        self.present: list[str] = []  # those of them the target holds: every prediction is one of these

    def config(self, **settings: Any) -> dict[str, Any]:
        base = self.base
        if settings.get("adapt") == "unlabelled":  # adaptation's own defaults: batches half source, half target
            base = {key: value for key, value in base.items()
                    if key not in ADAPT_DEFAULTS or key in self.args.overrides}
        return validate_config({**base, **settings})

    def data(self, config: dict[str, Any]) -> PreparedData:
        return capped(prepare(data_config(config)), self.args.max_windows, self.args.seed)

    def scope(self, data: PreparedData) -> None:
        """What is scored and predicted: the activities ``data``'s sources teach, and those the target holds."""
        self.shared = training_activities(data.train)
        held = set(np.asarray(data.test.activity_names)[data.test.activity].tolist())
        self.present = [name for name in self.shared if name in held]

    def model_f1(self, model: torch.nn.Module, data: PreparedData) -> float:
        return score(model, data.test, data.config.domain_by, data.domain_names,
                     scored_activities=self.shared, activities_present=self.present)["macro_f1"]

    def forest_f1(self, data: PreparedData, train_mask: np.ndarray | None = None) -> float:
        names = np.asarray(data.test.activity_names)[data.test.activity]
        test = data.test.subset(np.isin(names, self.shared))
        train = data.train if train_mask is None else data.train.subset(train_mask)
        return evaluate_baseline(replace(data, train=train, test=test), self.args.seed,
                                 activities_present=self.present).test["macro_f1"]

    def trained(self, config: dict[str, Any], data: PreparedData) -> torch.nn.Module:
        return train_final_model(config, data, config["max_epochs"], members=1)

    def searched(self, base: dict[str, Any], data: PreparedData, first: torch.nn.Module
                 ) -> tuple[torch.nn.Module, PreparedData]:
        """The draw the source risk keeps among ``--search-trials``, and its data: the first the defaults
        (``first``, already trained on ``base`` and ``data``), the others from searches/cross_dataset.py's space
        (a key given by --set is fixed), each on data prepared with its settings."""
        search = recipe("cross_dataset")
        space = {**search["SPACE"], **({"sampling": search["ADAPTATION_SAMPLING"]} if base["adapt"] == "unlabelled"
                                       else {})}
        space = {key: domain for key, domain in space.items() if key not in self.args.overrides}
        rng = np.random.default_rng([base["seed"], 31])
        best: tuple[float, torch.nn.Module, PreparedData] | None = None
        for trial in range(self.args.search_trials):
            draw = {key: domain.sample(random_state=rng) for key, domain in space.items()}
            if trial == 0:
                model, drawn = first, data
            else:
                config = validate_config({**base, **draw})
                drawn = self.data(config)
                model = self.trained(config, drawn)
            risk = LabelFreeSelection(drawn, base["seed"]).metrics(model, "cpu")[OBJECTIVES[SELECTED_BY]]
            if best is None or risk > best[0]:
                best = (risk, model, drawn)
        return best[1], best[2]

    def searched_f1(self, base: dict[str, Any], data: PreparedData, first: torch.nn.Module, first_f1: float) -> float:
        """The macro-F1 of the search's choice (``first_f1`` when it keeps the defaults' ``first``)."""
        chosen, drawn = self.searched(base, data, first)
        return first_f1 if chosen is first else self.model_f1(chosen, drawn)

    def no_label(self) -> tuple[dict[str, float], int]:
        """The k=0 figures and the number of scored activities."""
        pooled_config = self.config(target_domain=self.target)
        data = self.data(pooled_config)
        self.scope(data)
        tested = score(self.trained(pooled_config, data), data.test, data.config.domain_by, data.domain_names,
                       scored_activities=self.shared, activities_present=self.present)
        if tested["unscored_activities"]:
            print(f"{self.target}: not scored, the sources have none of {tested['unscored_activities']} (windows)",
                  flush=True)
        figures = {"forest": self.forest_f1(data), "pooled": tested["macro_f1"]}
        adapt_config = self.config(target_domain=self.target, adapt="unlabelled", transductive=True)
        adapt_data = self.data(adapt_config)
        adapted = self.trained(adapt_config, adapt_data)
        figures["adapted"] = self.model_f1(adapted, adapt_data)
        figures["searched"] = self.searched_f1(adapt_config, adapt_data, adapted, figures["adapted"])
        return figures, len(self.present)

    def encoder(self, folder: Path) -> Path | None:
        """An encoder pretrained on every pooled window, labels unused (searches/pretrain.py --all-windows)."""
        if self.args.pretrain_epochs == 0:
            return None
        beta = recipe("pretrain")["RECIPE_DEFAULTS"]["beta"]
        config = self.config(target_domain=self.target, beta=beta, max_epochs=self.args.pretrain_epochs)
        data = self.data(config)
        seed_everything(config["seed"])
        trainer = build_trainer(config, build_model(config, data), torch.device("cpu"))
        trainer.lambda_act = trainer.lambda_dom = 0.0  # the VAE part only
        test = data.test.subset(per_dataset(data.test.dataset, self.args.max_windows,
                                            np.random.default_rng([config["seed"], 37])))
        windows = concat([data.train, data.val, test])
        trainer.train_epochs(data.loader(windows, augmented=True, shuffle=True), config["max_epochs"])
        path = folder / f"{self.target}-encoder.pt"
        trainer.model.save_encoder(path)
        return path

    def labelled(self, k: int, encoder: Path | None) -> dict[str, float]:
        """The figures with K labelled target people, but the ceiling."""
        config = self.config(target_domain=self.target, target_labelled_people=k)
        data = self.data(config)
        scratch = self.trained(config, data)
        own = data.train.dataset == self.target
        figures = {"forest": self.forest_f1(data, own), "forest_pooled": self.forest_f1(data),
                   "scratch": self.model_f1(scratch, data),
                   "finetuned": math.nan}
        figures["searched"] = self.searched_f1(config, data, scratch, figures["scratch"])
        if encoder is not None:
            tuned = self.config(target_domain=self.target, target_labelled_people=k, curriculum="freeze_then_finetune",
                                **{f"{CURRICULUM_PREFIX}encoder_path": str(encoder),
                                   f"{CURRICULUM_PREFIX}freeze_epochs": max(1, self.args.epochs // 3)})
            figures["finetuned"] = self.model_f1(self.trained(tuned, data), data)
        return figures

    def ceiling(self) -> float:
        """The TCN-VAE on the target's own people, split by subject, scored on its test people."""
        own = [name for name in self.base["datasets"] if name == self.target] or [
            name for name in self.base["datasets"] if name not in DATA_FILES]
        config = validate_config({**self.base, "datasets": own, "split": "subject", **NO_VALIDATION,
                                  "data_paths": {name: self.base["data_paths"][name] for name in own}})
        data = self.data(config)
        return self.model_f1(self.trained(config, data), data)


def line(target: str, k: int, figures: dict[str, float], activities: int, minutes: float) -> str:
    """The contract line of one target (or ``mean``) and K."""
    names = K0_FIGURES if k == 0 else K_FIGURES
    return (f"cross_dataset: target={target} k={k} " + " ".join(f"{name}={figures[name]:.4f}" for name in names)
            + f" activities={activities} minutes={minutes:.1f}")


Lines = dict[int, tuple[dict[str, float], int, float]]  # K -> (figures, scored activities, minutes)


def run_target(args: argparse.Namespace, target: str, pool: dict[str, str]) -> Lines:
    """Every line of one target, printed as they come."""
    run = Run(args, target, pool)
    started = time.perf_counter()
    figures, activities = run.no_label()
    results = {0: (figures, activities, (time.perf_counter() - started) / 60)}
    print(line(target, 0, *results[0]), flush=True)
    with tempfile.TemporaryDirectory(prefix="tcnvae-cross-dataset-") as folder:
        started = time.perf_counter()
        encoder, ceiling = run.encoder(Path(folder)), run.ceiling()
        for k in args.ks:
            figures = {**run.labelled(k, encoder), "ceiling": ceiling}
            results[k] = (figures, activities, (time.perf_counter() - started) / 60)
            print(line(target, k, *results[k]), flush=True)
            started = time.perf_counter()
    return results


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="wisdm2019_phone",
                        help=f"the held-out dataset: one of {', '.join(DATA_FILES)} or an --extra file's dataset "
                             "(default: wisdm2019_phone)")
    parser.add_argument("--targets", choices=["all"], default=None, help="all: each of the four in turn")
    parser.add_argument("--extra", action="append", default=[], metavar="SOURCE=PATH",
                        help="a further dataset in the pool, e.g. arrays=mine.npz (repeatable)")
    parser.add_argument("--sources", nargs="*", choices=sorted(DATA_FILES), default=None,
                        help="the built-in datasets to pool, none with no name (default: all four)")
    parser.add_argument("--seed", type=int, default=0, help="of the splits, the draws and the models (default: 0)")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"of every training (default: {EPOCHS})")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4], help="labelled target people (default: 1 2 4)")
    parser.add_argument("--search-trials", type=int, default=SEARCH_TRIALS,
                        help=f"configs each search trains, the defaults first (default: {SEARCH_TRIALS})")
    parser.add_argument("--pretrain-epochs", type=int, default=PRETRAIN_EPOCHS,
                        help=f"of the encoder fine-tuned; 0: no finetuned figure (default: {PRETRAIN_EPOCHS})")
    parser.add_argument("--max-windows", type=int, default=MAX_WINDOWS,
                        help=f"training windows per dataset, and validation ones (default: {MAX_WINDOWS})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="a trial setting for every run, e.g. magnitude_channels=true (repeatable)")
    return parser, parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Lines]:
    parser, args = parse_args(argv)
    if min(args.ks, default=0) < 1 or args.epochs < 1 or args.search_trials < 1 or args.pretrain_epochs < 0 \
            or args.max_windows < 1:
        parser.error("need --ks of at least 1, --epochs, --search-trials and --max-windows of at least 1, "
                     "--pretrain-epochs of at least 0")
    targets = list(DATA_FILES) if args.targets == "all" else [args.target]
    try:
        args.overrides = parse_assignments(args.overrides, "--set")
        extras = parse_data_paths(args.extra)
    except ValueError as error:
        parser.error(str(error))
    unknown = sorted(set(extras) - set(available_sources()))
    if unknown:
        parser.error(f"--extra names unknown sources {unknown}; known: {', '.join(available_sources())}")
    if not extras and any(target not in DATA_FILES for target in targets):
        parser.error(f"--target {args.target}: expected one of {', '.join(DATA_FILES)}, or the dataset name of an "
                     "--extra file")
    chosen = DATA_FILES if args.sources is None else args.sources
    built_in = sorted({*chosen, *(target for target in targets if target in DATA_FILES)}, key=list(DATA_FILES).index)
    pool = {name: str(SHARED_DATA / DATA_FILES[name]) for name in built_in} | extras
    missing = [path for paths in pool.values() for path in ([paths] if isinstance(paths, str) else paths)
               if not Path(path).exists()]
    if missing:
        parser.error(f"no data file {', '.join(missing)}; set TCNVAE_SHARED_DATA to the folder of "
                     f"{', '.join(DATA_FILES.values())}, or fix --extra")
    for target in targets:
        try:
            Run(args, target, pool).config(target_domain=target)
        except ValueError as error:
            parser.error(str(error))

    results = {}
    for target in targets:
        try:
            results[target] = run_target(args, target, pool)
        except ValueError as error:  # a data problem (e.g. a target no dataset holds), found while preparing
            parser.error(f"target {target}: {error}")
    for k in [0, *args.ks]:
        rows = [results[target][k] for target in targets]
        figures = {name: float(np.mean([row[0][name] for row in rows])) for name in rows[0][0]}
        print(line("mean", k, figures, round(float(np.mean([row[1] for row in rows]))),
                   sum(row[2] for row in rows)), flush=True)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
