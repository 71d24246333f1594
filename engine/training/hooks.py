"""How methods and detectors plug into the one training loop.

Two kinds of plug-in:

* A :class:`Method` decides how a batch becomes a loss. Plain cross-entropy is
  the default; SLN, online confident learning, MixGen, meta-learning methods
  (which need a functional forward pass and trusted-set batches) each become a
  small subclass in a file of their own.
* A :class:`Callback` observes (and may adjust) training at fixed points:
  recording training dynamics, keeping an EMA model, resetting an online
  supervision matrix every epoch.

Both may carry state; it goes into checkpoints through ``state_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from engine.training.data import Batch
    from engine.training.loop import TrainState


@dataclass
class StepOutput:
    loss: torch.Tensor  # scalar, to be back-propagated
    logits: torch.Tensor  # (B, K) predictions of the batch, for metrics and recorders
    extras: dict[str, Any] = field(default_factory=dict)


class Method:
    """Turns a batch into a loss. Subclasses override :meth:`step`."""

    name = "ce"

    def setup(self, state: TrainState) -> None:
        """Called once before the first epoch (after a resume too)."""

    def step(self, state: TrainState, batch: Batch) -> StepOutput:
        logits = state.model(batch.x)
        return StepOutput(F.cross_entropy(logits.float(), batch.y), logits)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Callback:
    """Observer of the loop; every hook is optional."""

    def on_fit_start(self, state: TrainState) -> None: ...

    def on_epoch_start(self, state: TrainState) -> None: ...

    def on_batch_end(self, state: TrainState, batch: Batch, output: StepOutput) -> None: ...

    def on_epoch_end(self, state: TrainState) -> None: ...

    def on_fit_end(self, state: TrainState) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
