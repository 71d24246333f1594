"""`python -m engine audit`: K-fold probabilities, then the detectors; scores every sample."""

from __future__ import annotations

import argparse
from typing import Any

from engine.commands.common import (
    add_fold_option,
    add_json_option,
    add_project_argument,
    add_resume_option,
    add_train_options,
    run_training_command,
)
from engine.detectors import DETECTORS, parse_detectors


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "audit", help="find probably mislabeled samples (K-fold probabilities + confident learning)",
        description="Train one model per fold, score every training sample with each detector, and store the "
        "scores, suggested labels, the flagged set and the estimated noise matrix in a new audit run. Held-out "
        "(test) samples are never audited: accuracy is measured on them.",
    )
    add_project_argument(parser)
    add_train_options(parser)
    add_fold_option(parser)
    parser.add_argument("--detectors", default="cl", metavar="NAMES",
                        help=f"comma-separated detectors to run (default cl); known: {', '.join(DETECTORS)}")
    add_resume_option(parser)
    add_json_option(parser)
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from engine.audit import AUDIT_KIND, audit_body

    def spec() -> dict[str, Any]:
        detectors = [info.name for info in parse_detectors(args.detectors)]  # an unknown name fails here, clearly
        return {"folds": args.folds, "detectors": detectors}

    return run_training_command(args, AUDIT_KIND, spec, audit_body)
