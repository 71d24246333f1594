"""How methods and detectors plug into the one training loop.

Two kinds of plug-in:

* A :class:`Method` decides how a batch becomes a loss. Plain cross-entropy is
  the default; SLN, online confident learning, MixGen, meta-learning methods
  (which need a functional forward pass and trusted-set batches) each become a
  small subclass in a file of their own.
* A :class:`Callback` observes (and may adjust) training at fixed points:
  recording training dynamics, keeping an EMA model, resetting an online
  supervision matrix every epoch.

Both may carry state; it goes into checkpoints through ``state_dict``, under
the plug-in's ``name`` (a class attribute, the class name unless a class sets
its own; an instance may set another when it is used twice). A resume restores
each state by name, and refuses when the names differ from the checkpoint's.

State must be plain: tensors, numbers, strings, None, and lists, tuples and
dicts (str or int keys) of those, because checkpoints load with
``weights_only=True``. numpy arrays are accepted and saved as tensors: a
plug-in gets torch tensors back in ``load_state_dict``. Anything else is an
error when the checkpoint is saved, naming the plug-in and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__  # never the parent's name: a checkpoint tells methods apart by it

    def select_train_ids(self, train_ids: np.ndarray) -> np.ndarray:
        """The ids to train on, of those the trainer was given (all of them; ``prune`` drops its suspects).

        Called when the trainer is built, so the schedule's length and a checkpoint's sample record
        (which a resume checks) are those of the ids actually trained on.
        """
        return train_ids

    def setup(self, state: TrainState) -> None:
        """Called once before the first epoch (after a resume too)."""

    def step(self, state: TrainState, batch: Batch) -> StepOutput:
        logits = state.model(batch.x)
        return StepOutput(F.cross_entropy(logits.float(), batch.y), logits)

    def optimise(self, state: TrainState, batch: Batch) -> StepOutput:
        """One optimisation step of ``state.model`` on ``batch``: forward, backward, optimiser step.

        The trainer steps the learning-rate schedule and counts the step afterwards. Methods that
        own the step (a virtual look-ahead step, a second optimiser for a meta-network, no grad
        scaler) override this; the others only override :meth:`step`.
        """
        with state.autocast():
            output = self.step(state, batch)
        state.optimizer.zero_grad(set_to_none=True)
        if state.scaler is not None:
            state.scaler.scale(output.loss).backward()
            state.scaler.step(state.optimizer)
            state.scaler.update()
        else:
            output.loss.backward()
            state.optimizer.step()
        return output

    def callbacks(self) -> list[Callback]:
        """Callbacks this method needs in the loop (a momentum model, a per-epoch reset); named, checkpointed."""
        return []

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Callback:
    """Observer of the loop; every hook is optional."""

    name = "Callback"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__

    def on_fit_start(self, state: TrainState) -> None: ...

    def on_epoch_start(self, state: TrainState) -> None: ...

    def on_batch_end(self, state: TrainState, batch: Batch, output: StepOutput) -> None: ...

    def on_epoch_end(self, state: TrainState) -> None: ...

    def on_fit_end(self, state: TrainState) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
