"""Accept every suggestion of an audit, then retrain: does the cleaning pay, beyond seed noise?

    python bench/accept_suggestions.py /work/shared/data [--per-class 1000] [--noise symmetric:0.4]
        [--detectors all] [--follow ensemble] [--action relabel] [--seeds 3] [--keep-project DIR] [--json]

The review loop a hurried user runs: audit (``--detectors``), then the app's bulk action
"accept the suggestion" on every flagged training sample of one detector (``--follow``),
recorded as decisions in one batch exactly as the app records them, then ``retrain``:
the same model trained on the cleaned and on the original labels at ``--seeds`` paired
seeds, scored on held-out images against the truth. The dataset is that of
``bench/robust.py``: the first ``--per-class`` rows of each clean class of
``cifar10n-train.csv`` with ``--noise`` injected (seeded) or a human ``--label-column``,
and ``cifar10/test`` as the held-out split. One table: the audit's flagged set (how many
were wrong, how many suggestions give the true class), the wrong labels before and after,
and the retrain's accuracies with the paired difference and its 95% interval.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.robust import bench_main, dataset_parser, labels_described, noisy_project  # noqa: E402
from engine.errors import UserError  # noqa: E402
from engine.events import ConsoleRenderer, EventSink  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = dataset_parser(__doc__)
    parser.add_argument("--dynamics-epochs", type=int, default=None,
                        help="the audit's dynamics run (default the audit's own, not --epochs: that is the K-fold "
                        "models' and the retrain's)")
    parser.add_argument("--audit-folds", type=int, default=3, help="folds of the audit (default 3)")
    parser.add_argument("--detectors", default="all", help="the audit's detectors (default all)")
    parser.add_argument("--follow", default="ensemble", help="whose flagged set and suggestions to accept "
                        "(default ensemble)")
    parser.add_argument("--action", choices=("relabel", "remove"), default="relabel",
                        help="relabel to the suggestion (the app's accept; default) or remove")
    parser.add_argument("--seeds", type=int, default=3, help="paired seeds of the retrain (default 3)")
    return parser.parse_args(argv)


def accept_everything(project: Any, run_id: str, detector: str, action: str) -> dict[str, int]:
    """Every flagged training sample of ``detector`` decided in one batch; counts against the truth."""
    table = project.sample_table()
    train = table.train_ids
    result = project.scores(run_id, detector)
    flagged = train[result["flagged"][train]]
    suggested = result["suggested"][flagged]
    items = [(int(sample), "relabel", int(label)) if action == "relabel" and label >= 0 else (int(sample), "remove", None)
             for sample, label in zip(flagged, suggested, strict=True)]
    project.decide_many(items)
    truth = table.true_label
    labels, keep = project.labels_with_decisions()
    kept = train[keep[train]]
    return {
        "train": len(train),
        "wrong_before": int((table.label[train] != truth[train]).sum()),
        "flagged": len(flagged),
        "flagged_wrong": int((table.label[flagged] != truth[flagged]).sum()),
        "suggestion_true": int((suggested == truth[flagged]).sum()),
        "kept": len(kept),
        "wrong_after": int((labels[kept] != truth[kept]).sum()),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from engine.training.config import TrainConfig
    from engine.workflows.audit import DEFAULT_DYNAMICS_EPOCHS, run_audit
    from engine.workflows.retrain import run_retrain

    config = TrainConfig.from_args(args)
    events = EventSink(console=ConsoleRenderer(sys.stderr, quiet=args.quiet))
    started = time.perf_counter()
    with noisy_project(args, config, events, "bench-accept-") as project:
        seconds: dict[str, float] = {}
        clock = time.perf_counter()
        audit, status = run_audit(project, config, folds=args.audit_folds, detectors=args.detectors.split(","),
                                  events=events, dynamics_epochs=args.dynamics_epochs or DEFAULT_DYNAMICS_EPOCHS)
        if status != "ok":
            raise UserError(f"the audit ended with status {status}", "see the messages above")
        seconds["audit"] = round(time.perf_counter() - clock, 1)
        counts = accept_everything(project, audit.id, args.follow, args.action)
        clock = time.perf_counter()
        retrain, status = run_retrain(project, config, events=events, seeds=args.seeds)
        if status != "ok":
            raise UserError(f"the retrain ended with status {status}", "see the messages above")
        seconds["retrain"] = round(time.perf_counter() - clock, 1)
        summary = project.run(retrain.id).summary
        return {
            "dataset": str(args.data),
            "dynamics_epochs": args.dynamics_epochs or DEFAULT_DYNAMICS_EPOCHS,
            "labels": labels_described(args),
            "detectors": args.detectors, "follow": args.follow, "action": args.action,
            "config": {**config.to_dict(), "seeds": args.seeds},
            "counts": counts,
            "heldout_samples": int(len(project.sample_table().test_ids)),
            "accuracy_original": summary["accuracy_original"],
            "accuracy_original_std": summary["accuracy_original_std"],
            "accuracy_cleaned": summary["accuracy_cleaned"],
            "accuracy_cleaned_std": summary["accuracy_cleaned_std"],
            "difference": summary["difference"],
            "seconds": {**seconds, "total": round(time.perf_counter() - started, 1)},
        }


def print_table(result: dict[str, Any]) -> None:
    counts, config = result["counts"], result["config"]
    print(f"{result['dataset']}: {counts['train']} training samples ({result['labels']}), "
          f"{result['heldout_samples']} held-out samples scored against the truth; {config['model']}, "
          f"{config['epochs']} epochs, {config['seeds']} paired seeds, on {config['device']}")
    print(f"audit ({result['detectors']}; {config['epochs']}-epoch K-fold, {result['dynamics_epochs']}-epoch dynamics): "
          f"{result['follow']} flagged {counts['flagged']}, of them "
          f"{counts['flagged_wrong']} wrong; its suggestion is the true class for {counts['suggestion_true']}")
    print(f"accepted every suggestion ({result['action']}): wrong labels {counts['wrong_before']} of "
          f"{counts['train']} -> {counts['wrong_after']} of {counts['kept']}")
    print(f"{'training labels':<18} {'held-out accuracy (mean ± std)':>32}")
    for name in ("original", "cleaned"):
        print(f"{name:<18} {100 * result[f'accuracy_{name}']:>24.1f}% ± {100 * result[f'accuracy_{name}_std']:.1f}")
    print(f"cleaned - original: {result['difference']['text']}")
    print(f"seconds: audit {result['seconds']['audit']:.0f}, retrain {result['seconds']['retrain']:.0f}, "
          f"whole bench {result['seconds']['total']:.0f}")


def main(argv: list[str] | None = None) -> int:
    return bench_main(argv, parse_args, run, print_table)


if __name__ == "__main__":
    sys.exit(main())
