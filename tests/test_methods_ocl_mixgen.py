"""Online confident learning and MixGen: the supervision matrix and the batch mixing do what the seed says."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cleanlab.count import compute_confident_joint
from torch import nn

from engine.cancel import CancelToken
from engine.errors import Cancelled, UserError
from engine.events import EventSink
from engine.methods import MethodContext, build_method
from engine.methods.mixgen import MixGen, mix_images
from engine.methods.ocl import OnlineConfidentLearning, SupervisionMatrix
from engine.training.confident_classes import off_diagonal_mask
from engine.training.config import TrainConfig
from engine.training.data import Batch, ImageBatches
from engine.training.hooks import Callback, Method, StepOutput
from engine.training.loop import Trainer, TrainState

CONFIG = TrainConfig(epochs=2, batch_size=16, image_size=16, seed=1)  # 80 samples: 5 steps per epoch


def small_data(flipped: int = 8) -> ImageBatches:
    """96 random 16x16 images of 3 classes told apart by brightness; the first ``flipped`` labels are wrong."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 96)
    images = (rng.integers(0, 60, (96, 16, 16, 3)) + labels[:, None, None, None] * 60).astype(np.uint8)
    labels[:flipped] = (labels[:flipped] + 1) % 3
    return ImageBatches(images, labels, torch.device("cpu"), channels_last=True)


def context(data: ImageBatches) -> MethodContext:
    return MethodContext(num_classes=3, train_ids=np.arange(80), labels=data.labels.numpy(), data=data, seed=1)


def trainer(method: Method, data: ImageBatches, checkpoint: Path | None = None,
            callbacks: list[Callback] | None = None, cancel: CancelToken | None = None) -> Trainer:
    return Trainer(CONFIG, data, np.arange(80), num_classes=3, events=EventSink(), cancel=cancel, method=method,
                   callbacks=callbacks or [], checkpoint_path=checkpoint)


class CancelAtStep(Callback):
    def __init__(self, token: CancelToken, step: int) -> None:
        self.token, self.step = token, step

    def on_batch_end(self, state: TrainState, batch: Batch, output: StepOutput) -> None:
        if state.step == self.step:
            self.token.request("test cancel mid-epoch")


@pytest.mark.parametrize("seed", range(6))
def test_suspected_errors_are_cleanlabs_off_diagonal_samples(seed: int) -> None:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(4, 0.7), size=40)
    labels = rng.integers(0, 4 if seed % 2 else 3, 40)  # even seeds: class 3 absent from the labels
    labels[:4] = np.arange(4) % (4 if seed % 2 else 3)
    _, expected = compute_confident_joint(labels, probs, return_indices_of_off_diagonals=True)
    mask = off_diagonal_mask(torch.from_numpy(probs), torch.from_numpy(labels))
    assert sorted(np.flatnonzero(mask.numpy()).tolist()) == sorted(np.asarray(expected).tolist())


def test_the_matrix_gathers_clean_predictions_by_predicted_class() -> None:
    supervision = SupervisionMatrix(3, smoothing=0.1)
    torch.testing.assert_close(supervision.matrix, torch.tensor([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05],
                                                                 [0.05, 0.05, 0.9]]))
    probs = torch.tensor([[0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.9, 0.05, 0.05]])
    labels = torch.tensor([0, 0, 1, 1, 1])  # the last: labelled 1, confidently 0 -> a suspected error
    assert off_diagonal_mask(probs, labels).tolist() == [False, False, False, False, True]
    supervision.accumulate(probs, labels)
    torch.testing.assert_close(supervision.count, torch.tensor([2.0, 2.0, 0.0]))
    torch.testing.assert_close(supervision.update[:, 0], probs[0] + probs[1])
    torch.testing.assert_close(supervision.update[:, 1], probs[2] + probs[3])
    before = supervision.matrix.clone()
    supervision.on_epoch_start(cast(TrainState, SimpleNamespace(epoch=1)))
    torch.testing.assert_close(supervision.matrix[:, 0], (probs[0] + probs[1]) / 2)
    torch.testing.assert_close(supervision.matrix[:, 1], (probs[2] + probs[3]) / 2)
    torch.testing.assert_close(supervision.matrix[:, 2], before[:, 2])  # never predicted: keeps its column
    assert not supervision.update.any() and not supervision.count.any()
    torch.testing.assert_close(supervision.targets(torch.tensor([1, 0])), supervision.matrix[:, [1, 0]].T)


class WatchMatrix(Callback):
    """Runs after the method's own callbacks: the matrix at each epoch start, the accumulator at each end."""

    def __init__(self, supervision: SupervisionMatrix) -> None:
        self.supervision = supervision
        self.at_start: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.at_end: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_epoch_start(self, state: TrainState) -> None:
        s = self.supervision
        self.at_start.append((s.matrix.clone(), s.update.clone(), s.count.clone()))

    def on_epoch_end(self, state: TrainState) -> None:
        self.at_end.append((self.supervision.update.clone(), self.supervision.count.clone()))


