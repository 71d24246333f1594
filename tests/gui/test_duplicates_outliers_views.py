"""The Duplicates and Outliers views on the engine's answers: groups side by side with their flags, each group
decided in one undoable step recorded as a person's; outliers ranked and decided with the review's keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget
from pytestqt.qtbot import QtBot

from auditor.session import ProjectSession
from auditor.thumbnails import ThumbnailCache
from auditor.views.duplicate_group import INFLATES, LABEL_SUSPECT
from auditor.views.duplicates_view import DuplicatesView
from auditor.views.outliers_view import OutliersView

# make_image_project: ids 0-7 cat, 8-15 dog, 16-23 fox; every third image (i % 3 == 0) carries the next class's
# label (sample 0 is a cat labelled dog); the last of each class (7, 15, 23) is held out.
SUSPECT = {"members": [0, 1], "method": "phash", "similarity": 0.969, "labels": [1, 0], "splits": ["train", "train"],
           "label_conflict": True, "crosses_splits": False, "paths": ["cat/cat_000.png", "cat/cat_001.png"]}
CROSSING = {"members": [2, 7], "method": "file", "similarity": 1.0, "labels": [0, 0], "splits": ["train", "test"],
            "label_conflict": False, "crosses_splits": True, "paths": ["cat/cat_002.png", "cat/cat_007.png"]}
REPORT: dict[str, Any] = {"n_groups": 2, "n_samples_in_groups": 4, "by_method": {"file": 1, "pixels": 0, "phash": 1},
                          "n_label_suspects": 1, "heldout_inflation": {"heldout_samples_with_a_training_copy": 1},
                          "methods": ["file", "pixels", "phash"], "seconds": 0.4, "groups": [SUSPECT, CROSSING]}


@pytest.fixture
def session(make_project: Any, tmp_path: Path) -> Iterator[ProjectSession]:
    opened = ProjectSession.open(make_project(tmp_path))
    yield opened
    opened.close()


def provenances(session: ProjectSession, ids: list[int]) -> dict[int, tuple[str, str | None]]:
    decisions = session.project.decisions()
    return {sample: (decisions[sample].action, decisions[sample].provenance) for sample in ids if sample in decisions}


def texts(widget: QWidget) -> list[str]:
    return [label.text() for label in widget.findChildren(QLabel)]


def test_groups_show_their_flags_and_each_action_is_one_persons_undoable_step(qtbot: QtBot,
                                                                             session: ProjectSession) -> None:
    view = DuplicatesView(session, ThumbnailCache(session.root))
    qtbot.addWidget(view)
    view.resize(900, 700)
    view.show()
    view.show_report(REPORT)
    assert "2 duplicate groups" in view.summary.text() and "No embeddings yet" in view.summary.text()
    suspect, crossing = view.cards
    assert LABEL_SUSPECT in texts(suspect) and INFLATES not in texts(suspect)
    assert INFLATES in texts(crossing) and LABEL_SUSPECT not in texts(crossing)
    assert [tile.label.text() for tile in suspect.tiles] == ["dog", "cat"]
    assert crossing.chosen() == 7  # the held-out copy is kept by default: removing the training copy ends it
    qtbot.waitUntil(lambda: all(tile.image.pixmap() is not None and not tile.image.pixmap().isNull()
                                for tile in suspect.tiles), timeout=10_000)

    suspect.tiles[1].keep.setChecked(True)
    suspect.keep_button.click()
    assert provenances(session, [0, 1]) == {0: ("remove", "person"), 1: ("keep", "person")}
    assert [tile.decision.text() for tile in suspect.tiles] == ["removed", "kept"]
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # one Ctrl+Z undoes the group
    assert provenances(session, [0, 1]) == {}
    assert [tile.decision.text() for tile in suspect.tiles] == ["not reviewed", "not reviewed"]

    suspect.label_all(0)  # the whole group is a cat
    decisions = session.project.decisions()
    assert (decisions[0].action, decisions[0].new_label, decisions[0].provenance) == ("relabel", 0, "person")
    assert (decisions[1].action, decisions[1].provenance) == ("keep", "person")
    assert "Ctrl+Z undoes the group" in view.feedback.text()
    qtbot.keyClick(view, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)  # nothing undone: nothing to redo
    view.undo()
    assert provenances(session, [0, 1]) == {}


def test_only_a_page_of_groups_is_made_at_once(qtbot: QtBot, session: ProjectSession) -> None:
    view = DuplicatesView(session, ThumbnailCache(session.root))
    qtbot.addWidget(view)
    many = {**REPORT, "groups": [CROSSING] * 45}
    view.show_report(many)
    assert len(view.cards) == 20 and "Show 20 more of 25" in view.more_button.text()
    view.more_button.click()
    view.more_button.click()
    assert len(view.cards) == 45 and view.more_button.isHidden()


def test_a_large_group_wraps_to_the_width_with_its_actions_in_sight(qtbot: QtBot, session: ProjectSession) -> None:
    """20 members (look-alikes grouped by embeddings can be that many) wrap onto rows the view's width; the
    group's actions sit under its title, above the members."""
    view = DuplicatesView(session, ThumbnailCache(session.root))
    qtbot.addWidget(view)
    view.resize(900, 700)
    view.show()
    members = list(range(20))
    large = {**SUSPECT, "members": members, "labels": [0] * 19 + [1], "splits": ["train"] * 20, "paths": [""] * 20}
    view.show_report({**REPORT, "groups": [large]})
    qtbot.waitUntil(lambda: view.cards[0].tiles[-1].isVisible())
    card = view.cards[0]
    assert card.width() <= 900
    rows = sorted({tile.mapTo(card, tile.rect().topLeft()).y() for tile in card.tiles})
    assert len(rows) >= 3 and all(tile.geometry().right() <= card.width() for tile in card.tiles)
    assert card.keep_button.mapTo(card, card.keep_button.rect().topLeft()).y() < rows[0]


