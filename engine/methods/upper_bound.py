"""``upper_bound``: training on the true labels, where they are known (benchmarks).

seeds/isic-reweight-mixup-labels.md's upper bound replaces every noisy label by the
prediction of a network trained on the clean data and keeps the clean ones: an approximation of
the truth. Where the truth is known it is used directly: the best any label-cleaning method could
do with this model and budget. Samples whose truth is outside the label set (open-set images)
get weight 0, as an oracle would drop them. The step is the meta methods' real step (the seed
clips the gradient norm at 0.25), so the bound is measured with the same optimiser settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from engine.errors import UserError
from engine.methods.meta import RealStep, check_common
from engine.store import OUTSIDE_LABEL_SET
from engine.training.hooks import Method, StepOutput

if TYPE_CHECKING:
    from engine.methods import MethodContext
    from engine.training.data import Batch
    from engine.training.loop import TrainState


@dataclass
class UpperBoundOptions:
    max_grad_norm: float | None = field(default=0.25, metadata={
        "help": "clip the gradient to this L2 norm before each step (the seed: 0.25); none: no clipping"})

    def __post_init__(self) -> None:
        check_common("upper_bound", self.max_grad_norm)


class UpperBound(Method):
    name = "upper_bound"

    def __init__(self, options: UpperBoundOptions, context: MethodContext) -> None:
        if context.true_labels is None:
            raise UserError("method upper_bound trains on the true labels, and this project does not know them",
                            "use it only on a dataset whose truth is known (a benchmark)")
        truth = np.asarray(context.true_labels, dtype=np.int64)
        train_truth = truth[np.asarray(context.train_ids, dtype=np.int64)]
        unknown = (train_truth != OUTSIDE_LABEL_SET) & ((train_truth < 0) | (train_truth >= context.num_classes))
        if unknown.any():
            raise UserError(f"method upper_bound: {int(unknown.sum())} of {len(train_truth)} training samples "
                            "have no known true label", "use it only on a dataset whose truth is known for every sample")
        self.options = options
        self.context = context
        self.truth = torch.as_tensor(truth)
        self.real = RealStep(options.max_grad_norm)

    def optimise(self, state: TrainState, batch: Batch) -> StepOutput:
        truth = self.truth[batch.ids.cpu()]
        inside = truth != OUTSIDE_LABEL_SET
        weights = inside.float() / max(int(inside.sum()), 1)
        targets = truth.clamp(min=0).to(state.device)
        logits = self.real.forward(state, batch)
        return self.real.finish(state, logits, targets, weights.to(state.device), {"targets": targets, "weights": weights})
