"""The meta-learning methods of the reweight/mixup-labels seed: l2rw, meta_mixup, alternating, upper_bound.

What each does is checked on constructed cases with a linear model (whose gradients can be reasoned
about); that each resumes exactly is checked with the real trainer on tiny generated images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from engine.cancel import CancelToken
from engine.errors import Cancelled, UserError
from engine.events import EventSink
from engine.methods import MethodContext, build_method, parse_options
from engine.methods.meta import example_gradients
from engine.training.config import TrainConfig
from engine.training.data import Batch, ImageBatches
from engine.training.hooks import Callback, Method, StepOutput
from engine.training.loop import Trainer, TrainState
from tests.first_order import FirstOrderLayer

CPU = torch.device("cpu")
SIZE = 4  # pixels: the linear cases need no more


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    """Tiny models gain nothing from threads, and on a shared 2-core machine extra threads thrash."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pattern(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3)).astype(np.uint8)


def linear_state(images: np.ndarray, labels: np.ndarray, num_classes: int, lr: float = 0.5,
                 weight: torch.Tensor | None = None) -> TrainState:
    """A TrainState around a linear model (zero weights unless given) and plain SGD."""
    data = ImageBatches(images, labels, CPU)
    linear = nn.Linear(3 * SIZE * SIZE, num_classes)
    with torch.no_grad():
        linear.weight.copy_(weight if weight is not None else torch.zeros_like(linear.weight))
        linear.bias.zero_()
    model = nn.Sequential(nn.Flatten(), linear)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    return TrainState(config=TrainConfig(epochs=1, batch_size=2, image_size=8, seed=0), model=model,
                      optimizer=optimizer, scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
                      device=CPU, generator=torch.Generator().manual_seed(0), num_classes=num_classes,
                      train_ids=np.arange(len(labels) - 1), data=data)


def first_batch(state: TrainState, ids: list[int]) -> Batch:
    return next(iter(state.data.batches(np.array(ids), len(ids))))


def context_of(state: TrainState, labels: np.ndarray, trusted: dict[int, int] | None, **extra: Any) -> MethodContext:
    return MethodContext(num_classes=state.num_classes, train_ids=state.train_ids, labels=labels, data=state.data,
                         trusted_ids=None if trusted is None else np.array(list(trusted)),
                         trusted_labels=None if trusted is None else np.array(list(trusted.values())), **extra)


def contradicting_case(num_classes: int = 2, lr: float = 0.5,
                       weight: torch.Tensor | None = None) -> tuple[TrainState, np.ndarray, dict[int, int]]:
    """Samples 0 and 1 are the same image labelled 0 and 1; sample 2, that image again, is trusted as class 0."""
    image = pattern(1)
    images = np.stack([image, image, image])
    labels = np.array([0, 1, 0])
    return linear_state(images, labels, num_classes, lr, weight), labels, {2: 0}


# ------------------------------------------------------------------ l2rw
def test_l2rw_clamp_gives_zero_weight_to_a_sample_opposing_the_trusted_batch() -> None:
    state, labels, trusted = contradicting_case()
    method = build_method("l2rw", {"weighting": "clamp", "max_grad_norm": "none"}, context_of(state, labels, trusted))
    image = first_batch(state, [0]).x
    output = method.optimise(state, first_batch(state, [0, 1]))
    gradient = output.extras["meta_gradient"]
    assert gradient[0] < 0 < gradient[1]  # sample 0 helps the trusted loss, sample 1 hurts it
    torch.testing.assert_close(output.extras["weights"], torch.tensor([1.0, 0.0]))
    with torch.no_grad():
        logits = state.model(image)[0]
    assert logits[0] > logits[1]  # the step learnt the trusted class, not the contradicting label


def test_l2rw_sigmoid_weights_favour_the_agreeing_sample_and_sum_to_one() -> None:
    state, labels, trusted = contradicting_case()
    method = build_method("l2rw", {}, context_of(state, labels, trusted))
    weights = method.optimise(state, first_batch(state, [0, 1])).extras["weights"]
    assert weights[0] > 0.5 > weights[1] > 0
    assert float(weights.sum()) == pytest.approx(1.0)


