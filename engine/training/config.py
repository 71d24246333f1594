"""Training hyperparameters in one typed object."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from engine.errors import UserError

if TYPE_CHECKING:
    from engine.models import StartingWeights


PRECISIONS = ("auto", "fp32", "bf16")  # autocast dtypes: engine.training.device.amp_dtype


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}", f"use {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}")


DEFAULT_MODEL = "cnn7p"  # engine/models.py builds it; named here so callers need not import torch


@dataclass
class TrainConfig:
    model: str = DEFAULT_MODEL
    pretrained: bool = False  # start from torchvision's ImageNet weights
    weights: str | None = None  # start from this local state-dict file (absolute path)
    # Which starting weights, recorded when the run starts so that a resume loads the same ones:
    # the torchvision weights' name or the file's name, and a prefix of the file's sha256.
    weights_name: str | None = None
    weights_sha256: str | None = None
    epochs: int = 12
    batch_size: int = 128
    lr: float | None = None  # peak of the one-cycle schedule; None: the model's default
    momentum: float = 0.9
    weight_decay: float = 5e-4
    image_size: int = 32  # pixels, square
    augment: str = "auto"  # flip-crop | crop | none | auto (crop for digits-like data, else flip-crop)
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto | fp32 | bf16: autocast dtype (engine.training.device.amp_dtype)
    seed: int = 0
    workers: int | None = None  # decoding threads for the image cache
    eval_limit: int = 1000  # samples of held-out data scored each epoch for the live curve

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UserError(f"--epochs must be at least 1 (got {self.epochs})", "pass --epochs 1 or more")
        if self.batch_size < 2:
            raise UserError(f"--batch-size must be at least 2 (got {self.batch_size})", "pass --batch-size 2 or more")
        if not 8 <= self.image_size <= 1024:
            raise UserError(f"--image-size {self.image_size} is out of range", "use 8 to 1024 pixels (32 for CIFAR-sized data)")
        if self.augment not in ("auto", "flip-crop", "crop", "none"):
            raise UserError(f"unknown augmentation {self.augment!r}", "use flip-crop, crop, none or auto")
        check_precision(self.precision)
        if (self.pretrained or self.weights is not None) and self.weights_sha256 is None:
            from engine.models import identify_starting_weights

            chosen = identify_starting_weights(self.model, self.pretrained, self.weights)
            assert chosen is not None
            self.weights, self.weights_name, self.weights_sha256 = chosen.path, chosen.name, chosen.sha256

    @property
    def fine_tunes(self) -> bool:
        """The model starts from trained weights (ImageNet or a file): it wants a gentler learning rate."""
        return self.pretrained or self.weights is not None

    def starting_weights(self) -> StartingWeights | None:
        """The weights every model of this run starts from, as recorded; None: freshly initialised."""
        if self.weights_name is None or self.weights_sha256 is None:
            return None
        from engine.models import StartingWeights

        if self.weights is not None:
            return StartingWeights("file", self.weights_name, self.weights_sha256, self.weights)
        return StartingWeights("torchvision", self.weights_name, self.weights_sha256)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{name: getattr(args, name) for name in names if getattr(args, name, None) is not None})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
