"""`python -m engine init PROJECT --images DIR | --csv FILE --image-root DIR ...`: import a dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.commands.common import add_json_option, add_project_argument, print_json
from engine.data.importing import import_csv, import_folder, import_summary
from engine.errors import UserError
from engine.events import ConsoleRenderer, EventSink

_SHOWN_SKIPS = 10


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "init",
        help="make a project from an image folder or a CSV of labels",
        description="Make a project from an ImageFolder dataset (<dir>/<class>/<image>, or <dir>/train/... and "
        "<dir>/test/...) or from a CSV of image paths and labels. Unreadable images are skipped and listed.",
    )
    add_project_argument(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", metavar="DIR", help="ImageFolder dataset: one sub-folder per class")
    source.add_argument("--csv", metavar="FILE", help="CSV with one row per image (extra columns are kept)")
    parser.add_argument("--image-root", metavar="DIR", help="folder the CSV's paths are relative to (with --csv)")
    parser.add_argument("--path-column", default="path", help="CSV column of image paths (default: path)")
    parser.add_argument("--label-column", default="label", help="CSV column of labels (default: label)")
    parser.add_argument("--truth-column", default=None, help="optional CSV column of known true labels")
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="held-out test share, stratified (default 0.2; ignored for train/ + test/ folders)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the test split (default 0)")
    parser.add_argument("--folds", type=int, default=3,
                        help="cross-validation folds to plan for: each class needs this many training images")
    add_json_option(parser)
    parser.set_defaults(func=run)


def console_sink() -> EventSink:
    """Progress and warnings as lines on stderr; stdout keeps the answer (one JSON object with --json).

    With --json the lines still come: the app shows the latest one while a long import runs.
    """
    return EventSink(console=ConsoleRenderer(sys.stderr))


def run(args: argparse.Namespace) -> int:
    events = console_sink()
    if args.csv:
        if not args.image_root:
            raise UserError("--csv needs --image-root", "name the folder that the CSV's image paths are relative to")
        project = import_csv(args.project, args.csv, args.image_root, path_column=args.path_column,
                             label_column=args.label_column, truth_column=args.truth_column,
                             test_fraction=args.test_fraction, seed=args.seed, folds=args.folds, events=events)
    else:
        if args.image_root:
            raise UserError("--image-root only applies with --csv", "drop --image-root; --images names the dataset")
        project = import_folder(args.project, args.images, test_fraction=args.test_fraction, seed=args.seed,
                                folds=args.folds, events=events)
    with project:
        summary = import_summary(project)
    if args.json:
        print_json(summary)
    else:
        print_import_summary(summary)
    return 0


def print_import_summary(summary: dict[str, Any]) -> None:
    """A few human lines: where, how many, per class, what was skipped and why."""
    source = summary["source"]
    image_root = Path(summary["project"]) / source.get("image_root", "")  # a relative root lies in the project
    print(f"project {summary['project']} ({source.get('kind')} dataset, images in {image_root})")
    print(f"{summary['samples']} images: {summary['train']} train, {summary['test']} test, "
          f"{len(summary['classes'])} classes")
    width = max(len(c["name"]) for c in summary["classes"])
    for c in summary["classes"]:
        print(f"  {c['name']:<{width}}  {c['train']:>6} train  {c['test']:>6} test")
    skipped = summary["skipped"]
    if skipped:
        print(f"skipped {len(skipped)} image(s) or folder(s):")
        for entry in skipped[:_SHOWN_SKIPS]:
            row = f" (data row {entry['row']})" if "row" in entry else ""
            print(f"  {entry['path']}{row}: {entry['reason']}")
        if len(skipped) > _SHOWN_SKIPS:
            print(f"  ... and {len(skipped) - _SHOWN_SKIPS} more (`--json` lists them all)")
