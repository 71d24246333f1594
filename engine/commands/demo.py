"""`python -m engine demo PROJECT`: the digits demo with known injected noise."""

from __future__ import annotations

import argparse
from typing import Any

from engine.commands.common import add_command
from engine.commands.init import print_import_summary, summary_job
from engine.data.demo import make_demo
from engine.data.importing import import_summary
from engine.events import EventSink
from engine.options import ranged


def add_parser(subparsers: Any) -> None:
    add_command(
        subparsers, "demo", handle=summary_job("demo", _make, print_demo_summary), arguments=add_demo_arguments,
        help="make the offline demo project (scikit-learn digits with known label noise)",
        description="Write scikit-learn's bundled digits as PNG images into one flat folder, PROJECT/images, "
        "import them, and inject symmetric label noise with a known seed, so detectors can be scored against the "
        "truth. PROJECT/labels.csv lists them as a dataset with unknown errors would: path, label (the noisy "
        "one) and true_label.",
    )


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=ranged("--seed"), default=0,
                        help="seed of the split (default 0); the noise is drawn with this seed + 100, a draw the "
                        "shipped td_lstm detector was never trained on")
    parser.add_argument("--noise-rate", type=ranged("--noise-rate"), default=0.2,
                        help="share of training labels made wrong (default 0.2; 0 for none)")


def print_demo_summary(summary: dict[str, Any]) -> None:
    print_import_summary(summary)
    noise = summary["noise"]
    if noise:
        print(f"noise: {noise['mode']} at rate {noise['rate']:g} (seed {noise['seed']}): "
              f"{noise['changed']} training labels changed; the truth is kept for evaluation")


def _make(args: argparse.Namespace, events: EventSink) -> dict[str, Any]:
    project = make_demo(args.project, seed=args.seed, noise_rate=args.noise_rate, events=events)
    with project:
        summary = import_summary(project)
        history = project.noise_history()
    summary["noise"] = history[-1] if history else None
    return summary
