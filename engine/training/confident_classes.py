"""Confident learning on one batch: each sample's confident class under the batch's per-class thresholds.

The rule of cleanlab's ``compute_confident_joint`` applied to one batch, as online confident learning
(seeds/ocl-mixgen-confident-learning.md) does. The ``ocl`` method screens its batches with it
(:class:`engine.methods.ocl.SupervisionMatrix`) and the ``confident_class`` recorder keeps it as evidence
(:class:`engine.training.recorders.ConfidentClassRecorder`).
"""

from __future__ import annotations

import torch

NO_CONFIDENT_CLASS = -1  # the sample reached no class's threshold in its batch
# cleanlab's constants (compute_confident_joint): thresholds are clipped from below, compared with a
# small tolerance, and a class absent from the batch gets a threshold no probability reaches.
_THRESHOLD_FLOOR = 2e-6
_TOLERANCE = 1e-6
_ABSENT_CLASS_THRESHOLD = 2.0


def batch_confident_classes(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,) int64: each sample's confident class within its batch, -1 where it has none.

    The threshold of class k is the mean probability of k over the batch's samples labelled k; a
    sample's confident classes are those whose threshold it reaches; its confident class is that one,
    or the most probable when several are. The sample sits off the diagonal of the batch's confident
    joint when its confident class exists and differs from its label (:func:`off_diagonal_mask`).
    """
    num_classes = probs.shape[1]
    one_hot = torch.nn.functional.one_hot(labels, num_classes).to(probs.dtype)
    counts = one_hot.sum(dim=0)
    means = (one_hot * probs).sum(dim=0) / counts.clamp(min=1)
    thresholds = torch.where(counts > 0, means, torch.full_like(means, _ABSENT_CLASS_THRESHOLD))
    confident = probs >= thresholds.clamp(min=_THRESHOLD_FLOOR) - _TOLERANCE
    how_many = confident.sum(dim=1)
    guess = torch.where(how_many > 1, probs.argmax(dim=1), confident.to(torch.uint8).argmax(dim=1))
    return torch.where(how_many > 0, guess, torch.full_like(guess, NO_CONFIDENT_CLASS))


def off_diagonal_mask(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,) True where confident learning puts a sample off the batch's confident joint's diagonal.

    The same rule as cleanlab's ``compute_confident_joint(..., return_indices_of_off_diagonals=True)``
    on this batch alone: a sample with no confident class is not counted.
    """
    classes = batch_confident_classes(probs, labels)
    return (classes != NO_CONFIDENT_CLASS) & (classes != labels)
