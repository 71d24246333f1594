"""`python -m engine audit`: the evidence the chosen detectors need, then the detectors; scores every train sample."""

from __future__ import annotations

import argparse
from typing import Any

from engine.commands.common import add_fold_option, add_train_options, add_training_command, run_training_command
from engine.detectors import DETECTORS, parse_detectors
from engine.options import ranged
from engine.workflows.budget import DEFAULT_PRESET, PRESETS, audit_fit_ids, get_preset

EPOCHS_HELP = ("epochs of each K-fold model (default: the preset's, "
               + ", ".join(f"{preset.kfold_epochs} for {name} ({preset.kfold_epochs_beside_dynamics} when the "
                           "detectors also train a dynamics run)" for name, preset in PRESETS.items())
               + "); also of the dynamics run unless --dynamics-epochs is given")
IMAGE_SIZE_HELP = ("training resolution in pixels (default: the preset's, "
                   + ", ".join(f"{preset.image_size} for {name}" for name, preset in PRESETS.items()) + ")")


def add_parser(subparsers: Any) -> None:
    add_training_command(
        subparsers, "audit", handle=handle, own_options=add_audit_options, epochs_help=EPOCHS_HELP,
        image_size_help=IMAGE_SIZE_HELP,
        help="find probably mislabeled samples (confident learning, AUM, cartography)",
        description="Gather the evidence the chosen detectors need (cl: one model per fold, K-fold probabilities; "
        "aum, cartography: one model on all training samples, its training dynamics recorded), score every "
        "training sample with each detector, and store the scores, suggested labels and the flagged set in a new "
        "audit run. Training uses your decisions: relabeled samples as relabeled, removed samples left out (they "
        "are still scored). Held-out (test) samples are never audited: accuracy is measured on them.",
    )


def add_audit_options(parser: argparse.ArgumentParser) -> None:
    """The audit's own options: the preset, the dynamics run's epochs, the folds, the detectors, td_lstm's weights."""
    add_preset_option(parser)
    add_dynamics_epochs_option(parser)
    add_fold_option(parser)
    parser.add_argument("--detectors", default="cl", metavar="NAMES",
                        help=f"comma-separated detectors to run, or all (default cl); known: {', '.join(DETECTORS)}")
    parser.add_argument("--td-weights", choices=("project", "shipped"), default="project",
                        help="td_lstm's weights: project (default) = the ones finetune-detector fine-tuned on your "
                        "reviews when the project has them, else the shipped ones; shipped = always the shipped ones")
    parser.add_argument("--embedding-source", default=None, metavar="NAME",
                        help="the embeddings knn, near_duplicate and outlier read (default: the newest; with none, "
                        "the default backbone's are computed first, as `python -m engine embed` does)")


def add_audit_epoch_options(parser: argparse.ArgumentParser) -> None:
    """The training options, with the audit's two epoch counts: K-fold models' and the dynamics run's."""
    add_train_options(parser, epochs_help=EPOCHS_HELP)
    add_dynamics_epochs_option(parser)


def add_preset_option(parser: argparse.ArgumentParser) -> None:
    """``--preset``: the audit's budget (engine.workflows.budget.PRESETS); the epochs and image size default to it."""
    described = "; ".join(f"{name} = {preset.description} (dynamics run: {preset.dynamics_image_steps:,} "
                          f"image-steps, {preset.min_dynamics_epochs} to {preset.max_dynamics_epochs} epochs)"
                          for name, preset in PRESETS.items())
    parser.add_argument("--preset", choices=tuple(PRESETS), default=DEFAULT_PRESET,
                        help=f"the audit's budget (default {DEFAULT_PRESET}), where --epochs, --dynamics-epochs and "
                        f"--image-size are not given: {described}. `python -m engine estimate` shows what it costs")


def add_dynamics_epochs_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dynamics-epochs", type=ranged("--dynamics-epochs"), default=None, metavar="N",
                        help="epochs of the one model whose training dynamics aum, cartography, ocl and td_lstm "
                        "read (default: the preset's image-steps divided by the samples it trains on, within its "
                        "bounds; --epochs when that is given): a long run tells samples learned late from samples "
                        "never learned")


def apply_preset_defaults(args: argparse.Namespace) -> int | None:
    """Fill the K-fold ``--epochs`` and ``--image-size`` not given from ``--preset``; the ``--epochs`` given (or None).

    The K-fold epochs depend on whether the chosen detectors also train a dynamics run
    (:meth:`engine.workflows.budget.Preset.kfold_epochs_for`).
    """
    from engine.detectors import uses_dynamics_run
    from engine.errors import UserError

    preset = get_preset(getattr(args, "preset", None))
    given_epochs: int | None = args.epochs
    if args.epochs is None:
        try:
            beside_dynamics = uses_dynamics_run(getattr(args, "detectors", "cl"))
        except UserError:  # an unknown detector: the audit's spec names it, clearly, before anything runs
            beside_dynamics = False
        args.epochs = preset.kfold_epochs_for(beside_dynamics)
    if getattr(args, "image_size", None) is None:
        args.image_size = preset.image_size
    return given_epochs


def handle(args: argparse.Namespace) -> int:
    from engine.store import Project
    from engine.workflows.audit import AUDIT_KIND, audit_body, resolve_dynamics_epochs

    given_epochs = apply_preset_defaults(args)  # a resume ignores them: it keeps its own spec

    def spec() -> dict[str, Any]:
        refuse_repeated_detectors(args.detectors)
        detectors = [info.name for info in parse_detectors(args.detectors)]  # an unknown name fails here, clearly
        return {"folds": args.folds, "detectors": detectors, "td_lstm_weights": args.td_weights,
                "preset": args.preset,
                "dynamics_epochs": resolve_dynamics_epochs(args.dynamics_epochs, given_epochs),  # checked here
                "embedding_source": args.embedding_source}

    def dynamics_epochs(project: Project, made: dict[str, Any]) -> dict[str, Any]:
        # Not given: the preset's image-steps over the samples this audit trains on (decisions applied).
        n_train = len(audit_fit_ids(project))
        return {**made, "dynamics_epochs": resolve_dynamics_epochs(args.dynamics_epochs, given_epochs, n_train,
                                                                   args.preset)}

    return run_training_command(args, AUDIT_KIND, spec, audit_body, project_spec=dynamics_epochs)


def refuse_repeated_detectors(text: str) -> None:
    """``--detectors cl,cl``, ``all,all`` or ``all,cl`` name a detector twice: refused, not silently merged."""
    from engine.errors import UserError
    from engine.options import refuse_duplicates

    names = [name.strip() for name in text.split(",") if name.strip()]
    if "all" in names and len(names) > 1:
        raise UserError(f"--detectors {text} names detectors besides all, which already names every one",
                        "pass --detectors all, or list the ones you want without all")
    refuse_duplicates("--detectors", names, text)
