"""`python -m engine finetune-detector PROJECT [--json]`: the review teaches the td_lstm detector.

The job itself (fine-tuning, the project's weights, the re-scored audit run) is
:mod:`engine.workflows.finetune_detector`.
"""

from __future__ import annotations

import argparse
from typing import Any

from engine.commands.common import add_command, run_with_sink
from engine.workflows.finetune_detector import MIN_REVIEWED


def add_parser(subparsers: Any) -> None:
    add_command(
        subparsers, "finetune-detector", handle=handle,
        help="fine-tune the td_lstm detector on your reviewed samples and re-score the project (no training)",
        description="Fine-tune the td_lstm detector on the samples you reviewed in the latest audit with training "
        "dynamics (relabeled or removed = mislabeled, kept = correct; at least "
        f"{MIN_REVIEWED}, both kinds), keep the weights in the project (PROJECT/detectors/td_lstm.pt; later audits "
        "use them, `audit --td-weights shipped` does not), and write a new audit run from that audit's recorded "
        "dynamics with td_lstm and ensemble re-scored. Reports the detector's ROC-AUC against your verdicts before "
        "and after: in-sample and by k-fold over your reviews.",
    )


def handle(args: argparse.Namespace) -> int:
    from engine.store import Project
    from engine.workflows.finetune_detector import run_finetune

    def work(sink: Any) -> str:
        with Project.open(args.project) as project:
            return run_finetune(project, sink)[1]

    return run_with_sink(args, work)
