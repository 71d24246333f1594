"""Detectors ocl and ensemble, calibrated flagged sets, and evaluate's estimated beside true noise rates."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest
import torch

from engine.detectors import DetectorInputs, DetectorResult, ensemble_members, parse_detectors, required_evidence
from engine.detectors.confident_learning import confident_learning
from engine.detectors.ensemble import detect as ensemble_detect
from engine.detectors.ensemble import rank_average
from engine.detectors.ocl import detect as ocl_detect
from engine.errors import UserError
from engine.store import Project
from engine.training.confident_classes import batch_confident_classes, off_diagonal_mask
from engine.training.config import TrainConfig
from engine.training.data import Batch
from engine.training.hooks import StepOutput
from engine.training.loop import TrainState
from engine.training.recorders import ConfidentClassRecorder
from engine.workflows.audit import AUDITED_IDS_FILE, run_audit
from engine.workflows.evaluate import evaluate_run, format_evaluation


def fake_state(epoch: int) -> TrainState:
    return cast(TrainState, SimpleNamespace(epoch=epoch))


def test_batch_confident_classes_put_off_the_diagonal_what_cleanlab_does() -> None:
    from cleanlab.count import compute_confident_joint

    rng = np.random.default_rng(3)
    for _ in range(20):
        labels = rng.integers(0, 4, 32)
        labels[:4] = np.arange(4)  # cleanlab needs every class present
        logits = rng.normal(size=(32, 4)) * 2 + 2 * np.eye(4)[labels]
        probs = torch.softmax(torch.tensor(logits, dtype=torch.float32), dim=1)
        classes = batch_confident_classes(probs, torch.tensor(labels)).numpy()
        off = (classes >= 0) & (classes != labels)
        _, off_ids = compute_confident_joint(labels, probs.numpy().astype(np.float64),
                                             return_indices_of_off_diagonals=True)
        assert sorted(np.flatnonzero(off).tolist()) == sorted(np.asarray(off_ids).tolist())
        np.testing.assert_array_equal(off, off_diagonal_mask(probs, torch.tensor(labels)).numpy())


def test_ocl_scores_a_hand_made_probability_sequence(tmp_path: Path) -> None:
    # Four samples, two classes, one batch per epoch, labels [0, 0, 1, 1]. Thresholds are the mean
    # probability of its own class over each class's samples.
    labels = np.array([0, 0, 1, 1])
    epochs = [  # P(class 0) of each sample per epoch; P(class 1) = 1 - that
        [0.9, 0.3, 0.2, 0.6],  # t0 = 0.6, t1 = 0.6: sample 1 -> class 1 (off), 3 -> class 0 (off)
        [0.9, 0.7, 0.1, 0.85],  # t0 = 0.8, t1 = 0.525: sample 1 reaches neither (-1), 3 -> class 0 (off)
        [0.95, 0.2, 0.1, 0.9],  # t0 = 0.575, t1 = 0.5: 1 -> class 1 (off), 3 -> class 0 (off)
    ]
    expected = np.array([[0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 1, 0]]).T
    recorder = ConfidentClassRecorder(tmp_path / "dyn", np.arange(4), labels, 2, 3)
    recorder.on_fit_start(fake_state(0))
    for epoch, p0 in enumerate(epochs):
        probs = np.stack([p0, 1 - np.array(p0)], axis=1)
        order = [2, 0, 3, 1]  # the batch order is not the id order
        batch = Batch(torch.zeros(4, 3, 2, 2), torch.tensor(labels[order]), torch.tensor(order))
        logits = torch.tensor(np.log(probs[order]), dtype=torch.float32)
        recorder.on_batch_end(fake_state(epoch), batch, StepOutput(torch.zeros(()), logits))
        recorder.on_epoch_end(fake_state(epoch + 1))
    recorder.on_fit_end(fake_state(3))
    recorded = np.asarray(recorder.read())
    np.testing.assert_array_equal(recorded, expected)

    result = ocl_detect(DetectorInputs(labels=labels, num_classes=2, arrays={"confident_class": recorded}))
    # Epoch weights 1/6, 2/6, 3/6: sample 1 is off in epochs 1 and 3 (4/6), sample 3 in all (1).
    np.testing.assert_allclose(result.scores, [0.0, 4 / 6, 0.0, 1.0])
    assert result.suggested.tolist() == [0, 1, 1, 0]
    # Per epoch and class, the off share of the samples with a confident class, times the class's size:
    # epoch 1: 1/2 and 1/2 -> 0.5; epoch 2: 0/1 (sample 1 uncounted) and 1/2 -> 0.25; epoch 3: 0.5.
    estimate = 0.5 * 1 / 6 + 0.25 * 2 / 6 + 0.5 * 3 / 6
    assert result.summary["estimated_noise_rate"] == pytest.approx(estimate)
    assert result.num_flagged == round(estimate * 4) == 2  # calibrated: as many as it estimates
    assert result.flagged.tolist() == [False, True, False, True]
    assert result.ranking.tolist()[:2] == [3, 1]


def member(scores: list[float], flagged: list[bool], suggested: list[int], estimate: float) -> DetectorResult:
    scores_array = np.array(scores)
    return DetectorResult(scores_array, np.array(suggested), np.array(flagged), np.argsort(-scores_array),
                          summary={"estimated_noise_rate": estimate})


def test_ensemble_rank_averages_and_counts_agreement() -> None:
    # Raw scores on unrelated scales; only their orders count. Tied scores share their average rank.
    earlier = {
        "a": member([0.9, 0.1, 0.5, 0.2], [True, False, True, False], [1, 0, 2, -1], 0.5),
        "b": member([0.3, 0.1, 0.1, 0.4], [True, False, False, True], [1, 0, 0, 0], 0.25),
        "c": member([0.3, 0.2, 0.1, 0.0], [True, False, False, False], [2, -1, 0, -1], 0.75),
    }
    # Scaled ranks (rank - 1) / 3: a: [1, 0, 2/3, 1/3]; b: [2/3, 1/6, 1/6, 1]; c: [1, 2/3, 1/3, 0].
    expected = np.array([1 + 2 / 3 + 1, 0 + 1 / 6 + 2 / 3, 2 / 3 + 1 / 6 + 1 / 3, 1 / 3 + 1 + 0]) / 3
    np.testing.assert_allclose(rank_average([result.scores for result in earlier.values()]), expected)
    result = ensemble_detect(DetectorInputs(labels=np.array([0, 0, 0, 0]), num_classes=3, earlier=earlier))
    np.testing.assert_allclose(result.scores, expected)
    assert result.extras["ensemble_agreement"].tolist() == [3, 0, 1, 1]
    # Median estimate 0.5 of 4 samples: the 2 highest ensemble scores (0 and 3).
    assert result.summary["estimated_noise_rate"] == 0.5 and result.summary["members"] == ["a", "b", "c"]
    assert result.flagged.tolist() == [True, False, False, True]
    assert result.ranking.tolist() == [0, 3, 2, 1]
    # Suggestions by vote, -1 ignored: sample 0 -> 1 (two votes); sample 2: 2, 0, 0 -> 0; sample 1: a tie of
    # 0 and 0 -> 0; sample 3, flagged: only b suggests, its given label 0 -> none (never a flagged sample's label).
    assert result.suggested.tolist() == [1, 0, 0, -1]
    tie = ensemble_detect(DetectorInputs(labels=np.zeros(2, dtype=np.int64), num_classes=3, earlier={
        "a": member([0.1, 0.2], [False, False], [2, 1], 0.0), "b": member([0.2, 0.1], [False, False], [1, 2], 0.0)}))
    assert tie.suggested.tolist() == [2, 1]  # a tie goes to the detector that ran first


def test_cl_stays_out_of_the_ensemble_beside_the_dynamics_run() -> None:
    # The dynamics run's detectors read the same labels with one model trained longer: cl yields to them.
    assert ensemble_members(["cl", "aum", "near_duplicate", "knn", "ensemble"]) == ["aum", "knn"]
    assert ensemble_members(["cl", "ocl"]) == ["ocl"]
    assert ensemble_members(["cl", "td_lstm", "cartography"]) == ["td_lstm", "cartography"]
    # ... and only to them: beside knn alone, or beside evidence of a kind it does not know, it stays.
    assert ensemble_members(["cl", "knn"]) == ["cl", "knn"]
    assert ensemble_members(["cl", "mine"]) == ["cl", "mine"]
    earlier = {"cl": member([0.9, 0.1, 0.2, 0.3], [True, False, False, False], [1, -1, -1, -1], 0.25),
               "aum": member([0.1, 0.9, 0.2, 0.3], [False, True, False, False], [-1, 1, -1, -1], 0.25)}
    result = ensemble_detect(DetectorInputs(labels=np.array([0, 0, 0, 0]), num_classes=2, earlier=earlier))
    assert result.summary["members"] == ["aum"]
    assert result.ranking.tolist() == earlier["aum"].ranking.tolist()
    assert result.flagged.tolist() == [False, True, False, False]

def test_ensemble_needs_others_and_runs_after_them() -> None:
    with pytest.raises(UserError, match="combines other detectors"):
        parse_detectors("ensemble")
    assert [info.name for info in parse_detectors("ensemble,aum,ocl")] == ["aum", "ocl", "ensemble"]
    assert required_evidence(parse_detectors("ocl,ensemble")) == ["confident_class"]


def constructed_confident_classes(n: int, num_classes: int, epochs: int, noise_rate: float,
                                  seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, confident_class (n, E), is_noisy): a known share of wrong labels and a model that mostly
    gets the true class right, missing some thresholds (-1) and erring now and then."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, num_classes, n)
    is_noisy = np.zeros(n, dtype=bool)
    is_noisy[rng.choice(n, int(noise_rate * n), replace=False)] = True
    labels = np.where(is_noisy, (truth + rng.integers(1, num_classes, n)) % num_classes, truth)
    confident = np.repeat(truth[:, None], epochs, axis=1)
    draw = rng.random((n, epochs))
    confident[draw < 0.15] = -1  # below every threshold
    wrong = (draw >= 0.15) & (draw < 0.17)
    confident[wrong] = rng.integers(0, num_classes, int(wrong.sum()))
    return labels, confident, is_noisy


def test_ocl_and_ensemble_flag_about_as_many_as_are_wrong() -> None:
    labels, confident, is_noisy = constructed_confident_classes(2000, 5, 8, 0.2, seed=0)
    inputs = DetectorInputs(labels=labels, num_classes=5, arrays={"confident_class": confident})
    ocl = ocl_detect(inputs)
    assert ocl.summary["estimated_noise_rate"] == pytest.approx(0.2, abs=0.03)
    assert ocl.num_flagged / 2000 == pytest.approx(ocl.summary["estimated_noise_rate"], abs=1e-3)
    assert (ocl.flagged & is_noisy).sum() / is_noisy.sum() > 0.9

    # cl on probabilities that put most weight on the true class: its flagged share is its estimate.
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(5), 2000) * 0.4
    probs[np.arange(2000), np.where(is_noisy, (labels + 1) % 5, labels)] += 0.6
    cl = confident_learning(labels, probs)
    assert cl.num_flagged / 2000 == pytest.approx(cl.summary["estimated_noise_rate"], abs=0.03)
    assert cl.summary["estimated_noise_rate"] == pytest.approx(0.2, abs=0.03)
    assert "estimated_by" in cl.summary

    # Under names of their own: cl beside ocl would stay out of the ensemble (it yields to the dynamics run).
    ensemble = ensemble_detect(DetectorInputs(labels=labels, num_classes=5, earlier={"kfold": cl, "online": ocl}))
    for label in range(5):  # per given class: the median of the members' flagged counts there
        in_class = labels == label
        counts = [int((member.flagged & in_class).sum()) for member in (cl, ocl)]
        assert int((ensemble.flagged & in_class).sum()) == round(float(np.median(counts)))
    assert ensemble.summary["estimated_noise_rate"] == ensemble.num_flagged / 2000 == pytest.approx(0.2, abs=0.03)


TINY_AUDIT = TrainConfig(epochs=2, batch_size=64, image_size=8, seed=0)


def test_an_ocl_audit_records_confident_classes_and_evaluate_shows_estimated_and_true_rates(
        demo_project: Path) -> None:
    with Project.open(demo_project) as project:
        run, status = run_audit(project, TINY_AUDIT, folds=2, detectors=["ensemble", "ocl", "aum"], dynamics_epochs=2)
        assert status == "ok", project.run(run.id).summary
        run = project.run(run.id)
        assert run.summary["evidence"] == ["dynamics", "confident_class"]
        audited = np.load(run.folder / AUDITED_IDS_FILE)
        recorded = np.load(run.folder / "dynamics" / "confident_class.npy")
        assert recorded.shape == (len(audited), 2) and recorded.min() >= -1  # every sample, every epoch
        assert np.load(run.folder / "ensemble_agreement.npy").max() <= 2
        assert set(project.detectors(run.id)) == {"aum", "ocl", "ensemble"}
        report = evaluate_run(project, run.id)
        for name in ("aum", "ocl", "ensemble"):
            metrics = report["detectors"][name]
            assert metrics["true_noise_rate"] == pytest.approx(0.2, abs=0.01), name
            assert 0 <= metrics["estimated_noise_rate"] <= 1 and metrics["estimated_by"], name
            assert metrics["n_flagged"] == round(metrics["estimated_noise_rate"] * len(audited)), name
        table = format_evaluation(report)
        assert "est.noise" in table and "true.noise" in table
        ocl_row = next(line for line in table.splitlines() if line.startswith("ocl "))
        assert ocl_row.split()[-2:] == [f"{report['detectors']['ocl']['estimated_noise_rate']:.3f}", "0.200"]


def test_a_flagged_set_is_ranked_first_by_its_own_order_and_counted_in_the_summary() -> None:
    scores = np.array([0.9, 0.2, 0.5, 0.7, 0.1])
    flagged = np.array([False, True, True, False, True])
    result = DetectorResult.from_flagged(scores, np.full(5, -1), flagged, np.array([0.0, 3.0, 1.0, 0.0, 1.0]),
                                         extras={}, summary={"threshold": "by hand"})
    # Flagged by the order given (ties by id: 2 before 4), then the others by score.
    assert result.ranking.tolist() == [2, 4, 1, 0, 3]
    assert result.summary == {"n_flagged": 3, "flagged_rate": 0.6, "threshold": "by hand"}
    assert list(result.summary) == ["n_flagged", "flagged_rate", "threshold"]
