"""``mixgen``: mixes images within a batch and keeps every image's own label.

From the seed seeds/ocl-mixgen-confident-learning.md. MixGen was made for image-text
pairs: it replaces the first quarter of a batch by ``lam * x[i] + (1 - lam) * x[j]``, ``j`` a random
permutation of that quarter, and concatenates the two texts. It mixes inputs, never labels.

Adapted to classification: the image part is kept as it is (the first ``int(share * B)`` images of
each batch, partners drawn as a permutation of those same positions, ``lam`` 0.5); a class label
cannot be concatenated like a text, so each mixed image keeps its own label ``y[i]`` and the loss
is plain cross-entropy. The batch order is already random (the trainer shuffles each epoch), so
"the first share" is a random share. The permutation comes from the trainer's generator, so a
resumed run mixes the same pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from engine.errors import UserError
from engine.training.hooks import Method, StepOutput

if TYPE_CHECKING:
    from engine.methods import MethodContext
    from engine.training.data import Batch
    from engine.training.loop import TrainState


@dataclass
class MixGenOptions:
    share: float = field(default=0.25, metadata={
        "help": "share of each batch replaced by mixtures (the seed mixes the first quarter: 0.25)"})
    lam: float = field(default=0.5, metadata={
        "help": "weight of an image in its mixture; its partner gets 1 - lam (the seed's 0.5)"})

    def __post_init__(self) -> None:
        if not 0 <= self.share <= 1:
            raise UserError(f"share={self.share} is out of range", "give a share from 0 to 1, e.g. --option share=0.25")
        if not 0 <= self.lam <= 1:
            raise UserError(f"lam={self.lam} is out of range", "give a weight from 0 to 1, e.g. --option lam=0.5")


def mix_images(x: torch.Tensor, share: float, lam: float,
               generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch with its first ``int(share * B)`` images mixed, and each mixed image's partner index.

    ``mixed[i] = lam * x[i] + (1 - lam) * x[partner[i]]`` for ``i < n``; the rest are ``x`` unchanged.
    """
    mixed_count = int(share * len(x))
    partners = torch.randperm(mixed_count, generator=generator).to(x.device)
    if mixed_count == 0:
        return x, partners
    head = lam * x[:mixed_count] + (1 - lam) * x[partners]
    return torch.cat([head.to(x.dtype), x[mixed_count:]]), partners


class MixGen(Method):
    name = "mixgen"

    def __init__(self, options: MixGenOptions, context: MethodContext) -> None:
        self.share = options.share
        self.lam = options.lam

    def step(self, state: TrainState, batch: Batch) -> StepOutput:
        mixed, _ = mix_images(batch.x, self.share, self.lam, state.generator)
        if batch.x.is_contiguous(memory_format=torch.channels_last):
            mixed = mixed.contiguous(memory_format=torch.channels_last)
        logits = state.model(mixed)
        return StepOutput(F.cross_entropy(logits.float(), batch.y), logits)
