"""Data-parallel training under torchrun: each rank trains on its part of every global batch, and the ranks
average their gradients before each optimiser step, so N processes take exactly the steps of one.

Every global batch (the configured ``--batch-size``, the batches one process trains on, a small last one
included) is split into one contiguous part per rank (:func:`part_bounds`; a last batch under 2 samples
per rank into fewer parts, the other ranks joining its step with no samples: :func:`idle_step`).
:func:`sharded_batches` augments the whole batch on every rank (the same generator) and hands each rank its
part; :class:`GradientAverager` all-reduces the gradients before each optimiser step (and before float16's
inf check: :func:`grad_scaler`), weighted by each part's share of the batch; floating-point buffers
(BatchNorm statistics) are averaged at every epoch end (:func:`average_buffers`). The process group itself,
the collectives and how a stopped rank is reported are in :mod:`engine.training.distributed`.

Why not torch's DistributedDataParallel
---------------------------------------
DDP buckets the gradients and overlaps their all-reduce with the backward pass; the averager sends one
flat all-reduce after it. Measured with ``bench/ddp_vs_averager.py`` (cnn7, global batch 128, 2 gloo ranks
of one thread each, 6 alternating rounds of 20 steps, on a 2-core machine under a load of 6 to 7 from other
work, so the figures are noisy): averager best 4.47 steps/s, median 3.75; DDP best 4.52, median 3.70. A tie:
DDP's overlap gains nothing measurable here, so the hand-written averager stays, since DDP as it stands
would change what the loop does:

- parts of unequal size: a batch of 5 on 2 ranks is split 3 and 2, and each gradient is weighted by its
  part's share; DDP averages the ranks equally, so every rank's loss would need rescaling inside
  ``Method.optimise``, which methods own;
- idle ranks: a rank with no part of a small last batch takes the step with zero gradients
  (:func:`idle_step`); under DDP it would run a forward and backward pass on no samples (BatchNorm then
  counts a batch it never saw), for every model and method;
- methods call ``state.model`` themselves and checkpoints save its ``state_dict``: a DDP wrapper changes
  both (``module.`` keys), and a resumed run must load the checkpoints it wrote;
- float16: :func:`grad_scaler` averages before the inf check, so every rank skips or takes a step alike
  (DDP, reducing in the backward pass, would give that too: no reason either way).

The equality tests in tests/test_distributed.py (2 ranks take the steps of one process, an odd tail
and a float16 overflow included) hold the averager to that.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import UserError
from engine.training import distributed

if TYPE_CHECKING:
    import torch
    from torch import nn

    from engine.training.data import Batch, ImageBatches
    from engine.training.hooks import Method


def check_trainable(method: Method, batch_size: int) -> None:
    """Refuse what cannot train data-parallel: a method that owns its step, or too small a batch."""
    if not distributed.active():
        return
    from engine.training.hooks import Method as PlainMethod

    ranks = distributed.world_size()
    if type(method).optimise is not PlainMethod.optimise:
        raise UserError(f"method {method.name!r} takes its own optimisation steps (a look-ahead or meta step), "
                        f"which do not run data-parallel ({ranks} torchrun processes)",
                        f"run it in one process: python -m engine ... --method {method.name} (without torchrun)")
    if batch_size < 2 * ranks:
        raise UserError(f"--batch-size {batch_size} is too small for {ranks} processes: each needs "
                        "at least 2 samples of every batch", f"use --batch-size {2 * ranks} or more")


def train_chunks(ids: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """The global batches of an epoch: exactly those one process trains on (a one-sample tail joins the batch
    before; a tail of 2 or more is a step of its own), so N processes take one process's steps."""
    from engine.training.data import batch_chunks

    return list(batch_chunks(np.asarray(ids, dtype=np.int64), batch_size, merge_single=True))


