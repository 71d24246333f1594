"""`python -m engine embed`: one embedding per sample from a pretrained backbone, stored in the project."""

from __future__ import annotations

import argparse
from typing import Any

from engine.commands.common import add_json_option, add_project_argument, run_with_sink
from engine.events import EventSink
from engine.options import ranged


def add_parser(subparsers: Any) -> None:
    from engine.embeddings.job import DEFAULT_IMAGE_SIZE, default_batch_size

    parser = subparsers.add_parser(
        "embed", help="compute one embedding per sample (for knn, near-duplicates and outliers)",
        description="Compute one embedding per sample with a pretrained backbone and store it in the project "
        "(embeddings/<backbone>.npy, memory-mapped). The knn, near_duplicate and outlier detectors read it. "
        "A cancelled run is continued by the same command; embeddings that exist are reused.",
    )
    add_project_argument(parser)
    parser.add_argument("--backbone", default="efficientnet_lite0", metavar="NAME",
                        help="efficientnet_lite0 (the default: ImageNet weights shipped with the product, works "
                        "offline), audit (the latest audit's own model, at its training size), or a torchvision "
                        "classification model such as resnet50 (ImageNet weights from the torch cache, fetched on "
                        "first use when the network allows)")
    parser.add_argument("--image-size", type=ranged("--image-size"), default=None, metavar="N",
                        help=f"input size in pixels (default {DEFAULT_IMAGE_SIZE}: the README's speed table); "
                        "the audit backbone uses its training size")
    parser.add_argument("--batch-size", type=ranged("--batch-size"), default=None, metavar="N",
                        help="images per forward pass (default: as many as fit a CPU's caches, "
                        f"{default_batch_size(DEFAULT_IMAGE_SIZE)} at {DEFAULT_IMAGE_SIZE} px, "
                        f"{default_batch_size(224)} at 224)")
    parser.add_argument("--force", action="store_true",
                        help="replace embeddings of this backbone made with other settings")
    add_json_option(parser)
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from engine.embeddings.job import EMBED_KIND, embed_body, embed_spec
    from engine.jobs import run_job
    from engine.store import Project

    def work(sink: EventSink) -> str:
        spec = embed_spec(args.backbone, args.image_size, args.batch_size, args.force)
        with Project.open(args.project) as project:
            if spec["backbone"] == "audit":  # refused before a run is made, like the other options
                from engine.embeddings.backbones import latest_audit_model

                latest_audit_model(project)
            return run_job(project, EMBED_KIND, spec, lambda ctx: embed_body(ctx, spec), sink)[1]

    return run_with_sink(args, work)
