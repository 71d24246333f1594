"""`python -m engine estimate`: what an audit with these options would cost here, before it starts."""

from __future__ import annotations

import argparse
from typing import Any

from engine.commands.common import add_command, print_json
from engine.detectors import DETECTORS
from engine.options import ranged
from engine.training.config import DEFAULT_MODEL, PRECISIONS
from engine.workflows.budget import DEFAULT_PRESET, PRESETS

MEASURE_SECONDS = 2.0


def add_parser(subparsers: Any) -> None:
    add_command(
        subparsers, "estimate", handle=handle, arguments=add_estimate_options,
        help="what an audit would cost: image-steps by stage, this computer's training rate, seconds",
        description="Count the image-steps an audit with these options would train (K-fold models, the dynamics "
        "run), and divide them by this computer's training rate: the latest finished run of the project that "
        "trained the same way here, else a measurement of a few seconds of real training steps. Starts no run.",
    )


def add_estimate_options(parser: argparse.ArgumentParser) -> None:
    """The audit's options that change its cost, with the audit's defaults."""
    parser.add_argument("--preset", choices=tuple(PRESETS), default=DEFAULT_PRESET,
                        help=f"the audit's budget (default {DEFAULT_PRESET}), as `audit --preset`")
    parser.add_argument("--detectors", default="cl", metavar="NAMES",
                        help=f"comma-separated detectors, or all (default cl); known: {', '.join(DETECTORS)}")
    parser.add_argument("--folds", type=ranged("--folds"), default=3, help="cross-validation folds (default 3)")
    parser.add_argument("--epochs", type=ranged("--epochs"), default=None,
                        help="epochs of each K-fold model (default: the preset's); also of the dynamics run unless "
                        "--dynamics-epochs is given")
    parser.add_argument("--dynamics-epochs", type=ranged("--dynamics-epochs"), default=None, metavar="N",
                        help="epochs of the dynamics run (default: the preset's rule for the samples it trains on)")
    parser.add_argument("--image-size", type=ranged("--image-size"), default=None,
                        help="training resolution in pixels (default: the preset's)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"the model (default {DEFAULT_MODEL})")
    parser.add_argument("--batch-size", type=ranged("--batch-size"), default=128)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="autocast dtype (default auto: bf16 on CUDA and on CPUs with AMX, else float32)")
    parser.add_argument("--measure-seconds", type=ranged("--measure-seconds"), default=MEASURE_SECONDS,
                        help=f"seconds of training steps to time when no run of the project gives the rate "
                        f"(default {MEASURE_SECONDS:g})")


def estimate(args: argparse.Namespace) -> dict[str, Any]:
    """The estimate as a JSON-ready document (what ``--json`` prints)."""
    from engine.commands.audit import refuse_repeated_detectors
    from engine.detectors import EMBEDDINGS, parse_detectors, required_evidence, training_runs
    from engine.store import Project
    from engine.training.device import cpu_has_native_bf16, resolve_device, resolved_precision
    from engine.training.speed import latest_matching_rate, measure_training_rate, rate_key
    from engine.workflows.budget import estimate_audit_cost, fit_sample_count, get_preset, resolve_audit_epochs

    refuse_repeated_detectors(args.detectors)
    chosen = parse_detectors(args.detectors)
    detectors = [info.name for info in chosen]
    evidence = required_evidence(chosen)
    uses_kfold, uses_dynamics = training_runs(chosen)
    preset = get_preset(args.preset)
    image_size = int(args.image_size if args.image_size is not None else preset.image_size)
    with Project.open(args.project, read_only=True) as project:
        n_train = fit_sample_count(project)
        num_classes = project.num_classes
        kfold_epochs, dynamics_epochs = resolve_audit_epochs(args.preset, args.epochs, args.dynamics_epochs, n_train,
                                                              uses_dynamics=uses_dynamics)
        device = resolve_device(args.device).type
        precision = resolved_precision(args.device, args.precision)
        key = rate_key(args.model, image_size, args.batch_size, precision, device)
        recorded = latest_matching_rate(project, key)
        embeddings_to_compute = embeddings_an_audit_computes(project, EMBEDDINGS in evidence,
                                                             float(args.measure_seconds))
    cost = estimate_audit_cost(n_train, args.folds, kfold_epochs, dynamics_epochs, uses_kfold, uses_dynamics)
    rate: float | None = None
    source: dict[str, Any] = {"kind": "none", "run_id": None, "words": "no training to time"}
    if cost.total_image_steps:
        if recorded is not None:
            rate, run_id = recorded
            source = {"kind": "run", "run_id": run_id, "words": f"from run {run_id}"}
        else:
            rate = measure_training_rate(args.model, max(num_classes, 2), image_size, args.batch_size, args.precision,
                                         args.device, seconds=float(args.measure_seconds))
            source = {"kind": "measured", "run_id": None,
                      "words": f"measured now: {float(args.measure_seconds):g} s of training steps"}
    where = "measured on this computer" if source["kind"] == "measured" else source["words"]
    cost = estimate_audit_cost(n_train, args.folds, kfold_epochs, dynamics_epochs, uses_kfold, uses_dynamics, rate,
                               precision=precision, rate_source=where)
    seconds = cost.seconds()
    embedding_seconds = (embeddings_to_compute or {}).get("seconds")
    return {
        "preset": args.preset, "detectors": detectors, "n_train": n_train, "folds": args.folds,
        "kfold_epochs": kfold_epochs if uses_kfold else None,
        "dynamics_epochs": dynamics_epochs if uses_dynamics else None,
        "model": args.model, "image_size": image_size, "batch_size": args.batch_size, "device": device,
        "precision": precision, "cpu_native_bf16": bool(device == "cpu" and cpu_has_native_bf16()),
        "image_steps": {"kfold": cost.kfold_image_steps, "dynamics": cost.dynamics_image_steps,
                        "total": cost.total_image_steps},
        "rate": {"images_per_s": None if rate is None else round(rate, 1), "source": source["kind"],
                 "run_id": source["run_id"], "words": source["words"]},
        "seconds": None if seconds is None else {
            "kfold": round(cost.seconds(cost.kfold_image_steps) or 0.0, 1),
            "dynamics": round(cost.seconds(cost.dynamics_image_steps) or 0.0, 1),
            "embeddings": embedding_seconds, "total": round(seconds + (embedding_seconds or 0.0), 1)},
        "embeddings_to_compute": embeddings_to_compute,
        "describe": cost.describe() + (f"; plus {embeddings_to_compute['words']}" if embeddings_to_compute else ""),
    }


