"""The whole app against the REAL engine process: demo → audit → review by keyboard → retrain → export.

One tiny budget (1 epoch, 2 folds, 16 px) keeps it to well under a minute on 2 CPU cores.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from auditor.main_window import MainWindow
from auditor.views.audit_dialog import TrainOptions
from engine.store import Project

TINY = TrainOptions(model="small_cnn", epochs=1, folds=2, image_size=16, device="cpu", seed=0)
JOB_TIMEOUT_MS = 180_000


def run_job(qtbot: QtBot, window: MainWindow, start: object) -> str:
    with qtbot.waitSignal(window.job_finished, timeout=JOB_TIMEOUT_MS) as blocker:
        process = start()  # type: ignore[operator]
        assert process is not None
    command, status = blocker.args
    return str(status)


def committed_decisions(root: Path) -> dict[int, tuple[str, int | None]]:
    """Read the decisions through a second connection: what a crash would leave on disk."""
    with Project.open(root) as project:
        return {sid: (d.action, d.new_label) for sid, d in project.decisions().items()}


def test_audit_review_retrain_export(qtbot: QtBot, window: MainWindow, demo_project: Path, tmp_path: Path) -> None:
    assert window.open_project(demo_project)
    session = window.session
    assert session is not None and session.audit is None

    # Audit through the real engine; live progress and curves reach the audit view.
    audit_view = window.page.audit  # type: ignore[union-attr]
    assert run_job(qtbot, window, lambda: window.launcher.start_audit(TINY)) == "ok"
    assert session.audit is not None and session.audit.detector == "cl"
    assert audit_view.job.progress_bar.maximum() > 0
    assert audit_view.job.curves.curve_count() >= 2  # loss and accuracy of each fold
    assert audit_view.job.status.text() == "Finished"
    queue = session.review_queue()
    assert len(queue) == int(session.audit.flagged.sum()) > 10
    # Most suspect first.
    assert np.all(np.diff(session.audit.rank[queue]) > 0)

    review = window.page.review
    assert window.page.currentWidget() is review
    review.setFocus()
    labels = session.labels
    first, second, third, fourth = (int(i) for i in queue[:4])
    assert review.current_sample() == first

    qtbot.keyClick(review, Qt.Key.Key_Return)  # accept the suggestion
    suggested = int(session.audit.suggested[first])
    expected_first = ("relabel", suggested) if suggested != labels[first] else ("keep", None)
    assert review.current_sample() == second
    target = 3 if labels[second] != 3 else 4
    qtbot.keyClick(review, getattr(Qt.Key, f"Key_{target}"))  # relabel to a chosen class
    qtbot.keyClick(review, Qt.Key.Key_Delete)  # remove
    qtbot.keyClick(review, Qt.Key.Key_K)  # keep as verified ...
    assert committed_decisions(demo_project)[fourth] == ("keep", None)
    qtbot.keyClick(review, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # ... and take it back
    assert review.current_sample() == fourth

    on_disk = committed_decisions(demo_project)
    assert on_disk == {first: expected_first, second: ("relabel", target), third: ("remove", None)}
    assert review.queue.counter.text().startswith("Reviewed 3 /")

    # Redo brings the keep back; undo again so the export below sees three decisions.
    qtbot.keyClick(review, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert committed_decisions(demo_project)[fourth] == ("keep", None)
    qtbot.keyClick(review, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert fourth not in committed_decisions(demo_project)

    # Retrain with the decisions applied: before/after accuracy shown side by side.
    assert run_job(qtbot, window, lambda: window.launcher.start_retrain(TINY)) == "ok"
    results = window.page.results
    assert window.page.currentWidget() is results
    assert results.before.value.text().endswith("%")
    assert results.after.value.text().endswith("%")
    assert "1 removed" in results.after.detail.text()

    # Export the corrected labels and the cleaned folder.
    out = tmp_path / "labels.csv"
    folder = tmp_path / "cleaned"
    assert run_job(qtbot, window, lambda: window.exporter.export(out, folder=folder)) == "ok"
    table = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert len(table) == session.num_samples
    names = session.class_names
    assert table.loc[second, "action"] == "relabeled" and table.loc[second, "final_label"] == names[target]
    assert table.loc[third, "action"] == "removed" and table.loc[third, "final_label"] == ""
    assert table.loc[fourth, "action"] == "unreviewed"
    if expected_first[0] == "relabel":
        assert table.loc[first, "final_label"] == names[suggested]
    assert table.loc[first, "suggested_label"] == names[suggested]
    assert (table["action"] != "unreviewed").sum() == 3
    exported_images = sum(1 for path in folder.rglob("*.png"))
    assert exported_images == session.num_samples - 1  # the removed one is left out
    assert str(out) in results.export_status.text()


def test_killed_engine_is_reported_and_decisions_survive(qtbot: QtBot, window: MainWindow, demo_project: Path,
                                                          fake_audit: Callable[..., str]) -> None:
    with Project.open(demo_project) as project:
        table = project.sample_table()
        fake_audit(project, table.true_label, table.label)
    assert window.open_project(demo_project)
    review = window.page.review  # type: ignore[union-attr]
    review.setFocus()
    first = review.current_sample()
    assert first is not None
    decided = [first]
    qtbot.keyClick(review, Qt.Key.Key_R)
    decided.append(review.current_sample())
    qtbot.keyClick(review, Qt.Key.Key_Return)

    process = window.launcher.start_audit(TINY)
    assert process is not None
    qtbot.waitSignal(process.progress, timeout=JOB_TIMEOUT_MS).wait()
    # A decision made while the engine runs is committed too.
    decided.append(review.current_sample())
    qtbot.keyClick(review, Qt.Key.Key_K)
    with qtbot.waitSignals([process.died, window.job_finished], timeout=30_000):
        process.kill()
    job = window.page.audit.job  # type: ignore[union-attr]
    assert job.error_panel.isVisibleTo(window.page.audit)  # type: ignore[union-attr]
    assert "killed" in job.error_panel.title.text()
    assert job.status.text() == "The engine stopped unexpectedly"
    assert window.session is not None and window.page is not None  # the app is still up with its project

    with Project.open(demo_project) as project:  # the dead run is recorded as interrupted, resumable
        dead = project.runs("audit")[-1]
        assert dead.status == "interrupted" and "before" in dead.summary["reason"]  # ended/died before it finished
    banner = window.frame.interrupted_banner
    assert banner is not None and banner.isVisibleTo(window)
    assert f"--resume {dead.id}" in banner.text()
    before = committed_decisions(demo_project)
    assert set(before) == set(decided) and before[decided[0]] == ("remove", None)
    # Close and reopen: every decision is there, and the view shows them.
    window.close_project()
    assert window.open_project(demo_project)
    assert window.session is not None
    assert {sid: (d.action, d.new_label) for sid, d in window.session.decisions().items()} == before


def test_cancel_stops_the_audit_cleanly(qtbot: QtBot, window: MainWindow, demo_project: Path) -> None:
    assert window.open_project(demo_project)
    process = window.launcher.start_audit(TrainOptions(epochs=50, folds=2, image_size=16, device="cpu"))
    assert process is not None
    qtbot.waitSignal(process.metric, timeout=JOB_TIMEOUT_MS).wait()  # training is under way
    job = window.page.audit.job  # type: ignore[union-attr]
    with qtbot.waitSignal(window.job_finished, timeout=60_000) as blocker:
        qtbot.mouseClick(job.cancel_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["audit", "cancelled"]
    assert job.status.text().startswith("Cancelled")
    with Project.open(demo_project) as project:
        assert project.runs("audit")[-1].status == "cancelled"


@pytest.mark.parametrize("how", ["menu", "start page"])
def test_demo_is_made_on_first_use(qtbot: QtBot, window: MainWindow, how: str) -> None:
    from auditor.settings import demo_project_dir

    assert not demo_project_dir().exists()
    with qtbot.waitSignal(window.project_opened, timeout=120_000) as blocker:
        if how == "menu":
            window.demo_action.trigger()
        else:
            qtbot.mouseClick(window.start_page.demo_button, Qt.MouseButton.LeftButton)
    assert Path(blocker.args[0]) == demo_project_dir().resolve()
    assert window.session is not None and window.session.num_samples == 1797
    assert window.session.class_names == [str(d) for d in range(10)]


def test_an_audit_with_every_detector_from_the_dialog(qtbot: QtBot, window: MainWindow, demo_project: Path) -> None:
    """The audit dialog's "all" runs every registered detector; the review then reads each one's verdict."""
    from auditor.views.audit_dialog import AuditDialog
    from engine.detectors import DETECTORS

    assert window.open_project(demo_project)
    dialog = AuditDialog(TrainOptions(model="small_cnn", epochs=1, folds=2, image_size=16, device="cpu"))
    qtbot.addWidget(dialog)
    qtbot.mouseClick(dialog.all_detectors, Qt.MouseButton.LeftButton)
    dialog.dynamics_epochs.setValue(2)
    options = dialog.options()
    assert options.detectors == ["all"] and options.dynamics_epochs == 2
    assert run_job(qtbot, window, lambda: window.launcher.start_audit(options)) == "ok"
    session = window.session
    assert session is not None and session.audit is not None
    assert set(session.audit.per_detector) == set(DETECTORS)  # every detector's scores reached the app
    with Project.open(demo_project) as project:
        run = project.run(session.audit.run.id)
        assert run.spec["dynamics_epochs"] == 2 and run.spec["train"]["epochs"] == 1
    first = int(session.review_queue()[0])
    agree, total = session.audit.agreement(first)
    assert total == len(DETECTORS) and 1 <= agree <= total