def part_bounds(batch: int, ranks: int, rank: int) -> tuple[int, int]:
    """[start, stop) of ``rank``'s contiguous part of a global batch of ``batch`` samples.

    Every part that is not empty holds at least 2 samples (BatchNorm trains on no fewer): a small last
    batch (under 2 per rank) is split among fewer ranks, and the others take part in its step with none.
    """
    parts = max(1, min(ranks, batch // 2))
    sizes = [batch // parts + (1 if index < batch % parts else 0) if index < parts else 0 for index in range(ranks)]
    start = sum(sizes[:rank])
    return start, start + sizes[rank]


class GradientAverager:
    """Before each optimiser step, the gradients of the whole global batch on every rank.

    Each rank's gradient is the mean over its part of the batch; weighted by the part's share
    (``weight``, set for every batch; 0 for a rank with no part) and summed over the ranks, it is
    the mean over the batch. Every trainable parameter takes part, with zeros where this rank has
    no gradient, so the ranks always reduce the same tensor; a parameter no rank has a gradient
    for keeps none (as in one process, the optimiser then leaves it alone).

    With a grad scaler (:func:`grad_scaler`) the average is taken before the scaler's inf check,
    so every rank sees the same gradients, an overflow on any rank included, and all skip or
    all take the step.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.weight = 1.0 / distributed.world_size()
        self.optimizer = optimizer
        self.averaged = False  # this step's gradients are averaged already (the scaler asked first)
        self.handle = optimizer.register_step_pre_hook(self._before_step)

    def average(self) -> None:
        import torch
        import torch.distributed as dist

        params = [parameter for group in self.optimizer.param_groups for parameter in group["params"]
                  if parameter.requires_grad]
        if not params:
            return
        device = distributed.comm_device()
        pieces = [parameter.grad.detach().to(device, torch.float32).reshape(-1) * self.weight
                  if parameter.grad is not None else torch.zeros(parameter.numel(), device=device)
                  for parameter in params]
        has_grad = torch.tensor([parameter.grad is not None for parameter in params], dtype=torch.float32,
                                device=device)
        flat = torch.cat([*pieces, has_grad])
        dist.all_reduce(flat)
        offset = 0
        reduced = []
        for parameter in params:
            reduced.append(flat[offset:offset + parameter.numel()].view(parameter.shape))
            offset += parameter.numel()
        for parameter, summed, anyone in zip(params, reduced, flat[offset:].tolist(), strict=True):
            if not anyone:
                continue
            if parameter.grad is None:
                parameter.grad = summed.to(parameter.device, parameter.dtype).clone()
            else:
                parameter.grad.copy_(summed.to(parameter.grad.device, parameter.grad.dtype))
        self.averaged = True

    def _before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if not self.averaged:
            self.average()
        self.averaged = False


def grad_scaler(device_type: str, averager: GradientAverager | None) -> torch.amp.GradScaler:
    """float16's loss scaler; under torchrun one that averages the gradients before it looks for infs.

    A plain scaler checks each rank's own gradients: a rank whose part overflowed would skip the step
    (and its all-reduce) while the others take it, and the ranks would drift apart or hang.
    """
    import torch

    if averager is None:
        return torch.amp.GradScaler(device_type)
    return _averaging_scaler_class()(device_type, averager)


_AVERAGING_SCALER: Any = None


def _averaging_scaler_class() -> Any:
    global _AVERAGING_SCALER
    if _AVERAGING_SCALER is None:
        import torch

        class AveragingGradScaler(torch.amp.GradScaler):
            def __init__(self, device_type: str, averager: GradientAverager) -> None:
                super().__init__(device_type)
                self.averager = averager

            def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
                self.averager.average()  # the same gradients on every rank before the inf check
                super().unscale_(optimizer)

            def step(self, optimizer: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> float | None:
                try:
                    return super().step(optimizer, *args, **kwargs)
                finally:
                    self.averager.averaged = False  # a skipped step leaves the flag for the next one otherwise

        _AVERAGING_SCALER = AveragingGradScaler
    return _AVERAGING_SCALER


def idle_step(state: Any) -> Any:
    """This rank's share of a step on a small last batch it holds no part of (:func:`part_bounds`).

    It adds zero gradients to the average and takes the same optimiser (and scaler) step as the
    ranks that trained, so every rank keeps the same weights and the same schedule.
    """
    import torch

    from engine.training.hooks import StepOutput

    state.optimizer.zero_grad(set_to_none=True)
    if state.scaler is not None:
        state.scaler.scale(torch.zeros((), device=state.device))  # its scale exists even before a first step
        state.scaler.step(state.optimizer)
        state.scaler.update()
    else:
        state.optimizer.step()
    return StepOutput(torch.zeros((), device=state.device), torch.zeros((0, state.num_classes), device=state.device))


def sharded_batches(data: ImageBatches, ids: np.ndarray, batch_size: int, *, augment: str,
                    generator: torch.Generator, averager: GradientAverager) -> Iterator[Batch]:
    """This rank's part of every global batch of ``ids``, augmented as the whole batch is in one process.

    A rank with no part of a small last batch gets an empty batch (the trainer takes :func:`idle_step`).
    """
    import torch

    from engine.training.data import Batch, augment_batch

    assert distributed.active()
    for chunk in train_chunks(ids, batch_size):
        start, stop = part_bounds(len(chunk), distributed.world_size(), distributed.rank())
        local = chunk[start:stop]
        if augment != "none":
            # The random crops and flips are drawn for the whole batch, as one process draws them.
            whole = torch.zeros((len(chunk), *data.images.shape[1:]), dtype=torch.uint8, device=data.device)
            raw = whole.permute(0, 3, 1, 2)
            raw[start:stop] = data.gather(local)
            raw = augment_batch(raw, augment, generator)[start:stop]
        else:
            raw = data.gather(local)
        averager.weight = len(local) / len(chunk)
        ids_tensor = torch.from_numpy(local)
        yield Batch(data.normalise(raw), data.labels[ids_tensor].to(data.device), ids_tensor)


def broadcast_model(model: nn.Module) -> None:
    """Rank 0's weights and buffers on every rank (the same seed makes them alike; this makes them equal)."""
    if not distributed.active():
        return
    for tensor in [*model.parameters(), *model.buffers()]:
        tensor.data.copy_(distributed.broadcast_tensor(tensor.data))


def average_buffers(model: nn.Module) -> None:
    """Floating-point buffers (BatchNorm running statistics) averaged over the ranks."""
    if not distributed.active():
        return
    import torch.distributed as dist

    for buffer in model.buffers():
        if buffer.is_floating_point():
            moved = buffer.data.to(distributed.comm_device())
            dist.all_reduce(moved)
            buffer.data.copy_((moved / distributed.world_size()).to(buffer.device))
