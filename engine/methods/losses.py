"""Losses that more than one method trains with."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of ``-sum(targets * log_softmax(logits))``: cross-entropy against noisy or soft targets (B, K)."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()