def embeddings_an_audit_computes(project: Any, needs_embeddings: bool,
                                 measure_seconds: float = 0.0) -> dict[str, Any] | None:
    """What the audit embeds first when its detectors read embeddings and the project has none, and, with
    ``measure_seconds``, how long: the backbone's forward rate timed here (decoding the files comes on top)."""
    from engine.embeddings import embedding_sources
    from engine.embeddings.backbones import DEFAULT_BACKBONE
    from engine.embeddings.job import DEFAULT_IMAGE_SIZE
    from engine.events import format_duration
    from engine.workflows.budget import round_figure

    if not needs_embeddings or embedding_sources(project.root):
        return None
    n = int(project.num_samples)
    what = f"embedding {n:,} images first ({DEFAULT_BACKBONE} at {DEFAULT_IMAGE_SIZE} px"
    answer: dict[str, Any] = {"samples": n, "backbone": DEFAULT_BACKBONE, "image_size": DEFAULT_IMAGE_SIZE,
                              "images_per_s": None, "seconds": None, "words": what + ", not timed here)"}
    if measure_seconds > 0:
        rate = backbone_rate(DEFAULT_BACKBONE, DEFAULT_IMAGE_SIZE, project, measure_seconds)
        answer.update(images_per_s=round(rate, 1), seconds=round(n / rate, 1),
                      words=f"{what}): about {format_duration(n / rate)} at {round_figure(rate):,} images/s")
    return answer


def backbone_rate(name: str, image_size: int, project: Any, seconds: float, batch_size: int | None = None) -> float:
    """Images per second through the backbone ``name`` here: ``seconds`` of forward passes on random images
    (``batch_size`` None: the batch the embed job runs at this size)."""
    import time

    import torch

    from engine.embeddings.backbones import load_backbone
    from engine.embeddings.job import default_batch_size

    batch_size = default_batch_size(image_size) if batch_size is None else batch_size
    module = load_backbone(name, image_size, project).module
    images = torch.randn(batch_size, 3, image_size, image_size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        module(images)  # the first pass allocates
        done, started = 0, time.perf_counter()
        while done == 0 or time.perf_counter() - started < seconds:
            module(images)
            done += batch_size
    return done / max(time.perf_counter() - started, 1e-9)


def handle(args: argparse.Namespace) -> int:
    from engine.events import format_duration

    answer = estimate(args)
    if args.json:
        print_json(answer)
        return 0
    steps, seconds = answer["image_steps"], answer["seconds"] or {}
    print(f"audit of {answer['n_train']:,} training samples, preset {answer['preset']}, "
          f"detectors {', '.join(answer['detectors'])}")
    if answer["kfold_epochs"] is not None:
        print(f"  K-fold models: {answer['folds']} x {answer['kfold_epochs']} epochs: {steps['kfold']:,} image-steps"
              + (f", {format_duration(seconds['kfold'])}" if seconds else ""))
    if answer["dynamics_epochs"] is not None:
        print(f"  dynamics run:  {answer['dynamics_epochs']} epochs: {steps['dynamics']:,} image-steps"
              + (f", {format_duration(seconds['dynamics'])}" if seconds else ""))
    rate = answer["rate"]
    if rate["images_per_s"] is not None:
        amx = "" if answer["device"] != "cpu" else (" (this CPU has AMX: bf16 in hardware)" if answer["cpu_native_bf16"]
                                                     else " (this CPU has no AMX: bf16 would be emulated, slower)")
        print(f"  rate: {rate['images_per_s']:,.0f} images/s on {answer['device']}, {answer['precision']}{amx}, "
              f"{answer['model']} at {answer['image_size']} px, batch {answer['batch_size']}; {rate['words']}")
    print(f"estimated cost: {answer['describe']}")
    return 0
