"""Options and plumbing shared by the sub-commands."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.events import ConsoleRenderer, EventSink, claim_stdout_for_events
from engine.options import ranged
from engine.training.config import PRECISIONS  # torch-free: the CLI's start stays light

if TYPE_CHECKING:
    from engine.jobs import JobContext
    from engine.store import Project
    from engine.training.config import TrainConfig

EXIT_FOR_STATUS = {"ok": 0, "error": 1, "cancelled": 130, "interrupted": 1}


def add_project_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", type=Path, metavar="PROJECT", help="the project folder")


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="machine-readable output: events (or the answer) as JSON lines on stdout; "
        "anything libraries print goes to stderr",
    )


def add_train_options(parser: argparse.ArgumentParser, *, epochs: int = 12, epochs_help: str | None = None,
                      image_size_help: str | None = None) -> None:
    """The options of every job that trains: crossval, audit, retrain.

    ``epochs_help`` replaces the ``--epochs`` help; it also makes ``--epochs`` default to None, so
    that the command can tell an explicit ``--epochs`` from the default (the audit does, for its preset).
    ``image_size_help`` does the same for ``--image-size``.
    """
    group = parser.add_argument_group("training")
    group.add_argument("--model", default=None,
                       help="cnn7p (the default, fast on CPU: cnn7 pooling before BatchNorm), cnn7 (the default until "
                       "2026-12-07: 10%% slower, a little stronger on small sets), small_cnn, resnet18, resnet34, "
                       "resnet50, or module:callable "
                       "(called with num_classes, returns an nn.Module); with --resume, a run of a module:callable "
                       "model resumes only when you name the same one here")
    group.add_argument("--pretrained", action="store_true",
                       help="start a torchvision model from its ImageNet weights: from the torch cache "
                       "($TORCH_HOME/hub/checkpoints), fetched there on first use when the network allows")
    group.add_argument("--weights", metavar="FILE", default=None,
                       help="start from a local state dict (torch.save(model.state_dict(), FILE), or a checkpoint "
                       "holding one under 'state_dict' or 'model'); the classifier head is made new for the classes")
    if epochs_help is None:
        group.add_argument("--epochs", type=ranged("--epochs"), default=epochs, help=f"epochs per model (default {epochs})")
    else:
        group.add_argument("--epochs", type=ranged("--epochs"), default=None, help=epochs_help)
    group.add_argument("--batch-size", type=ranged("--batch-size"), default=128)
    group.add_argument("--lr", type=ranged("--lr"), default=None, help="peak learning rate (default: the model's own)")
    group.add_argument("--image-size", type=ranged("--image-size"), default=32 if image_size_help is None else None,
                       help=image_size_help or "training resolution in pixels (default 32)")
    group.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    group.add_argument("--precision", choices=PRECISIONS, default=None,
                       help="autocast dtype (default auto: bf16 on CUDA and on CPUs with AMX, else float32); "
                       "with --resume the run's own, unless given to match it on another machine")
    group.add_argument("--seed", type=ranged("--seed"), default=0)
    group.add_argument("--workers", type=ranged("--workers"), default=None,
                       help="threads for image decoding (default: all cores)")


def add_command(
    subparsers: Any,
    name: str,
    *,
    handle: Callable[[argparse.Namespace], int],
    arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    **parser_options: Any,
) -> argparse.ArgumentParser:
    """A sub-command on a project: PROJECT, the command's own ``arguments``, then --json; ``handle`` runs it.

    ``parser_options`` (help, description, formatter_class, epilog) go to ``add_parser``.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(name, **parser_options)
    add_project_argument(parser)
    if arguments is not None:
        arguments(parser)
    add_json_option(parser)
    parser.set_defaults(func=handle)
    return parser


def add_training_command(
    subparsers: Any,
    name: str,
    *,
    handle: Callable[[argparse.Namespace], int],
    own_options: Callable[[argparse.ArgumentParser], None] | None = None,
    epochs_help: str | None = None,
    image_size_help: str | None = None,
    **parser_options: Any,
) -> argparse.ArgumentParser:
    """A sub-command that trains (:func:`add_command`): the training options, the command's ``own_options``, --resume.

    ``epochs_help`` and ``image_size_help`` go to :func:`add_train_options`.
    """

    def arguments(parser: argparse.ArgumentParser) -> None:
        add_train_options(parser, epochs_help=epochs_help, image_size_help=image_size_help)
        if own_options is not None:
            own_options(parser)
        add_resume_option(parser)

    return add_command(subparsers, name, handle=handle, arguments=arguments, **parser_options)


def add_fold_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--folds", type=ranged("--folds"), default=3, help="cross-validation folds (default 3)")


def make_sink(args: argparse.Namespace) -> EventSink:
    """Events to a live JSON channel with --json, else a progress bar on the terminal; none on torchrun ranks > 0."""
    if "WORLD_SIZE" in os.environ:
        from engine.training import distributed

        if not distributed.is_main():
            return distributed.SilentSink()
    if getattr(args, "json", False):
        return EventSink(live=claim_stdout_for_events())
    return EventSink(console=ConsoleRenderer(sys.stderr))


