"""What the meta-learning methods share (``l2rw``, ``meta_mixup``, ``alternating``; the step of ``upper_bound``).

From seeds/isic-reweight-mixup-labels.md (learning to reweight examples, Ren et al. 2018,
and its mixup-label variants):

* :class:`TrustedBatches` draws trusted batches (the clean set the meta-gradient is measured on)
  with a generator of its own, seeded from the run's seed and checkpointed, so a resumed run
  draws the same trusted batches an uninterrupted one would.
* :func:`example_gradients` is the look-ahead: a virtual optimiser step on ``sum_i eps_i * loss_i``,
  then the trusted loss after that step, differentiated w.r.t. ``eps`` at ``eps = 0``. A negative
  entry means up-weighting that sample would lower the trusted loss. The design card names
  ``higher`` for this step (a functional copy of the model stepped by a differentiable optimiser,
  then a second-order backward). Here the same derivative is computed in closed form with a
  forward-mode pass instead; the tests check it equals the ``higher`` look-ahead to float
  tolerance. Measured (small_cnn, 32 px, batch 128, 2,000 samples, two dedicated CPU cores):
  ``l2rw`` 13.2 s an epoch with ``higher``, 60% of it BatchNorm's double backward, 3.5-4.1 s
  with this; ``ce`` 1.3 s. The look-ahead always runs in float32, autocast switched off even
  inside an autocast region: a half-precision look-ahead underflows.
* :class:`RealStep` is the step on the model itself: a per-sample loss on (possibly soft) targets,
  weighted, backward, gradient-norm clipping (the seed clips at 0.25), optimiser step. Its forward
  pass autocasts as every method's does (``--precision``), with float16's grad scaler where one is used.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.autograd.forward_ad as forward_ad
import torch.nn.functional as F
from torch.func import functional_call

from engine.errors import UserError
from engine.methods.lookahead import sgd_lookahead
from engine.training.hooks import StepOutput

if TYPE_CHECKING:
    from engine.methods import MethodContext
    from engine.training.data import Batch
    from engine.training.loop import TrainState

# Mixed into the run's seed so the trusted draws do not mirror the trainer's shuffling.
_TRUSTED_STREAM = 0x7275_7374

WEIGHTINGS = ("clamp", "sigmoid")
VARIANTS = ("hard", "soft")


def check_choice(method: str, option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"method {method}: {option}={value!r} is not one of {', '.join(choices)}",
                        f"give --option {option}={choices[0]} (or {', '.join(choices[1:])})")


def check_common(method: str, max_grad_norm: float | None, trusted_batch_size: int | None = None) -> None:
    """The options every meta method shares: a positive clipping norm (or none) and trusted batch size."""
    if max_grad_norm is not None and not max_grad_norm > 0:
        raise UserError(f"method {method}: max_grad_norm={max_grad_norm} must be above 0",
                        "give a positive norm, e.g. --option max_grad_norm=0.25, or none to not clip")
    if trusted_batch_size is not None and trusted_batch_size < 1:
        raise UserError(f"method {method}: trusted_batch_size={trusted_batch_size} must be at least 1",
                        "give e.g. --option trusted_batch_size=32, or none for the training batch size")


class TrustedBatches:
    """Random batches of the trusted set, drawn without replacement within a batch, repeatably.

    ``batch_size`` None: the training batch's size. A batch never holds more than the trusted set.
    Trusted images are not augmented: they are the clean reference the meta-gradient aims at.
    """

    def __init__(self, context: MethodContext, batch_size: int | None) -> None:
        if context.trusted_ids is None or context.trusted_labels is None or len(context.trusted_ids) == 0:
            raise UserError("a meta-learning method needs a trusted set, and there is none",
                            "review some samples, or pass --trusted-per-class N or --trusted-csv FILE")
        self.ids = np.asarray(context.trusted_ids, dtype=np.int64)
        self.labels = torch.as_tensor(np.asarray(context.trusted_labels, dtype=np.int64))
        if len(self.ids) != len(self.labels):
            raise ValueError(f"{len(self.ids)} trusted ids but {len(self.labels)} trusted labels")
        outside = (self.labels < 0) | (self.labels >= context.num_classes)
        if bool(outside.any()):
            raise UserError(f"{int(outside.sum())} trusted labels are not classes of this project "
                            f"(0..{context.num_classes - 1})", "fix the trusted set's labels")
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(int(context.seed) * 1_000_003 + _TRUSTED_STREAM)

    def next(self, state: TrainState, training_batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One trusted batch: normalised images on the model's device and their trusted labels."""
        size = min(self.batch_size or training_batch_size, len(self.ids))
        pick = torch.randperm(len(self.ids), generator=self.generator)[:size]
        batch = next(iter(state.data.batches(self.ids[pick.numpy()], size)))
        return batch.x, self.labels[pick].to(state.device)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"].cpu())


