"""``mlc``: the corrector learns from the trusted set, the look-ahead is the optimiser's step, resume is exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.func import functional_call

from engine.cancel import CancelToken
from engine.errors import Cancelled, UserError
from engine.events import EventSink
from engine.methods import MethodContext, build_method, parse_options
from engine.methods.lookahead import sgd_lookahead
from engine.methods.losses import soft_cross_entropy
from engine.methods.mlc import MetaLabelCorrection
from engine.training.config import TrainConfig
from engine.training.data import Batch, ImageBatches
from engine.training.hooks import Callback, StepOutput
from engine.training.loop import Trainer, TrainState
from tests.first_order import FirstOrderLayer

N = 150
TRAIN = np.arange(120)
TRUSTED = np.arange(120, 150)
FLIPPED = 20  # class-0 training images labeled 1


def constructed(trusted_class0_label: int = 0) -> tuple[MethodContext, ImageBatches, np.ndarray]:
    """3 classes told apart by brightness; 20 of the 40 class-0 training images carry label 1.

    The trusted set (10 per class) labels its class-0 images ``trusted_class0_label``: 0 contradicts
    the flipped labels, 1 agrees with them.
    """
    rng = np.random.default_rng(0)
    truth = np.arange(N) % 3
    images = (rng.integers(0, 60, (N, 16, 16, 3)) + truth[:, None, None, None] * 60).astype(np.uint8)
    labels = truth.copy()
    flipped = TRAIN[truth[TRAIN] == 0][:FLIPPED]
    labels[flipped] = 1
    data = ImageBatches(images, labels, torch.device("cpu"), channels_last=True)
    trusted_labels = np.where(truth[TRUSTED] == 0, trusted_class0_label, truth[TRUSTED])
    context = MethodContext(num_classes=3, train_ids=TRAIN, labels=labels, data=data, seed=1,
                            trusted_ids=TRUSTED, trusted_labels=trusted_labels)
    return context, data, flipped


def trainer(context: MethodContext, data: ImageBatches, options: dict[str, str], epochs: int,
            checkpoint: Path | None = None, callbacks: list[Callback] | None = None,
            cancel: CancelToken | None = None) -> tuple[Trainer, MetaLabelCorrection]:
    method = build_method("mlc", options, context)
    assert isinstance(method, MetaLabelCorrection)
    config = TrainConfig(epochs=epochs, batch_size=16, image_size=16, seed=1, augment="none")
    return Trainer(config, data, TRAIN, num_classes=3, events=EventSink(), method=method, augment="none",
                   checkpoint_path=checkpoint, callbacks=callbacks or [], cancel=cancel), method


def corrected_labels(state: TrainState, method: MetaLabelCorrection, data: ImageBatches,
                     ids: np.ndarray) -> np.ndarray:
    """The corrector's argmax for ``ids`` with their given labels, reading the trained model's features."""
    state.model.eval()
    with torch.no_grad():
        batch = next(iter(data.batches(ids, len(ids))))
        state.model(batch.x)
        assert method._features is not None
        return method.corrected(method._features, batch.y).argmax(1).numpy()


@pytest.mark.parametrize(("trusted_class0_label", "expected"), [(0, 0), (1, 1)])
def test_the_corrector_changes_a_label_the_trusted_set_contradicts(trusted_class0_label: int, expected: int) -> None:
    context, data, flipped = constructed(trusted_class0_label)
    fit, method = trainer(context, data, {"meta_lr": "3e-3", "trusted_batch_size": "16"}, epochs=3)
    state = fit.fit()
    # Class-0 images labeled 1: corrected to 0 when the trusted set says they are 0, kept as 1 when it says 1.
    assert (corrected_labels(state, method, data, flipped) == expected).all()
    # Class-1 images labeled 1 keep their label either way: the corrector does not relabel everything.
    clean_ones = TRAIN[context.labels[TRAIN] == 1]
    clean_ones = clean_ones[~np.isin(clean_ones, flipped)]
    assert (corrected_labels(state, method, data, clean_ones) == 1).all()


def second_order_meta_gradient(method: MetaLabelCorrection, state: TrainState, batch: Batch) -> list[torch.Tensor]:
    """The meta-net's gradient as the seed takes it: back-propagated through the training gradient g_s.

    Draws the trusted batch the next step will draw, and leaves the model, its BatchNorm statistics
    and the trusted draws as they were.
    """
    assert method.corrector is not None
    saved = (method.generator.get_state(), method.trusted_order.clone(), method.trusted_next)
    buffers = {name: buffer.clone() for name, buffer in state.model.named_buffers()}
    named = [(name, p) for name, p in state.model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    x_trusted, y_trusted = method._trusted_batch(state)
    half = len(y_trusted) // 2
    x_trusted, x_mix, y_trusted, y_mix = x_trusted[:half], x_trusted[half:], y_trusted[:half], y_trusted[half:]
    logits = state.model(batch.x)
    assert method._features is not None
    targets = method.corrected(method._features.detach().float(), batch.y)
    loss = soft_cross_entropy(logits, targets)
    loss_mix = torch.nn.functional.cross_entropy(state.model(x_mix).float(), y_mix)
    loss = (loss * len(batch.y) + loss_mix * len(y_mix)) / (len(batch.y) + len(y_mix))
    grad_train = torch.autograd.grad(loss, params, create_graph=True)
    ahead, scales = sgd_lookahead(state.optimizer, params, [g.detach() for g in grad_train])
    ahead = [p.detach().requires_grad_(True) for p in ahead]
    ahead_logits = functional_call(state.model, {name: p for (name, _), p in zip(named, ahead, strict=True)},
                                   (x_trusted,))
    grad_ahead = torch.autograd.grad(torch.nn.functional.cross_entropy(ahead_logits.float(), y_trusted), ahead)
    proxy = -torch.stack([scale * (g * a).sum() for g, a, scale in zip(grad_train, grad_ahead, scales, strict=True)]).sum()
    gradients = torch.autograd.grad(proxy, list(method.corrector.parameters()))
    method.generator.set_state(saved[0])
    method.trusted_order, method.trusted_next = saved[1], saved[2]
    with torch.no_grad():
        for name, buffer in state.model.named_buffers():
            buffer.copy_(buffers[name])
    return [gradient.detach() for gradient in gradients]


def test_the_meta_gradient_equals_back_propagating_through_the_training_gradient() -> None:
    context, data, _ = constructed()
    fit, method = trainer(context, data, {"gradient_steps": "2", "trusted_batch_size": "16"}, epochs=1)
    state = fit.state
    method.setup(state)
    batches = iter(data.batches(TRAIN[:64], 16))
    for _ in range(2):  # momentum buffers, and a meta-net that has stepped once
        method.optimise(state, next(batches))
    batch = next(batches)
    expected = second_order_meta_gradient(method, state, batch)
    method.optimise(state, batch)  # the third look-ahead: its meta-gradient is kept (K = 2), not yet applied
    assert method.meta_gradient is not None
    for got, want in zip(method.meta_gradient, expected, strict=True):
        assert float(want.abs().max()) > 0
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))


def test_the_meta_gradient_takes_no_second_order_backward() -> None:
    """A second-order backward through the model (BatchNorm's, mostly) is what made the step slow."""
    context, data, _ = constructed()
    fit, method = trainer(context, data, {"gradient_steps": "2"}, epochs=1)
    state = fit.state
    state.model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3), FirstOrderLayer())
    state.optimizer = torch.optim.SGD(state.model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    method.setup(state)
    method.optimise(state, next(iter(data.batches(TRAIN[:16], 16))))
    assert method.meta_gradient is not None
    assert any(float(gradient.abs().max()) > 0 for gradient in method.meta_gradient)


class CountSteps(Callback):
    """Records whether the corrector's weights moved at each step."""

    def __init__(self, method: MetaLabelCorrection) -> None:
        self.method = method
        self.moved: list[bool] = []
        self.last: list[torch.Tensor] | None = None

    def on_batch_end(self, state: TrainState, batch: Batch, output: StepOutput) -> None:
        assert self.method.corrector is not None
        now = [p.detach().clone() for p in self.method.corrector.parameters()]
        if self.last is not None:
            self.moved.append(any(not torch.equal(a, b) for a, b in zip(now, self.last, strict=True)))
        self.last = now


def test_the_meta_net_steps_every_k_look_aheads() -> None:
    context, data, _ = constructed()
    fit, method = trainer(context, data, {"gradient_steps": "3", "meta_lr": "1e-3"}, epochs=1)
    counter = CountSteps(method)
    fit.callbacks.append(counter)
    fit.fit()
    # Steps 1..7 of the epoch: the corrector changes after steps 3 and 6 only (moved[i] is step i + 2).
    assert counter.moved[:6] == [False, True, False, False, True, False]


class CancelAtStep(Callback):
    def __init__(self, token: CancelToken, step: int) -> None:
        self.token, self.step = token, step

    def on_batch_end(self, state: TrainState, batch: Batch, output: StepOutput) -> None:
        if state.step == self.step:
            self.token.request("test cancel mid-epoch")


def test_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    options = {"gradient_steps": "2", "meta_lr": "1e-3", "trusted_batch_size": "8"}
    context, data, _ = constructed()
    whole, whole_method = trainer(context, data, options, epochs=2, checkpoint=tmp_path / "a.pt")
    uninterrupted = whole.fit()

    token = CancelToken()
    # Step 11: inside epoch 2 (8 steps an epoch), between two meta-net steps (K = 2).
    first, _ = trainer(context, data, options, epochs=2, checkpoint=tmp_path / "b.pt",
                       callbacks=[CancelAtStep(token, 11)], cancel=token)
    with pytest.raises(Cancelled):
        first.fit()
    again, resumed_method = trainer(context, data, options, epochs=2, checkpoint=tmp_path / "b.pt",
                                    callbacks=[CancelAtStep(CancelToken(), 11)])
    resumed = again.fit()
    for name, value in uninterrupted.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=0, atol=1e-6, msg=name)
    assert whole_method.corrector is not None and resumed_method.corrector is not None
    for name, value in whole_method.corrector.state_dict().items():
        torch.testing.assert_close(resumed_method.corrector.state_dict()[name], value, rtol=0, atol=1e-6, msg=name)
    assert resumed_method.steps == whole_method.steps == 16


def test_options_and_a_missing_trusted_set_are_clear_errors() -> None:
    context, _, _ = constructed()
    with pytest.raises(UserError, match="gradient_steps must be at least 1"):
        parse_options("mlc", {"gradient_steps": "0"})
    without = MethodContext(num_classes=3, train_ids=TRAIN, labels=context.labels, data=context.data)
    with pytest.raises(UserError, match="trusted set"):
        build_method("mlc", {}, without)