def test_ocl_resets_its_matrix_at_each_epoch_start() -> None:
    data = small_data()
    method = cast(OnlineConfidentLearning, build_method("ocl", {}, context(data)))
    run = trainer(method, data)
    watch = WatchMatrix(method.supervision)
    run.callbacks.append(watch)
    run.fit()
    (first, first_update, first_count), (second, second_update, second_count) = watch.at_start
    initial = SupervisionMatrix(3, 0.1).matrix
    torch.testing.assert_close(first, initial)  # nothing learned before the first epoch
    assert not first_update.any() and not first_count.any()
    assert not second_update.any() and not second_count.any()  # emptied at the start of epoch 2
    update, count = watch.at_end[0]
    assert 0 < count.sum() <= 80  # the first epoch's samples, less its suspected errors
    seen = count > 0
    torch.testing.assert_close(second[:, seen], update[:, seen] / count[seen])
    torch.testing.assert_close(second[:, ~seen], initial[:, ~seen])
    torch.testing.assert_close(second.sum(0), torch.ones(3))  # columns stay distributions


def test_ocl_loss_mixes_cross_entropy_and_the_soft_targets() -> None:
    data = small_data()
    method = cast(OnlineConfidentLearning, build_method("ocl", {"alpha": "0.3"}, context(data)))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3))
    state = cast(TrainState, SimpleNamespace(model=model))
    batch = next(data.batches(np.arange(16), 16))
    output = method.step(state, batch)
    log_probs = F.log_softmax(output.logits, 1)
    soft = -(method.supervision.matrix[:, batch.y].T * log_probs).sum(1).mean()
    expected = 0.3 * F.cross_entropy(output.logits, batch.y) + 0.7 * soft
    torch.testing.assert_close(output.loss, expected)
    with pytest.raises(UserError, match="alpha=2.0 is out of range"):
        build_method("ocl", {"alpha": "2"}, context(data))


def test_mixgen_mixes_the_first_share_of_the_batch_with_lambda_and_leaves_the_rest() -> None:
    x = torch.randn(16, 3, 4, 4)
    mixed, partners = mix_images(x, share=0.25, lam=0.5, generator=torch.Generator().manual_seed(0))
    assert sorted(partners.tolist()) == [0, 1, 2, 3]  # partners from the mixed share itself, as the seed
    torch.testing.assert_close(mixed[:4], 0.5 * x[:4] + 0.5 * x[partners])
    assert torch.equal(mixed[4:], x[4:])
    mixed, partners = mix_images(x, share=0.5, lam=0.7, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(mixed[:8], 0.7 * x[:8] + 0.3 * x[partners])
    assert torch.equal(mixed[8:], x[8:]) and len(partners) == 8
    assert torch.equal(mix_images(x, share=0.0, lam=0.5, generator=None)[0], x)


class Spy(nn.Module):
    """A linear model that keeps what it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * 4 * 4, 3)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.linear(x.flatten(1))


def test_mixgen_trains_on_the_mixed_images_with_their_own_labels() -> None:
    data = small_data()
    method = cast(MixGen, build_method("mixgen", {}, context(data)))
    model = Spy()
    state = cast(TrainState, SimpleNamespace(model=model, generator=torch.Generator().manual_seed(5)))
    x, y = torch.randn(16, 3, 4, 4), torch.randint(0, 3, (16,))
    output = method.step(state, Batch(x, y, torch.arange(16)))
    expected, _ = mix_images(x, 0.25, 0.5, torch.Generator().manual_seed(5))
    torch.testing.assert_close(model.seen[0], expected)
    torch.testing.assert_close(output.loss, F.cross_entropy(output.logits, y))  # labels are not mixed


@pytest.mark.parametrize("name", ["ocl", "mixgen"])
def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path: Path, name: str) -> None:
    data = small_data()
    uninterrupted_method = build_method(name, {}, context(data))
    uninterrupted = trainer(uninterrupted_method, data, tmp_path / "a.pt").fit()
    token = CancelToken()
    with pytest.raises(Cancelled):
        trainer(build_method(name, {}, context(data)), data, tmp_path / "b.pt", [CancelAtStep(token, 7)], token).fit()
    resumed_method = build_method(name, {}, context(data))
    resumed = trainer(resumed_method, data, tmp_path / "b.pt", [CancelAtStep(CancelToken(), 7)]).fit()
    for key, value in uninterrupted.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=1e-6, msg=key)
    if isinstance(uninterrupted_method, OnlineConfidentLearning):
        assert isinstance(resumed_method, OnlineConfidentLearning)
        for part in ("matrix", "update", "count"):
            torch.testing.assert_close(getattr(resumed_method.supervision, part),
                                       getattr(uninterrupted_method.supervision, part), rtol=0, atol=1e-6)
