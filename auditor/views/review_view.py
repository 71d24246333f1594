"""Review: the ranked suspects as a grid, the current one large, decided from the keyboard.

The view composes its parts, each a widget that runs alone: the queue (:mod:`review_queue`), the
large image (:mod:`image_pane`), the detail card (:mod:`sample_details`), the relabel box
(:mod:`class_picker`), the buttons (:mod:`decision_buttons`) and the key table (:mod:`review_keys`,
where the keys are listed). Here live the decisions the keys and buttons ask for: every one is
committed to the project before the next key is read, and belongs to the sample the key was typed
on.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QSplitter, QVBoxLayout, QWidget

from auditor.session import STALE_SUGGESTIONS, ProjectSession
from auditor.style import ACTION_TEXT
from auditor.thumbnails import ThumbnailCache
from auditor.views.bulk_dialog import BulkDialog
from auditor.views.class_picker import ClassPicker
from auditor.views.decision_buttons import DecisionButtons
from auditor.views.image_pane import ImagePane
from auditor.views.review_keys import ReviewKeys, claims_shortcut
from auditor.views.review_queue import ReviewQueue
from auditor.views.sample_details import SampleDetails
from engine.store import Decision
from engine.words import plural


def describe(decision: Decision | None, session: ProjectSession) -> str:
    """'removed', 'relabelled to dog', 'not reviewed': a decision in words."""
    if decision is None or decision.action == "unreviewed":
        return "not reviewed"
    text = ACTION_TEXT.get(decision.action, decision.action)
    if decision.action == "relabel":
        text += f" to {session.class_name(decision.new_label)}"
    return text


class ReviewView(QWidget):
    decision_made = Signal(int)  # sample id, after the commit
    status_message = Signal(str)  # what the last decision, undo or redo did, for the status bar
    reveal_requested = Signal()  # undo/redo changed a sample: show this view with it

    def __init__(self, session: ProjectSession, thumbnails: ThumbnailCache, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.queue = self.make_queue(session, thumbnails)
        self.model = self.queue.model
        self.image = ImagePane()
        self.details = SampleDetails(session)
        self.class_picker = ClassPicker(session.class_names, session.resolve_class)
        self.buttons = DecisionButtons()
        self.keys = ReviewKeys(session.class_names, self.current_sample, self)

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.setSpacing(8)
        right_layout.addWidget(self.image, 1)
        for part in (self.details, self.class_picker, self.buttons):
            right_layout.addWidget(part)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("reviewSplitter")
        self.splitter.addWidget(self.queue)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 12, 12, 12)
        layout.addWidget(self.splitter)
        self._connect_parts()
        session.review_filter_changed.connect(self._on_filter_changed)
        session.audit_changed.connect(self._on_filter_changed)
        session.decision_changed.connect(self._on_decision_changed)
        session.decisions_reset.connect(self._on_decisions_reset)
        self.reload_queue()

    def make_queue(self, session: ProjectSession, thumbnails: ThumbnailCache) -> ReviewQueue:
        """The queue this view reviews: the audit's suspects (the Outliers view reviews its own ranking)."""
        return ReviewQueue(session, thumbnails)

    def _connect_parts(self) -> None:
        self.queue.current_changed.connect(self._on_current_changed)
        self.queue.show_all_requested.connect(self.show_all_flagged)
        self.queue.bulk_requested.connect(self.open_bulk_dialog)
        self.queue.pair_chosen.connect(self.setFocus)
        self.class_picker.picked.connect(self._on_class_picked)
        self.class_picker.closed.connect(self.setFocus)
        self.buttons.accept.connect(lambda: self._clicked(self.accept_suggestion))
        self.buttons.remove.connect(lambda: self._clicked(self.remove_current))
        self.buttons.keep.connect(lambda: self._clicked(self.keep_current))
        self.buttons.step.connect(lambda step: self._clicked(lambda: self.go(step)))
        self.keys.accept.connect(self.accept_suggestion)
        self.keys.remove.connect(self.remove_current)
        self.keys.keep.connect(self.keep_current)
        self.keys.step.connect(self.go)
        self.keys.next_unreviewed.connect(self.go_to_next_unreviewed)
        self.keys.first.connect(lambda: self.set_current_row(0))
        self.keys.undo.connect(self.undo)
        self.keys.redo.connect(self.redo)
        self.keys.picker_requested.connect(lambda text: self.class_picker.open_on(self.current_sample(), text))
        self.keys.class_number.connect(self._on_class_number)

    # ---------------------------------------------------------------- queue
    def reload_queue(self) -> None:
        """Show the review queue again, staying on the current sample, else the first one not yet reviewed."""
        self.keys.commit_digits()
        self.queue.reload()
        if self.class_picker.hasFocus():  # a half-typed class name belonged to a sample now gone
            self.class_picker.cancel()
        self.queue.update_header()
        self._show_current()

    def _on_filter_changed(self) -> None:
        self.queue.opened = None  # a new filter or audit replaces a sample opened from Browse
        self.reload_queue()

    def show_all_flagged(self) -> None:
        self.queue.opened = None
        if self.session.pair_filter is not None or self.session.id_filter is not None:
            self.session.set_pair_filter(None)  # reloads through review_filter_changed
        else:
            self.reload_queue()
        self.setFocus()

    def open_sample(self, sample_id: int) -> None:
        """Show any sample large, decided by the same keys; one the queue lacks is shown on its own."""
        sample_id = int(sample_id)
        row = self.model.row_of(sample_id)
        if row < 0 and self.queue.opened != sample_id:
            in_queue = bool(np.any(self.session.review_queue() == sample_id))
            self.queue.opened = None if in_queue else sample_id
            if in_queue and self.session.pair_filter is not None:
                self.session.set_pair_filter(None)
            self.reload_queue()
            row = self.model.row_of(sample_id)
        if row >= 0:
            self.set_current_row(row)
        self.setFocus()

    def go_to_next_unreviewed(self) -> None:
        if self.model.total() == 0:
            return
        row = self.queue.first_unreviewed_row(self.queue.current_row() + 1)
        if self.session.decided[self.model.sample_id(row)]:
            self._tell("Every sample here is reviewed.")
        self.set_current_row(row)

    def current_sample(self) -> int | None:
        """The sample on screen, the one the keys decide."""
        return self.queue.current_sample()

    def set_current_row(self, row: int) -> None:
        self.queue.set_current_row(row)

    def go(self, step: int) -> None:
        self.queue.go(step)

    def _on_current_changed(self) -> None:
        self.keys.sample_shown(self.current_sample())  # moved by mouse: a number still belongs to where it was typed
        self._show_current()

    def _clicked(self, action: Callable[[], object]) -> None:
        """A button's action; the keys go back to the review panel after it."""
        self.keys.commit_digits()
        action()
        self.setFocus()

    def _show_current(self) -> None:
        sample = self.current_sample()
        if sample is None:
            self.details.show_sample(None)
            self.image.show_image(None)
            if self.session.audit is None:
                self.image.setText("No audit yet.\nRun an audit to find suspects to review.")
            return
        row = self.queue.current_row()
        path = self.model.image_path(row)
        self.image.show_image(path)
        self.details.show_sample(sample, f"Sample #{sample} · not flagged" if self.queue.opened is not None
                                 else f"Suspect {row + 1:,} of {self.model.total():,} · sample #{sample}", path)

    # ------------------------------------------------------------- decisions
    def accept_suggestion(self) -> None:
        sample = self.current_sample()
        if sample is None or self.session.audit is None:
            return
        suggested = int(self.session.audit.suggested[sample])
        if suggested >= 0 and suggested != int(self.session.labels[sample]):
            if not self._stale_accept_confirmed():  # (helper "app", issue 13 item 3)
                return
            self._decide(sample, "relabel", suggested)
        else:
            self._decide(sample, "keep")

    def _stale_accept_confirmed(self) -> bool:
        """Accepting a suggestion of an audit made on labels that have since changed asks first (once per audit)."""
        reason = self.session.stale_reason()
        if reason is None or self.session.stale_accept_confirmed:
            return True
        from PySide6.QtWidgets import QMessageBox

        answer = QMessageBox.question(
            self, "These suggestions are out of date",
            f"{STALE_SUGGESTIONS.capitalize()}.\n\n({reason})\n\nAccept this suggestion anyway?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Cancel)
        self.session.stale_accept_confirmed = answer == QMessageBox.StandardButton.Yes
        return self.session.stale_accept_confirmed

    def relabel_current(self, label: int) -> None:
        sample = self.current_sample()
        if sample is not None:
            self.relabel(sample, label)

    def relabel(self, sample: int, label: int) -> None:
        if not 0 <= label < len(self.session.class_names):
            return
        if label == int(self.session.labels[sample]):
            self._decide(sample, "keep")  # choosing the given class confirms it
        else:
            self._decide(sample, "relabel", label)

    def remove_current(self) -> None:
        sample = self.current_sample()
        if sample is not None:
            self._decide(sample, "remove")

    def keep_current(self) -> None:
        sample = self.current_sample()
        if sample is not None:
            self._decide(sample, "keep")

    def _decide(self, sample: int, action: str, label: int | None = None) -> None:
        previous = self.session.decision(sample)
        decision = self.session.decide(sample, action, label)
        if decision is None:
            return  # not saved (a full or read-only disk): the window says why; stay on this sample
        self.decision_made.emit(sample)
        if previous is not None and previous != decision:
            self._tell(f"Sample #{sample}: changed from {describe(previous, self.session)} "
                       f"to {describe(decision, self.session)} (Ctrl+Z undoes)")
        else:
            self._tell(f"Sample #{sample}: {describe(decision, self.session)}")
        if sample == self.current_sample():  # a late digit never moves past the sample on screen
            self.go(1)

    def undo(self) -> None:
        self._step_history("Undid", self.session.undo)

    def redo(self) -> None:
        self._step_history("Redid", self.session.redo)

    def _step_history(self, verb: str, step: Callable[[], Decision | None]) -> None:
        """Undo or redo one step, say what it changed, and show the sample it changed."""
        self.keys.commit_digits()
        before = self.session.decisions()
        state = step()
        if state is None:
            self._tell(self.session.history_refusal or f"Nothing to {verb[:-1].lower()}.")
            return
        after = self.session.decisions()
        changed = [sample for sample in {*before, *after} if before.get(sample) != after.get(sample)]
        if len(changed) > 1:
            self._tell(f"{verb} a bulk action: {plural(len(changed), 'decision')}")
        else:
            self._tell(f"{verb}: sample #{state.sample_id} was {describe(before.get(state.sample_id), self.session)}"
                       f", now {describe(after.get(state.sample_id), self.session)}")
        self.open_sample(state.sample_id)
        self.reveal_requested.emit()

    def _tell(self, text: str) -> None:
        self.details.feedback.setText(text)
        self.status_message.emit(text)

    def _on_decision_changed(self, sample_id: int) -> None:
        self.queue.update_header()
        if sample_id == self.current_sample():
            self._show_current()

    def _on_decisions_reset(self) -> None:
        self.queue.update_header()
        self._show_current()

    def open_bulk_dialog(self) -> BulkDialog | None:
        """Decide many suspects at once; the dialog shows the count before, and it is one undo step after."""
        self.keys.commit_digits()
        if self.session.audit is None:
            self._tell("Run an audit first: bulk actions act on its suggestions and scores.")
            return None
        dialog = BulkDialog(self.session, self)
        dialog.applied.connect(self._tell)
        dialog.finished.connect(lambda _result: self.setFocus())
        dialog.open()
        return dialog

    # -------------------------------------------------------------- keyboard
    def event(self, event: QEvent) -> bool:
        if claims_shortcut(event):  # undo/redo act here while the review has focus, even without an active window
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if not self.keys.handle(event):
            super().keyPressEvent(event)

    def _on_class_number(self, sample: int, digits: str) -> None:
        """Relabel the sample the digits were typed on, by the one class-resolving rule (name, else number)."""
        label = self.session.resolve_class(digits)
        if label < 0:
            self._tell(f"No class {digits}: classes are numbered 0–{len(self.session.class_names) - 1}.")
            return
        self.relabel(sample, label)

    def _on_class_picked(self, opened_on: int | None, label: int, text: str) -> None:
        sample = opened_on if opened_on is not None else self.current_sample()
        if label >= 0 and sample is not None:
            self.relabel(sample, label)
        elif text:
            self._tell(f"No class named “{text}”: nothing was decided.")
