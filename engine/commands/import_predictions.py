"""`python -m engine import-predictions`: your own model's predictions (and embeddings), recorded as an audit."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine.commands.common import add_command, run_with_sink
from engine.events import EventSink


def add_parser(subparsers: Any) -> None:
    add_command(
        subparsers, "import-predictions", handle=handle, arguments=add_import_predictions_arguments,
        help="record your own model's out-of-sample predictions (and embeddings) as an audit",
        description="Check every row of the files, then record the predictions as an audit run scored by "
        "confident learning (cl: cleanlab's flagged set, ranked by self-confidence), judged against the labels "
        "with your decisions applied. status, evaluate, the review, decide, retrain and export treat it like any "
        "audit. Nothing is written when any row has a problem: every problem is listed with its file, rows and "
        "fix. A .csv has a path column (each sample's path as the dataset names it) and, for predictions, one "
        "column per class name in any order; a .npy has one row per line of --paths. Every training sample "
        "needs a row; held-out samples may have rows (stored, never audited).",
    )


def add_import_predictions_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred-probs", type=Path, metavar="FILE", default=None,
                        help="out-of-sample class probabilities: .csv (path + one column per class) or .npy (N, K) "
                        "with --paths")
    parser.add_argument("--embeddings", type=Path, metavar="FILE", default=None,
                        help="one embedding per sample: .csv (path + numeric columns) or .npy (N, D) with --paths; "
                        "stored as embeddings/NAME.npy in the project")
    parser.add_argument("--paths", type=Path, metavar="FILE", default=None,
                        help="for .npy files: one sample path per line, line r naming the sample of row r")
    parser.add_argument("--logits", action="store_true",
                        help="the predictions are logits (scores before a softmax): a softmax turns them into "
                        "probabilities")
    parser.add_argument("--name", default=None, metavar="NAME",
                        help="a name for this source (default: the file's name without extension)")
    parser.add_argument("--check", action="store_true",
                        help="only check the files and show what would be imported; write nothing")


def handle(args: argparse.Namespace) -> int:
    from engine.evidence.imported import ImportRefused, import_predictions, validate
    from engine.store import Project

    options = {"pred_probs": args.pred_probs, "embeddings": args.embeddings, "paths": args.paths,
               "logits": args.logits, "name": args.name}

    def work(sink: EventSink) -> str:
        with Project.open(args.project) as project:
            if args.check:
                preview = validate(project, **options)
                sink.result("import_check", preview.to_dict())
                _print_preview(args, preview.describe())
                if not preview.ok:
                    raise ImportRefused(preview)
                sink.done("ok", "the files can be imported")
                return "ok"
            try:
                result = import_predictions(project, events=sink, **options)
            except ImportRefused as refused:
                sink.result("import_check", refused.preview.to_dict())
                _print_preview(args, refused.preview.describe())
                raise
            if result.run is None and result.status == "ok":  # embeddings only: no run, so no done event yet
                sink.result("import", {"embeddings": result.embeddings})
                sink.done("ok", f"embeddings stored in {result.embeddings and result.embeddings['array']}")
            elif result.run is not None and not args.json:
                source = (result.preview.pred_probs or {}).get("file")
                print(f"recorded audit run {result.run.id} from {source}")
                if result.embeddings:
                    print(f"embeddings stored in {result.embeddings['array']}")
            return result.status

    return run_with_sink(args, work)


def _print_preview(args: argparse.Namespace, lines: list[str]) -> None:
    """Problems and matches on stderr for a person (with --json the result event carries them)."""
    if args.json:
        return
    import sys

    for line in lines:
        print(line, file=sys.stderr)