def test_l2rw_without_a_trusted_set_or_with_bad_options_is_a_clear_error() -> None:
    state, labels, _ = contradicting_case()
    with pytest.raises(UserError, match="learns from a trusted set, and there is none"):
        build_method("l2rw", {}, context_of(state, labels, None))
    with pytest.raises(UserError, match="weighting='softmax' is not one of clamp, sigmoid"):
        parse_options("l2rw", {"weighting": "softmax"})
    with pytest.raises(UserError, match="max_grad_norm=0.0 must be above 0"):
        parse_options("meta_mixup", {"max_grad_norm": "0"})
    with pytest.raises(UserError, match="variant='medium'"):
        parse_options("alternating", {"variant": "medium"})


def higher_look_ahead(state: TrainState, x: torch.Tensor, targets: torch.Tensor,
                      trusted_x: torch.Tensor, trusted_y: torch.Tensor) -> torch.Tensor:
    """The look-ahead as the seed takes it with ``higher``: a differentiable step, a second-order backward."""
    import higher

    with higher.innerloop_ctx(state.model, state.optimizer, copy_initial_weights=True) as (fmodel, diffopt):
        cost = torch.nn.functional.cross_entropy(fmodel(x).float(), targets, reduction="none")
        eps = torch.zeros_like(cost, requires_grad=True)
        diffopt.step(torch.sum(cost * eps))
        trusted_loss = torch.nn.functional.cross_entropy(fmodel(trusted_x).float(), trusted_y)
        (gradient,) = torch.autograd.grad(trusted_loss, eps)
    return gradient.detach()


def conv_state(seed: int = 0) -> tuple[TrainState, MethodContext]:
    """The real small_cnn (BatchNorm, pooling) at 16 px, the trainer's SGD (momentum, Nesterov, weight decay)."""
    images, labels, truth = tiny_images()
    data = ImageBatches(images, labels, CPU, channels_last=True)
    trainer = Trainer(TrainConfig(epochs=2, batch_size=16, image_size=16, seed=seed), data, np.arange(80),
                      num_classes=3, events=EventSink(), augment="flip-crop")
    context = MethodContext(num_classes=3, train_ids=np.arange(80), labels=labels, data=data, seed=seed,
                            trusted_ids=np.arange(80, 96), trusted_labels=truth[80:96])
    return trainer.state, context


