"""`python -m engine compare`: several methods, each trained once per seed; accuracy and paired differences."""

from __future__ import annotations

import argparse
from typing import Any

from engine.commands.common import run_training_command
from engine.commands.retrain import add_methods_command, auto_spec, check_trusted


def add_parser(subparsers: Any) -> None:
    add_methods_command(
        subparsers, "compare", handle=handle, method_group="methods", method_options=add_methods_option,
        help="train several methods with the same seeds and compare their held-out accuracy",
        description="Train each method of --methods once per seed (--seeds, the same seeds for every method) on "
        "the train split with the decisions applied, score each model on the held-out split (against the "
        "truth where known), and report per method the accuracy as mean ± std and the difference to ce "
        "(else the first method) paired by seed with its 95% interval; 'no measurable change' where that "
        "interval holds zero. A resumed compare skips the models that finished.",
    )


def add_methods_option(method: Any) -> None:
    method.add_argument("--methods", default="ce", metavar="A,B,...",
                        help="comma-separated methods to compare (every method is listed below)")
    method.add_argument("--option", action="append", metavar="[METHOD.]KEY=VALUE", default=None,
                        help="a method option (repeatable): sln.sigma=0.5 for one method, sigma=0.5 for every "
                        "listed method that has it")


def handle(args: argparse.Namespace) -> int:
    from engine.workflows.compare import COMPARE_KIND, compare_body, compare_spec, options_for_methods, parse_method_list
    from engine.workflows.trusted import trusted_spec

    def spec() -> dict[str, Any]:
        names = parse_method_list(args.methods)
        trusted = trusted_spec(args.trusted_per_class, args.trusted_csv)
        made = compare_spec(methods=options_for_methods(names, args.option), seeds=args.seeds, trusted=trusted,
                            **auto_spec(args))
        check_trusted(args, trusted, names)
        return made

    return run_training_command(args, COMPARE_KIND, spec, compare_body)
