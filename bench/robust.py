"""Robust-training methods on a dataset with known truth: every method, S paired seeds, the same epoch budget.

    python bench/robust.py /work/shared/data [--per-class 1000] [--noise symmetric:0.4 | --label-column worse_label]
        [--methods ce,sln,...] [--seeds 2] [--epochs E] [--trusted-per-class 5,125]
        [--smaller-trusted-methods l2rw] [--test-per-class 1000]
        [--keep-project DIR] [--json]

PATH holds ``cifar10n-train.csv`` and ``cifar10/`` (see /work/shared/data/README.md). The
project's train split is the first ``--per-class`` rows of each class (by ``clean_label``)
of the CSV, with either ``--noise MODE:RATE`` injected (seeded) into the clean labels or the
human labels of ``--label-column``; its held-out split is ``cifar10/test`` (the first
``--test-per-class`` images of each class), scored against the truth. Every method is
trained ``--seeds`` times with the same seeds (``python -m engine compare``), all with the
same epochs; a method that needs a trusted set gets ``--trusted-per-class`` samples per
class drawn from the truth (several sizes, comma-separated: one row per size), and
``prune`` ranks by an audit made first. One table: held-out accuracy against the truth
(mean ± std), the paired difference to ``ce`` with its 95% interval, seconds per model.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.detect import limited_csv  # noqa: E402
from engine.commands.common import add_train_options  # noqa: E402
from engine.errors import UserError  # noqa: E402
from engine.events import ConsoleRenderer, EventSink  # noqa: E402

CSV_NAME = "cifar10n-train.csv"
IMAGES = "cifar10"
TRUTH_COLUMN = "clean_label"


def dataset_parser(doc: str) -> argparse.ArgumentParser:
    """A bench's parser: the dataset of :func:`build_project` (``data``, rows, labels), training and output options."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("data", type=Path, help=f"the folder holding {CSV_NAME} and {IMAGES}/")
    data = parser.add_argument_group("dataset")
    data.add_argument("--per-class", type=int, default=1000, help="training rows per class (default 1000)")
    data.add_argument("--test-per-class", type=int, default=1000,
                      help="held-out images per class from cifar10/test (default 1000, all of them)")
    labels = data.add_mutually_exclusive_group()
    labels.add_argument("--noise", default=None, metavar="MODE:RATE",
                        help="inject noise into the clean labels, seeded (default symmetric:0.4)")
    labels.add_argument("--label-column", default=None, metavar="COLUMN",
                        help="train on this column's human labels instead (e.g. worse_label)")
    add_train_options(parser, epochs=12)
    parser.add_argument("--keep-project", type=Path, default=None, metavar="DIR",
                        help="build the project here and keep it (default: a temporary folder, deleted)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = dataset_parser(__doc__)
    parser.add_argument("--methods", default=None, help="comma-separated methods (default: every registered one)")
    parser.add_argument("--option", action="append", default=None, metavar="[METHOD.]KEY=VALUE",
                        help="a method option, as for `python -m engine compare`")
    parser.add_argument("--seeds", type=int, default=2, help="paired seeds per method (default 2)")
    parser.add_argument("--trusted-per-class", default="125", metavar="N[,N...]",
                        help="trusted samples per class for the meta methods, from the truth (default 125; "
                        "e.g. 5,125: one row per size)")
    parser.add_argument("--smaller-trusted-methods", default=None, metavar="M[,M...]",
                        help="the methods also run at the smaller --trusted-per-class sizes (default: every "
                        "method that needs a trusted set; e.g. l2rw, for the seed's 5-against-125 comparison alone)")
    parser.add_argument("--audit-folds", type=int, default=3, help="folds of the audit that prune ranks by")
    return parser.parse_args(argv)


def build_project(args: argparse.Namespace, root: Path, workdir: Path, events: EventSink) -> Any:
    """Train rows of the CSV (limited per class by the truth) and cifar10/test as the held-out split."""
    from engine.data import importing

    image_root = (args.data / IMAGES).absolute()
    if not (args.data / CSV_NAME).is_file() or not (image_root / "test").is_dir():
        raise UserError(f"{args.data} does not hold {CSV_NAME} and {IMAGES}/test/",
                        "pass the CIFAR-10N folder (../shared/data; its README describes the layout)")
    label_column = args.label_column or TRUTH_COLUMN
    limit = argparse.Namespace(dataset=args.data / CSV_NAME, per_class_limit=args.per_class,
                               limit_by=TRUTH_COLUMN, label_column=label_column)
    csv_file = limited_csv(limit, workdir)
    truth_column = TRUTH_COLUMN if label_column != TRUTH_COLUMN else None
    candidates, columns = importing.read_csv_candidates(csv_file, image_root, path_column="path",
                                                        label_column=label_column, truth_column=truth_column)
    for candidate in candidates:
        candidate.split = "train"
    for class_dir in sorted(path for path in (image_root / "test").iterdir() if path.is_dir()):
        for file in sorted(class_dir.iterdir())[: args.test_per_class]:
            candidates.append(importing.Candidate(path=f"test/{class_dir.name}/{file.name}", file=file,
                                                  label=class_dir.name, split="test", truth=class_dir.name))
    source = {"kind": "csv", "image_root": str(image_root), "csv": str(csv_file), "path_column": "path",
              "label_column": label_column, "truth_column": truth_column, "columns": columns}
    return importing.build_project(root, lambda project, _staging: importing.populate(
        project, candidates, source, test_fraction=0.2, seed=args.seed, folds=args.audit_folds, events=events,
        dataset=csv_file.name))


def injected_noise(args: argparse.Namespace) -> str | None:
    """``MODE:RATE`` injected into the clean labels, or None when a human ``--label-column`` is used."""
    return None if args.label_column else (args.noise or "symmetric:0.4")


def labels_described(args: argparse.Namespace) -> str:
    noise = injected_noise(args)
    return f"{noise} injected into {TRUTH_COLUMN}" if noise else f"{args.label_column} (human)"


@contextlib.contextmanager
def noisy_project(args: argparse.Namespace, config: Any, events: EventSink, prefix: str) -> Iterator[Any]:
    """The bench's project (:func:`build_project`) with ``--noise`` injected and the image cache built.

    In a temporary folder, deleted afterwards, unless ``--keep-project DIR`` names one (its inputs
    are kept beside it).
    """
    from engine.data.cache import ensure_cache
    from engine.noise import inject_noise

    noise = injected_noise(args)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        workdir = Path(tmp)
        root = args.keep_project or workdir / "project"
        if args.keep_project:
            workdir = args.keep_project.absolute().with_name(args.keep_project.name + "-inputs")
            workdir.mkdir(parents=True, exist_ok=False)
        with build_project(args, root, workdir, events) as project:
            if noise:
                mode, _, rate = noise.partition(":")
                inject_noise(project, mode, float(rate or 0.4), args.seed, image_size=config.image_size, events=events)
            ensure_cache(project, config.image_size, events=events, workers=config.workers)
            yield project


def bench_main(argv: list[str] | None, parse: Callable[[list[str] | None], argparse.Namespace],
               run_bench: Callable[[argparse.Namespace], dict[str, Any]],
               print_result: Callable[[dict[str, Any]], None]) -> int:
    """Parse, run, print the table (or ``--json``); a UserError becomes its message, its fix and exit code 2."""
    args = parse(argv)
    try:
        result = run_bench(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)  # the message, then "  fix: ..."
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_result(result)
    return 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    from engine.methods import METHODS, method_info
    from engine.stats import paired_difference, spread
    from engine.training.config import TrainConfig
    from engine.workflows.audit import run_audit
    from engine.workflows.compare import options_for_methods, parse_method_list, run_compare
    from engine.workflows.trusted import trusted_spec

    config = TrainConfig.from_args(args)
    events = EventSink(console=ConsoleRenderer(sys.stderr, quiet=args.quiet))
    names = parse_method_list(args.methods or ",".join(METHODS))
    if "ce" not in names:
        names = ["ce", *names]  # every difference is to ce
    smaller = None if args.smaller_trusted_methods is None else set(parse_method_list(args.smaller_trusted_methods))
    sizes = sorted({int(size) for size in args.trusted_per_class.split(",") if size.strip()})
    started_all = time.perf_counter()
    with noisy_project(args, config, events, "bench-robust-") as project:
        if "prune" in names:
            _, status = run_audit(project, config, folds=args.audit_folds, events=events)
            if status != "ok":
                raise UserError(f"the audit that prune ranks by ended with status {status}", "see the messages above")
        table = project.sample_table()
        train = table.train_ids
        rows: list[dict[str, Any]] = []
        ce_by_seed: list[float] = []
        for index, size in enumerate(reversed(sizes)):  # the largest trusted set with every method
            wanted = names if index == 0 else [n for n in names if method_info(n).needs_trusted
                                               and (smaller is None or n in smaller)]
            if not wanted:
                continue
            compare, status = run_compare(project, config, methods=options_for_methods(wanted, args.option),
                                          seeds=args.seeds, trusted=trusted_spec(per_class=size), events=events)
            if status != "ok":
                raise UserError(f"the comparison ended with status {status}", "see the messages above")
            summary = project.run(compare.id).summary
            for name, figures in summary["methods"].items():
                if name == "ce":
                    ce_by_seed = figures["accuracy_per_seed"]
                rows.append({"method": name, "trusted_per_class": size if method_info(name).needs_trusted else None,
                             "per_seed": figures["accuracy_per_seed"], "seconds": figures["seconds_mean"]})
        for row in rows:
            values = spread(row["per_seed"])
            row["accuracy_mean"], row["accuracy_std"] = values.mean, values.std
            row["difference_to_ce"] = None if row["method"] == "ce" else \
                paired_difference(row["per_seed"], ce_by_seed).to_dict()
        return {
            "dataset": str(args.data),
            "labels": labels_described(args),
            "realised_noise_rate": float((table.label[train] != table.true_label[train]).mean()),
            "train_samples": int(len(train)),
            "heldout_samples": int(len(table.test_ids)),
            "config": {**config.to_dict(), "seeds": args.seeds},
            "rows": rows,
            "seconds_total": round(time.perf_counter() - started_all, 1),
        }


def print_table(result: dict[str, Any]) -> None:
    config = result["config"]
    print(f"{result['dataset']}: {result['train_samples']} training samples ({result['labels']}; "
          f"{result['realised_noise_rate']:.1%} wrong), {result['heldout_samples']} held-out samples scored against "
          f"the truth; {config['model']} at {config['image_size']}px, {config['epochs']} epochs, "
          f"{config['seeds']} paired seeds, on {config['device']}")
    print(f"{'method':<22} {'accuracy (mean ± std)':>22} {'vs ce (95% interval)':>34} {'s/run':>7}")
    for row in result["rows"]:
        name = row["method"] + (f" @{row['trusted_per_class']}/class" if row["trusted_per_class"] else "")
        accuracy = f"{100 * row['accuracy_mean']:.1f}% ± {100 * row['accuracy_std']:.1f}"
        diff = row["difference_to_ce"]
        if diff is None:
            versus = "(baseline)"
        elif diff["low"] is None:
            versus = f"{100 * diff['mean']:+.1f} pts (one seed: no interval)"
        else:
            versus = f"{100 * diff['mean']:+.1f} pts ({100 * diff['low']:+.1f} to {100 * diff['high']:+.1f})" + \
                     ("" if diff["measurable"] else " ~0")
        print(f"{name:<22} {accuracy:>22} {versus:>34} {row['seconds']:>7.1f}")
    print(f"~0: no measurable change (the interval holds zero). Whole bench: {result['seconds_total']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    return bench_main(argv, parse_args, run, print_table)


if __name__ == "__main__":
    sys.exit(main())
