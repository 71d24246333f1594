"""``alternating``: the seed's proposal, reweighting and mixup labels on alternate steps.

seeds/isic-reweight-mixup-labels.md ("Proposal"): a look-ahead for example weights and
one for mixup coefficients, updated alternately. Here, by the trainer's global step count (so a
resumed run keeps the rhythm): even steps are a learning-to-reweight step (weights from the
trusted meta-gradient, the given labels), odd steps a meta-mixup step (mixed labels, equal
weights). The seed's loop applies on every step the weights or coefficients left from the
previous batch, which belong to other samples; each step here uses only what was computed
for its own batch.

The look-ahead is :func:`engine.methods.meta.example_gradients`: the seed's ``higher`` look-ahead in closed
form (one forward-mode pass, no second-order backward), equal to it to float tolerance and about 3x faster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.methods.meta import VARIANTS, WEIGHTINGS, check_choice, check_common, example_gradients, weights_from_gradients
from engine.methods.meta_mixup import TrustedMixupMethod, mixup_step
from engine.training.hooks import StepOutput

if TYPE_CHECKING:
    from engine.methods import MethodContext
    from engine.training.data import Batch
    from engine.training.loop import TrainState


@dataclass
class AlternatingOptions:
    weighting: str = field(default="sigmoid", metadata={
        "help": "reweighting steps: 'sigmoid' (sigmoid(-g), the seed's) or 'clamp' (max(-g, 0))"})
    variant: str = field(default="hard", metadata={
        "help": "mixup steps: 'hard' (label with predicted class) or 'soft' (a per-sample label memory "
                "with predicted probabilities)"})
    max_grad_norm: float | None = field(default=0.25, metadata={
        "help": "clip the gradient to this L2 norm before each step (the seed: 0.25); none: no clipping"})
    trusted_batch_size: int | None = field(default=None, metadata={
        "help": "trusted samples per look-ahead; none: the training batch size (at most the trusted set)"})

    def __post_init__(self) -> None:
        check_choice("alternating", "weighting", self.weighting, WEIGHTINGS)
        check_choice("alternating", "variant", self.variant, VARIANTS)
        check_common("alternating", self.max_grad_norm, self.trusted_batch_size)


class AlternatingReweightMixup(TrustedMixupMethod):
    name = "alternating"

    def __init__(self, options: AlternatingOptions, context: MethodContext) -> None:
        super().__init__(options, context)
        self.options = options

    def optimise(self, state: TrainState, batch: Batch) -> StepOutput:
        if state.step % 2 == 1:
            return mixup_step(state, batch, self.real, self.trusted, self.memory)
        trusted_x, trusted_y = self.trusted.next(state, len(batch.y))
        gradient = example_gradients(state, batch.x, batch.y, trusted_x, trusted_y)
        weights = weights_from_gradients(gradient, self.options.weighting)
        logits = self.real.forward(state, batch)
        return self.real.finish(state, logits, batch.y, weights, {"weights": weights, "meta_gradient": gradient})
