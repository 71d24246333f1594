"""Detector quality and wall time on a real dataset, end to end.

    python bench/detect.py PATH_TO_CSV_OR_FOLDER [--path-column path --label-column label --truth-column T]
        [--image-root DIR] [--per-class-limit N --limit-by COLUMN] [--folds 3 --epochs 12 --model small_cnn
        --image-size 32 ...] [--inject-noise symmetric --noise-rate 0.2] [--detectors cl,aum,...|all]
        [--repeat S] [--keep-project DIR] [--json]

The epochs and image size not given follow ``--preset`` (default thorough) exactly as ``audit``
resolves them: the K-fold epochs by whether a dynamics run shares the audit, the dynamics epochs
by the number of training samples. ``--model cnn7p`` measures the faster model.

The dataset is imported into a temporary project (``import_csv`` / ``import_folder``),
the images are decoded into the cache, the audit runs (K-fold probabilities, then each
detector), and each detector is scored against the truth: ROC-AUC, average precision,
precision/recall/F1 of its flagged set. Wall time is printed end to end and per stage.
Any set of detectors runs in ONE audit (``--detectors cl,aum,ocl,ensemble`` or ``all``),
and the table has a row per detector: ROC-AUC, AP, precision, recall, F1, flagged,
estimated noise rate (beside the true one) and seconds (the evidence it needs, K-fold
and/or the dynamics run, plus its own). ``--repeat S`` runs the whole thing at seeds
``--seed``, ``--seed``+1, ... and prints each figure's mean and standard deviation.

The reference (CIFAR-10N, labels from ``worse_label``, truth ``clean_label``, the first
1,000 rows of each class by ``clean_label``, 3 folds, 12 epochs, small CNN on CPU):
ROC-AUC 0.82, AP 0.77, F1 0.69, 381 s::

    python bench/detect.py /work/shared/data/cifar10n-train.csv --image-root /work/shared/data/cifar10 \\
        --label-column worse_label --truth-column clean_label --per-class-limit 1000 --limit-by clean_label

A folder has no truth of its own: pass ``--inject-noise MODE --noise-rate R`` to make one.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.commands.audit import add_audit_epoch_options, add_preset_option, apply_preset_defaults  # noqa: E402
from engine.commands.common import add_fold_option  # noqa: E402
from engine.errors import UserError  # noqa: E402
from engine.events import ConsoleRenderer, EventSink  # noqa: E402

REFERENCE = {"roc_auc": 0.82, "average_precision": 0.77, "f1": 0.69, "seconds": 381.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("dataset", type=Path, help="a CSV of image paths and labels, or an ImageFolder folder")
    data = parser.add_argument_group("dataset")
    data.add_argument("--path-column", default="path")
    data.add_argument("--label-column", default="label")
    data.add_argument("--truth-column", default=None, help="the true labels, for the evaluation")
    data.add_argument("--image-root", type=Path, default=None, help="what the CSV's paths are relative to "
                      "(default: the CSV's folder)")
    data.add_argument("--per-class-limit", type=int, default=None, metavar="N",
                      help="keep only the first N rows (files, for a folder) of each class")
    data.add_argument("--limit-by", default=None, metavar="COLUMN",
                      help="the column whose classes --per-class-limit counts (default: the label column)")
    data.add_argument("--test-fraction", type=float, default=0.2)
    data.add_argument("--inject-noise", default=None, metavar="MODE",
                      help="symmetric | asymmetric | instance | openset: synthesize noise with known truth")
    data.add_argument("--noise-rate", type=float, default=0.2)
    add_audit_epoch_options(parser)  # the audit's own: --epochs for K-fold, --dynamics-epochs
    add_preset_option(parser)  # not given: the epochs and image size the audit command would choose
    add_fold_option(parser)
    parser.add_argument("--detectors", default="cl", help="comma-separated detectors, or all (default cl)")
    parser.add_argument("--repeat", type=int, default=1, metavar="S",
                        help="run at S seeds (--seed, --seed+1, ...) and print the mean and spread")
    parser.add_argument("--keep-project", type=Path, default=None, metavar="DIR",
                        help="build the project here and keep it (default: a temporary folder, deleted)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser.parse_args(argv)


def limited_csv(args: argparse.Namespace, workdir: Path) -> Path:
    """The CSV itself, or a copy with only the first ``--per-class-limit`` rows of each class."""
    if args.per_class_limit is None:
        return args.dataset.absolute()
    import pandas as pd

    frame = pd.read_csv(args.dataset, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
    column = args.limit_by or args.label_column
    if column not in frame.columns:
        raise UserError(f"{args.dataset} has no column {column!r} for --limit-by",
                        f"its columns are: {', '.join(frame.columns)}")
    # groupby(...).head keeps the file order within and across classes.
    selected = frame.groupby(column, sort=False).head(args.per_class_limit)
    out = workdir / args.dataset.name
    selected.to_csv(out, index=False, quoting=csv.QUOTE_ALL)
    return out


def limited_folder(args: argparse.Namespace, workdir: Path) -> Path:
    """The folder itself, or a symlinked copy with only the first N files (sorted) of each class folder."""
    if args.per_class_limit is None:
        return args.dataset.absolute()
    out = workdir / "images"
    for source in sorted(args.dataset.rglob("*")):
        if source.is_dir() and not any(child.is_dir() for child in source.iterdir()):
            files = sorted(f for f in source.iterdir() if f.is_file() and not f.name.startswith("."))
            target = out / source.relative_to(args.dataset)
            target.mkdir(parents=True, exist_ok=True)
            for file in files[: args.per_class_limit]:
                os.symlink(file.absolute(), target / file.name)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from engine.data.cache import ensure_cache
    from engine.data.importing import import_csv, import_folder
    from engine.training.config import TrainConfig
    from engine.workflows.audit import resolve_dynamics_epochs, run_audit
    from engine.workflows.budget import audit_fit_ids
    from engine.workflows.evaluate import evaluate_run

    args = argparse.Namespace(**vars(args))  # each repeat resolves the preset's defaults afresh
    given_epochs = apply_preset_defaults(args)
    config = TrainConfig.from_args(args)
    events = EventSink(console=ConsoleRenderer(sys.stderr, quiet=args.quiet))
    timings: dict[str, float] = {}
    started_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-detect-") as tmp:
        workdir = Path(tmp)
        project_root = args.keep_project or workdir / "project"
        if args.keep_project:
            # A kept project must keep its inputs too (the limited CSV, the symlinked images).
            workdir = args.keep_project.absolute().with_name(args.keep_project.name + "-inputs")
            workdir.mkdir(parents=True, exist_ok=False)
        started = time.perf_counter()
        if args.dataset.is_dir():
            project = import_folder(project_root, limited_folder(args, workdir), test_fraction=args.test_fraction,
                                    seed=args.seed, folds=args.folds, events=events)
        else:
            image_root = args.image_root or args.dataset.absolute().parent
            project = import_csv(project_root, limited_csv(args, workdir), image_root,
                                 path_column=args.path_column, label_column=args.label_column,
                                 truth_column=args.truth_column, test_fraction=args.test_fraction,
                                 seed=args.seed, folds=args.folds, events=events)
        timings["import"] = time.perf_counter() - started
        with project:
            if args.inject_noise:
                from engine.noise import inject_noise

                started = time.perf_counter()
                inject_noise(project, args.inject_noise, args.noise_rate, args.seed, image_size=config.image_size,
                             events=events)
                timings["noise"] = time.perf_counter() - started
            started = time.perf_counter()
            ensure_cache(project, config.image_size, events=events, workers=config.workers)
            timings["cache"] = time.perf_counter() - started

            started = time.perf_counter()
            audit, status = run_audit(project, config, folds=args.folds, detectors=args.detectors.split(","), preset=args.preset,
                                      events=events,
                                      dynamics_epochs=resolve_dynamics_epochs(
                                          args.dynamics_epochs, given_epochs, len(audit_fit_ids(project)), args.preset))
            timings["audit"] = time.perf_counter() - started
            if status != "ok":
                raise UserError(f"the audit ended with status {status}", "see the messages above")
            audit = project.run(audit.id)
            for stage, seconds in audit.summary.get("timings_s", {}).items():
                timings[f"audit.{stage}"] = seconds

            started = time.perf_counter()
            report = evaluate_run(project, audit.id)
            timings["evaluate"] = time.perf_counter() - started
            timings["end_to_end"] = time.perf_counter() - started_all
            for name, seconds in detector_seconds(audit.summary).items():
                report["detectors"][name]["seconds"] = seconds
            return {
                **out_of_fold_figures(project, audit.folder, config),
                "dataset": str(args.dataset),
                "samples": audit.summary["n_samples"],
                "classes": audit.summary["num_classes"],
                "config": {**config.to_dict(), "folds": args.folds},
                "heldout_accuracy": audit.summary["heldout_accuracy"],
                "true_noise_rate": report["true_noise_rate"],
                "detectors": report["detectors"],
                "timings_s": {name: round(value, 2) for name, value in timings.items()},
            }


def detector_seconds(summary: dict[str, Any]) -> dict[str, float]:
    """Seconds each detector of an audit cost: the evidence it needs plus its own; a combiner pays for all."""
    from engine.detectors import EMBEDDINGS, OOF_PROBS, get_detector

    timings = summary.get("timings_s", {})
    stage_of = {"crossval": {OOF_PROBS}, "embeddings": {EMBEDDINGS},
                "dynamics": set(summary.get("evidence", [])) - {OOF_PROBS, EMBEDDINGS}}
    seconds: dict[str, float] = {}
    for name, facts in summary.get("detectors", {}).items():
        info = get_detector(name)
        needs = set(summary.get("evidence", [])) if info.combines else set(info.requires)
        evidence = sum(float(timings.get(stage, 0.0)) for stage, kinds in stage_of.items() if needs & kinds)
        seconds[name] = round(evidence + float(facts.get("seconds", 0.0)), 2)
    return seconds


def out_of_fold_figures(project: Any, run_folder: Path, config: Any) -> dict[str, Any]:
    """Out-of-fold accuracy (against the truth and the given labels) and the training rate of the models.

    The accuracies need K-fold probabilities (``cl``); without them they are None.
    """
    import numpy as np

    from engine.events import Metric, read_events

    rates = [event.values["images_per_s"] for event in read_events(run_folder / "events.jsonl")
             if isinstance(event, Metric) and "images_per_s" in event.values]
    figures: dict[str, Any] = {"oof_accuracy_truth": None, "oof_accuracy_given": None,
                               "train_images_per_s": float(np.median(rates)) if rates else None}
    if not (run_folder / "pred_probs.npy").is_file():
        return figures
    table = project.sample_table()
    probs = np.load(run_folder / "pred_probs.npy")
    train = table.train_ids
    predicted = probs[train].argmax(1)
    known = table.true_label[train] >= 0
    figures["oof_accuracy_truth"] = (float((predicted[known] == table.true_label[train][known]).mean())
                                     if known.any() else None)
    figures["oof_accuracy_given"] = float((predicted == table.label[train]).mean())
    return figures


TABLE_COLUMNS = (("roc_auc", "ROC-AUC"), ("average_precision", "AP"), ("precision", "prec"), ("recall", "recall"),
                 ("f1", "F1"), ("n_flagged", "flagged"), ("estimated_noise_rate", "est.noise"),
                 ("seconds", "seconds"))


def summarise_repeats(results: list[dict[str, Any]]) -> dict[str, dict[str, tuple[float | None, float | None]]]:
    """detector -> column -> (mean, sample standard deviation; None with one seed) over the seeds' results."""
    import numpy as np

    table: dict[str, dict[str, tuple[float | None, float | None]]] = {}
    for name in results[0]["detectors"]:
        row: dict[str, tuple[float | None, float | None]] = {}
        for key, _ in TABLE_COLUMNS:
            values = [result["detectors"][name].get(key) for result in results]
            known = np.array([value for value in values if value is not None], dtype=np.float64)
            row[key] = (float(known.mean()) if len(known) else None,
                        float(known.std(ddof=1)) if len(known) > 1 else None)
        table[name] = row
    return table


