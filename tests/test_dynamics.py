"""Training dynamics: the recorder, the AUM and cartography detectors, the dynamics audit, decisions in audits."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
import torch

from engine.cancel import CancelToken
from engine.detectors import DETECTORS, DetectorInputs, parse_detectors, required_evidence
from engine.detectors.aum import detect as aum_detect
from engine.detectors.cartography import detect as cartography_detect
from engine.errors import Cancelled, UserError
from engine.events import EventSink, Metric
from engine.jobs import run_job
from engine.store import Project
from engine.training.config import TrainConfig
from engine.training.data import Batch, ImageBatches, batch_chunks
from engine.training.hooks import Callback, StepOutput
from engine.training.loop import Trainer, TrainState
from engine.training.recorders import DynamicsRecorder, load_dynamics
from engine.workflows.audit import AUDITED_IDS_FILE, audit_body, audit_spec, run_audit
from engine.workflows.evaluate import evaluate_run


def fake_state(epoch: int) -> TrainState:
    return cast(TrainState, SimpleNamespace(epoch=epoch))


def feed(recorder: DynamicsRecorder, epoch: int, ids: list[int], labels: dict[int, int],
         logits_of: dict[int, list[float]]) -> None:
    """One epoch's batches (of the ids in the order given) through the recorder's hooks."""
    state = fake_state(epoch)
    recorder.on_epoch_start(state)
    for start in range(0, len(ids), 2):
        chunk = ids[start:start + 2]
        logits = torch.tensor([logits_of[i] for i in chunk], dtype=torch.float32)
        batch = Batch(torch.zeros(len(chunk), 3, 4, 4), torch.tensor([labels[i] for i in chunk]), torch.tensor(chunk))
        recorder.on_batch_end(state, batch, StepOutput(torch.zeros(()), logits))
    recorder.on_epoch_end(fake_state(epoch + 1))


def test_recorder_keeps_each_samples_own_row_whatever_the_batch_order(tmp_path: Path) -> None:
    ids = [7, 2, 11, 4, 9]
    labels = {7: 0, 2: 1, 11: 2, 4: 0, 9: 1}
    recorder = DynamicsRecorder(tmp_path / "dyn", np.array(ids), np.array([labels[i] for i in ids]), 3, 2)
    recorder.on_fit_start(fake_state(0))
    rng = np.random.default_rng(0)
    logits_by_epoch = [{i: [float(i), float(epoch), float(-i)] for i in ids} for epoch in range(2)]
    for epoch in range(2):
        feed(recorder, epoch, [int(i) for i in rng.permutation(ids)], labels, logits_by_epoch[epoch])
    recorder.on_fit_end(fake_state(2))
    dynamics = load_dynamics(tmp_path / "dyn")
    assert dynamics.ids.tolist() == sorted(ids)
    for row, sample in enumerate(dynamics.ids.tolist()):
        for epoch in range(2):
            logits = np.array(logits_by_epoch[epoch][sample])
            probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
            given = labels[sample]
            others = np.delete(logits, given)
            assert float(dynamics.margin[row, epoch]) == pytest.approx(logits[given] - others.max(), abs=2e-2)
            assert float(dynamics.td[row, 0, epoch]) == pytest.approx(probs[given], abs=1e-3)
        assert dynamics.td_classes[row, 0] == labels[sample]
    assert not (tmp_path / "dyn" / "probs.npy").exists()  # td holds it now


def test_recorder_refuses_an_epoch_that_missed_or_repeated_a_sample(tmp_path: Path) -> None:
    recorder = DynamicsRecorder(tmp_path / "dyn", np.arange(4), np.zeros(4, dtype=np.int64), 2, 1)
    recorder.on_fit_start(fake_state(0))
    with pytest.raises(RuntimeError, match="2 training samples other than once"):
        feed(recorder, 0, [0, 1, 1, 3], dict.fromkeys(range(4), 0), {i: [0.0, 1.0] for i in range(4)})


def test_td_orders_other_classes_by_their_mean_probability_over_epochs(tmp_path: Path) -> None:
    # Class 1 leads at epoch 0 only; class 2 leads on average: td column 1 is class 2, as the seed ranks them.
    recorder = DynamicsRecorder(tmp_path / "dyn", np.array([0, 1]), np.array([0, 0]), 4, 3, td_width=3)
    recorder.on_fit_start(fake_state(0))
    sequence = [[0.0, 3.0, 2.0, -5.0], [0.0, 0.0, 2.0, -5.0], [0.0, 0.0, 2.0, -5.0]]
    for epoch, logits in enumerate(sequence):
        feed(recorder, epoch, [0, 1], {0: 0, 1: 0}, {0: logits, 1: logits})
    recorder.on_fit_end(fake_state(3))
    dynamics = load_dynamics(tmp_path / "dyn")
    assert dynamics.td.shape == (2, 3, 3)
    assert dynamics.td_classes[0].tolist() == [0, 2, 1]


def test_the_recorder_hands_over_its_evidence_for_every_sample_the_others_from_the_final_model(
        tmp_path: Path) -> None:
    # Samples 0 and 2 are trained on (2 epochs); 1 and 3 are not: their evidence is the final model's prediction.
    recorder = DynamicsRecorder(tmp_path / "dyn", np.array([2, 0]), np.array([1, 0]), 3, 2)
    recorder.on_fit_start(fake_state(0))
    for epoch in range(2):
        feed(recorder, epoch, [0, 2], {0: 0, 2: 1}, {0: [2.0, 0.0, 0.0], 2: [0.0, 1.0, float(epoch)]})
    recorder.on_fit_end(fake_state(2))
    final_probs = np.zeros((4, 3), dtype=np.float32)
    final_probs[1] = [0.2, 0.5, 0.3]
    final_probs[3] = [0.6, 0.3, 0.1]
    labels = np.array([0, 2, 1, 1])
    arrays = recorder.evidence_arrays(final_probs, labels)
    assert list(arrays) == ["margin", "given_prob", "mean_probs", "early_probs", "td"]
    recorded = load_dynamics(tmp_path / "dyn")
    np.testing.assert_array_equal(arrays["margin"][[0, 2]], recorded.margin)
    np.testing.assert_array_equal(arrays["mean_probs"][[0, 2]], recorded.mean_probs)
    # Sample 1 (label 2): given 0.3, strongest other 0.5, margin log(0.3 / 0.5), the same every epoch.
    np.testing.assert_allclose(arrays["margin"][1], [np.log(0.3 / 0.5)] * 2, rtol=1e-5)
    np.testing.assert_allclose(arrays["given_prob"][3], [0.3, 0.3], rtol=1e-6)
    np.testing.assert_array_equal(arrays["mean_probs"][[1, 3]], final_probs[[1, 3]])
    np.testing.assert_array_equal(arrays["early_probs"][[1, 3]], final_probs[[1, 3]])
    assert arrays["td"].shape == (4, 3, 2)
    np.testing.assert_allclose(arrays["td"][3, :, 1], [0.3, 0.6, 0.1], atol=1e-3)  # label 1 first, then by probability


def test_the_confident_class_recorder_gives_a_sample_not_trained_on_its_final_prediction(tmp_path: Path) -> None:
    from engine.training.recorders import ConfidentClassRecorder

    recorder = ConfidentClassRecorder(tmp_path / "dyn", np.array([0, 2]), np.array([0, 1]), 2, 1)
    recorder.on_fit_start(fake_state(0))
    batch = Batch(torch.zeros(2, 3, 2, 2), torch.tensor([0, 1]), torch.tensor([0, 2]))
    recorder.on_batch_end(fake_state(0), batch, StepOutput(torch.zeros(()), torch.tensor([[2.0, 0.0], [0.0, 2.0]])))
    recorder.on_epoch_end(fake_state(1))
    final_probs = np.array([[0.0, 0.0], [0.1, 0.9], [0.0, 0.0]], dtype=np.float32)
    # Sample 1 is labelled 0, but only the prediction decides: class 1.
    arrays = recorder.evidence_arrays(final_probs, np.array([0, 0, 1]))
    assert arrays["confident_class"].tolist() == [[0], [1], [1]]


def test_a_trailing_batch_of_one_joins_the_batch_before_it() -> None:
    assert [len(chunk) for chunk in batch_chunks(np.arange(17), 8, merge_single=True)] == [8, 9]
    assert [len(chunk) for chunk in batch_chunks(np.arange(17), 8)] == [8, 8, 1]
    assert [len(chunk) for chunk in batch_chunks(np.arange(18), 8, merge_single=True)] == [8, 8, 2]


def small_data() -> ImageBatches:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    images = (rng.integers(0, 60, (60, 16, 16, 3)) + labels[:, None, None, None] * 60).astype(np.uint8)
    return ImageBatches(images, labels, torch.device("cpu"), channels_last=True)


CONFIG = TrainConfig(epochs=2, batch_size=8, image_size=16, seed=1)
TRAIN_IDS = np.arange(3, 52)  # 49 samples: 6 batches of 8, the last with 9 (a trailing one would be dropped)


class CancelAtStep(Callback):
    def __init__(self, token: CancelToken, step: int) -> None:
        self.token, self.step = token, step

    def on_batch_end(self, state: TrainState, batch: Batch, output: StepOutput) -> None:
        if state.step == self.step:
            self.token.request("test cancel mid-epoch")


def train_with_recorder(folder: Path, callbacks: list[Callback], cancel: CancelToken | None = None) -> Any:
    data = small_data()
    recorder = DynamicsRecorder(folder / "dynamics", TRAIN_IDS, data.labels[TRAIN_IDS].numpy(), 3, CONFIG.epochs)
    trainer = Trainer(CONFIG, data, TRAIN_IDS, num_classes=3, events=EventSink(), cancel=cancel,
                      callbacks=[recorder, *callbacks], checkpoint_path=folder / "checkpoint.pt", augment="flip-crop")
    return trainer.fit()


def test_training_records_every_sample_each_epoch_and_a_resumed_run_records_the_same(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    train_with_recorder(tmp_path / "a", [CancelAtStep(CancelToken(), -1)])
    straight = load_dynamics(tmp_path / "a" / "dynamics")
    assert straight.ids.tolist() == TRAIN_IDS.tolist()
    assert np.isfinite(straight.margin).all() and np.isfinite(straight.td).all()  # no sample missed an epoch
    token = CancelToken()
    with pytest.raises(Cancelled):
        train_with_recorder(tmp_path / "b", [CancelAtStep(token, 8)], token)  # epoch 2, batch 3
    assert not (tmp_path / "b" / "dynamics" / "td.npy").exists()
    train_with_recorder(tmp_path / "b", [CancelAtStep(CancelToken(), 8)])
    resumed = load_dynamics(tmp_path / "b" / "dynamics")
    for name in ("margin", "td", "td_classes", "mean_probs", "labels"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(straight, name), err_msg=name)


def test_aum_is_the_mean_assigned_logit_margin_as_computed_by_hand(tmp_path: Path) -> None:
    labels = {0: 0, 1: 1, 2: 2}
    sequence = {  # epoch -> sample -> logits
        0: {0: [2.0, 1.0, 0.5], 1: [0.0, 0.25, 1.0], 2: [1.0, 0.0, 0.5]},
        1: {0: [3.0, 1.0, 0.5], 1: [0.0, 0.5, 0.75], 2: [0.0, 1.0, 1.5]},
        2: {0: [4.0, 2.0, 1.0], 1: [0.0, 2.0, 0.0], 2: [0.5, 0.0, 2.0]},
    }
    # By hand: sample 0: (1 + 2 + 2) / 3; sample 1: (-0.75 - 0.25 + 2) / 3; sample 2: (-0.5 + 0.5 + 1.5) / 3.
    expected = np.array([5 / 3, 1 / 3, 0.5])
    recorder = DynamicsRecorder(tmp_path / "dyn", np.arange(3), np.arange(3), 3, 3)
    recorder.on_fit_start(fake_state(0))
    for epoch in range(3):
        feed(recorder, epoch, [2, 0, 1], labels, sequence[epoch])
    recorder.on_fit_end(fake_state(3))
    dynamics = load_dynamics(tmp_path / "dyn")
    inputs = DetectorInputs(labels=np.arange(3), num_classes=3, arrays={
        "margin": np.asarray(dynamics.margin), "given_prob": dynamics.given_prob,
        "mean_probs": np.asarray(dynamics.mean_probs)})
    result = aum_detect(inputs)
    np.testing.assert_allclose(result.extras["aum"], expected, atol=1e-3)
    np.testing.assert_allclose(result.scores, 1 / (1 + np.exp(expected)), atol=1e-3)
    assert not result.flagged.any() and result.ranking.tolist() == [1, 2, 0]


def test_aum_and_cartography_flag_samples_the_model_kept_predicting_otherwise() -> None:
    # Samples of 4 epochs: always right and confident; always given 0.1 and beaten; learned late (right in
    # half the epochs, mean confidence below 0.5): only the second is flagged.
    given_prob = np.array([[0.6, 0.8, 0.9, 0.95], [0.1, 0.1, 0.1, 0.1], [0.2, 0.3, 0.6, 0.7]])
    margin = np.array([[0.5, 1.5, 2.5, 3.0], [-2.0, -2.0, -1.5, -1.0], [-1.0, -0.5, 0.5, 1.0]])
    mean_probs = np.array([[0.81, 0.19], [0.1, 0.9], [0.45, 0.55]])
    inputs = DetectorInputs(labels=np.array([0, 0, 0]), num_classes=2,
                            arrays={"margin": margin, "given_prob": given_prob, "mean_probs": mean_probs})
    aum, carto = aum_detect(inputs), cartography_detect(inputs)
    for result in (aum, carto):
        assert result.flagged.tolist() == [False, True, False]
        assert result.suggested.tolist() == [0, 1, 1]
        assert result.scores.min() >= 0 and result.scores.max() <= 1
        assert result.ranking.tolist() == [1, 2, 0]
    assert carto.extras["cartography_confidence"] == pytest.approx([0.8125, 0.1, 0.45])
    assert carto.extras["cartography_variability"][1] == pytest.approx(0.0)
    assert carto.extras["cartography_correctness"].tolist() == [1.0, 0.0, 0.5]


def test_all_names_every_detector_and_evidence_is_asked_for_once() -> None:
    assert [info.name for info in parse_detectors("all")] == list(DETECTORS)
    assert {"cl", "aum", "cartography"} <= set(DETECTORS)
    assert required_evidence(parse_detectors("aum,cartography")) == ["dynamics"]
    assert required_evidence(parse_detectors("cl")) == ["oof_probs"]
    assert required_evidence(parse_detectors("all")) == ["oof_probs", "dynamics", "confident_class", "embeddings"]
    with pytest.raises(UserError, match="unknown detector") as caught:
        parse_detectors("cl,bogus")
    assert caught.value.hint.startswith("use one of: cl, aum, cartography") and caught.value.hint.endswith(", or all")


TINY_AUDIT = TrainConfig(epochs=2, batch_size=64, image_size=8, seed=0)


def test_audit_all_stores_every_detector_and_evaluate_reports_each(demo_project: Path) -> None:
    with Project.open(demo_project) as project:
        run, status = run_audit(project, TINY_AUDIT, folds=2, detectors=["all"], dynamics_epochs=2)
        assert status == "ok", project.run(run.id).summary
        run = project.run(run.id)
        assert set(project.detectors(run.id)) == set(DETECTORS)
        assert run.summary["evidence"] == ["oof_probs", "dynamics", "confident_class", "embeddings"]
        assert (run.folder / "pred_probs.npy").is_file() and (run.folder / "dynamics" / "td.npy").is_file()
        audited = np.load(run.folder / AUDITED_IDS_FILE)
        assert audited.tolist() == project.sample_table().train_ids.tolist()
        for extra in ("aum", "cartography_confidence", "cartography_variability", "cartography_correctness"):
            assert np.load(run.folder / f"{extra}.npy").shape == (len(audited),)
        report = evaluate_run(project, run.id)
        assert set(report["detectors"]) == set(DETECTORS)
        for name, metrics in report["detectors"].items():
            assert metrics["roc_auc"] is not None, name
            # Duplicates and outliers are other kinds of issue: they estimate no share of wrong labels.
            assert (metrics["estimated_noise_rate"] is not None) == (DETECTORS[name].issue == "label"), name


def test_an_audit_trains_on_decisions_and_still_scores_removed_samples(demo_project: Path) -> None:
    with Project.open(demo_project) as project:
        train = project.sample_table().train_ids
        removed, relabeled = int(train[0]), int(train[1])
        new_label = (int(project.sample_table().label[relabeled]) + 1) % project.num_classes
        project.decide(removed, "remove")
        project.decide(relabeled, "relabel", new_label)
        run, status = run_audit(project, TINY_AUDIT, folds=2, detectors=["cl", "aum"], dynamics_epochs=2)
        assert status == "ok", project.run(run.id).summary
        run = project.run(run.id)
        dynamics = load_dynamics(run.folder / "dynamics")
        assert removed not in dynamics.ids.tolist()  # not trained on
        assert dynamics.labels[dynamics.ids.tolist().index(relabeled)] == new_label  # trained on as relabeled
        folds = np.load(run.folder / "folds.npy")
        assert folds[removed] == -1 and folds[relabeled] >= 0  # the K-fold models left it out too
        aum = project.scores(run.id, "aum")
        assert 0 < aum["score"][removed] <= 1  # still scored, from the final model's prediction
        assert run.summary["n_removed_by_decisions"] == 1 and run.summary["n_relabeled_by_decisions"] == 1


class CancelAfterFirstEpoch(EventSink):
    """Asks for a cancel when the first training epoch's metrics go out, as a user's Cancel would."""

    def __init__(self, token: CancelToken) -> None:
        super().__init__()
        self.token = token

    def emit(self, event: Any) -> Any:
        if isinstance(event, Metric) and event.stage == "train":
            self.token.request("test cancel")
        return event


def test_a_cancelled_dynamics_audit_resumes_to_the_same_scores(demo_project: Path, tmp_path: Path) -> None:
    config = TrainConfig(epochs=3, batch_size=64, image_size=8, seed=0)
    spec = audit_spec(config, 2, ["aum", "cartography"], dynamics_epochs=3)
    with Project.open(demo_project) as project:
        straight, status = run_audit(project, config, detectors=["aum", "cartography"], dynamics_epochs=3)
        assert status == "ok"
        token = CancelToken()
        cancelled, status = run_audit(project, config, detectors=["aum", "cartography"], dynamics_epochs=3,
                                      events=CancelAfterFirstEpoch(token), cancel=token)
        assert status == "cancelled" and (cancelled.folder / "checkpoint-dynamics.pt").is_file()
        assert not (cancelled.folder / "dynamics" / "td.npy").exists()
        resumed, status = run_job(project, "audit", spec, lambda ctx: audit_body(ctx, config, spec), EventSink(),
                                  run=project.run(cancelled.id))
        assert status == "ok"
        for name in ("aum", "cartography"):
            for key, value in project.scores(straight.id, name).items():
                np.testing.assert_array_equal(project.scores(resumed.id, name)[key], value, err_msg=f"{name} {key}")
        np.testing.assert_array_equal(np.load(resumed.folder / "dynamics" / "td.npy"),
                                      np.load(straight.folder / "dynamics" / "td.npy"))
