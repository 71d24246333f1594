"""``meta_mixup``: learning to produce mixup labels (seeds/isic-reweight-mixup-labels.md).

Each step takes the look-ahead of learning to reweight (a virtual step on sum(eps_i * loss_i),
the trusted loss's gradient g w.r.t. eps) and turns it into a per-sample mixing coefficient
beta = sigmoid(-g): how far the sample's given label is kept. The target becomes
``beta * label + (1 - beta) * prediction``:

* ``hard``: label and predicted class as one-hot vectors;
* ``soft``: a label memory per sample (its one-hot label at the start) mixed with the predicted
  probabilities; the mixture is written back to the memory, so a sample's label drifts toward
  what the model predicts for it as long as the trusted set agrees.

The real step minimises cross-entropy against these targets, gradient norm clipped (the seed: 0.25).

The look-ahead is :func:`engine.methods.meta.example_gradients`: the seed's ``higher`` look-ahead in closed
form (one forward-mode pass, no second-order backward), equal to it to float tolerance and about 3x faster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from engine.methods.meta import VARIANTS, RealStep, TrustedBatches, check_choice, check_common, example_gradients
from engine.methods.meta import mixup_targets as mix
from engine.training.hooks import Method, StepOutput

if TYPE_CHECKING:
    from engine.methods import MethodContext
    from engine.training.data import Batch
    from engine.training.loop import TrainState


@dataclass
class MetaMixupOptions:
    variant: str = field(default="hard", metadata={
        "help": "'hard': mix the label with the predicted class (the seed's better); "
                "'soft': mix a per-sample label memory with the predicted probabilities"})
    max_grad_norm: float | None = field(default=0.25, metadata={
        "help": "clip the gradient to this L2 norm before each step (the seed: 0.25); none: no clipping"})
    trusted_batch_size: int | None = field(default=None, metadata={
        "help": "trusted samples per look-ahead; none: the training batch size (at most the trusted set)"})

    def __post_init__(self) -> None:
        check_choice("meta_mixup", "variant", self.variant, VARIANTS)
        check_common("meta_mixup", self.max_grad_norm, self.trusted_batch_size)


class LabelMemory:
    """(N, K) remembered label distribution of every sample, one-hot of its training label at first."""

    def __init__(self, context: MethodContext) -> None:
        labels = torch.as_tensor(np.asarray(context.labels, dtype=np.int64))
        self.table = F.one_hot(labels.clamp(min=0), context.num_classes).float()

    def get(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table[ids.cpu()]

    def put(self, ids: torch.Tensor, rows: torch.Tensor) -> None:
        self.table[ids.cpu()] = rows.detach().float().cpu()

    def state_dict(self) -> dict[str, Any]:
        return {"table": self.table}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.table = state["table"].detach().cpu().float().clone()


def mixup_step(state: TrainState, batch: Batch, real: RealStep, trusted: TrustedBatches,
               memory: LabelMemory | None) -> StepOutput:
    """One meta-mixup step: beta from the look-ahead, mixed targets, uniform weights (shared with ``alternating``)."""
    trusted_x, trusted_y = trusted.next(state, len(batch.y))
    gradient = example_gradients(state, batch.x, batch.y, trusted_x, trusted_y)
    beta = torch.sigmoid(-gradient)
    logits = real.forward(state, batch)
    remembered = memory.get(batch.ids) if memory is not None else None
    targets = mix(logits, batch.y, beta, state.num_classes, remembered)
    if memory is not None:
        memory.put(batch.ids, targets)
    weights = torch.full_like(beta, 1.0 / len(beta))
    return real.finish(state, logits, targets, weights, {"beta": beta, "targets": targets.detach(), "weights": weights})


class MixupSettings(Protocol):
    """The options of a method that takes meta-mixup steps (``meta_mixup``, ``alternating``)."""

    variant: str
    max_grad_norm: float | None
    trusted_batch_size: int | None


class TrustedMixupMethod(Method):
    """What ``meta_mixup`` and ``alternating`` share: trusted batches, the real step and, for the ``soft``
    variant, the label memory, all kept in checkpoints; a subclass says how a batch is stepped."""

    def __init__(self, options: MixupSettings, context: MethodContext) -> None:
        self.context = context
        self.trusted = TrustedBatches(context, options.trusted_batch_size)
        self.real = RealStep(options.max_grad_norm)
        self.memory = LabelMemory(context) if options.variant == "soft" else None

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"trusted": self.trusted.state_dict()}
        if self.memory is not None:
            state["memory"] = self.memory.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trusted.load_state_dict(state["trusted"])
        if self.memory is not None:
            self.memory.load_state_dict(state["memory"])


class MetaMixup(TrustedMixupMethod):
    name = "meta_mixup"

    def __init__(self, options: MetaMixupOptions, context: MethodContext) -> None:
        super().__init__(options, context)
        self.options = options

    def optimise(self, state: TrainState, batch: Batch) -> StepOutput:
        return mixup_step(state, batch, self.real, self.trusted, self.memory)