def test_the_look_ahead_equals_higher_s_on_a_batchnorm_model_with_momentum() -> None:
    state, context = conv_state()
    method = build_method("l2rw", {}, context)
    buffers = {name: buffer.clone() for name, buffer in state.model.named_buffers()}
    for step in range(3):  # the first step (no momentum buffer yet) and two after it
        batch = next(iter(state.data.batches(np.arange(16 * step, 16 * step + 16), 16)))
        trusted_x, trusted_y = method.trusted.next(state, 16)  # type: ignore[attr-defined]
        expected = higher_look_ahead(state, batch.x, batch.y, trusted_x, trusted_y)
        for name, buffer in state.model.named_buffers():  # the look-ahead leaves BatchNorm statistics alone
            torch.testing.assert_close(buffer, buffers[name], rtol=0, atol=0)
        gradient = example_gradients(state, batch.x, batch.y, trusted_x, trusted_y)
        torch.testing.assert_close(gradient, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
        assert float(expected.abs().max()) > 1e-3  # not a vacuous comparison of zeros
        method.optimise(state, batch)
        state.scheduler.step()
        buffers = {name: buffer.clone() for name, buffer in state.model.named_buffers()}


def test_an_l2rw_step_gives_the_same_weights_as_with_higher_s_look_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.methods.l2rw as l2rw

    weights = []
    for look_ahead in (example_gradients, higher_look_ahead):
        monkeypatch.setattr(l2rw, "example_gradients", look_ahead)
        state, context = conv_state(seed=3)
        method = build_method("l2rw", {}, context)
        for step in range(3):
            method.optimise(state, next(iter(state.data.batches(np.arange(16 * step, 16 * step + 16), 16))))
            state.scheduler.step()
        weights.append(state.model.state_dict())
    for name, value in weights[1].items():
        torch.testing.assert_close(weights[0][name], value, rtol=1e-4, atol=1e-6, msg=name)


def test_the_look_ahead_takes_no_second_order_backward() -> None:
    """A second-order backward (BatchNorm's took 60% of a step) is what made the look-ahead slow."""
    state, labels, trusted = contradicting_case()
    state.model = nn.Sequential(*state.model.children(), FirstOrderLayer())
    state.optimizer = torch.optim.SGD(state.model.parameters(), lr=0.5)
    method = build_method("l2rw", {"weighting": "clamp", "max_grad_norm": "none"}, context_of(state, labels, trusted))
    gradient = method.optimise(state, first_batch(state, [0, 1])).extras["meta_gradient"]
    assert gradient[0] < 0 < gradient[1]


# ------------------------------------------------------------ meta_mixup
def predicting_class_2() -> torch.Tensor:
    """Linear weights under which the contradicting case's image is predicted as class 2, firmly."""
    direction = torch.as_tensor(pattern(1), dtype=torch.float32).permute(2, 0, 1).flatten()
    direction = (direction - direction.mean()) / direction.norm()
    weight = torch.zeros(3, direction.numel())
    weight[2] = 0.5 * direction
    return weight


def test_soft_label_memory_moves_toward_the_models_prediction() -> None:
    state, labels, _ = contradicting_case(num_classes=3, lr=0.01, weight=predicting_class_2())
    method = build_method("meta_mixup", {"variant": "soft"}, context_of(state, labels, {2: 2}))
    assert method.memory is not None  # type: ignore[attr-defined]
    batch = first_batch(state, [0])
    distances = []
    for _ in range(3):
        with torch.no_grad():
            prediction = torch.softmax(state.model(batch.x), 1)[0]
        assert int(prediction.argmax()) == 2
        before = method.memory.get(batch.ids)[0].clone()  # type: ignore[attr-defined]
        output = method.optimise(state, batch)
        beta = float(output.extras["beta"][0])
        after = method.memory.get(batch.ids)[0]  # type: ignore[attr-defined]
        # The memory keeps beta of itself and takes 1 - beta of the prediction ...
        torch.testing.assert_close(after, beta * before + (1 - beta) * prediction)
        # ... and beta < 1/2: the label (0) contradicts the trusted batch (2), so it keeps less of it.
        assert beta < 0.5
        distances.append(float((after - prediction).abs().sum()))
    assert distances[0] < 2.0 and distances[2] < distances[1] < distances[0]
    assert float(method.memory.get(batch.ids)[0, 2]) > 0.5  # type: ignore[attr-defined]
    untouched = method.memory.get(torch.tensor([1]))[0]  # type: ignore[attr-defined]
    torch.testing.assert_close(untouched, torch.tensor([0.0, 1.0, 0.0]))  # only trained samples move


def test_hard_mixup_mixes_the_label_with_the_predicted_class() -> None:
    state, labels, _ = contradicting_case(num_classes=3, lr=0.01, weight=predicting_class_2())
    method = build_method("meta_mixup", {}, context_of(state, labels, {2: 2}))
    output = method.optimise(state, first_batch(state, [0, 1]))
    beta = output.extras["beta"]
    expected = torch.stack([torch.tensor([beta[0], 0.0, 1 - beta[0]]), torch.tensor([0.0, beta[1], 1 - beta[1]])])
    torch.testing.assert_close(output.extras["targets"], expected)
    torch.testing.assert_close(output.extras["weights"], torch.tensor([0.5, 0.5]))


# ----------------------------------------------------------- alternating
def test_alternating_reweights_on_even_steps_and_mixes_labels_on_odd_steps() -> None:
    state, labels, trusted = contradicting_case()
    method = build_method("alternating", {"weighting": "clamp"}, context_of(state, labels, trusted))
    batch = first_batch(state, [0, 1])
    reweight = method.optimise(state, batch)
    assert "beta" not in reweight.extras
    torch.testing.assert_close(reweight.extras["weights"], torch.tensor([1.0, 0.0]))
    state.step += 1
    mixup = method.optimise(state, batch)
    assert "beta" in mixup.extras and mixup.extras["targets"].shape == (2, 2)
    torch.testing.assert_close(mixup.extras["weights"], torch.tensor([0.5, 0.5]))


# ----------------------------------------------------------- upper_bound
def test_upper_bound_refuses_without_the_truth() -> None:
    state, labels, _ = contradicting_case()
    with pytest.raises(UserError, match="does not know them"):
        build_method("upper_bound", {}, context_of(state, labels, None))
    partly_known = np.array([0, -2, 0])  # sample 1 (trained on) has unknown truth
    with pytest.raises(UserError, match="1 of 2 training samples have no known true label"):
        build_method("upper_bound", {}, context_of(state, labels, None, true_labels=partly_known))


def test_upper_bound_trains_on_the_truth_and_drops_open_set_samples() -> None:
    image = pattern(1)
    state = linear_state(np.stack([image, image, pattern(2), image]), np.array([1, 1, 0, 0]), 2)
    truth = np.array([0, 0, -1, 0])  # the given label 1 is wrong for samples 0 and 1; sample 2 is in no class
    method = build_method("upper_bound", {"max_grad_norm": "none"},
                          context_of(state, np.array([1, 1, 0, 0]), None, true_labels=truth))
    output = method.optimise(state, first_batch(state, [0, 1, 2]))
    torch.testing.assert_close(output.extras["targets"], torch.tensor([0, 0, 0]))
    torch.testing.assert_close(output.extras["weights"], torch.tensor([0.5, 0.5, 0.0]))
    with torch.no_grad():
        logits = state.model(first_batch(state, [0]).x)[0]
    assert logits[0] > logits[1]  # learnt the truth, not the given label


# ---------------------------------------------------------------- resume
class CancelAtStep(Callback):
    def __init__(self, token: CancelToken, step: int) -> None:
        self.token, self.at = token, step

    def on_batch_end(self, state: TrainState, batch: Batch, output: StepOutput) -> None:
        if state.step == self.at:
            self.token.request("test cancel mid-epoch")


def tiny_images() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """96 random 16x16 images of 3 classes (class sets the brightness), a fifth of the labels wrong; and the truth."""
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 96)
    images = (rng.integers(0, 60, (96, 16, 16, 3)) + truth[:, None, None, None] * 60).astype(np.uint8)
    labels = truth.copy()
    labels[:16] = (labels[:16] + 1) % 3
    return images, labels, truth


