"""SLN, SLN+MO, SLN+MO+LC: the noise, the momentum model and the label correction do what the seed says."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.cancel import CancelToken
from engine.errors import Cancelled, UserError
from engine.events import EventSink
from engine.methods import MethodContext, build_method
from engine.methods.sln import MomentumModel, SLNMomentum, SLNMomentumCorrection, StochasticLabelNoise
from engine.training.config import TrainConfig
from engine.training.data import Batch, ImageBatches
from engine.training.hooks import Callback, Method, StepOutput
from engine.training.loop import Trainer, TrainState

CONFIG = TrainConfig(epochs=3, batch_size=16, image_size=16, seed=1)  # 80 samples: 5 steps per epoch


def small_data(flipped: int = 0) -> ImageBatches:
    """96 random 16x16 images of 3 classes told apart by brightness; the first ``flipped`` labels are wrong."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 96)
    images = (rng.integers(0, 60, (96, 16, 16, 3)) + labels[:, None, None, None] * 60).astype(np.uint8)
    labels[:flipped] = (labels[:flipped] + 1) % 3
    return ImageBatches(images, labels, torch.device("cpu"), channels_last=True)


def context(data: ImageBatches, image_kind: str = "photo", num_classes: int = 3) -> MethodContext:
    return MethodContext(num_classes=num_classes, train_ids=np.arange(80), labels=data.labels.numpy(),
                         data=data, seed=1, image_kind=image_kind)


def trainer(method: Method, data: ImageBatches, checkpoint: Path | None = None, callbacks: list[Callback] | None = None,
            cancel: CancelToken | None = None, config: TrainConfig = CONFIG) -> Trainer:
    return Trainer(config, data, np.arange(80), num_classes=3, events=EventSink(), cancel=cancel, method=method,
                   callbacks=callbacks or [], checkpoint_path=checkpoint)


class CancelAtStep(Callback):
    def __init__(self, token: CancelToken, step: int) -> None:
        self.token, self.step = token, step

    def on_batch_end(self, state: TrainState, batch: Batch, output: StepOutput) -> None:
        if state.step == self.step:
            self.token.request("test cancel mid-epoch")


def test_sln_targets_are_one_hot_plus_gaussian_noise_of_sigma() -> None:
    data = small_data()
    method = build_method("sln", {"sigma": "0.7"}, context(data, num_classes=5))
    assert isinstance(method, StochasticLabelNoise)
    labels = torch.randint(0, 5, (4000,), generator=torch.Generator().manual_seed(0))
    state = cast(TrainState, SimpleNamespace(num_classes=5, generator=torch.Generator().manual_seed(1)))
    batch = Batch(torch.zeros(4000, 3, 1, 1), labels, torch.arange(4000))
    noise = method.targets(state, batch) - F.one_hot(labels, 5).float()
    assert noise.std().item() == pytest.approx(0.7, abs=0.01)
    assert noise.mean().item() == pytest.approx(0.0, abs=0.01)
    per_class_std = noise.std(dim=0)
    assert torch.allclose(per_class_std, torch.full((5,), 0.7), atol=0.02)  # every class, not only on average
    # Gaussian: about 68% within one sigma, 95% within two.
    assert (noise.abs() < 0.7).float().mean().item() == pytest.approx(0.683, abs=0.01)
    assert (noise.abs() < 1.4).float().mean().item() == pytest.approx(0.954, abs=0.01)
    # Fresh noise every step: the next draw differs.
    assert not torch.equal(method.targets(state, batch) - F.one_hot(labels, 5).float(), noise)


def test_sigma_defaults_follow_the_seed_per_kind_of_data() -> None:
    data = small_data()

    def default(kind: str, num_classes: int = 3) -> float:
        return cast(StochasticLabelNoise, build_method("sln", {}, context(data, kind, num_classes))).sigma

    assert default("digits") == 1.0  # the seed's CIFAR-10 with symmetric noise
    assert default("photo") == 0.5  # its Animal-10N: real-world noise
    assert default("photo", 100) == 0.2  # its CIFAR-100
    assert cast(StochasticLabelNoise, build_method("sln", {"sigma": "0.3"}, context(data, "digits"))).sigma == 0.3
    with pytest.raises(UserError, match="sigma=-1.0 is out of range"):
        build_method("sln", {"sigma": "-1"}, context(data))


