"""Confident learning detector: identical to calling cleanlab directly, and useful on injected noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cleanlab.count import estimate_py_and_noise_matrices_from_probabilities
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores

from engine.detectors import DETECTORS, DetectorInputs, parse_detectors, ranking_flagged_first
from engine.detectors.confident_learning import confident_learning
from engine.errors import UserError
from engine.store import Project
from engine.workflows.crossval import heldout_accuracy
from engine.workflows.detection import run_detectors


def noisy_problem(n: int = 1500, k: int = 5, rate: float = 0.2, seed: int = 0):
    """Out-of-sample-like probabilities of a decent classifier, and labels with injected symmetric noise.

    Returns (labels (n,), truth (n,), pred_probs (n, k) float32).
    """
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    labels = truth.copy()
    flip = rng.random(n) < rate
    labels[flip] = (truth[flip] + rng.integers(1, k, flip.sum())) % k
    logits = rng.normal(0.0, 1.0, (n, k))
    logits[np.arange(n), truth] += 2.5
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return labels, truth, probs.astype(np.float32)


def test_flagged_set_and_ranking_equal_cleanlab_called_directly() -> None:
    labels, _, probs = noisy_problem()
    result = confident_learning(labels, probs)
    direct = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    assert len(direct) > 0
    np.testing.assert_array_equal(result.ranking[: len(direct)], direct)
    np.testing.assert_array_equal(np.flatnonzero(result.flagged), np.sort(direct))
    # The rest follow by score, descending; the whole ranking is a permutation of all ids.
    rest = result.ranking[len(direct):]
    assert np.all(np.diff(result.scores[rest]) <= 0)
    np.testing.assert_array_equal(np.sort(result.ranking), np.arange(len(labels)))


def test_scores_noise_matrix_and_joint_equal_cleanlab() -> None:
    labels, _, probs = noisy_problem(seed=1)
    result = confident_learning(labels, probs)
    quality = get_label_quality_scores(labels, probs, method="self_confidence")
    np.testing.assert_allclose(result.scores, 1.0 - quality, rtol=0, atol=1e-7)
    assert result.scores.min() >= 0 and result.scores.max() <= 1
    _, noise_matrix, _, joint = estimate_py_and_noise_matrices_from_probabilities(labels, probs)
    np.testing.assert_allclose(result.extras["noise_matrix"], noise_matrix)
    np.testing.assert_array_equal(result.extras["confident_joint"], joint)
    assert result.extras["confident_joint"].sum() == len(labels)
    np.testing.assert_array_equal(result.suggested, probs.argmax(axis=1))


def test_finds_injected_noise_and_estimates_its_rate() -> None:
    labels, truth, probs = noisy_problem(n=3000, rate=0.25, seed=2)
    result = confident_learning(labels, probs)
    noisy = labels != truth
    precision = (result.flagged & noisy).sum() / result.flagged.sum()
    recall = (result.flagged & noisy).sum() / noisy.sum()
    assert precision > 0.8 and recall > 0.7
    assert abs(result.summary["estimated_noise_rate"] - noisy.mean()) < 0.05
    # Where a flagged sample's label is wrong, the suggestion is mostly the truth.
    caught = result.flagged & noisy
    assert (result.suggested[caught] == truth[caught]).mean() > 0.8


def test_invalid_probabilities_are_rejected() -> None:
    labels, _, probs = noisy_problem(n=50)
    with pytest.raises(ValueError, match="sum to 1"):
        confident_learning(labels, probs * 2)
    with pytest.raises(ValueError, match="disagree"):
        confident_learning(labels[:-1], probs)
    with pytest.raises(ValueError, match="lie in"):
        confident_learning(np.full(50, 7), probs)


def test_ranking_flagged_first_orders_the_rest_by_score() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.2])
    ranking = ranking_flagged_first(np.array([4, 2]), scores)
    np.testing.assert_array_equal(ranking, [4, 2, 1, 3, 0])


def test_unknown_detector_is_a_clear_error() -> None:
    assert "cl" in DETECTORS
    with pytest.raises(UserError, match="unknown detector 'lstm9'") as info:
        parse_detectors("cl,lstm9")
    assert "cl" in info.value.hint
    assert [d.name for d in parse_detectors("cl, cl")] == ["cl"]


def synthetic_project(root: Path, labels: np.ndarray, truth: np.ndarray, k: int) -> Project:
    project = Project.create(root)
    project.add_classes([f"c{i}" for i in range(k)])
    split = np.where(np.arange(len(labels)) % 5 == 0, "test", "train")
    project.add_samples(
        {"path": f"img/{i}.png", "split": str(split[i]), "label": int(labels[i]), "true_label": int(truth[i])}
        for i in range(len(labels))
    )
    project.set_meta("source", {"kind": "folder", "image_root": str(root / "images")})
    return project


def test_run_detectors_stores_scores_and_arrays(tmp_path: Path) -> None:
    labels, truth, probs = noisy_problem(n=400, k=4, seed=3)
    with synthetic_project(tmp_path / "p", labels, truth, 4) as project:
        run = project.new_run("audit", {})
        inputs = DetectorInputs(labels=labels, num_classes=4, pred_probs=probs)
        results = run_detectors(project, run, parse_detectors("cl"), inputs)
        saved = project.scores(run.id, "cl")
        result = results["cl"]
        np.testing.assert_allclose(saved["score"], result.scores)
        np.testing.assert_array_equal(saved["flagged"], result.flagged)
        np.testing.assert_array_equal(saved["suggested"], result.suggested)
        # rank r of sample i means ranking[r] == i
        np.testing.assert_array_equal(np.argsort(saved["rank"]), result.ranking)
        assert np.load(run.folder / "noise_matrix.npy").shape == (4, 4)
        assert np.load(run.folder / "confident_joint.npy").sum() == 400
        table = project.sample_table()
        accuracy, against, n = heldout_accuracy(table, probs)
        test = table.test_ids
        assert against == "truth" and n == len(test)
        assert accuracy == pytest.approx((probs[test].argmax(1) == truth[test]).mean())