def print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, default=str))


def add_resume_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resume", metavar="RUN_ID", default=None,
                        help="continue a cancelled or failed run from its last checkpoint (its own settings are used)")


def check_resumed_model(run_id: str, recorded: str, named: str | None) -> None:
    """Refuse to resume a run whose model is code the user did not name on this command line.

    A run's spec lives in the project folder, which may come from someone else: a
    ``module:callable`` read from it would import and run their code. Built-in models
    resume as they are; a custom one only when ``--model`` names the same callable
    now. A ``--model`` that differs from the run's own is refused too: a resume
    continues the same job.
    """
    from engine.errors import UserError
    from engine.models import MODEL_CHOICES

    if named is not None and named != recorded:
        raise UserError(f"run {run_id} trains model {recorded!r}, not {named!r}: a resumed run keeps its own settings",
                        f"resume without --model{'' if recorded in MODEL_CHOICES else f', or with --model {recorded}'}"
                        ", or start a new run with the model you want")
    if recorded not in MODEL_CHOICES and named != recorded:
        raise UserError(
            f"run {run_id} uses the custom model {recorded!r}; --resume does not import code named in a "
            "project folder, which may have come from someone else",
            f"if you trust that code, name it yourself to resume: --resume {run_id} --model {recorded}",
        )


def resumed_precision(run: Any, config: Any, asked: str | None) -> Any:
    """``config`` for resuming ``run`` (with ``--precision asked`` when given), refused (UserError) when it would
    train in another precision than the run recorded at its start (``auto`` resolves by the hardware)."""
    import dataclasses

    from engine.training.device import precision_mismatch, resolved_precision

    if asked is not None:
        config = dataclasses.replace(config, precision=asked)
    recorded = run.spec.get("resolved_precision")  # absent in runs made before it was recorded
    now = resolved_precision(config.device, config.precision)
    if recorded is not None and recorded != now:
        raise precision_mismatch(f"run {run.id} was", str(recorded), now, config.precision)
    return config


def run_training_command(
    args: argparse.Namespace,
    kind: str,
    extra_spec: dict[str, Any] | Callable[[], dict[str, Any]],
    body: Callable[[JobContext, TrainConfig, dict[str, Any]], dict[str, Any]],
    *,
    project_spec: Callable[[Project, dict[str, Any]], dict[str, Any]] | None = None,
) -> int:
    """Open the project, make (or resume) a run of ``kind`` and run ``body`` in it.

    ``body(ctx, config, spec)`` gets the training settings and the whole run spec; for a
    resumed run both come from the run's own spec, so the continuation is the same job.
    Every failure, even one before the run exists, reaches a --json consumer as events;
    so ``extra_spec`` may be a function that validates options and returns the spec.
    ``project_spec(project, spec)``, for a new run, completes the spec from the open project
    (the audit sizes its dynamics run by the samples it trains on); a resume keeps what it recorded.
    """
    from engine.errors import UserError
    from engine.jobs import run_job
    from engine.store import Project
    from engine.training.config import TrainConfig

    def work(sink: EventSink) -> str:
        from engine.training import distributed

        # Under torchrun only rank 0 writes the store; the other ranks read it.
        with Project.open(args.project, read_only=not distributed.is_main()) as project:
            run = None
            if getattr(args, "resume", None):
                run = project.run(args.resume)
                if run.kind != kind:
                    raise UserError(f"run {run.id} is a {run.kind} run, not {kind}",
                                    f"resume it with `python -m engine {run.kind} {args.project} --resume {run.id}`")
                if run.status == "ok":
                    raise UserError(f"run {run.id} already finished", "start a new run instead of --resume")
                spec = run.spec
                if not isinstance(spec.get("train"), dict):
                    raise UserError(f"run {run.id} records no training settings (its spec.json is incomplete)",
                                    "start a new run instead of --resume")
                check_resumed_model(run.id, str(spec.get("train", {}).get("model", "small_cnn")),
                                    getattr(args, "model", None))
            else:
                extra = extra_spec() if callable(extra_spec) else extra_spec
                spec = {"train": TrainConfig.from_args(args).to_dict(), **extra}
                if project_spec is not None:
                    spec = project_spec(project, spec)
            config = TrainConfig.from_dict(spec["train"])
            if run is not None:
                config = resumed_precision(run, config, getattr(args, "precision", None))
            return run_job(project, kind, spec, lambda ctx: body(ctx, config, spec), sink, run=run)[1]

    return run_with_sink(args, work)


def run_with_sink(args: argparse.Namespace, work: Callable[[EventSink], str]) -> int:
    """Run ``work(sink)``, which returns a run's status, with the command's events; the exit status.

    A UserError, even one raised before a run exists, reaches a --json consumer as ``error`` and ``done``.
    """
    from engine.errors import UserError

    sink = make_sink(args)
    try:
        status = work(sink)
    except UserError as exc:
        sink.error(exc.message, exc.hint)
        sink.done("error", exc.message)
        return 2
    finally:
        sink.close()
    return EXIT_FOR_STATUS[status]
