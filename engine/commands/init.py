"""`python -m engine init PROJECT --images DIR | --csv FILE --image-root DIR ...`: import a dataset."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from engine.commands.common import EXIT_FOR_STATUS, add_command, make_sink
from engine.data.importing import import_csv, import_folder, import_summary
from engine.errors import UserError, user_error_from_oserror
from engine.events import ConsoleRenderer, EventSink
from engine.options import ranged
from engine.words import plural

_SHOWN_SKIPS = 10


def add_parser(subparsers: Any) -> None:
    add_command(
        subparsers, "init", handle=summary_job("import", _import, print_import_summary), arguments=add_init_arguments,
        help="make a project from an image folder or a CSV of labels",
        description="Make a project from an ImageFolder dataset (<dir>/<class>/<image>, or <dir>/train/... and "
        "<dir>/test/...) or from a CSV of image paths and labels. Unreadable images are skipped and listed.",
    )


def add_init_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", metavar="DIR", help="ImageFolder dataset: one sub-folder per class")
    source.add_argument("--csv", metavar="FILE", help="CSV with one row per image (extra columns are kept)")
    parser.add_argument("--image-root", metavar="DIR", help="folder the CSV's paths are relative to (with --csv)")
    parser.add_argument("--path-column", default="path", help="CSV column of image paths (default: path)")
    parser.add_argument("--label-column", default="label", help="CSV column of labels (default: label)")
    parser.add_argument("--truth-column", default=None, help="optional CSV column of known true labels")
    parser.add_argument("--test-fraction", type=ranged("--test-fraction"), default=0.2,
                        help="held-out test share, stratified (default 0.2; ignored for train/ + test/ folders)")
    parser.add_argument("--seed", type=ranged("--seed"), default=0, help="seed of the test split (default 0)")
    parser.add_argument("--folds", type=ranged("--folds"), default=3,
                        help="cross-validation folds to plan for: each class needs this many training images")


def console_sink() -> EventSink:
    """Progress and warnings as lines on stderr, for a person; stdout keeps the human summary."""
    return EventSink(console=ConsoleRenderer(sys.stderr))


def run_with_events(args: argparse.Namespace, kind: str,
                    body: Callable[[EventSink], dict[str, Any]]) -> tuple[int, dict[str, Any] | None]:
    """Run a job that answers with a summary (init, demo, inject-noise): ``body(events)`` returns it.

    With --json its progress and logs stream on stdout as events, like a training job's, then the
    summary as a ``result`` event of ``kind`` and a ``done`` event; a failure a person can act on
    ends with ``error`` and ``done``, and SIGTERM (the app's Cancel) with ``done`` "cancelled".
    Returns the exit status, and the summary when there is no --json (the caller prints it).
    """
    if not args.json:
        return 0, body(console_sink())
    sink = make_sink(args)
    try:
        with _sigterm_as_interrupt():
            summary = body(sink)
        sink.result(kind, summary)
        sink.done("ok")
        return 0, None
    except KeyboardInterrupt:
        sink.done("cancelled", "stopped before it finished; nothing was changed")
        return EXIT_FOR_STATUS["cancelled"], None
    except (UserError, OSError) as exc:
        error = exc if isinstance(exc, UserError) else user_error_from_oserror(exc, args.project)
        if error is None:
            raise  # not the person's to fix: the CLI reports it as a bug
        sink.error(error.message, error.hint)
        sink.done("error", error.message)
        return error.exit_code, None
    finally:
        sink.close()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, so a cancelled job unwinds (a half-made project is removed)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def summary_job(kind: str, body: Callable[[argparse.Namespace, EventSink], dict[str, Any]],
                show: Callable[[dict[str, Any]], None]) -> Callable[[argparse.Namespace], int]:
    """The handler of a job that answers with a summary (init, demo, inject-noise): ``body(args, events)`` runs
    it as :func:`run_with_events` says; without --json, ``show`` prints the summary for a person."""

    def handle(args: argparse.Namespace) -> int:
        code, summary = run_with_events(args, kind, lambda events: body(args, events))
        if summary is not None:
            show(summary)
        return code

    return handle


def _import(args: argparse.Namespace, events: EventSink) -> dict[str, Any]:
    if args.csv:
        if not args.image_root:
            raise UserError("--csv needs --image-root", "name the folder that the CSV's image paths are relative to")
        project = import_csv(args.project, args.csv, args.image_root, path_column=args.path_column,
                             label_column=args.label_column, truth_column=args.truth_column,
                             test_fraction=args.test_fraction, seed=args.seed, folds=args.folds, events=events)
    else:
        if args.image_root:
            raise UserError("--image-root only applies with --csv", "drop --image-root; --images names the dataset")
        project = import_folder(args.project, args.images, test_fraction=args.test_fraction, seed=args.seed,
                                folds=args.folds, events=events)
    with project:
        return import_summary(project)


def print_import_summary(summary: dict[str, Any]) -> None:
    """A few human lines: where, how many, per class, what was skipped and why."""
    source = summary["source"]
    image_root = Path(summary["project"]) / source.get("image_root", "")  # a relative root lies in the project
    print(f"project {summary['project']} ({source.get('kind')} dataset, images in {image_root})")
    print(f"{summary['samples']} images: {summary['train']} train, {summary['test']} test, "
          f"{len(summary['classes'])} classes")
    width = max(len(c["name"]) for c in summary["classes"])
    for c in summary["classes"]:
        print(f"  {c['name']:<{width}}  {c['train']:>6} train  {c['test']:>6} test")
    skipped = summary["skipped"]
    if skipped:
        print(f"skipped {plural(len(skipped), 'image')}:")
        for entry in skipped[:_SHOWN_SKIPS]:
            row = f" (data row {entry['row']})" if "row" in entry else ""
            print(f"  {entry['path']}{row}: {entry['reason']}")
        if len(skipped) > _SHOWN_SKIPS:
            print(f"  ... and {len(skipped) - _SHOWN_SKIPS} more (`--json` lists them all)")
