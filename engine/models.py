"""Models: a small fast CNN (the CPU default), torchvision ResNets, or any ``module:callable``."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from engine.errors import UserError

TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50")
MODEL_CHOICES = ("small_cnn", *TORCHVISION_RESNETS)


def _conv_block(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """Four 3x3 conv layers (32-64-128-128, about 240k parameters), global pooling, a linear head.

    Pooling after each of the first three layers keeps it fast on a CPU (about 1,000 images/s
    at 32 px on two cores, channels-last) at a small cost in accuracy.
    """

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_block(3, width, pool=True),
            _conv_block(width, width * 2, pool=True),
            _conv_block(width * 2, width * 4, pool=True),
            _conv_block(width * 4, width * 4, pool=False),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(width * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def default_learning_rate(model_name: str, pretrained: bool) -> float:
    if pretrained:
        return 0.01  # fine-tuning: do not wreck the pretrained features
    return 0.2 if model_name == "small_cnn" else 0.1


def build_model(name: str, num_classes: int, image_size: int, pretrained: bool = False) -> nn.Module:
    """Make a freshly initialised model (uses the global torch RNG: seed before calling)."""
    if name == "small_cnn":
        if pretrained:
            raise UserError("small_cnn has no pretrained weights", "drop --pretrained, or use resnet18/34/50")
        return SmallCNN(num_classes)
    if name in TORCHVISION_RESNETS:
        return _build_resnet(name, num_classes, image_size, pretrained)
    if ":" in name:
        return _build_user_model(name, num_classes)
    raise UserError(
        f"unknown model {name!r}",
        f"use one of {', '.join(MODEL_CHOICES)}, or module:callable naming a function that takes num_classes",
    )


def _build_resnet(name: str, num_classes: int, image_size: int, pretrained: bool) -> nn.Module:
    from torchvision import models

    weights = None
    if pretrained:
        weights = models.get_model_weights(name).DEFAULT
        _require_cached_weights(weights.url, name)
    model = models.get_model(name, weights=weights)
    assert isinstance(model, models.ResNet)
    if image_size <= 64:
        # Small images: a 3x3 stride-1 stem and no max-pool keep spatial detail a 7x7/2 + pool would destroy.
        model.conv1 = nn.Conv2d(3, model.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def pretrained_cache_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _require_cached_weights(url: str, name: str) -> None:
    # torchvision would try to download; this machine may be offline, and a hang is worse than an error.
    path = pretrained_cache_path(url)
    if not path.is_file():
        raise UserError(
            f"pretrained weights for {name} are not in the local torch cache ({path})",
            f"copy {url.rsplit('/', 1)[-1]} into {path.parent} (from a machine with internet: {url}), "
            "or train from scratch without --pretrained",
        )


def _build_user_model(spec: str, num_classes: int) -> nn.Module:
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"cannot import {module_name!r} for model {spec!r}: {exc}",
                        "make sure the module is on PYTHONPATH (or installed) in the engine's environment") from exc
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise UserError(f"{module_name} has no callable {attribute!r}", "name a function or class: module:callable")
    model = factory(num_classes)
    if not isinstance(model, nn.Module):
        raise UserError(f"{spec}({num_classes}) returned {type(model).__name__}, not a torch.nn.Module",
                        "the callable must return an nn.Module whose output has num_classes logits")
    return model