class RecordWeights(Callback):
    """The model's state after every step (it runs before the method's own callbacks)."""

    def __init__(self) -> None:
        self.after_step: list[dict[str, torch.Tensor]] = []

    def on_fit_start(self, state: TrainState) -> None:
        self.after_step.append({k: v.clone() for k, v in state.model.state_dict().items()})

    def on_batch_end(self, state: TrainState, batch: Batch, output: StepOutput) -> None:
        self.after_step.append({k: v.clone() for k, v in state.model.state_dict().items()})


def test_the_momentum_model_is_the_running_average_of_the_weights() -> None:
    data = small_data()
    method = cast(SLNMomentum, build_method("sln_mo", {"sigma": "0.5", "momentum_decay": "0.999"}, context(data)))
    recorder, token = RecordWeights(), CancelToken()
    with pytest.raises(Cancelled):
        trainer(method, data, callbacks=[recorder, CancelAtStep(token, 2)], cancel=token).fit()
    start, first, second = recorder.after_step
    average = method.momentum_model.model
    assert average is not None
    decay_1, decay_2 = min(0.999, 1 / 10), min(0.999, 2 / 11)  # warmed up: the first steps weigh more
    for key, value in average.state_dict().items():
        if value.is_floating_point():
            by_hand = decay_2 * (decay_1 * start[key] + (1 - decay_1) * first[key]) + (1 - decay_2) * second[key]
            torch.testing.assert_close(value, by_hand, rtol=1e-5, atol=1e-6, msg=key)
        else:
            assert torch.equal(value, second[key]), key  # counts are copied, not averaged
    assert any(not torch.allclose(value, second[key]) for key, value in average.state_dict().items()
               if value.is_floating_point())  # an average, not a copy of the latest weights
    # After many steps the decay is the chosen momentum.
    late = MomentumModel(0.999)
    late.updates = 100_000
    assert late.decay() == 0.999


def test_the_run_ends_with_the_momentum_model() -> None:
    data = small_data()
    method = cast(SLNMomentum, build_method("sln_mo", {}, context(data)))
    recorder = RecordWeights()
    state = trainer(method, data, callbacks=[recorder], config=TrainConfig(epochs=1, batch_size=16, image_size=16,
                                                                           seed=1)).fit()
    average = method.momentum_model.model
    assert average is not None
    for key, value in state.model.state_dict().items():
        assert torch.equal(value, average.state_dict()[key]), key
    last_trained = recorder.after_step[-1]
    assert any(not torch.equal(value, last_trained[key]) for key, value in state.model.state_dict().items()
               if value.is_floating_point())


class CheckCorrection(Callback):
    """Runs after the method's callbacks: checks each epoch's targets against the seed's formula."""

    def __init__(self, method: SLNMomentumCorrection) -> None:
        self.method = method
        self.corrected_at: list[int] = []
        self.batch_targets_checked = 0

    def on_epoch_start(self, state: TrainState) -> None:
        targets = self.method.corrected_targets
        if state.epoch < 2:
            assert targets is None, f"labels corrected before the chosen epoch (at {state.epoch})"
            return
        assert targets is not None
        self.corrected_at.append(state.epoch)
        logits = self.method.momentum_model.predict_logits(state, state.train_ids)
        given = F.one_hot(state.data.labels[:80], 3).float()
        losses = F.cross_entropy(logits, state.data.labels[:80], reduction="none")
        weight = ((losses - losses.min()) / (losses.max() - losses.min()))[:, None]
        expected = weight * given + (1 - weight) * F.one_hot(logits.argmax(1), 3).float()
        torch.testing.assert_close(targets, expected, rtol=1e-5, atol=1e-6)

    def on_batch_end(self, state: TrainState, batch: Batch, output: StepOutput) -> None:
        if self.method.corrected_targets is not None:
            # No more label noise once corrected (calling targets() draws nothing then).
            assert torch.equal(self.method.targets(state, batch), self.method.corrected_targets[batch.ids])
            self.batch_targets_checked += 1


