"""How the dynamics detectors size their flagged sets: confident learning on early-learning predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.detectors import DetectorInputs
from engine.detectors.aum import detect as aum_detect
from engine.detectors.cartography import detect as cartography_detect
from engine.detectors.early_learning import (
    ESTIMATED_BY,
    class_probs_from_td,
    early_learning_window,
    estimated_issue_counts,
    top_scores,
    top_scores_per_class,
)
from engine.store import Project
from engine.training.config import TrainConfig
from engine.training.recorders import td_class_order
from engine.workflows.audit import run_audit


def test_the_window_is_the_second_quarter_the_second_half_of_a_short_run_or_every_epoch_of_a_tiny_one() -> None:
    assert early_learning_window(50) == slice(12, 25)
    assert early_learning_window(30) == slice(7, 15)
    assert early_learning_window(18) == slice(9, 18)  # 25,000 samples under the thorough preset: never memorises
    assert early_learning_window(9) == slice(4, 9)  # too short to memorise: its second half
    assert early_learning_window(12) == slice(6, 12)
    assert early_learning_window(4) == slice(0, 4)


def test_class_probabilities_come_back_from_the_td_array() -> None:
    rng = np.random.default_rng(0)
    n, k, epochs = 30, 12, 8
    probs = rng.dirichlet(np.ones(k), size=(n, epochs)).transpose(0, 2, 1).astype(np.float32)  # (n, K, E)
    labels = rng.integers(0, k, n)
    window = slice(2, 4)
    for width in (k, 10):  # every class kept, and a td narrower than K
        classes = td_class_order(probs.mean(axis=2), labels, width)
        td = np.take_along_axis(probs, classes[:, :, None], axis=1)
        rebuilt = class_probs_from_td(td, classes, k, window)
        expected = probs[:, :, window].mean(axis=2)
        rows = np.arange(n)[:, None]
        assert np.allclose(rebuilt[rows, classes], expected[rows, classes], atol=1e-6)  # the kept classes exactly
        assert np.allclose(rebuilt.sum(axis=1), 1.0, atol=1e-5)  # the rest share what is left
        if width < k:
            dropped = np.ones((n, k), dtype=bool)
            dropped[rows, classes] = False
            left = 1.0 - expected[rows, classes].sum(axis=1)
            assert np.allclose(rebuilt[dropped].reshape(n, k - width), (left / (k - width))[:, None], atol=1e-5)


def confident_case(n_per_class: int = 100, wrong_per_class: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """3 classes; the model is confident in each sample's true class; ``wrong_per_class`` labels per class are wrong."""
    rng = np.random.default_rng(1)
    truth = np.repeat(np.arange(3), n_per_class)
    labels = truth.copy()
    for k in range(3):
        wrong = np.flatnonzero(truth == k)[:wrong_per_class]
        labels[wrong] = (k + 1) % 3
    probs = np.full((len(truth), 3), 0.05) + rng.uniform(0, 0.02, (len(truth), 3))
    probs[np.arange(len(truth)), truth] = 0.9
    return labels, truth, probs / probs.sum(axis=1, keepdims=True)


def test_the_estimate_counts_the_labels_the_early_predictions_contradict() -> None:
    labels, truth, probs = confident_case()
    assert estimated_issue_counts(labels, probs).tolist() == [20, 20, 20]  # per given class
    assert int((labels != truth).sum()) == 60
    assert estimated_issue_counts(labels[:0], probs[:0]).sum() == 0
    one_class = np.zeros(5, dtype=np.int64)
    assert estimated_issue_counts(one_class, np.full((5, 3), 1 / 3)).tolist() == [0, 0, 0]


def test_each_class_flags_its_own_count_so_a_hard_class_does_not_crowd_out_an_easy_one() -> None:
    # Class 0 is hard: every score there sits high, right labels included; class 1's wrong labels score lower.
    labels = np.repeat([0, 1], 10)
    wrong = np.zeros(20, dtype=bool)
    wrong[[0, 1, 10, 11]] = True
    scores = np.where(labels == 0, 0.6, 0.1) + np.where(wrong, 0.3, 0.0) + np.linspace(0, 0.01, 20)
    per_class = top_scores_per_class(scores, labels, np.array([2, 2]))
    assert set(np.flatnonzero(per_class)) == {0, 1, 10, 11}
    assert not top_scores(scores, 4)[[10, 11]].any()  # one line over both classes takes class 0's right labels
    assert top_scores_per_class(scores, labels, np.array([0, 50])).sum() == 10  # a count past the class: all of it
    level = np.zeros(4)  # equal scores: the tie-break decides, then the id
    assert top_scores_per_class(level, np.zeros(4, dtype=np.int64), np.array([2]), np.array([0, 1, 0, 1])).tolist() == [
        False, True, False, True]
    assert top_scores_per_class(level, np.zeros(4, dtype=np.int64), np.array([2])).tolist() == [True, True, False, False]


def dynamics_inputs(labels: np.ndarray, truth: np.ndarray, early: np.ndarray | None) -> DetectorInputs:
    """Margins that are positive for right labels (more so for some) and mostly negative for wrong ones."""
    n, epochs = len(labels), 6
    rng = np.random.default_rng(2)
    wrong = labels != truth
    margin = np.where(wrong[:, None], -1.0, 2.0) + rng.normal(0, 0.3, (n, epochs))
    margin[np.flatnonzero(~wrong)[:50]] -= 2.5  # hard right samples: negative AUM, but not mislabeled
    given_prob = 1 / (1 + np.exp(-margin))
    arrays = {"margin": margin, "given_prob": given_prob, "mean_probs": np.eye(3)[truth]}
    if early is not None:
        arrays["early_probs"] = early
    return DetectorInputs(labels=labels, num_classes=3, arrays=arrays)


def test_aum_and_cartography_flag_the_estimated_count_and_keep_their_own_line() -> None:
    labels, truth, probs = confident_case()
    for detect, rule in ((aum_detect, "AUM < 0"), (cartography_detect, "correctness < 0.5")):
        result = detect(dynamics_inputs(labels, truth, probs))
        assert result.num_flagged == 60 and result.summary["estimated_by"] == ESTIMATED_BY
        assert result.summary["own_rule"] == rule and result.summary["n_own_rule"] > 60  # the hard ones too
        for label in range(3):  # per given class, the 20 highest scores of that class
            members = np.flatnonzero(labels == label)
            top = members[np.argsort(-result.scores[members], kind="stable")[:20]]
            assert set(np.flatnonzero(result.flagged & (labels == label))) == set(top)
        assert result.summary["estimated_per_class"] == [20, 20, 20]
        assert result.summary["estimated_noise_rate"] == 60 / len(labels)
        # A run recorded without early-learning probabilities is flagged by the detector's own line.
        old = detect(dynamics_inputs(labels, truth, None))
        assert old.num_flagged == old.summary["n_own_rule"] > 60


def test_a_dynamics_audit_sizes_aum_by_the_early_learning_estimate(demo_project: Path) -> None:
    config = TrainConfig(epochs=2, batch_size=64, image_size=8, seed=0)
    with Project.open(demo_project) as project:
        run, status = run_audit(project, config, detectors=["aum", "cartography"], dynamics_epochs=8)
        assert status == "ok"
        summary = project.run(run.id).summary["detectors"]
        for name in ("aum", "cartography"):
            assert summary[name]["estimated_by"] == ESTIMATED_BY
            assert summary[name]["n_flagged"] == round(summary[name]["estimated_noise_rate"] * summary[name].get(
                "n_audited", len(project.sample_table().train_ids)))
