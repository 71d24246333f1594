"""Choosing the device, and what comes with CUDA (AMP, channels-last)."""

from __future__ import annotations

import torch

from engine.errors import UserError
from engine.training.config import check_precision


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


def cpu_has_native_bf16() -> bool:
    """The CPU multiplies bf16 matrices in hardware (AMX tiles): there bf16 trains about 2x faster.

    Without AMX, oneDNN emulates bf16 and it is slower than float32, so ``auto`` keeps float32.
    """
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe()) if probe is not None else False


def amp_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype of a run, or None for plain float32.

    ``auto``: bf16 on CUDA where supported (no loss scaling needed), else float16; bf16 on a CPU
    that does it in hardware; float32 elsewhere. ``fp32`` never autocasts; ``bf16`` always does.
    Outputs a person sees (probabilities, dynamics) are computed from float32 logits either way.
    """
    check_precision(precision)
    if precision == "fp32":
        return None
    if device.type == "cuda":
        if precision == "bf16" or torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16
    if precision == "bf16" or cpu_has_native_bf16():
        return torch.bfloat16
    return None


def precision_name(amp: torch.dtype | None) -> str:
    """What a run trains in, as recorded in its spec and checkpoints: fp32, bf16 or fp16."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp]


def resolved_precision(device: str, precision: str) -> str:
    """What ``--device``/``--precision`` (``auto`` included) train in on this machine: fp32, bf16 or fp16."""
    return precision_name(amp_dtype(resolve_device(device), precision))


def precision_mismatch(what: str, recorded: str, now: str, asked: str) -> UserError:
    """A resume that would train in another precision than its run did: refused, saying how to match it.

    A run mixing precisions is neither of the runs it could have been (float16 also loses its grad
    scaler's state), and ``auto`` resolves by the hardware: a machine without AMX or bf16 support
    would switch silently.
    """
    fix = (f"resume with --precision {recorded} (slower where the hardware lacks it)" if recorded in ("fp32", "bf16")
           else "resume on a CUDA GPU without bf16 support, where --precision auto trains in fp16")
    return UserError(f"{what} trained in {recorded}, but --precision {asked} trains in {now} on this machine: "
                     "a resume continues in the precision it started in", f"{fix}, or start a new run")