def test_label_correction_replaces_labels_with_the_momentum_models_predictions_at_the_chosen_epoch() -> None:
    data = small_data(flipped=12)
    # float32 whatever the CPU (bf16 autocast only where AMX is), and lr 0.05: by epoch 2 the momentum model
    # has learned the brightness classes on any machine, so it disagrees with some of the 12 flipped labels.
    config = TrainConfig(epochs=4, batch_size=16, image_size=16, seed=1, precision="fp32", lr=0.05)
    method = cast(SLNMomentumCorrection, build_method("sln_mo_lc", {"label_correction_epoch": "2"}, context(data)))
    checker = CheckCorrection(method)
    run = trainer(method, data, config=config)
    run.callbacks.append(checker)  # after the correction, which is the method's own callback
    run.fit()
    assert checker.corrected_at == [2, 3] and checker.batch_targets_checked == 10
    corrected = method.corrected_targets
    assert corrected is not None
    assert (corrected.argmax(1) != data.labels[:80]).any()  # some labels did change


def test_label_correction_epoch_defaults_to_five_sixths_and_must_come_before_the_end() -> None:
    data = small_data()
    method = cast(SLNMomentumCorrection, build_method("sln_mo_lc", {}, context(data)))
    run = trainer(method, data, config=TrainConfig(epochs=12, batch_size=16, image_size=16, seed=1))
    method.setup(run.state)
    assert method.correction_epoch == 10  # the seed's 250 of 300
    method.setup(trainer(method, data, config=TrainConfig(epochs=2, batch_size=16, image_size=16, seed=1)).state)
    assert method.correction_epoch == 1  # a short run still gets its correction
    late = build_method("sln_mo_lc", {"label_correction_epoch": "3"}, context(data))
    with pytest.raises(UserError, match="label_correction_epoch=3 is not below --epochs 3") as caught:
        late.setup(trainer(late, data).state)
    assert "from 1 to 2" in caught.value.hint


RESUME_CONFIG = TrainConfig(epochs=2, batch_size=16, image_size=16, seed=1)


@pytest.mark.parametrize(("name", "options", "cancel_at"), [
    ("sln", {"sigma": "0.5"}, 7),
    ("sln_mo", {"sigma": "0.5"}, 7),
    ("sln_mo_lc", {"sigma": "0.5", "label_correction_epoch": "1"}, 7),  # stopped after the correction
    ("sln_mo_lc", {"sigma": "0.5", "label_correction_epoch": "1"}, 3),  # stopped before it
])
def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path: Path, name: str, options: dict[str, str],
                                                   cancel_at: int) -> None:
    data = small_data(flipped=8)
    uninterrupted_method = build_method(name, options, context(data))
    uninterrupted = trainer(uninterrupted_method, data, tmp_path / "a.pt", config=RESUME_CONFIG).fit()
    token = CancelToken()
    with pytest.raises(Cancelled):
        trainer(build_method(name, options, context(data)), data, tmp_path / "b.pt",
                [CancelAtStep(token, cancel_at)], token, RESUME_CONFIG).fit()
    resumed_method = build_method(name, options, context(data))
    resumed = trainer(resumed_method, data, tmp_path / "b.pt", [CancelAtStep(CancelToken(), cancel_at)],
                      config=RESUME_CONFIG).fit()
    for key, value in uninterrupted.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=1e-6, msg=key)
    if isinstance(uninterrupted_method, SLNMomentumCorrection):
        assert isinstance(resumed_method, SLNMomentumCorrection)
        assert uninterrupted_method.corrected_targets is not None and resumed_method.corrected_targets is not None
        torch.testing.assert_close(resumed_method.corrected_targets, uninterrupted_method.corrected_targets,
                                   rtol=0, atol=1e-6)
