"""`python -m engine export`: corrected labels as CSV, the cleaned ImageFolder, arrays for cleanlab."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.commands.common import add_command, print_json


def add_parser(subparsers: Any) -> None:
    add_command(
        subparsers, "export", handle=handle, arguments=add_export_arguments,
        help="write the corrected labels CSV (and optionally the cleaned ImageFolder, cleanlab arrays)",
        description="Write one CSV row per sample: the input's columns plus original_label, final_label, action "
        "(kept, relabeled, removed, unreviewed), score, suggested_label and detector. Cells are escaped so a "
        "spreadsheet never reads them as formulas (plain numbers stay as they are). The files are written as one "
        "set: all of them or, on any failure, none, with the previous export left as it was. The export never "
        "writes into the project, over the CSV it was imported from, or over its images. Held-out samples, which "
        "an audit never scores, have empty score columns; a warning says when the audit saw other labels.",
    )


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, metavar="FILE.csv", help="the CSV to write")
    parser.add_argument("--run", metavar="RUN_ID", default=None,
                        help="the audit run whose scores and suggestions to include (default: the latest)")
    parser.add_argument("--detector", default=None,
                        help="whose scores and suggestions to include (default: the one the review ranks by: "
                        "ensemble when the audit ran it, else cl, else its first detector)")
    parser.add_argument("--folder", type=Path, metavar="DIR", default=None,
                        help="also write the cleaned dataset as DIR/<final_label>/<file> (removed samples left out); "
                        "DIR must be new or empty")
    parser.add_argument("--copy", action="store_true", help="with --folder: copy the images instead of symlinking")
    parser.add_argument("--cleanlab", type=Path, metavar="DIR", default=None,
                        help="also write pred_probs.npy, noise_matrix.npy, labels.npy (and final_labels.npy, "
                        "classes.txt) of the audit run for cleanlab users")


def handle(args: argparse.Namespace) -> int:
    from engine.errors import UserError
    from engine.export import export_set
    from engine.store import Project

    if args.copy and args.folder is None:
        raise UserError("--copy needs --folder", "add --folder DIR to export the cleaned images")
    with Project.open(args.project) as project:
        report = export_set(project, out=args.out, folder=args.folder, copy=args.copy, cleanlab=args.cleanlab,
                            run_id=args.run, detector=args.detector)
    csv_report = report["csv"]
    if csv_report.get("stale"):  # said in --json mode too: a pipeline's log shows stderr
        print(f"warning: the score, suggested_label and detector columns come from run {csv_report['run_id']}, "
              f"which is stale: {csv_report['stale']}; run a new audit for scores of the current labels",
              file=sys.stderr)
    if args.json:
        print_json(report)
        return 0
    actions = ", ".join(f"{count} {action}" for action, count in sorted(csv_report["actions"].items()))
    scores = f"scores from {csv_report['detector']} of run {csv_report['run_id']}" if csv_report["run_id"] else \
        "no audit yet: score columns empty"
    print(f"wrote {csv_report['csv']}: {csv_report['rows']} rows ({actions}); {scores}")
    if "folder" in report:
        folder = report["folder"]
        print(f"wrote {folder['folder']}: {folder['images']} images ({folder['mode']}), "
              f"{folder['removed']} removed samples left out")
        for name, folder_name in folder["renamed_classes"].items():
            print(f"  class {_short(name)!r} is in folder {_short(folder_name)!r} (its name is not a valid folder name "
                  "as it is: too long, or holding / \\ : * ? \" < > |)")
    if "cleanlab" in report:
        print(f"wrote {report['cleanlab']['folder']}: {', '.join(report['cleanlab']['files'])}")
    return 0


def _short(name: str, limit: int = 60) -> str:
    return name if len(name) <= limit else f"{name[:limit - 12]}...{name[-9:]}"
