"""`python -m engine crossval`: K-fold out-of-sample probabilities for every sample."""

from __future__ import annotations

import argparse
from typing import Any

from engine.commands.common import add_fold_option, add_training_command, run_training_command


def add_parser(subparsers: Any) -> None:
    add_training_command(
        subparsers, "crossval", handle=handle, own_options=add_fold_option,
        help="train K fold models and store out-of-sample probabilities (N, K) for every sample",
        description="Train one model per fold (stratified, seeded) and store each sample's out-of-sample "
        "predicted probabilities as pred_probs.npy in a new run folder.",
    )


def handle(args: argparse.Namespace) -> int:
    from engine.workflows.crossval import CROSSVAL_KIND, crossval_body

    return run_training_command(args, CROSSVAL_KIND, {"folds": args.folds}, crossval_body)