def print_detector_table(results: list[dict[str, Any]]) -> None:
    """One row per detector; with several seeds every cell is mean ± standard deviation."""
    rows = summarise_repeats(results)
    true_rates = [result["true_noise_rate"] for result in results]
    several = len(results) > 1
    width = 15 if several else 9
    print(f"{'detector':<11}" + "".join(f" {title:>{width}}" for _, title in TABLE_COLUMNS))
    for name, row in rows.items():
        cells = []
        for key, _ in TABLE_COLUMNS:
            mean, spread = row[key]
            digits = 0 if key == "n_flagged" else 1 if key == "seconds" else 3
            cell = "n/a" if mean is None else f"{mean:.{digits}f}"
            if several and spread is not None:
                cell += f" ± {spread:.{digits}f}"
            cells.append(f" {cell:>{width}}")
        print(f"{name:<11}" + "".join(cells))
    mean_true = sum(true_rates) / len(true_rates)
    print(f"true noise rate {mean_true:.3f}" + (f" (mean of {len(results)} seeds)" if several else ""))


def print_report(result: dict[str, Any], dataset: Path) -> None:
    def fmt(value: float | None) -> str:
        return "  n/a" if value is None else f"{value:.3f}"

    config = result["config"]
    print(f"{result['dataset']}: {result['samples']} samples, {result['classes']} classes; "
          f"{config['folds']} folds x {config['epochs']} epochs, {config['model']} at {config['image_size']}px "
          f"on {config['device']}")
    heldout = result["heldout_accuracy"]
    print(f"true noise rate {result['true_noise_rate']:.3f}; held-out accuracy "
          f"{fmt(heldout)}")
    print(f"out-of-fold accuracy: {fmt(result['oof_accuracy_truth'])} against the truth, "
          f"{fmt(result['oof_accuracy_given'])} against the given labels; training "
          f"{fmt(result['train_images_per_s'])} images/s (median epoch)")
    print_detector_table([result])
    print("wall time (s): " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in result["timings_s"].items()))
    if "cifar10n" in dataset.name.lower():
        print(f"reference (CIFAR-10N worse_label, 1000/class, 3 folds, 12 epochs, small CNN, CPU): "
              f"ROC-AUC {REFERENCE['roc_auc']}, AP {REFERENCE['average_precision']}, F1 {REFERENCE['f1']}, "
              f"{REFERENCE['seconds']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.repeat < 1:
        print("error: --repeat must be at least 1", file=sys.stderr)
        return 2
    if args.repeat > 1 and args.keep_project:
        print("error: --keep-project keeps one project; use it without --repeat", file=sys.stderr)
        return 2
    results: list[dict[str, Any]] = []
    try:
        for offset in range(args.repeat):
            seed_args = argparse.Namespace(**{**vars(args), "seed": args.seed + offset})
            results.append(run(seed_args))
            if args.repeat > 1 and not args.json:
                print(f"--- seed {seed_args.seed}", file=sys.stderr)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)  # the message, then "  fix: ..."
        return 2
    if args.json:
        print(json.dumps(results[0] if args.repeat == 1 else {"seeds": results}, indent=2))
    elif args.repeat == 1:
        print_report(results[0], args.dataset)
    else:
        print(f"{args.dataset}: {args.repeat} seeds from {args.seed}; mean ± standard deviation")
        print_detector_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