def per_sample_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) cross-entropy; ``targets`` are class indices (B,) or distributions (B, K)."""
    return F.cross_entropy(logits.float(), targets, reduction="none")


def example_gradients(state: TrainState, x: torch.Tensor, targets: torch.Tensor,
                      trusted_x: torch.Tensor, trusted_y: torch.Tensor) -> torch.Tensor:
    """(B,) d L_trusted(theta') / d eps at eps = 0, where theta' is one optimiser step on sum(eps * loss).

    The step is the trainer's own (SGD: its learning rate now, momentum, Nesterov, weight decay),
    so theta' = theta - lr * (a + s * sum_i eps_i * grad loss_i(theta)): ``a`` (weight decay, the
    momentum buffer) does not depend on eps, and s is what the step multiplies a gradient by
    (1 + momentum with Nesterov). By the chain rule, with v = grad L_trusted at theta'(eps = 0):

        d L_trusted / d eps_j = -lr * s * <v, grad loss_j(theta)> = -lr * s * d/dt loss_j(theta + t v) at t = 0

    which is one backward pass for v and one forward-mode pass (a Jacobian-vector product) over
    the batch, instead of differentiating through the step (a second-order backward). Both passes
    see the batch as the training forward does (BatchNorm on batch statistics, in train mode), so
    each loss_j depends on the other samples just as in the look-ahead through ``higher``. They
    run on copies of the buffers: the real model's BatchNorm running statistics are left alone.
    Always in float32 (see the module docstring).
    """
    with torch.autocast(device_type=state.device.type, enabled=False):
        return _example_gradients(state, x, targets, trusted_x, trusted_y)


def _example_gradients(state: TrainState, x: torch.Tensor, targets: torch.Tensor,
                       trusted_x: torch.Tensor, trusted_y: torch.Tensor) -> torch.Tensor:
    model = state.model
    named = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
    ahead, scales = sgd_lookahead(state.optimizer, [param for _, param in named])
    ahead_params = {name: weight.requires_grad_(True) for (name, _), weight in zip(named, ahead, strict=True)}
    trusted_logits = functional_call(model, (ahead_params, _buffer_copies(model)), (trusted_x,))
    trusted_loss = F.cross_entropy(trusted_logits.float(), trusted_y)
    gradients = torch.autograd.grad(trusted_loss, list(ahead_params.values()), allow_unused=True)
    directions = {name: torch.zeros_like(param) if grad is None else grad * scale
                  for (name, param), grad, scale in zip(named, gradients, scales, strict=True)}
    return -directional_derivative(model, directions, x, lambda logits: per_sample_loss(logits, targets))


def directional_derivative(model: torch.nn.Module, directions: dict[str, torch.Tensor], x: torch.Tensor,
                           outputs: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """d/dt outputs(model(x) with weights w + t * direction) at t = 0: one forward-mode pass.

    ``directions`` maps parameter names to tensors shaped like them; parameters not named stay
    fixed. The model runs as it is (train mode: BatchNorm on the batch's statistics) on copies of
    its buffers, so its running statistics are left alone. No graph is kept.
    """
    weights = dict(model.named_parameters())
    with torch.no_grad(), _quiet_forward_ad_start(), forward_ad.dual_level():
        duals = {name: forward_ad.make_dual(weights[name].detach(), direction) for name, direction in directions.items()}
        result = outputs(functional_call(model, (duals, _buffer_copies(model)), (x,)))
        primal, tangent = forward_ad.unpack_dual(result)
    # No named parameter reaches the outputs: they do not move.
    return torch.zeros_like(primal) if tangent is None else tangent


_forward_ad_started = False


@contextlib.contextmanager
def _quiet_forward_ad_start() -> Iterator[None]:
    """Hide the deprecation warning torch's first forward-mode pass raises while loading its own helpers.

    Only around the process's first pass: the warning filters are process-wide state.
    """
    global _forward_ad_started
    if _forward_ad_started:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)
        yield
    _forward_ad_started = True


def _buffer_copies(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's buffers, copied: a train-mode forward updates BatchNorm statistics in place."""
    return {name: buffer.clone() for name, buffer in model.named_buffers()}


def weights_from_gradients(gradient: torch.Tensor, weighting: str) -> torch.Tensor:
    """Per-sample weights summing to 1 (or all 0): clamp max(-g, 0) as in the paper, or sigmoid(-g) (the seed's)."""
    raw = torch.clamp(-gradient, min=0) if weighting == "clamp" else torch.sigmoid(-gradient)
    total = raw.sum()
    # All zero (every sample opposes the trusted batch): the step learns nothing from this batch.
    return raw / total if float(total) > 0 else raw


def mixup_targets(logits: torch.Tensor, labels: torch.Tensor, beta: torch.Tensor, num_classes: int,
                  memory: torch.Tensor | None = None) -> torch.Tensor:
    """(B, K) targets ``beta * label + (1 - beta) * prediction``.

    Hard: the label and the predicted class as one-hot vectors. Soft: ``memory`` (the sample's
    remembered label distribution) and the predicted probabilities. The seed mixes class indices
    and casts them back to integers, which only means something between one-hot vectors: here the
    mixture is a distribution, and the loss is cross-entropy against it.
    """
    beta = beta.to(logits.device, torch.float32)[:, None]
    predicted = logits.detach().float()
    if memory is None:
        given = F.one_hot(labels, num_classes).float()
        guess = F.one_hot(predicted.argmax(1), num_classes).float()
    else:
        given = memory.to(logits.device, torch.float32)
        guess = torch.softmax(predicted, dim=1)
    return beta * given + (1 - beta) * guess


@dataclass
class RealStep:
    """The step on the model itself, as the seed takes it: weighted loss, clip, step."""

    max_grad_norm: float | None

    def forward(self, state: TrainState, batch: Batch) -> torch.Tensor:
        with state.autocast():
            return state.model(batch.x)

    def finish(self, state: TrainState, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
               extras: dict[str, Any] | None = None) -> StepOutput:
        """Back-propagate ``sum(weights * loss)`` from ``logits`` (of :meth:`forward`) and step.

        The reported loss is the unweighted mean over the batch on the targets used, so the curve
        reads like every other method's (the weighted sum is what is optimised).
        """
        cost = per_sample_loss(logits, targets)
        loss = torch.sum(cost * weights.to(cost.device, cost.dtype))
        optimizer = state.optimizer
        optimizer.zero_grad(set_to_none=True)
        scaler = state.scaler
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        else:
            loss.backward()
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(state.model.parameters(), self.max_grad_norm, norm_type=2)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        return StepOutput(cost.detach().mean(), logits, dict(extras or {}))
