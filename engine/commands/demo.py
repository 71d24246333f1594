"""`python -m engine demo PROJECT`: the digits demo with known injected noise."""

from __future__ import annotations

import argparse
from typing import Any

from engine.commands.common import add_json_option, add_project_argument
from engine.commands.init import print_import_summary, run_with_events
from engine.data.demo import make_demo
from engine.data.importing import import_summary
from engine.events import EventSink
from engine.options import ranged


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="make the offline demo project (scikit-learn digits with known label noise)",
        description="Write scikit-learn's bundled digits as PNG images into one flat folder, PROJECT/images, "
        "import them, and inject symmetric label noise with a known seed, so detectors can be scored against the "
        "truth. PROJECT/labels.csv lists them as a dataset with unknown errors would: path, label (the noisy "
        "one) and true_label.",
    )
    add_project_argument(parser)
    parser.add_argument("--seed", type=ranged("--seed"), default=0,
                        help="seed of the split (default 0); the noise is drawn with this seed + 100, a draw the "
                        "shipped td_lstm detector was never trained on")
    parser.add_argument("--noise-rate", type=ranged("--noise-rate"), default=0.2,
                        help="share of training labels made wrong (default 0.2; 0 for none)")
    add_json_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    code, summary = run_with_events(args, "demo", lambda events: _make(args, events))
    if summary is None:
        return code
    print_import_summary(summary)
    noise = summary["noise"]
    if noise:
        print(f"noise: {noise['mode']} at rate {noise['rate']:g} (seed {noise['seed']}): "
              f"{noise['changed']} training labels changed; the truth is kept for evaluation")
    return code


def _make(args: argparse.Namespace, events: EventSink) -> dict[str, Any]:
    project = make_demo(args.project, seed=args.seed, noise_rate=args.noise_rate, events=events)
    with project:
        summary = import_summary(project)
        history = project.noise_history()
    summary["noise"] = history[-1] if history else None
    return summary
