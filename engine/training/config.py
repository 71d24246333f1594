"""Training hyperparameters in one typed object."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields
from typing import Any

from engine.errors import UserError


@dataclass
class TrainConfig:
    model: str = "small_cnn"
    pretrained: bool = False
    epochs: int = 12
    batch_size: int = 128
    lr: float | None = None  # peak of the one-cycle schedule; None: the model's default
    momentum: float = 0.9
    weight_decay: float = 5e-4
    image_size: int = 32  # pixels, square
    augment: str = "auto"  # flip-crop | crop | none | auto (crop for digits-like data, else flip-crop)
    device: str = "auto"  # auto | cpu | cuda
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
