"""The app and the labels an audit saw: the review is not marked out of date by its own decisions,
the export's confirmation says when its scores are stale, the curves say what they are graded against."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from auditor.main_window import MainWindow


def test_review_decisions_leave_the_review_current_and_the_export_says_its_scores_are_stale(
        qtbot: QtBot, window: MainWindow, image_project: Path, tmp_path: Path) -> None:
    assert window.open_project(image_project)
    session, page = window.session, window.page
    assert session is not None and page is not None and session.audit is not None and window.frame is not None
    run_id = session.audit.run.id

    # Nothing decided since the audit: the export writes its scores without a word.
    with qtbot.waitSignal(window.job_finished, timeout=60_000) as blocker:
        window.exporter.export(tmp_path / "fresh.csv")
    assert blocker.args == ["export", "ok"]
    assert "out of date" not in page.results.export_status.text()

    session.decide(0, "relabel", 2)  # reviewing the audit: its suggestions for the others stand
    assert session.stale_reason() is None and not window.frame.stale_banner.isVisibleTo(window)

    # The audit trained on the labels before that decision: the export's scores describe those.
    with qtbot.waitSignal(window.job_finished, timeout=60_000) as blocker:
        window.exporter.export(tmp_path / "stale.csv")
    assert blocker.args == ["export", "ok"]
    said = page.results.export_status.text()
    assert f"Its score columns come from cl of audit {run_id}, which is out of date" in said
    assert "decisions changed since this audit run" in said


def test_detector_curves_say_which_labels_they_grade(window: MainWindow, image_project: Path) -> None:
    assert window.open_project(image_project)
    page = window.page
    assert page is not None
    curves = page.curves
    curves.refresh()
    # The fake audit of the fixture is an older version's: it recorded no labels.
    assert "graded against the project's observed labels" in curves.caption.text()
    assert curves.report is not None and "recorded no labels" in curves.report["graded_against"]