RANKING = {"source": "efficientnet_lite0", "k": 10, "threshold": 0.5, "n_flagged": 1,
           "top": [{"sample_id": 5, "distance": 0.91, "flagged": True}, {"sample_id": 12, "distance": 0.42,
                                                                         "flagged": False}]}


def test_outliers_are_ranked_and_decided_with_the_review_keys(qtbot: QtBot, session: ProjectSession) -> None:
    view = OutliersView(session, ThumbnailCache(session.root))
    qtbot.addWidget(view)
    view.resize(1000, 700)
    view.show()
    assert view.current_sample() is None and "Find outliers" in view.image.text()
    view.show_ranking(RANKING)
    assert view.current_sample() == 5
    assert "Outlier 1 of 2" in view.details.position.text() and "distance 0.910" in view.details.position.text()
    assert "Reviewed 0 / 2 outliers" in view.queue.counter.text()
    assert "10th nearest neighbour" in view.about.text() and view.find_button.isVisible()
    assert view.queue.order_box.isHidden() and view.queue.bulk_button.isHidden()
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_R)  # remove, and on to the next outlier
    assert session.decision(5).action == "remove"  # type: ignore[union-attr]
    assert view.current_sample() == 12
    qtbot.keyClick(view, Qt.Key.Key_2)  # relabel to class 2 (fox)
    decision = session.decision(12)
    assert decision is not None and (decision.action, decision.new_label) == ("relabel", 2)
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert session.decision(12) is None and view.current_sample() == 12
    assert "Reviewed 1 / 2 outliers" in view.queue.counter.text()


def test_the_duplicates_view_follows_the_real_engine(qtbot: QtBot, window: Any, tmp_path: Path) -> None:
    """Find duplicates runs `duplicates --json` in the engine process; the view shows its answer and stops
    being busy (no embeddings needed for an exact copy)."""
    import shutil

    from engine.store import Project
    from tests.gui.conftest import make_image_project

    root = make_image_project(tmp_path / "p", scored=False)
    with Project.open(root) as project:
        original, copy = project.sample_image_path(0), project.sample_image_path(1)
    shutil.copy(original, copy)  # sample 1 is now byte for byte sample 0
    assert window.open_project(root)
    view = window.page.duplicates
    with qtbot.waitSignal(view.search.answered, timeout=120_000):
        view.find_button.click()
    assert view.report is not None
    assert any({0, 1} <= set(group["members"]) for group in view.report["groups"])
    qtbot.waitUntil(lambda: view.search.process is None, timeout=30_000)
    assert view.find_button.isEnabled() and not view.search.busy.isVisibleTo(view)
