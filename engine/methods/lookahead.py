"""One SGD step imagined ahead: where the trainer's optimiser would take the weights, without taking the step.

The meta-learning methods differentiate a trusted loss at the weights after the next step
(:func:`engine.methods.meta.example_gradients` for ``l2rw``, ``meta_mixup`` and ``alternating``; ``mlc``'s
look-ahead). That step must be the one the optimiser really takes next, for every parameter group.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from engine.errors import UserError


def sgd_lookahead(optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor],
                  grads: Sequence[torch.Tensor] | None = None) -> tuple[list[torch.Tensor], list[float]]:
    """Each of ``params`` after one step of ``optimizer`` (SGD) with ``grads`` (None: zero gradients), and per
    parameter lr * s, what that step multiplies a gradient by.

    PyTorch's SGD, step for step, each parameter with its own group's learning rate, momentum, dampening,
    Nesterov, weight decay and maximize: weight decay joins the gradient; a missing momentum buffer starts as
    the gradient itself (undampened), so s = 1 + momentum (Nesterov) or 1 on the first step, and
    1 + momentum * (1 - dampening) or 1 - dampening after it; maximize negates the gradient (not the weight
    decay), and so s. Optimiser state is read, never changed: this step is imagined, the real one follows.
    """
    if not isinstance(optimizer, torch.optim.SGD):
        raise UserError(f"the meta-learning methods look ahead one SGD step; the trainer's optimiser is "
                        f"{type(optimizer).__name__}", "train with the built-in trainer (SGD)")
    group_of = {id(param): group for group in optimizer.param_groups for param in group["params"]}
    gradients: Sequence[torch.Tensor | None] = [None] * len(params) if grads is None else grads
    ahead, scales = [], []
    with torch.no_grad():
        for param, grad in zip(params, gradients, strict=True):
            group = group_of[id(param)]
            lr, momentum, dampening = float(group["lr"]), group["momentum"], group["dampening"]
            decay = group["weight_decay"] * param
            direction = decay if grad is None else (-grad if group.get("maximize") else grad) + decay
            scale = 1.0
            if momentum != 0:
                buffer = optimizer.state.get(param, {}).get("momentum_buffer")
                if buffer is None:
                    moment, moment_scale = direction, 1.0
                else:
                    moment, moment_scale = buffer * momentum + (1 - dampening) * direction, 1 - dampening
                if group["nesterov"]:
                    direction, scale = direction + momentum * moment, 1 + momentum * moment_scale
                else:
                    direction, scale = moment, moment_scale
            if group.get("maximize"):
                scale = -scale
            ahead.append(param - lr * direction)
            scales.append(lr * scale)
    return ahead, scales
