"""What the app shows must never mislead or lose work (issue 13, the app's side).

Stale suggestions are marked and accepting one asks; changes the CLI makes while the app is open
show up (labels, replaced images, decisions) and the app's undo never takes back a CLI decision;
a decision that cannot be saved says why and moves nothing; damaged and read-only projects say
so; an interrupted run is shown as interrupted with the command that resumes it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from auditor.main_window import MainWindow
from auditor.session import ProjectSession
from auditor.thumbnails import ThumbnailCache
from auditor.views.browse_view import BrowseView
from engine.errors import DiskFullError
from engine.store import Project


@pytest.fixture
def session(image_project: Path) -> Iterator[ProjectSession]:
    opened = ProjectSession.open(image_project)
    yield opened
    opened.close()


def mean_colour(image: QImage) -> np.ndarray:
    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    row = rgb.bytesPerLine()
    data = np.frombuffer(rgb.constBits(), dtype=np.uint8, count=row * rgb.height()).reshape(rgb.height(), row)
    return data[:, :rgb.width() * 3].reshape(-1, 3).mean(axis=0)


def change_labels_elsewhere(root: Path, flips: dict[int, int], overrides: dict[int, str] | None = None) -> None:
    """What `inject-noise` does, through its own connection (another process, as far as the app knows)."""
    with Project.open(root) as cli:
        table = cli.sample_table()
        labels = table.label.copy()
        for sample, label in flips.items():
            labels[sample] = label
        current = {i: path for i, path in enumerate(table.image_override) if path}
        cli.set_labels(labels, table.true_label, {**current, **(overrides or {})})
        cli.record_noise("open_set" if overrides else "symmetric", 0.1, 2, {}, len(flips) + len(overrides or {}))


# ------------------------------------------------------------- item 5: stale copies
def test_thumbnail_follows_a_replaced_image(qtbot: QtBot, session: ProjectSession) -> None:
    view = BrowseView(session, ThumbnailCache(session.root))
    qtbot.addWidget(view)
    view.resize(700, 500)
    view.show()
    qtbot.waitUntil(lambda: view.model.tile(0).pixmap is not None, timeout=10_000)
    before = mean_colour(view.model.tile(0).pixmap.toImage())  # type: ignore[union-attr]
    assert before.argmax() == 0  # sample 0 is a red "cat"
    # Open-set noise: sample 0 now shows a blue image stored inside the project.
    (session.root / "openset").mkdir()
    Image.fromarray(np.full((24, 24, 3), (20, 30, 230), dtype=np.uint8)).save(session.root / "openset" / "0.png")
    change_labels_elsewhere(session.root, {}, {0: "openset/0.png"})
    with qtbot.waitSignal(session.samples_changed):
        assert session.reload_if_changed()
    assert view.model.image_path(0) == session.root / "openset" / "0.png"
    qtbot.waitUntil(lambda: view.model.tile(0).pixmap is not None, timeout=10_000)
    after = mean_colour(view.model.tile(0).pixmap.toImage())  # type: ignore[union-attr]
    assert after.argmax() == 2, f"the grid still shows the old image (mean colour {after})"


def test_an_image_edited_in_place_gets_a_new_thumbnail(qtbot: QtBot, session: ProjectSession) -> None:
    cache = ThumbnailCache(session.root)
    source = session.project.sample_image_path(1)
    assert cache.get(1, source) is None
    qtbot.waitUntil(lambda: cache.get(1, source) is not None, timeout=10_000)
    Image.fromarray(np.full((24, 24, 3), (10, 240, 10), dtype=np.uint8)).save(source)  # same path, new pixels
    fresh = ThumbnailCache(session.root)  # a later session: the disk cache must not serve the old pixels
    assert fresh.get(1, source) is None
    qtbot.waitUntil(lambda: fresh.get(1, source) is not None, timeout=10_000)
    assert mean_colour(fresh.get(1, source).toImage()).argmax() == 1  # type: ignore[union-attr]


def test_cli_changes_reach_the_open_app(qtbot: QtBot, session: ProjectSession) -> None:
    assert not session.reload_if_changed()  # nothing happened: one cheap check
    with Project.open(session.root) as cli:
        cli.decide(4, "remove")
    change_labels_elsewhere(session.root, {5: 2})
    session.start_watching(50)  # the app's timer finds it, nobody calls anything
    qtbot.waitUntil(lambda: session.decision(4) is not None and session.labels[5] == 2, timeout=5000)
    assert session.decided[4] and session.action_counts()["remove"] == 1


def test_app_undo_never_takes_back_a_cli_decision(qtbot: QtBot, session: ProjectSession) -> None:
    notices: list[str] = []
    session.notice.connect(notices.append)
    assert session.decide(1, "keep") is not None
    assert session.can_undo()
    with Project.open(session.root) as cli:
        cli.decide(2, "remove")
    assert session.undo() is None  # the latest decision is the CLI's: nothing is undone
    assert notices and "made elsewhere (CLI); undo it there" in notices[-1]
    assert not session.can_undo()
    with Project.open(session.root) as cli:
        assert set(cli.decisions()) == {1, 2}
        cli.undo()  # undone where it was made
    state = session.undo()  # now the app's own decision is the latest again
    assert state is not None and state.sample_id == 1
    assert session.decision(1) is None and session.decision(2) is None
    assert session.redo() is not None and session.decision(1) is not None


# ------------------------------------------------------------- item 3: stale results
def test_stale_audit_is_marked_and_accepting_asks(qtbot: QtBot, window: MainWindow, image_project: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert window.open_project(image_project)
    session, page = window.session, window.page
    assert session is not None and page is not None and window.frame is not None
    assert session.stale_reason() is None and not window.frame.stale_banner.isVisibleTo(window)
    change_labels_elsewhere(image_project, {3: 0, 10: 2})  # inject-noise with another seed, from the CLI
    session.reload_if_changed()
    assert window.frame.stale_banner.isVisibleTo(window)
    assert "computed on labels that have since changed: run a new audit" in window.frame.stale_banner.text()
    assert "noise injected" in (session.stale_reason() or "")

    review = page.review
    page.show_review()
    review.setFocus()
    first = review.current_sample()
    assert first is not None
    asked: list[str] = []
    answer = QMessageBox.StandardButton.Cancel

    def question(parent: object, title: str, text: str, *args: object) -> QMessageBox.StandardButton:
        asked.append(text)
        return answer

    monkeypatch.setattr(QMessageBox, "question", question)
    qtbot.keyClick(review, Qt.Key.Key_A)
    assert asked and "run a new audit" in asked[0]
    assert session.decision(first) is None and review.current_sample() == first  # nothing accepted, no move
    answer = QMessageBox.StandardButton.Yes
    qtbot.keyClick(review, Qt.Key.Key_A)
    assert len(asked) == 2
    decision = session.decision(first)
    assert decision is not None and review.current_sample() != first


# ------------------------------------------------------------- item 13: failed saves
def test_a_decision_that_cannot_be_saved_is_told_and_moves_nothing(qtbot: QtBot, window: MainWindow,
                                                                   image_project: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert window.open_project(image_project)
    session, page = window.session, window.page
    assert session is not None and page is not None
    review = page.review
    page.show_review()
    review.setFocus()
    qtbot.keyClick(review, Qt.Key.Key_K)  # one decision saved before the disk fills
    saved = dict(session.decisions())
    current = review.current_sample()

    def disk_full(*args: object, **kwargs: object) -> None:
        raise DiskFullError(image_project, 5 * 1024 * 1024)

    monkeypatch.setattr(session.project, "decide", disk_full)
    monkeypatch.setattr(session.project, "undo_step", disk_full)
    qtbot.keyClick(review, Qt.Key.Key_R)
    assert window.last_message.startswith("the disk is full: free 5 MB in")
    assert review.current_sample() == current and session.decision(current) is None  # type: ignore[arg-type]
    qtbot.keyClick(review, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert window.last_message.startswith("the disk is full")
    assert session.decisions() == saved
    with Project.open(image_project) as other:  # nothing saved was harmed
        assert {sid: (d.action, d.new_label) for sid, d in other.decisions().items()} == \
            {sid: (d.action, d.new_label) for sid, d in saved.items()}


# ------------------------------------------------------------- item 14: damaged / read-only
@pytest.mark.parametrize("damage", ["garbage", "empty", "unknown sample", "no image root"])
def test_a_damaged_project_is_told_not_silent(window: MainWindow, image_project: Path, damage: str) -> None:
    db = image_project / "project.db"
    if damage == "garbage":
        db.write_bytes(b"this is not a database" * 100)
    elif damage == "empty":
        db.write_bytes(b"")
    elif damage == "unknown sample":
        with sqlite3.connect(db) as conn:
            conn.execute("INSERT INTO decisions(sample_id, action, new_label, history_id) VALUES (999, 'remove', NULL, 1)")
    else:  # found only while the views are built, after the store opened fine
        with sqlite3.connect(db) as conn:
            conn.execute("DELETE FROM meta WHERE key = 'source'")
    assert not window.open_project(image_project)
    assert window.last_message.startswith("this project is damaged: ")
    assert window.stack.currentWidget() is window.start_page and window.session is None
    problem = window.start_page.problem
    assert problem.isVisibleTo(window) and "this project is damaged" in problem.text()
    if damage == "empty":
        assert db.stat().st_size == 0  # never written into


def test_a_read_only_project_opens_for_viewing(qtbot: QtBot, window: MainWindow, image_project: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.store.project

    # The tests run as root, who may write anything: stand in for a read-only disk.
    monkeypatch.setattr(engine.store.project, "may_write", lambda root, db_path: False)
    assert window.open_project(image_project)
    session, page = window.session, window.page
    assert session is not None and page is not None and session.read_only
    assert window.frame is not None and window.frame.read_only_banner.isVisibleTo(window)
    banner = window.frame.read_only_banner.text()
    assert "Read-only" in banner and "decisions are disabled" in banner
    assert "(read-only)" in window.windowTitle()
    assert not window.audit_action.isEnabled() and not window.retrain_action.isEnabled()
    review = page.review
    page.show_review()
    review.setFocus()
    current = review.current_sample()
    qtbot.keyClick(review, Qt.Key.Key_K)
    assert "read-only" in window.last_message
    assert review.current_sample() == current and not session.decisions()


# ------------------------------------------------------------- item 17: interrupted runs
def test_an_interrupted_run_shows_how_to_resume(qtbot: QtBot, window: MainWindow, image_project: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    with Project.open(image_project) as cli:  # an audit whose engine was killed: its row still says running
        run = cli.new_run("audit", {"epochs": 1})
        spec = {**run.spec, "process": {**run.spec["process"], "pid": dead.pid, "started": None}}
        with cli.transaction() as conn:
            conn.execute("UPDATE runs SET spec = ? WHERE id = ?", (json.dumps(spec), run.id))
    assert window.open_project(image_project)
    banner = window.frame.interrupted_banner
    assert banner is not None and banner.isVisibleTo(window)
    assert "Interrupted" in banner.text() and "running" not in banner.text()
    assert f"python -m engine audit {image_project} --resume {run.id}" in banner.text()
    table = window.page.results.runs_table  # type: ignore[union-attr]

    def cell(row: int, column: int) -> str:
        item = table.item(row, column)
        return item.text() if item is not None else ""

    row = next(row for row in range(table.rowCount()) if cell(row, 3) == run.id)
    assert cell(row, 1) == "interrupted"
    assert f"--resume {run.id}" in cell(row, 4)
