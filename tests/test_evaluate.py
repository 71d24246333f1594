"""Evaluation against the truth: the same numbers as scikit-learn, open-set counted, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

from engine.cli import main
from engine.errors import UserError
from engine.store import OUTSIDE_LABEL_SET, UNKNOWN_TRUTH, Project
from engine.workflows.evaluate import detection_metrics, evaluate_run, truly_mislabeled


def make_project(root: Path, labels: np.ndarray, truth: np.ndarray | None, k: int = 3) -> Project:
    project = Project.create(root)
    project.add_classes([f"c{i}" for i in range(k)])
    project.add_samples(
        {"path": f"{i}.png", "split": "test" if i % 4 == 0 else "train", "label": int(labels[i]),
         "true_label": None if truth is None or truth[i] == UNKNOWN_TRUTH else int(truth[i])}
        for i in range(len(labels))
    )
    project.set_meta("source", {"kind": "folder", "image_root": str(root)})
    return project


def fake_audit(project: Project, scores: np.ndarray, flagged: np.ndarray, noise_rate: float = 0.3) -> str:
    run = project.new_run("audit", {})
    project.save_scores(run.id, "cl", scores, np.zeros(len(scores), dtype=np.int64), flagged)
    project.finish_run(run.id, "ok", {"detectors": {"cl": {"estimated_noise_rate": noise_rate}}})
    return run.id


def test_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    noisy = rng.random(500) < 0.3
    scores = np.clip(noisy * 0.4 + rng.random(500) * 0.6, 0, 1)
    flagged = scores > 0.5
    metrics = detection_metrics(noisy, scores, flagged)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(noisy, scores))
    assert metrics["average_precision"] == pytest.approx(average_precision_score(noisy, scores))
    assert metrics["precision"] == pytest.approx(precision_score(noisy, flagged))
    assert metrics["recall"] == pytest.approx(recall_score(noisy, flagged))
    assert metrics["f1"] == pytest.approx(f1_score(noisy, flagged))
    assert metrics["n_noisy"] == noisy.sum() and metrics["n_flagged"] == flagged.sum()
    assert 0.5 < metrics["roc_auc"] < 1.0


def test_undefined_metrics_are_none_not_nan() -> None:
    metrics = detection_metrics(np.zeros(10, dtype=bool), np.linspace(0, 1, 10), np.zeros(10, dtype=bool))
    assert metrics["roc_auc"] is None and metrics["average_precision"] is None
    assert metrics["f1"] == 0.0
    json.dumps(metrics, allow_nan=False)  # safe for the event protocol


def test_evaluate_run_counts_open_set_as_mislabeled(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 200
    truth = rng.integers(0, 3, n)
    labels = truth.copy()
    labels[:30] = (truth[:30] + 1) % 3
    truth[30:40] = OUTSIDE_LABEL_SET  # open-set images: observed label kept, no true class
    with make_project(tmp_path / "p", labels, truth) as project:
        known, noisy = truly_mislabeled(project.sample_table())
        assert known.all() and noisy.sum() == 40
        scores = np.where(np.arange(n) < 40, 0.8, 0.2) + rng.normal(0, 0.1, n)
        scores = np.clip(scores, 0, 1)
        flagged = scores > 0.5
        run_id = fake_audit(project, scores, flagged)
        report = evaluate_run(project)
    assert report["run_id"] == run_id and report["stale"] is None
    # Only the train split is evaluated (every 4th sample is held out): the audit never audits held-out samples.
    train = np.arange(n) % 4 != 0
    is_noisy = np.arange(n) < 40
    assert report["evaluated_split"] == "train" and report["n_evaluated"] == train.sum() == 150
    assert report["true_noise_rate"] == pytest.approx(is_noisy[train].mean())
    assert report["true_noise_rate_by_split"]["test"] == pytest.approx(is_noisy[~train].mean())
    assert report["n_open_set"] == 10
    cl = report["detectors"]["cl"]
    assert cl["roc_auc"] == pytest.approx(roc_auc_score(is_noisy[train], scores[train]))
    assert cl["f1"] == pytest.approx(f1_score(is_noisy[train], flagged[train]))
    assert cl["n_noisy"] == is_noisy[train].sum() == 30
    assert cl["estimated_noise_rate"] == 0.3


def test_partial_truth_evaluates_the_known_samples(tmp_path: Path) -> None:
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    truth = np.array([0, 2, 2, UNKNOWN_TRUTH, 1, 0, UNKNOWN_TRUTH, 1])
    with make_project(tmp_path / "p", labels, truth) as project:
        scores = np.array([0.1, 0.9, 0.2, 0.9, 0.3, 0.6, 0.1, 0.2])
        fake_audit(project, scores, scores > 0.5)
        report = evaluate_run(project)
    assert report["n_evaluated"] == 4  # train samples 1, 2, 5, 7 (0 and 4 are held out; 3 and 6 unknown)
    assert report["detectors"]["cl"]["n_noisy"] == 2
    assert report["detectors"]["cl"]["roc_auc"] == pytest.approx(1.0)


def test_no_truth_and_missing_runs_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = np.array([0, 1, 2, 0, 1, 2])
    with make_project(tmp_path / "p", labels, None) as project:
        with pytest.raises(UserError, match="no finished audit run"):
            evaluate_run(project)
        fake_audit(project, np.full(6, 0.5), np.zeros(6, dtype=bool))
        with pytest.raises(UserError, match="no ground truth"):
            evaluate_run(project)
        with pytest.raises(UserError, match="no run 'nope'"):
            evaluate_run(project, "nope")
        other = project.new_run("retrain", {})
        project.finish_run(other.id, "ok", {})
        with pytest.raises(UserError, match="has no detector scores"):
            evaluate_run(project, other.id)
    assert main(["evaluate", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "no ground truth" in err and "fix:" in err


def test_cli_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = np.array([0, 1, 2, 0, 1, 2])
    truth = np.array([0, 1, 0, 0, 2, 2])
    with make_project(tmp_path / "p", labels, truth) as project:
        run_id = fake_audit(project, np.array([0.1, 0.2, 0.9, 0.3, 0.8, 0.1]), np.array([0, 0, 1, 0, 1, 0], bool))
    assert main(["evaluate", str(tmp_path / "p"), "--run", run_id, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["detectors"]["cl"]["f1"] == 1.0 and report["detectors"]["cl"]["roc_auc"] == 1.0
    assert main(["evaluate", str(tmp_path / "p")]) == 0
    assert "ROC-AUC" in capsys.readouterr().out


def test_a_run_on_changed_labels_is_evaluated_as_stale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    truth = np.array([0, 2, 2, 0, 1, 0, 0, 1])
    with make_project(tmp_path / "p", labels, truth) as project:
        scores = np.array([0.1, 0.9, 0.2, 0.1, 0.3, 0.6, 0.1, 0.2])
        run_id = fake_audit(project, scores, scores > 0.5)
        assert evaluate_run(project)["stale"] is None
        # New noise after the audit: its scores now describe labels that no longer exist.
        table = project.sample_table()
        changed = table.label.copy()
        changed[[2, 3]] = [1, 2]
        project.set_labels(changed, table.true_label)
        project.record_noise("symmetric", 0.25, 2, {}, 2)
        report = evaluate_run(project)
        assert report["run_id"] == run_id
        assert "labels changed since this audit run" in report["stale"] and "seed 2" in report["stale"]
    assert main(["evaluate", str(tmp_path / "p"), "--json"]) == 0
    assert "labels changed" in json.loads(capsys.readouterr().out)["stale"]
    assert main(["evaluate", str(tmp_path / "p")]) == 0
    assert f"WARNING: run {run_id} is stale" in capsys.readouterr().out
