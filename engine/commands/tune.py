"""`python -m engine tune`: search a method's options with Optuna (the optional ``hpo`` extra)."""

from __future__ import annotations

import argparse
from typing import Any

from engine.commands.common import add_training_command, run_training_command
from engine.options import ranged


def add_parser(subparsers: Any) -> None:
    add_training_command(
        subparsers, "tune", handle=handle, own_options=add_search_options,
        help="search a method's options (e.g. sln's sigma) on a validation split; needs the hpo extra",
        description="Train one model per trial on the train split (decisions applied) less a validation split "
        "carved from it with --seed, and score it on that split against its given, possibly noisy, labels; the "
        "held-out split is never used. The --param values form a grid; hopeless trials are pruned (median of "
        "the earlier trials' validation accuracy at the same epoch). The study is stored in the run folder "
        "(study.db) or in --storage, which several workers may share; --resume continues a stopped study. "
        "Then `retrain --method M --option NAME=best` trains with the winner. "
        "Needs Optuna: pip install 'label-auditor[hpo]'.",
    )


def add_search_options(parser: argparse.ArgumentParser) -> None:
    search = parser.add_argument_group("search")
    search.add_argument("--method", default="sln", metavar="NAME", help="the method whose options are searched "
                        "(default sln; see `python -m engine retrain --help` for every method's options)")
    search.add_argument("--param", action="append", metavar="NAME=V1,V2,...", default=None,
                        help="an option and the values to try (repeatable), e.g. --param sigma=0.1,0.2,0.5,1.0")
    search.add_argument("--trials", type=ranged("--trials"), default=None, metavar="N",
                        help="how many grid points to try (default: all of them)")
    search.add_argument("--val-fraction", type=ranged("--val-fraction"), default=0.1, metavar="F",
                        help="the share of the train split that scores the trials (default 0.1)")
    search.add_argument("--storage", default=None, metavar="URL",
                        help="a database URL to keep the study in (e.g. sqlite:////shared/study.db), which "
                        "several workers can share; default: study.db in the run folder")
    search.add_argument("--study", dest="study_name", default=None, metavar="NAME",
                        help="the study's name in the storage (default: derived from the search, so workers "
                        "running the same command join the same study)")


def handle(args: argparse.Namespace) -> int:
    from engine.training.config import TrainConfig
    from engine.workflows.tune import TUNE_KIND, tune_body, tune_spec

    def spec() -> dict[str, Any]:
        return tune_spec(method=args.method, params=args.param, trials=args.trials, val_fraction=args.val_fraction,
                         storage=args.storage, study_name=args.study_name,
                         train=TrainConfig.from_args(args).to_dict())

    return run_training_command(args, TUNE_KIND, spec, tune_body)