@pytest.mark.parametrize(("name", "options"), [
    ("l2rw", {}), ("meta_mixup", {}), ("meta_mixup", {"variant": "soft"}),
    ("alternating", {"variant": "soft"}), ("upper_bound", {}),
])
def test_resume_equals_an_uninterrupted_run(tmp_path: Path, name: str, options: dict[str, str]) -> None:
    images, labels, truth = tiny_images()
    data = ImageBatches(images, labels, CPU, channels_last=True)
    config = TrainConfig(epochs=2, batch_size=16, image_size=16, seed=1)
    train_ids, trusted_ids = np.arange(80), np.arange(80, 96)

    def method() -> Method:
        context = MethodContext(num_classes=3, train_ids=train_ids, labels=labels, data=data, seed=1,
                                trusted_ids=trusted_ids, trusted_labels=truth[trusted_ids], true_labels=truth)
        return build_method(name, options, context)

    def trainer(checkpoint: Path, built: Method, cancel: CancelToken | None = None) -> Trainer:
        return Trainer(config, data, train_ids, num_classes=3, events=EventSink(), cancel=cancel, method=built,
                       callbacks=[CancelAtStep(cancel or CancelToken(), 7)], checkpoint_path=checkpoint,
                       augment="flip-crop")

    uninterrupted_method = method()
    uninterrupted = trainer(tmp_path / "a.pt", uninterrupted_method).fit()
    token = CancelToken()
    with pytest.raises(Cancelled):
        trainer(tmp_path / "b.pt", method(), token).fit()  # epoch 2, batch 3 of 5
    assert torch.load(tmp_path / "b.pt", weights_only=True)["position"]["next_batch"] == 2
    resumed_method = method()
    resumed = trainer(tmp_path / "b.pt", resumed_method).fit()
    for key, value in uninterrupted.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=1e-6, msg=key)
    memory = getattr(uninterrupted_method, "memory", None)
    if memory is not None:
        torch.testing.assert_close(resumed_method.memory.table, memory.table)  # type: ignore[attr-defined]
        assert not torch.equal(memory.table, torch.nn.functional.one_hot(torch.as_tensor(labels), 3).float())
    assert [epoch["loss"] for epoch in resumed.history] == pytest.approx(
        [epoch["loss"] for epoch in uninterrupted.history], rel=1e-5)


def test_the_look_ahead_stays_float32_inside_an_autocast_region() -> None:
    state, context = conv_state()
    method = build_method("l2rw", {}, context)
    batch = next(iter(state.data.batches(np.arange(16), 16)))
    trusted_x, trusted_y = method.trusted.next(state, 16)  # type: ignore[attr-defined]
    expected = example_gradients(state, batch.x, batch.y, trusted_x, trusted_y)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        inside = example_gradients(state, batch.x, batch.y, trusted_x, trusted_y)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, expected, rtol=1e-5, atol=1e-7 * float(expected.abs().max()))
