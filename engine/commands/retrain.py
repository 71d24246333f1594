"""`python -m engine retrain`: train on the cleaned data and on the original labels, paired by seed."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from engine.commands.common import add_training_command, run_training_command
from engine.options import ranged

METHODS_EPILOG = "\x00methods"  # replaced by the registry's listing when --help is shown (it imports torch)


class MethodsHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Lists every registered method with its options and defaults, only when help is printed."""

    def add_text(self, text: str | None) -> None:
        super().add_text(methods_help() if text == METHODS_EPILOG else text)


def methods_help() -> str:
    """Every registered method, its summary, and each option with its default and help."""
    from engine.methods import METHODS, option_fields

    lines = ["methods (--method NAME; options as --option key=value):"]
    for name, info in METHODS.items():
        needs = " [needs a trusted set]" if info.needs_trusted else " [needs the truth]" if info.needs_truth else ""
        lines.append(f"  {name}: {info.summary}{needs}")
        for field in option_fields(name):
            lines.append(f"      {field.name}={field.default!r}  {field.metadata.get('help', '')}".rstrip())
    return "\n".join(lines)


def add_auto_options(parser: argparse.ArgumentParser) -> None:
    auto = parser.add_argument_group("auto mode (prune-and-retrain without review)")
    auto.add_argument("--auto-top-k", metavar="K", default=None, type=ranged("--auto-top-k"),
                      help="also apply the top K suggestions of the latest audit to train samples without a "
                      "decision (`flagged`: all the detector flagged); they are NOT recorded as decisions")
    auto.add_argument("--auto-action", choices=("remove", "relabel"), default="remove",
                      help="what auto mode does with those samples (default remove)")
    auto.add_argument("--run", dest="audit_run", metavar="RUN_ID", default=None,
                      help="the audit run whose suggestions auto mode applies (default: the latest)")
    auto.add_argument("--detector", default="cl", help="whose ranking auto mode follows (default cl)")


def add_trusted_options(parser: argparse.ArgumentParser) -> None:
    trusted = parser.add_argument_group(
        "trusted set (what the meta-learning methods learn from; default: the samples you kept or relabeled)")
    trusted.add_argument("--trusted-per-class", type=ranged("--trusted-per-class"), metavar="N", default=None,
                         help="N training samples per class drawn with the seed from those whose truth is known "
                         "(benchmarks), labelled with the truth")
    trusted.add_argument("--trusted-csv", metavar="FILE", default=None,
                         help="a CSV naming trusted training samples: columns path (or id) and label")


def add_seeds_option(parser: argparse.ArgumentParser, default: int = 3) -> None:
    parser.add_argument("--seeds", type=ranged("--seeds"), default=default, metavar="S",
                        help=f"train each model S times, with seeds --seed, --seed+1, ... (default {default}); "
                        "differences are paired by seed and given with a 95%% interval")


def auto_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The auto-mode part of a spec; the audit is named now, so a resume follows the same one."""
    from engine.workflows.sample_sets import parse_top_k

    top_k = None if args.auto_top_k is None else parse_top_k(args.auto_top_k)
    audit_run = args.audit_run
    if top_k is not None and audit_run is None:
        from engine.store import Project

        with Project.open(args.project) as project:
            audit_run = project.run(kind="audit").id
    return {"auto_top_k": top_k, "auto_action": args.auto_action, "audit_run": audit_run,
            "detector": args.detector}


def check_trusted(args: argparse.Namespace, trusted: dict[str, Any], methods: list[str]) -> None:
    """Refuse before the run starts when a meta method would have no trusted sample of some class."""
    from engine.store import Project
    from engine.workflows.trusted import check_trusted_before_start

    with Project.open(args.project) as project:
        check_trusted_before_start(project, trusted, methods, args.seed)


def add_methods_command(subparsers: Any, name: str, *, handle: Callable[[argparse.Namespace], int],
                        method_group: str, method_options: Callable[[Any], None],
                        more_options: Callable[[argparse.ArgumentParser], None] | None = None,
                        **parser_options: Any) -> None:
    """retrain and compare: a training command with ``method_options`` in ``method_group``, the seeds, the trusted
    set and auto mode (then ``more_options``); its --help lists every method with its options."""

    def own_options(parser: argparse.ArgumentParser) -> None:
        method_options(parser.add_argument_group(method_group))
        add_seeds_option(parser)
        add_trusted_options(parser)
        add_auto_options(parser)
        if more_options is not None:
            more_options(parser)

    add_training_command(subparsers, name, handle=handle, own_options=own_options,
                         formatter_class=MethodsHelpFormatter, epilog=METHODS_EPILOG, **parser_options)


def add_parser(subparsers: Any) -> None:
    add_methods_command(
        subparsers, "retrain", handle=handle, method_group="method", method_options=add_method_option,
        more_options=add_baseline_option,
        help="train on the train split with the decisions applied; compare with the uncorrected labels",
        description="Train a model on the train split with the decisions applied (removed samples dropped, "
        "relabels used) and, in the same run, the same model on the uncorrected labels, each once per seed "
        "(--seeds, default 3). Both are scored on the held-out split (against the truth where known); the "
        "difference is paired by seed and reported with its 95% interval, or as 'no measurable change' when "
        "the interval holds zero. The first seed's cleaned model is saved as model.pt (a state_dict) with "
        "model.json (classes, image size, method) in the run folder.",
    )


def add_method_option(method: Any) -> None:
    method.add_argument("--method", default="ce", metavar="NAME",
                        help="the training method of both models (default ce; every method is listed below)")
    method.add_argument("--option", action="append", metavar="KEY=VALUE", default=None,
                        help="an option of the method (repeatable), e.g. --option sigma=0.5")


def add_baseline_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the models on the uncorrected labels (half the time; no before/after)")


def handle(args: argparse.Namespace) -> int:
    from engine.methods import split_option_args
    from engine.workflows.retrain import RETRAIN_KIND, resolve_best_options, retrain_body, retrain_spec
    from engine.workflows.trusted import trusted_spec

    def spec() -> dict[str, Any]:
        trusted = trusted_spec(args.trusted_per_class, args.trusted_csv)
        made = retrain_spec(**auto_spec(args), baseline=not args.no_baseline, method=args.method,
                            options=resolve_best_options(args.project, args.method, split_option_args(args.option)),
                            seeds=args.seeds, trusted=trusted)
        check_trusted(args, trusted, [args.method])
        return made

    return run_training_command(args, RETRAIN_KIND, spec, retrain_body)
