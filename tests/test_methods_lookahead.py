"""The SGD look-ahead of the meta-learning methods is the step the optimiser takes, for every parameter group."""

from __future__ import annotations

import copy

import pytest
import torch

from engine.errors import UserError
from engine.methods.lookahead import sgd_lookahead


def gradients(model: torch.nn.Module, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.randn(8, 4, generator=generator), torch.randint(0, 2, (8,), generator=generator)
    return list(torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), list(model.parameters())))


def check_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int = 3) -> list[list[float]]:
    """Look ahead, then step: the imagined weights are the real ones; the optimiser's state is not touched."""
    scales_seen = []
    for step in range(steps):  # the first step has no momentum buffers; the later ones read them
        params = list(model.parameters())
        grads = gradients(model, step)
        before = copy.deepcopy(optimizer.state_dict()["state"])
        ahead, scales = sgd_lookahead(optimizer, params, grads)
        without_gradient, zero_scales = sgd_lookahead(optimizer, params)
        after = optimizer.state_dict()["state"]
        assert after.keys() == before.keys()
        for index, buffers in before.items():
            torch.testing.assert_close(after[index]["momentum_buffer"], buffers["momentum_buffer"], rtol=0, atol=0)
        assert scales == zero_scales
        # lr * s is what the step multiplies the gradient by: the step with it, less the step without it.
        for imagined, still, grad, scale in zip(ahead, without_gradient, grads, scales, strict=True):
            torch.testing.assert_close(imagined - still, -scale * grad, rtol=1e-4, atol=1e-7)
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad
        optimizer.step()
        for param, imagined in zip(params, ahead, strict=True):
            torch.testing.assert_close(param.detach(), imagined, rtol=0, atol=1e-7)
        scales_seen.append(scales)
    return scales_seen


def test_the_look_ahead_is_the_step_the_optimiser_takes() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    for scales in check_steps(model, optimizer):
        assert scales == pytest.approx([0.1 * 1.9] * 4)  # Nesterov: (1 + momentum) * lr


def test_each_parameter_group_looks_ahead_with_its_own_settings() -> None:
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    first, second = model[0], model[2]
    optimizer = torch.optim.SGD([
        {"params": first.parameters(), "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
        {"params": second.parameters(), "lr": 0.03, "momentum": 0.5, "dampening": 0.2, "weight_decay": 1e-2,
         "maximize": True},
    ], lr=1.0)
    first_step, later_step, _ = check_steps(model, optimizer)
    # The first group: (1 + momentum) * lr. The second: no Nesterov, the buffer starts as the gradient itself
    # (s = 1), then is dampened (s = 1 - dampening); maximize turns the step around.
    assert first_step == pytest.approx([0.19, 0.19, -0.03, -0.03])
    assert later_step == pytest.approx([0.19, 0.19, -0.03 * 0.8, -0.03 * 0.8])


def test_only_sgd_is_looked_ahead() -> None:
    model = torch.nn.Linear(2, 2)
    with pytest.raises(UserError, match="look ahead one SGD step"):
        sgd_lookahead(torch.optim.Adam(model.parameters()), list(model.parameters()))
