"""The app's side of decision provenance: its bulk action is recorded as bulk, and the retrain dialog
counts only what a person decided one sample at a time as trusted (issue 19, item 3)."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from auditor.session import ProjectSession
from auditor.views.bulk_dialog import BulkDialog
from auditor.views.retrain_dialog import RetrainDialog
from engine.store import Project


def _train_samples_of(project: Project, label: int) -> list[int]:
    table = project.sample_table()
    return [int(i) for i in table.train_ids if table.label[i] == label]


def test_the_retrain_dialog_counts_only_a_persons_decisions_as_trusted(qtbot: QtBot, image_project: Path) -> None:
    with Project.open(image_project) as project:
        for label in range(3):
            project.decide(_train_samples_of(project, label)[0], "keep")
        # "Accept all" of one class: three keeps nobody looked at, one over a person's keep.
        project.decide_many([(sample, "keep", None) for sample in _train_samples_of(project, 2)[:3]])
        dialog = RetrainDialog(project)
        qtbot.addWidget(dialog)
        dialog.method.setCurrentIndex(dialog.method.findData("mlc"))
        text = dialog.trusted_label.text()
        assert "2 reviewed samples, none of fox: a meta method learns from these 2" in text
        assert "bulk decisions are not counted; 3 left out" in text
        assert not dialog.start_button.isEnabled() and "fox" in dialog.problem.text()


def test_the_bulk_dialog_records_bulk_decisions(qtbot: QtBot, image_project: Path) -> None:
    session = ProjectSession.open(image_project)
    try:
        dialog = BulkDialog(session)
        qtbot.addWidget(dialog)
        dialog.action.setCurrentIndex(dialog.action.findData("keep"))
        chosen = [int(i) for i in dialog.selected()]
        assert chosen
        dialog.apply()
        decisions = session.project.decisions()
        assert {decisions[i].provenance for i in chosen} == {"bulk"}
    finally:
        session.close()


def test_the_bulk_dialog_and_the_cli_decide_the_same_samples(qtbot: QtBot, image_project: Path) -> None:
    from engine.workflows import bulk

    session = ProjectSession.open(image_project)
    try:
        queue = [int(i) for i in session.review_queue()]
        session.decide(queue[0], "keep")  # already reviewed: both leave it as it is
        dialog = BulkDialog(session)
        qtbot.addWidget(dialog)
        for given, suggested in [(-1, -1), (1, 0), (0, 2)]:
            dialog.given.setCurrentIndex(given + 1)
            dialog.suggested.setCurrentIndex(suggested + 1)
            pair = None if given < 0 else f"{given}:{suggested}"
            for action in bulk.BULK_ACTIONS:
                dialog.action.setCurrentIndex(dialog.action.findData(action))
                plan = bulk.plan_all_flagged(session.project, action, pair=pair)
                assert plan.items == dialog.items() and (given >= 0 or plan.items)
    finally:
        session.close()
