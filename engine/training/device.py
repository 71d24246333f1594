"""Choosing the device, and what comes with CUDA (AMP, channels-last)."""

from __future__ import annotations

import torch

from engine.errors import UserError


def resolve_device(requested: str) -> torch.device:
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda was asked for, but PyTorch sees no CUDA device",
                            "use --device auto or cpu, or install a CUDA build of PyTorch with a working driver")
        return torch.device("cuda")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    raise UserError(f"unknown device {requested!r}", "use auto, cpu or cuda")


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed precision on CUDA (bf16 where supported: no loss scaling needed); none on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
