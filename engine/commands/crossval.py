"""`python -m engine crossval`: K-fold out-of-sample probabilities for every sample."""

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
from engine.jobs import JobContext
from engine.training.config import TrainConfig


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "crossval", help="train K fold models and store out-of-sample probabilities (N, K) for every sample",
        description="Train one model per fold (stratified, seeded) and store each sample's out-of-sample "
        "predicted probabilities as pred_probs.npy in a new run folder.",
    )
    add_project_argument(parser)
    add_train_options(parser)
    add_fold_option(parser)
    add_resume_option(parser)
    add_json_option(parser)
    parser.set_defaults(func=handle)


def crossval_body(ctx: JobContext, config: TrainConfig, spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from engine.crossval import PRED_PROBS_FILE, crossval_pred_probs, heldout_accuracy
    from engine.run_labels import record_run_labels
    from engine.training import distributed

    table = ctx.project.sample_table()
    # It trains on the observed labels, decisions left aside: recorded like an audit's (engine.run_labels).
    labels_used = record_run_labels(ctx.run.folder, table.label, np.ones(len(table.label), dtype=bool)) \
        if distributed.is_main() else {}
    probs = crossval_pred_probs(ctx, config, spec["folds"], labels=table.label)
    accuracy, against, _ = heldout_accuracy(table, probs)
    summary: dict[str, Any] = {"pred_probs": PRED_PROBS_FILE, "samples": int(len(probs)), "labels_used": labels_used,
                               "heldout_accuracy": accuracy, "heldout_accuracy_measured_against": against,
                               "heldout_evaluated_against": against}
    ctx.events.result("pred_probs", {"path": str(ctx.run.folder / PRED_PROBS_FILE), "shape": list(probs.shape)})
    return summary


def handle(args: argparse.Namespace) -> int:
    return run_training_command(args, "crossval", {"folds": args.folds}, crossval_body)
