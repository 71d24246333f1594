"""``python -m engine.torchrun [torchrun options] COMMAND PROJECT ...``: torchrun for the engine, with one message.

The same launcher as ``torchrun [options] -m engine COMMAND PROJECT ...`` (PyTorch's own, run
in this process, every option as torchrun takes it), except for what a stop prints. Plain
torchrun answers any worker that fails with its own traceback (``ChildFailedError``) after
the engine's message; this one prints nothing more when rank 0 said what stopped, and when
rank 0 itself died (so could say nothing) it names the rank, how it ended, and the command
that resumes the run, which then reads as interrupted. Ctrl-C stops every rank, as torchrun.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import UserError

USAGE = "python -m engine.torchrun [torchrun options] COMMAND PROJECT [engine options]"


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(torchrun's options, the engine's command line): the engine's starts at the first training command."""
    from engine.training.distributed import COMMANDS

    for index, part in enumerate(argv):
        if part in COMMANDS and (index == 0 or not argv[index - 1].startswith("-") or "=" in argv[index - 1]):
            return list(argv[:index]), list(argv[index:])
    raise UserError(f"no engine command in {shlex.join(argv) or 'the command line'}",
                    f"usage: {USAGE}, COMMAND being one of {', '.join(COMMANDS)}")


def describe_exit(exitcode: int) -> str:
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def interrupted_run(project: Path, pid: int) -> str | None:
    """The run rank 0 (process ``pid``) was running in ``project``: its run row names that process."""
    from engine.store import Project

    try:
        with Project.open(project, read_only=True) as opened:
            runs = opened.runs()
    except (UserError, OSError):
        return None
    owned = [run for run in runs if isinstance(run.spec.get("process"), dict)
             and run.spec["process"].get("pid") == pid and run.status != "ok"]
    return owned[-1].id if owned else None


def report_failure(failures: dict[int, Any], engine_argv: list[str], launcher_argv: list[str]) -> int:
    """One message for a failed group; returns the exit status. Rank 0, when it ended by itself, has spoken."""
    main = failures.get(0)
    if main is not None and main.exitcode >= 0:
        return main.exitcode or 1  # rank 0 reported what stopped (its message is above)
    first_rank, first = min(failures.items(), key=lambda item: (item[1].timestamp, item[0]))
    message = f"rank {first_rank} stopped ({describe_exit(first.exitcode)})"
    if main is not None and first_rank != 0:
        message += f", and rank 0 too ({describe_exit(main.exitcode)})"
    run_id = interrupted_run(Path(engine_argv[1]), main.pid) if main is not None and len(engine_argv) > 1 else None
    rerun = [sys.executable, "-m", "engine.torchrun", *launcher_argv]
    if run_id is not None:
        keep = ["--json"] if "--json" in engine_argv else []
        model = [part for index, part in enumerate(engine_argv[1:-1], start=1)
                 if engine_argv[index] == "--model" or engine_argv[index - 1] == "--model"]
        custom = model if len(model) == 2 and ":" in model[1] else []
        print(f"error: {message}; run {run_id} is interrupted", file=sys.stderr)
        print(f"  fix: resume it with: {shlex.join([*rerun, *engine_argv[:2], *custom, *keep, '--resume', run_id])}",
              file=sys.stderr)
    else:
        print(f"error: {message} before a run was recorded", file=sys.stderr)
        print(f"  fix: start it again: {shlex.join([*rerun, *engine_argv])}", file=sys.stderr)
    return 1


def quiet_torchrun_logs() -> None:
    """torchrun's own log lines about stopping and failed workers: this launcher's one message says it instead."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        launcher_argv, engine_argv = split_argv(arguments)
    except UserError as exc:
        print(f"error: {exc.message}\n  fix: {exc.hint}", file=sys.stderr)
        return 2
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args([*launcher_argv, "--module", "engine", *engine_argv])
    quiet_torchrun_logs()
    try:
        run(args)
    except ChildFailedError as failed:
        return report_failure(failed.failures, engine_argv, launcher_argv)
    except SignalException as stopped:  # Ctrl-C or a kill of this launcher: the ranks were told to stop
        return 128 + int(stopped.sigval)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
