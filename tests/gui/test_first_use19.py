"""Issue 19, first use as a new user found it: one Enter in the class picker, skipped files shown,
a window that never resizes itself, one detector per plot, and the smaller slips (items 6, 13-17)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from auditor.session import ProjectSession
from auditor.thumbnails import ThumbnailCache
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
