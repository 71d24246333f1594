"""Duplicates: the dataset's copies, group by group, side by side, each decided in one undoable step.

The search runs in the engine (``python -m engine duplicates PROJECT --json``: file and pixel hashes,
a perceptual hash, and embedding cosine once the project has embeddings); this view shows its
answer. Groups whose members carry different labels come first (label suspects), then groups across
the training and held-out splits (a held-out copy of a training image inflates held-out accuracy).
Ctrl+Z here undoes the latest step, a whole group's at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QHBoxLayout,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from auditor.engine_process import EngineProcess
from auditor.session import ProjectSession
from auditor.style import text_label
from auditor.thumbnails import ThumbnailCache
from auditor.views.duplicate_group import DuplicateGroupCard
from auditor.views.review_keys import claims_shortcut, is_redo
from auditor.views.search_controls import SearchControls
from engine.words import plural

PAGE_GROUPS = 20  # cards made at a time: thousands of groups would be thousands of widgets


def image_sources(session: ProjectSession, ids: list[int]) -> dict[int, Path]:
    """Each sample's image file (an image replaced in the project wins over the dataset's)."""
    if not ids:
        return {}
    try:
        image_root = session.project.image_root
    except KeyError:
        image_root = session.root
    marks = ",".join("?" * len(ids))
    rows = session.project.execute(f"SELECT id, path, image_override FROM samples WHERE id IN ({marks})", ids)
    return {int(sample): session.root / override if override else image_root / path for sample, path, override in rows}


def report_summary(report: dict[str, Any]) -> str:
    """The search's answer in one paragraph: how many groups, by which method, which ones matter and why."""
    groups = report.get("groups") or []
    by_method = report.get("by_method") or {}
    inflation = (report.get("heldout_inflation") or {}).get("heldout_samples_with_a_training_copy", 0)
    text = (f"{plural(len(groups), 'duplicate group')} ({int(report.get('n_samples_in_groups', 0)):,} samples)"
            + (" — " + ", ".join(f"{method} {count}" for method, count in by_method.items()) if by_method else "")
            + f". {plural(int(report.get('n_label_suspects', 0)), 'group')} with different labels (label suspects, "
            f"listed first); {plural(int(inflation), 'held-out sample')} with a training copy (they inflate held-out "
            f"accuracy). Found in {float(report.get('seconds', 0.0)):.1f} s.")
    if "embedding" not in (report.get("methods") or []):
        text += " No embeddings yet: flipped, shifted and cropped copies are not searched (Run ▸ Compute embeddings)."
    return text


class DuplicatesView(QWidget):
    find_requested = Signal()
    status_message = Signal(str)

    def __init__(self, session: ProjectSession, thumbnails: ThumbnailCache, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session, self.thumbnails = session, thumbnails
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.report: dict[str, Any] | None = None
        self.cards: list[DuplicateGroupCard] = []
        self.search = SearchControls("Find duplicates")
        self.search.find_requested.connect(self.find_requested)
        self.search.answered.connect(self.show_report)
        self.search.message.connect(self._tell)
        self.find_button = self.search.find_button
        self.summary = text_label("Find the dataset's exact and near-duplicate images: copies that carry different "
                                  "labels, and held-out images that training has seen.")
        self.feedback = text_label("", "hint")
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(self.search)
        self.list_widget = QWidget()
        self.list_layout = QVBoxLayout(self.list_widget)
        self.list_layout.setContentsMargins(0, 0, 0, 0)
        self.list_layout.setSpacing(10)
        self.more_button = QPushButton()
        self.more_button.clicked.connect(self.show_more)
        self.list_layout.addWidget(self.more_button)
        self.list_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.list_widget)
        scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 12, 12, 12)
        layout.setSpacing(8)
        layout.addLayout(top)
        layout.addWidget(self.feedback)
        layout.addWidget(scroll, 1)
        self.more_button.hide()
        session.decision_changed.connect(lambda _: self._refresh_cards())
        session.decisions_reset.connect(self._refresh_cards)
        session.samples_changed.connect(self._refresh_cards)
        thumbnails.ready.connect(self._on_thumbnails)

    # ------------------------------------------------------------------ the search
    def follow(self, process: EngineProcess) -> None:
        """The engine's search: busy until its answer (the report) arrives, or it fails or is cancelled."""
        self.search.follow(process)

    def show_report(self, report: object) -> None:
        """Show the groups of ``duplicates --json``'s answer, the first page of them."""
        if not isinstance(report, dict):
            return
        self.report = report
        for card in self.cards:
            card.deleteLater()
        self.cards = []
        self.summary.setText(report_summary(report))
        self.find_button.setText("Search again")
        self.show_more()

    def show_more(self) -> None:
        groups = (self.report or {}).get("groups") or []
        start = len(self.cards)
        page = groups[start:start + PAGE_GROUPS]
        sources = image_sources(self.session, sorted({int(m) for group in page for m in group["members"]}))
        for index, group in enumerate(page, start):
            card = DuplicateGroupCard(self.session, self.thumbnails, index, group, sources)
            card.decided.connect(self._tell)
            self.list_layout.insertWidget(self.list_layout.count() - 2, card)  # before "show more" and the stretch
            self.cards.append(card)
        left = len(groups) - len(self.cards)
        self.more_button.setText(f"Show {min(left, PAGE_GROUPS)} more of {left:,}")
        self.more_button.setVisible(left > 0)

    # ------------------------------------------------------------------ decisions
    def _refresh_cards(self) -> None:
        for card in self.cards:
            card.refresh()

    def _on_thumbnails(self, ids: list[int]) -> None:
        arrived = set(ids)
        for card in self.cards:
            for sample in arrived.intersection(card.members):
                card.show_thumbnail(sample)

    def _tell(self, text: str) -> None:
        self.feedback.setText(text)
        self.status_message.emit(text)

    def undo(self) -> None:
        """Undo the latest step: a group's decisions together."""
        if self.session.undo() is None:
            self._tell(self.session.history_refusal or "Nothing to undo.")
        else:
            self._tell("Undid the latest step (a group's decisions are undone together).")

    def redo(self) -> None:
        if self.session.redo() is None:
            self._tell(self.session.history_refusal or "Nothing to redo.")
        else:
            self._tell("Redid the latest undone step.")

    def event(self, event: QEvent) -> bool:
        if claims_shortcut(event):  # Ctrl+Z acts here while the view has focus
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if is_redo(event):
            self.redo()
        elif event.matches(QKeySequence.StandardKey.Undo):
            self.undo()
        else:
            super().keyPressEvent(event)
