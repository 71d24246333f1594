"""The command line: one sub-command per module under ``engine/commands``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from engine.errors import UserError
from engine.events import PrintProtocolAction

# Each module defines ``add_parser(subparsers)`` and sets ``func`` on its parser.
COMMAND_MODULES = (
    "demo",
    "init",
    "inject_noise",
    "crossval",
    "audit",
    "evaluate",
    "decide",
    "retrain",
    "export",
    "status",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="Label Auditor engine: find mislabeled images, review decisions, retrain, export.",
    )
    parser.add_argument("--protocol", action=PrintProtocolAction,
                        help="print the event protocol's version, minor version and event types as JSON, and exit")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"engine.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"engine.commands.{name}":
                raise
            continue  # a command not built yet
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  fix: {exc.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, as command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
