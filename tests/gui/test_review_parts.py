"""Each part of the review runs alone, with just the data it needs (issue 20): the queue, the large image, the
detail card, the class picker, the buttons and the key table."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QKeyEvent
from pytestqt.qtbot import QtBot

from auditor.session import ProjectSession
from auditor.thumbnails import ThumbnailCache
from auditor.views.class_picker import ClassPicker
from auditor.views.decision_buttons import DecisionButtons
from auditor.views.image_pane import ImagePane
from auditor.views.review_keys import DIGIT_WAIT_MS, ReviewKeys, claims_shortcut
from auditor.views.review_queue import ReviewQueue
from auditor.views.sample_details import SampleDetails

CLASSES = ["cat", "dog", "fox"]


@pytest.fixture
def session(image_project: Path) -> Iterator[ProjectSession]:
    opened = ProjectSession.open(image_project)
    yield opened
    opened.close()


def key(code: Qt.Key, text: str = "", modifiers: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier) -> QKeyEvent:
    return QKeyEvent(QEvent.Type.KeyPress, code, modifiers, text)


def test_the_queue_alone_lists_the_flagged_and_moves_its_current_row(qtbot: QtBot, session: ProjectSession) -> None:
    queue = ReviewQueue(session, ThumbnailCache(session.root))
    qtbot.addWidget(queue)
    queue.show()
    queue.reload()
    queue.update_header()
    flagged = session.review_queue()
    assert queue.counter.text() == f"Reviewed 0 / {len(flagged)} flagged"
    assert queue.current_sample() == flagged[0]
    with qtbot.waitSignal(queue.current_changed):
        queue.go(1)
    assert queue.current_sample() == flagged[1]
    queue.go(100)  # clamped at the last suspect
    assert queue.current_sample() == flagged[-1]
    session.decide(int(flagged[0]), "keep")
    assert queue.first_unreviewed_row() == 1


def test_the_image_pane_alone_shows_an_image_or_says_why_not(qtbot: QtBot, tmp_path: Path) -> None:
    from PIL import Image

    pane = ImagePane()
    qtbot.addWidget(pane)
    pane.resize(300, 300)
    pane.show()
    Image.new("RGB", (8, 8), (200, 0, 0)).save(tmp_path / "red.png")
    pane.show_image(tmp_path / "red.png")
    assert pane.text() == ""
    (tmp_path / "broken.png").write_bytes(b"not an image")
    pane.show_image(tmp_path / "broken.png")
    assert "cannot be read" in pane.text()
    pane.show_image(None)
    assert pane.text() == "Nothing to review"


def test_the_detail_card_alone_says_why_this_sample(qtbot: QtBot, session: ProjectSession) -> None:
    details = SampleDetails(session)
    qtbot.addWidget(details)
    details.show()
    sample = int(session.review_queue()[0])
    details.show_sample(sample, "Suspect 1 of 9", Path("some/image.png"))
    assert details.position.text() == "Suspect 1 of 9"
    assert session.class_name(int(session.labels[sample])) in details.given.text()
    assert set(details.score_labels) == {"cl", "agreement", "rank"}
    assert details.score_labels["agreement"].text() == "1 of 1 detector flag it"
    assert details.decision_label.text() == "Not reviewed yet"
    session.decide(sample, "remove")
    details.show_sample(sample, "Suspect 1 of 9", None)
    assert details.decision_label.text().startswith("Removed")
    details.show_sample(None)
    assert details.position.text() == "" and details.given.text() == ""


def test_the_class_picker_alone_commits_once_for_the_sample_it_was_opened_on(qtbot: QtBot) -> None:
    picker = ClassPicker(CLASSES, lambda text: CLASSES.index(text) if text in CLASSES else -1)
    qtbot.addWidget(picker)
    picker.show()
    picked: list[tuple[int | None, int, str]] = []
    closed: list[bool] = []
    picker.picked.connect(lambda sample, label, text: picked.append((sample, label, text)))
    picker.closed.connect(lambda: closed.append(True))
    picker.open_on(7, "d")
    qtbot.keyClick(picker, Qt.Key.Key_Return)  # "d" begins one class only: that one
    assert picked == [(7, 1, "dog")] and closed == [True] and picker.text() == "" and picker.opened_on is None
    picker.open_on(8)
    qtbot.keyClicks(picker, "wolf")
    qtbot.keyClick(picker, Qt.Key.Key_Return)
    assert picked[-1] == (8, -1, "wolf")
    picker.open_on(9, "c")
    qtbot.keyClick(picker, Qt.Key.Key_Escape)
    assert len(picked) == 2 and closed == [True, True, True]


def test_the_buttons_alone_say_which_was_clicked(qtbot: QtBot) -> None:
    buttons = DecisionButtons()
    qtbot.addWidget(buttons)
    said: list[object] = []
    buttons.accept.connect(lambda: said.append("accept"))
    buttons.remove.connect(lambda: said.append("remove"))
    buttons.keep.connect(lambda: said.append("keep"))
    buttons.step.connect(said.append)
    for button in (buttons.accept_button, buttons.remove_button, buttons.keep_button, buttons.previous_button,
                   buttons.next_button):
        assert button.focusPolicy() == Qt.FocusPolicy.NoFocus  # the keys stay with the review
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert said == ["accept", "remove", "keep", -1, 1]


def test_the_key_table_alone(qtbot: QtBot) -> None:
    keys = ReviewKeys(CLASSES, lambda: 5)
    said: list[object] = []
    keys.accept.connect(lambda: said.append("accept"))
    keys.keep.connect(lambda: said.append("keep"))
    keys.step.connect(said.append)
    keys.undo.connect(lambda: said.append("undo"))
    keys.redo.connect(lambda: said.append("redo"))
    keys.picker_requested.connect(lambda text: said.append(f"picker {text!r}"))
    keys.class_number.connect(lambda sample, digits: said.append((sample, digits)))
    assert keys.handle(key(Qt.Key.Key_Return))
    assert keys.handle(key(Qt.Key.Key_J, "j")) and keys.handle(key(Qt.Key.Key_Up))
    assert keys.handle(key(Qt.Key.Key_2, "2"))  # three classes: one digit is a whole class number
    assert keys.handle(key(Qt.Key.Key_D, "d")) and keys.handle(key(Qt.Key.Key_Slash, "/"))
    assert keys.handle(key(Qt.Key.Key_Z, "z", Qt.KeyboardModifier.ControlModifier))
    assert keys.handle(key(Qt.Key.Key_Y, "y", Qt.KeyboardModifier.ControlModifier))
    assert not keys.handle(key(Qt.Key.Key_S, "s", Qt.KeyboardModifier.ControlModifier))  # not a review key
    assert said == ["accept", 1, -1, (5, "2"), "picker 'd'", "picker ''", "undo", "redo"]
    assert claims_shortcut(QKeyEvent(QEvent.Type.ShortcutOverride, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier))


def test_a_class_number_that_waits_for_a_second_digit_goes_to_its_own_sample_first(qtbot: QtBot) -> None:
    shown = [3]
    keys = ReviewKeys([f"c{k}" for k in range(12)], lambda: shown[0])
    said: list[object] = []
    keys.keep.connect(lambda: said.append("keep"))
    keys.class_number.connect(lambda sample, digits: said.append((sample, digits)))
    keys.handle(key(Qt.Key.Key_1, "1"))  # 1 could begin 10 or 11: it waits
    assert said == [] and keys.pending_digits == "1"
    shown[0] = 4
    keys.handle(key(Qt.Key.Key_K, "k"))  # another key: the number goes first, to the sample it was typed on
    assert said == [(3, "1"), "keep"]
    keys.handle(key(Qt.Key.Key_1, "1"))
    keys.sample_shown(4)  # still on its sample: it waits
    assert keys.pending_digits == "1"
    qtbot.waitUntil(lambda: said[-1] == (4, "1"), timeout=DIGIT_WAIT_MS * 4)
