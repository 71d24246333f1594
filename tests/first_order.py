"""A layer whose backward cannot be differentiated again: a test that a step takes no second-order backward."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class FirstOrderOnly(torch.autograd.Function):
    """Doubles its input; its backward cannot itself be differentiated, its forward-mode derivative exists."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x * 2

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad * 2

    @staticmethod
    def jvp(ctx: Any, tangent: torch.Tensor) -> torch.Tensor:
        return tangent * 2


class FirstOrderLayer(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return FirstOrderOnly.apply(x)
