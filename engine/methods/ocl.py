"""``ocl``: online confident learning, a loss that learns each class's soft target while training.

From the seed seeds/ocl-mixgen-confident-learning.md. The loss is
``alpha * CE(logits, y) + (1 - alpha) * soft(logits, y)``, where the soft part is the cross-entropy
against column ``y`` of a K x K *supervision matrix* S: the target for a sample labelled ``y`` is
``S[:, y]``. S starts as label smoothing (``1 - smoothing`` on the diagonal, ``smoothing / (K - 1)``
elsewhere). During an epoch every batch is screened with confident learning (the batch's per-class
thresholds, as cleanlab's ``compute_confident_joint``): the samples off the confident joint's
diagonal are suspected label errors; each of the others adds its predicted distribution to column
``argmax`` of an accumulator. At the start of the next epoch S becomes the accumulator's column
means and the accumulator is emptied (the seed does this at the end of each epoch: the same point).

One change to the seed: a class that no clean sample was predicted as during an epoch keeps its
previous column. The seed divides by a count of 1 there and so zeroes the column, which silently
drops the soft loss for every sample of that class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from engine.errors import UserError
from engine.training.confident_classes import off_diagonal_mask
from engine.training.hooks import Callback, Method, StepOutput

if TYPE_CHECKING:
    from engine.methods import MethodContext
    from engine.training.data import Batch
    from engine.training.loop import TrainState

@dataclass
class OCLOptions:
    alpha: float = field(default=0.5, metadata={
        "help": "weight of the plain cross-entropy; the learned soft targets get 1 - alpha (the seed's 0.5)"})
    smoothing: float = field(default=0.1, metadata={
        "help": "label smoothing of the supervision matrix before its first update (the seed's 0.1)"})

    def __post_init__(self) -> None:
        if not 0 <= self.alpha <= 1:
            raise UserError(f"alpha={self.alpha} is out of range", "give a weight from 0 to 1, e.g. --option alpha=0.5")
        if not 0 <= self.smoothing < 1:
            raise UserError(f"smoothing={self.smoothing} is out of range",
                            "give a smoothing from 0 to below 1, e.g. --option smoothing=0.1")


class SupervisionMatrix(Callback):
    """The learned soft targets S (column per given label) and this epoch's accumulator; reset every epoch."""

    name = "ocl.supervision"

    def __init__(self, num_classes: int, smoothing: float) -> None:
        off = smoothing / (num_classes - 1) if num_classes > 1 else 0.0
        self.matrix = torch.full((num_classes, num_classes), off)
        self.matrix.fill_diagonal_(1 - smoothing if num_classes > 1 else 1.0)
        self.update = torch.zeros(num_classes, num_classes)
        self.count = torch.zeros(num_classes)

    def to(self, device: torch.device) -> None:
        self.matrix, self.update, self.count = (t.to(device) for t in (self.matrix, self.update, self.count))

    def on_fit_start(self, state: TrainState) -> None:
        self.to(state.device)

    def on_epoch_start(self, state: TrainState) -> None:
        """S becomes the last epoch's mean prediction per predicted class; the accumulator starts again."""
        seen = self.count > 0
        if bool(seen.any()):
            means = self.update / self.count.clamp(min=1)
            self.matrix = torch.where(seen[None, :], means, self.matrix)
        self.update = torch.zeros_like(self.update)
        self.count = torch.zeros_like(self.count)

    @torch.no_grad()
    def accumulate(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        """Add the batch's samples that are not suspected errors, by predicted class."""
        keep = ~off_diagonal_mask(probs, labels)
        kept = probs[keep]
        predicted = kept.argmax(dim=1)
        self.update.index_add_(1, predicted, kept.T.to(self.update.dtype))
        self.count.index_add_(0, predicted, torch.ones_like(predicted, dtype=self.count.dtype))

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """(B, K) soft targets: column ``y`` of S for each label ``y``."""
        return self.matrix[:, labels].T

    def state_dict(self) -> dict[str, Any]:
        return {"matrix": self.matrix, "update": self.update, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.matrix, self.update, self.count = state["matrix"], state["update"], state["count"]


class OnlineConfidentLearning(Method):
    """``ocl``: cross-entropy mixed with cross-entropy against the learned per-class soft targets."""

    name = "ocl"

    def __init__(self, options: OCLOptions, context: MethodContext) -> None:
        if context.num_classes < 2:
            raise UserError("ocl needs at least two classes", "import a dataset with two classes or more")
        self.alpha = options.alpha
        self.supervision = SupervisionMatrix(context.num_classes, options.smoothing)

    def callbacks(self) -> list[Callback]:
        return [self.supervision]

    def step(self, state: TrainState, batch: Batch) -> StepOutput:
        logits = state.model(batch.x)
        log_probs = F.log_softmax(logits.float(), dim=1)
        self.supervision.accumulate(log_probs.detach().exp(), batch.y)
        hard = F.nll_loss(log_probs, batch.y)
        soft = -(self.supervision.targets(batch.y) * log_probs).sum(dim=1).mean()
        return StepOutput(self.alpha * hard + (1 - self.alpha) * soft, logits)
