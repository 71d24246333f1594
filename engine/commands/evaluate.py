"""`python -m engine evaluate`: detector quality against the known truth (ROC-AUC, AP, P/R/F1)."""

from __future__ import annotations

import argparse
from typing import Any

from engine.commands.common import add_command, print_json


def add_parser(subparsers: Any) -> None:
    add_command(
        subparsers, "evaluate", handle=handle, arguments=add_run_option,
        help="score each detector of an audit against the known truth",
        description="Where the truth is known (injected noise, or a CSV truth column), report ROC-AUC and "
        "average precision of each detector's scores, precision/recall/F1 of its flagged set, and the "
        "estimated against the true noise rate.",
    )


def add_run_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", metavar="RUN_ID", default=None, help="the audit run (default: the latest)")


def handle(args: argparse.Namespace) -> int:
    from engine.commands.status import run_td_lstm_weights
    from engine.store import Project
    from engine.workflows.evaluate import evaluate_run, evaluation_run, format_evaluation

    with Project.open(args.project) as project:
        report = evaluate_run(project, args.run)
        weights = run_td_lstm_weights(evaluation_run(project, args.run))
    if weights:
        report["td_lstm_weights"] = weights
    if args.json:
        print_json(report)
    else:
        print(format_evaluation(report))
        if weights:
            print(f"td_lstm weights: {weights}")
    return 0
