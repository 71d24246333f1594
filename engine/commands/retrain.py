"""`python -m engine retrain`: train on the cleaned data and on the original labels; compare held out."""

from __future__ import annotations

import argparse
from typing import Any

from engine.commands.common import (
    add_json_option,
    add_project_argument,
    add_resume_option,
    add_train_options,
    run_training_command,
)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "retrain", help="train on the train split with the decisions applied; compare with the uncorrected labels",
        description="Train a model on the train split with the decisions applied (removed samples dropped, "
        "relabels used) and, in the same run, the same model with the same seed on the uncorrected labels. "
        "Both are scored on the held-out split (against the truth where known). The cleaned model's "
        "state_dict is saved as model.pt in the run folder.",
    )
    add_project_argument(parser)
    add_train_options(parser)
    auto = parser.add_argument_group("auto mode (prune-and-retrain without review)")
    auto.add_argument("--auto-top-k", metavar="K", default=None,
                      help="also apply the top K suggestions of the latest audit to train samples without a "
                      "decision (`flagged`: all the detector flagged); they are NOT recorded as decisions")
    auto.add_argument("--auto-action", choices=("remove", "relabel"), default="remove",
                      help="what auto mode does with those samples (default remove)")
    auto.add_argument("--run", dest="audit_run", metavar="RUN_ID", default=None,
                      help="the audit run whose suggestions auto mode applies (default: the latest)")
    auto.add_argument("--detector", default="cl", help="whose ranking auto mode follows (default cl)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the model on the uncorrected labels (half the time; no before/after)")
    add_resume_option(parser)
    add_json_option(parser)
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from engine.retrain import RETRAIN_KIND, parse_top_k, retrain_body, retrain_spec

    def spec() -> dict[str, Any]:
        top_k = None if args.auto_top_k is None else parse_top_k(args.auto_top_k)
        audit_run = args.audit_run
        if top_k is not None and audit_run is None:
            # Name the audit now, so a resume follows the same one even after a newer audit.
            from engine.store import Project

            with Project.open(args.project) as project:
                audit_run = project.run(kind="audit").id
        return retrain_spec(auto_top_k=top_k, auto_action=args.auto_action, audit_run=audit_run,
                            detector=args.detector, baseline=not args.no_baseline)

    return run_training_command(args, RETRAIN_KIND, spec, retrain_body)
