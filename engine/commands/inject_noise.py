"""`python -m engine inject-noise PROJECT --mode M --rate R --seed S`: synthetic label noise."""

from __future__ import annotations

import argparse
from typing import Any

from engine.commands.common import add_command
from engine.commands.init import summary_job
from engine.events import EventSink
from engine.noise import MODES, inject_noise, parse_class_map
from engine.options import ranged
from engine.store import Project

_SHOWN_TRANSITIONS = 10


def add_parser(subparsers: Any) -> None:
    add_command(
        subparsers, "inject-noise", handle=summary_job("noise", _inject, print_noise_summary),
        arguments=add_inject_noise_arguments,
        help="replace the training labels by the clean labels plus synthetic noise (truth kept)",
        description="Inject label noise into the training split (the test split stays clean). Each injection "
        "starts from the clean labels; the same seed repeats the same noise.",
    )


def add_inject_noise_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=MODES, required=True,
                        help="symmetric (uniform to another class), asymmetric (pair flips by a class map), "
                        "instance (image-dependent), openset (images from outside the label set)")
    parser.add_argument("--rate", type=ranged("--rate"), required=True, help="share of training samples made noisy, in [0, 1)")
    parser.add_argument("--seed", type=ranged("--seed"), default=0, help="noise seed (default 0)")
    parser.add_argument("--class-map", default=None, metavar="A:B,C:D",
                        help="asymmetric only: source:target classes by name or id (default: each class to the next)")
    parser.add_argument("--image-size", type=ranged("--image-size"), default=32,
                        help="resolution of the images read (instance) or written (openset); default 32")


def print_noise_summary(summary: dict[str, Any]) -> None:
    print(f"{summary['mode']} noise, rate {summary['rate']:g}, seed {summary['seed']}: "
          f"{summary['changed']} of {summary['train_samples']} training samples noisy "
          f"(realised {summary['realised_rate']:.1%}); test split untouched")
    for pair, count in list(summary["transitions"].items())[:_SHOWN_TRANSITIONS]:
        print(f"  {pair}: {count}")
    if len(summary["transitions"]) > _SHOWN_TRANSITIONS:
        print(f"  ... {len(summary['transitions']) - _SHOWN_TRANSITIONS} more class pairs (`--json` lists all)")


def _inject(args: argparse.Namespace, events: EventSink) -> dict[str, Any]:
    class_map = parse_class_map(args.class_map) if args.class_map else None
    # One step as a bar (instance and open-set noise first decode the images, with their own progress).
    events.progress("noise", 0, 1, message=f"{args.mode} noise at rate {args.rate:g}")
    with Project.open(args.project) as project:
        summary = inject_noise(project, args.mode, args.rate, args.seed, class_map=class_map,
                               image_size=args.image_size, events=events)
    events.progress("noise", 1, 1, message=f"{summary['changed']} training labels noisy")
    return summary
