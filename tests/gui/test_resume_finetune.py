"""The app with the real engine: the review teaches the detector; a SIGKILLed audit resumes to the same scores."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from auditor.views.audit_dialog import TrainOptions
from auditor.views.results_view import finetune_text, run_summary_line
from engine.store import Project, RunInfo
from tests.conftest import make_image_folder


def shapes_project(root: Path, per_class: int, noise: float = 0.3) -> Path:
    """A generated 3-class project (16-px shapes), every sample in training, symmetric noise injected."""
    from engine.data.importing import import_folder
    from engine.noise import inject_noise

    images = make_image_folder(root / "images", per_class=per_class)
    with import_folder(root / "project", images, test_fraction=0.0, folds=2) as project:
        inject_noise(project, "symmetric", noise, 5)
    return root / "project"


def run_job(qtbot: QtBot, window: Any, start: Any, timeout_ms: int = 240_000) -> tuple[str, list[Any]]:
    """Start a job from the app, wait for it to end; its status and its result events."""
    results: list[Any] = []
    window.jobs.job_started.connect(lambda command, process: process.result.connect(results.append))
    with qtbot.waitSignal(window.jobs.job_finished, timeout=timeout_ms) as finished:
        assert start() is not None or window.jobs.busy
    return finished.args[1], results


def test_teach_the_detector_from_my_reviews_rescores_and_shows_the_agreement(
        qtbot: QtBot, window: Any, tmp_path: Path) -> None:
    from engine.cli import main

    root = shapes_project(tmp_path, per_class=12)
    assert main(["audit", str(root), "--detectors", "aum,td_lstm,ensemble", "--epochs", "3", "--image-size", "16",
                 "--batch-size", "8", "--workers", "1"]) == 0
    with Project.open(root) as project:
        table = project.sample_table()
        noisy = np.flatnonzero(table.label != table.true_label)[:5]
        clean = np.flatnonzero(table.label == table.true_label)[:4]
        for sample in noisy:
            project.decide(int(sample), "remove")
        for sample in clean:
            project.decide(int(sample), "keep")
        source = project.run(kind="audit")
        another_clean = int(np.flatnonzero(table.label == table.true_label)[4])

    assert window.open_project(root)
    results = window.page.results
    # 9 reviews: not enough, and the tooltip says how many it needs and has.
    assert not results.teach_button.isEnabled()
    assert "at least 10" in results.teach_button.toolTip() and "you have 9" in results.teach_button.toolTip()
    window.session.decide(another_clean, "keep")  # the tenth review, made in the app
    qtbot.waitUntil(results.teach_button.isEnabled, timeout=2000)  # updated just after the decision

    status, events = run_job(qtbot, window, results.teach_button.click)
    assert status == "ok"
    agreement = next(event.data for event in events if event.kind == "finetune")
    assert agreement["n_reviewed"] == 10 and agreement["source_run"] == source.id
    # The new, re-scored audit is the current one.
    current = window.session.audit.run
    assert current.id != source.id and current.spec["rescored_from"] == source.id
    assert set(window.session.audit.per_detector) == {"aum", "td_lstm", "ensemble"}
    # The figures shown are the engine's own.
    shown = results.teach_result.text()
    assert shown == finetune_text(agreement)
    for figure in (agreement["before"]["roc_auc"], agreement["after_cross_validated"]["roc_auc"],
                   agreement["after_in_sample"]["roc_auc"]):
        assert f"{figure:.3f}" in shown
    assert "10 reviews (5 relabelled or removed, 5 kept)" in shown
    assert (tmp_path / "project" / "detectors" / "td_lstm.pt").is_file()


def test_a_killed_audit_shows_interrupted_and_resumes_from_the_app_to_the_same_scores(
        qtbot: QtBot, window: Any, tmp_path: Path) -> None:
    root = shapes_project(tmp_path, per_class=30)
    assert window.open_project(root)
    options = TrainOptions(epochs=12, image_size=16, device="cpu", seed=3, detectors=["aum", "td_lstm"])

    # Start a real audit, SIGKILL its engine once the first checkpoint is written.
    with qtbot.waitSignal(window.jobs.job_finished, timeout=240_000) as finished:
        process = window.launcher.start_audit(options)
        assert process is not None
        qtbot.waitUntil(lambda: bool(process.run_id) and
                        (root / "runs" / process.run_id / "checkpoint-dynamics.pt").is_file(), timeout=120_000)
        killed_id = process.run_id
        os.kill(process.pid(), signal.SIGKILL)
    assert finished.args[1] == "died"

    results = window.page.results
    row = next(row for row, run in enumerate(results._row_runs) if run.id == killed_id)
    assert results.runs_table.item(row, 1).text() == "interrupted"
    # Read through the app's own connection: a second connection opened and closed in this process would drop
    # the process's SQLite locks on the file while an engine writes it.
    project = window.session.project
    assert project.run(killed_id).status == "interrupted"
    results.runs_table.selectRow(row)
    assert results.resume_button.isEnabled() and killed_id in results.resume_button.toolTip()

    status, _ = run_job(qtbot, window, results.resume_button.click)
    assert status == "ok"
    assert window.session.audit.run.id == killed_id  # the resumed run finished and is the current audit

    status, _ = run_job(qtbot, window, lambda: window.launcher.start_audit(options))  # the same audit, uninterrupted
    assert status == "ok"
    uninterrupted = window.session.audit.run.id
    assert uninterrupted != killed_id
    for detector in ("aum", "td_lstm"):
        resumed, whole = project.scores(killed_id, detector), project.scores(uninterrupted, detector)
        np.testing.assert_allclose(resumed["score"], whole["score"], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(resumed["flagged"], whole["flagged"])
    row = next(row for row, run in enumerate(results._row_runs) if run.id == killed_id)
    summary = results.runs_table.item(row, 4).text()
    assert summary.startswith("aum, td_lstm · flagged aum ") and "12 epochs" in summary and ": " not in summary


def _run(kind: str, spec: dict[str, Any], summary: dict[str, Any]) -> RunInfo:
    return RunInfo("r1", kind, "ok", 0.0, 1.0, spec, summary, Path("."))


@pytest.mark.parametrize(("kind", "spec", "summary", "expected"), [
    ("audit", {"train": {"epochs": 12}, "detectors": ["cl", "aum"]},
     {"n_flagged": {"cl": 30, "aum": 25}, "n_audited": 1000, "estimated_noise_rate": 0.03},
     "cl, aum · flagged cl 30, aum 25 of 1,000 · 12 epochs"),
    ("retrain", {"method": "sln", "options": {"sigma": 0.5}},
     {"accuracy_original": 0.8, "accuracy_cleaned": 0.82, "accuracy_cleaned_std": 0.004, "seeds": [0, 1, 2],
      "verdict": "no measurable change"},
     "sln (sigma=0.5) · 3 seeds · accuracy 80.0% → 82.0% ± 0.4 pts (no measurable change over 3 seeds)"),
    ("compare", {"methods": [{"name": "ce"}, {"name": "sln"}]},
     {"methods": {"ce": {}, "sln": {}}, "seeds": [0, 1], "lines": ["sln - ce: +0.4 pts"]},
     "methods ce, sln · 2 seeds · sln - ce: +0.4 pts"),
    ("tune", {}, {"method": "sln", "n_complete": 8, "n_pruned": 2, "best_params": {"sigma": 0.5},
                  "best_value": 0.91},
     "sln · 8 trials (2 pruned) · best sigma=0.5 (validation accuracy 91.0%)"),
])
def test_each_kind_of_run_gets_a_readable_one_line_summary(kind: str, spec: dict[str, Any], summary: dict[str, Any],
                                                           expected: str) -> None:
    assert run_summary_line(_run(kind, spec, summary)) == expected
