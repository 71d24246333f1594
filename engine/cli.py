"""The command line: one sub-command per module under ``engine/commands``."""

from __future__ import annotations

import argparse
import importlib
import os
import sqlite3
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from engine.errors import UserError, user_error_from_database_error, user_error_from_oserror
from engine.events import PrintProtocolAction

# Each module defines ``add_parser(subparsers)`` and sets ``func`` on its parser.
COMMAND_MODULES = (
    "demo",
    "init",
    "inject_noise",
    "crossval",
    "audit",
    "estimate",
    "evaluate",
    "decide",
    "retrain",
    "compare",
    "tune",
    "export",
    "status",
    "train_detector",
    "finetune_detector",
    "import_predictions",
    "embed",
    "duplicates",
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
    finished = False  # the job ended without an error: under torchrun, wait for the other ranks at exit
    try:
        try:
            if "WORLD_SIZE" in os.environ:  # started by torchrun: join its process group (one of N workers)
                from engine.training import distributed

                distributed.start(args.command, getattr(args, "device", "auto") or "auto")
            code = int(args.func(args) or 0)
            finished = code == 0
            return code
        except BrokenPipeError:
            raise
        except sqlite3.Error as exc:
            # The top-level net: a database that is damaged, full, read-only or locked is the
            # person's to fix, never "a bug"; misuse of the API (a real bug) falls through.
            translated: UserError | None = user_error_from_database_error(exc, _project_folder(args))
            if translated is None:
                raise
            raise translated from exc
        except OSError as exc:
            translated = user_error_from_oserror(exc, _project_folder(args))
            if translated is None:
                raise
            raise translated from exc
    except UserError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  fix: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, as command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # noqa: BLE001 - a genuine bug: keep the traceback, say it is ours
        stopped = _another_rank_stopped(exc)
        if stopped is not None:
            return stopped
        traceback.print_exc()
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("  this is a bug in Label Auditor: please report it with the traceback above", file=sys.stderr)
        return 1
    finally:
        if "WORLD_SIZE" in os.environ:
            from engine.training import distributed

            distributed.stop(finished)


def _another_rank_stopped(exc: Exception) -> int | None:
    """Under torchrun, a collective that failed because another rank stopped is no bug of ours: no traceback.

    Rank 0 names the rank that stopped; the others stop without a word (rank 0, or the launcher, speaks).
    """
    if "WORLD_SIZE" not in os.environ:
        return None
    from engine.training import distributed

    if not distributed.active() or not distributed.is_collective_failure(exc):
        return None
    stopped = distributed.peer_failure(exc)
    if stopped is not None:
        print(f"error: {stopped.message}", file=sys.stderr)
        print(f"  fix: {stopped.hint}", file=sys.stderr)
    return 1


def _project_folder(args: argparse.Namespace) -> Path:
    """The folder a command works on, to name in an error: its project (or output) argument."""
    for name in ("project", "out", "root"):
        value = getattr(args, name, None)
        if isinstance(value, (str, Path)):
            return Path(value)
    return Path.cwd()
