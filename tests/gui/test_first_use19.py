"""Issue 19, first use as a new user found it: one Enter in the class picker, skipped files shown,
a window that never resizes itself, one detector per plot, and the smaller slips (items 6, 13-17)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget
from pytestqt.qtbot import QtBot

from auditor.main_window import MainWindow
from auditor.session import ProjectSession
from auditor.thumbnails import ThumbnailCache
from auditor.views.browse_view import BrowseView
from auditor.views.review_view import ReviewView


@pytest.fixture
def session(image_project: Path) -> Iterator[ProjectSession]:
    opened = ProjectSession.open(image_project)
    yield opened
    opened.close()


def active_review(qtbot: QtBot, session: ProjectSession) -> ReviewView:
    """A review with the keyboard, as on a desktop: the completer's popup takes the keys while it is open."""
    view = ReviewView(session, ThumbnailCache(session.root))
    qtbot.addWidget(view)
    view.show()
    view.activateWindow()
    qtbot.waitUntil(view.isActiveWindow)
    view.setFocus()
    return view


def keys_target(view: ReviewView) -> QWidget:
    """Where a real key press lands: the open completions, else the focused widget."""
    widget = QApplication.activePopupWidget() or QApplication.focusWidget()
    assert widget is not None
    return widget


# ----------------------------------------------------------------- item 14: one Enter commits
@pytest.mark.parametrize(("typed", "highlight", "expected"), [("dog", False, 1), ("fo", False, 2), ("c", True, 0)])
def test_one_enter_in_the_class_picker_commits_the_class(qtbot: QtBot, session: ProjectSession, typed: str,
                                                         highlight: bool, expected: int) -> None:
    view = active_review(qtbot, session)
    sample = view.current_sample()
    assert sample is not None
    qtbot.keyClicks(view, typed[0])  # type-ahead opens the picker and its completions
    assert view.class_picker.completer().popup().isVisible()
    for letter in typed[1:]:
        qtbot.keyClicks(keys_target(view), letter)
    if highlight:
        qtbot.keyClick(keys_target(view), Qt.Key.Key_Down)
    qtbot.keyClick(keys_target(view), Qt.Key.Key_Return)  # once
    decision = session.decision(sample)
    assert decision is not None
    given = int(session.labels[sample])
    assert (decision.action, decision.new_label) == (("relabel", expected) if given != expected else ("keep", None))
    assert not view.class_picker.completer().popup().isVisible() and view.class_picker.text() == ""
    assert view.hasFocus()  # the next key decides the next sample


# ----------------------------------------------------------------- item 15: skipped files are shown
def folder_with_bad_files(root: Path) -> Path:
    """15 files in 3 class folders: 12 images, a truncated JPEG, random bytes named .png, and a .txt."""
    rng = np.random.default_rng(0)
    images = root / "images"
    for name in ("cat", "dog", "fox"):
        (images / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(images / name / f"{i}.png")
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(images / "cat" / "cut.jpg")
    whole = (images / "cat" / "cut.jpg").read_bytes()
    (images / "cat" / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    (images / "dog" / "noise.png").write_bytes(rng.integers(0, 255, 500, dtype=np.uint8).tobytes())
    (images / "fox" / "notes.txt").write_text("not an image")
    return images


@pytest.fixture
def skipped_project(tmp_path: Path) -> Path:
    from engine.data.importing import import_folder

    import_folder(tmp_path / "project", folder_with_bad_files(tmp_path), test_fraction=0.0, folds=2).close()
    return tmp_path / "project"


def test_browse_lists_the_skipped_files_with_their_reasons(qtbot: QtBot, skipped_project: Path) -> None:
    session = ProjectSession.open(skipped_project)
    view = BrowseView(session, ThumbnailCache(session.root))
    try:
        view.show()
        notice = view.skipped
        assert notice.isVisible() and session.num_samples == 12
        assert "3 of 15 files were skipped at import" in notice.summary.text()
        assert not notice.list.isVisible()
        qtbot.mouseClick(notice.toggle, Qt.MouseButton.LeftButton)
        assert notice.list.isVisible()
        rows = [notice.list.item(i).text() for i in range(notice.list.count())]
        assert [row.split(" — ")[0] for row in rows] == ["cat/cut.jpg", "dog/noise.png", "fox/notes.txt"]
        assert all(len(row.split(" — ")[1]) > 5 for row in rows)  # each with its reason
    finally:
        view.close()
        view.deleteLater()
        QApplication.processEvents()
        session.close()


def test_browse_says_nothing_when_nothing_was_skipped(qtbot: QtBot, session: ProjectSession) -> None:
    view = BrowseView(session, ThumbnailCache(session.root))
    qtbot.addWidget(view)
    view.show()
    assert not view.skipped.isVisible()


def test_a_new_project_tells_its_skipped_files_where_it_opens(window: MainWindow, skipped_project: Path) -> None:
    assert window.open_new_project(skipped_project)
    assert "3 of 15 files were skipped at import" in window.last_message
    box = window.findChildren(QMessageBox)[-1]
    for path in ("cat/cut.jpg", "dog/noise.png", "fox/notes.txt"):
        assert path in box.detailedText()
    window.close_project()
    assert window.open_project(skipped_project)  # reopened later: the status bar says it, Browse lists them
    assert "3 of 15 files were skipped" in window.statusBar().currentMessage()
    assert window.page is not None and window.page.currentWidget() is window.page.browse
