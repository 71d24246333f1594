"""Review: the ranked suspects as a grid, the current one large, decided from the keyboard.

Keys (the review panel has focus):
  Enter / A       accept the suggestion (relabel to it; keep when it equals the given label)
  0-9             relabel to that class (a class named by the digits, else that class number;
                  two digits for more than ten classes)
  / or a letter   type a class name (type-ahead), Enter to relabel
  Delete / R      remove the sample from the training set
  K               keep it as verified
  → J N ↓         next      ← P ↑   previous      U   next not yet reviewed
  Ctrl+Z          undo      Ctrl+Shift+Z / Ctrl+Y   redo
Every decision is committed to the project before the next key is read, and belongs to the
sample the key was typed on: a class number still waiting for its second digit is committed
for its own sample before any other key acts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QItemSelectionModel, QModelIndex, QObject, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QImage,
    QImageReader,
    QKeyEvent,
    QKeySequence,
    QPainter,
    QPaintEvent,
    QPixmap,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QComboBox,
    QCompleter,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QStyle,
    QStyleOption,
    QVBoxLayout,
    QWidget,
)

from auditor.sample_model import SampleListModel
from auditor.session import AGREEMENT, BY_PAIR, STALE_SUGGESTIONS, ProjectSession
from auditor.style import ACTION_TEXT
from auditor.thumbnails import ThumbnailCache
from auditor.views.bulk_dialog import BulkDialog
from auditor.views.dynamics_plot import DynamicsPlot
from auditor.views.sample_grid import SampleGrid
from engine.store import Decision
from engine.words import plural

DIGIT_KEYS = {getattr(Qt.Key, f"Key_{d}"): d for d in range(10)}
NEXT_KEYS = {Qt.Key.Key_Right, Qt.Key.Key_Down, Qt.Key.Key_J, Qt.Key.Key_N}
PREVIOUS_KEYS = {Qt.Key.Key_Left, Qt.Key.Key_Up, Qt.Key.Key_P}
ACCEPT_KEYS = {Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_A}
REMOVE_KEYS = {Qt.Key.Key_Delete, Qt.Key.Key_R}
NEXT_UNREVIEWED_KEY = Qt.Key.Key_U
RESERVED_LETTERS = {Qt.Key.Key_A, Qt.Key.Key_R, Qt.Key.Key_K, Qt.Key.Key_J, Qt.Key.Key_N, Qt.Key.Key_P,
                    NEXT_UNREVIEWED_KEY}
MODIFIER_KEYS = {Qt.Key.Key_Shift, Qt.Key.Key_Control, Qt.Key.Key_Alt, Qt.Key.Key_Meta, Qt.Key.Key_AltGr}
DIGIT_WAIT_MS = 700  # how long a class number waits for a second digit (more than ten classes only)


def describe(decision: Decision | None, session: ProjectSession) -> str:
    """'removed', 'relabelled to dog', 'not reviewed': a decision in words."""
    if decision is None or decision.action == "unreviewed":
        return "not reviewed"
    text = ACTION_TEXT.get(decision.action, decision.action)
    if decision.action == "relabel":
        text += f" to {session.class_name(decision.new_label)}"
    return text



def _shrinkable(box: QComboBox) -> None:
    """Long entries ("Grouped by class pair ...") must not set the review's, and so the window's, minimum width."""
    box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(14)

class ImagePane(QWidget):
    """The current sample, as large as fits; small images are shown pixel-sharp.

    Painted by hand rather than with QLabel.setPixmap: a label re-asks the layout for room on
    every new pixmap, which makes the neighbouring grid relayout and repaint on every key.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("imagePane")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._image = QImage()
        self._scaled = QPixmap()
        self._text = ""

    def minimumSizeHint(self) -> QSize:
        # Small enough that the review with six detectors' scores fits a 720-px-high window unscrolled.
        return QSize(200, 120)

    def sizeHint(self) -> QSize:
        return QSize(480, 480)

    def text(self) -> str:
        return self._text

    def setText(self, text: str) -> None:
        self._text = text
        self.update()

    def show_image(self, path: Path | None) -> None:
        self._image = QImage()
        self._text = ""
        if path is not None:
            reader = QImageReader(str(path))
            reader.setAutoTransform(True)
            size = reader.size()
            limit = QSize(1600, 1600)
            if size.isValid() and (size.width() > limit.width() or size.height() > limit.height()):
                reader.setScaledSize(size.scaled(limit, Qt.AspectRatioMode.KeepAspectRatio))
            self._image = reader.read()
            if self._image.isNull():
                self._text = f"This image cannot be read:\n{path}"
        else:
            self._text = "Nothing to review"
        self._rescale()
        self.update()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._image.isNull():
            self._scaled = QPixmap()
            return
        target = self.size() - QSize(16, 16)
        scaled_size = self._image.size().scaled(target, Qt.AspectRatioMode.KeepAspectRatio)
        upscale = scaled_size.width() > 2 * self._image.width()
        mode = Qt.TransformationMode.FastTransformation if upscale else Qt.TransformationMode.SmoothTransformation
        self._scaled = QPixmap.fromImage(self._image.scaled(scaled_size, Qt.AspectRatioMode.KeepAspectRatio, mode))

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        option = QStyleOption()
        option.initFrom(self)
        self.style().drawPrimitive(QStyle.PrimitiveElement.PE_Widget, option, painter, self)  # the stylesheet frame
        if not self._scaled.isNull():
            x = (self.width() - self._scaled.width()) // 2
            y = (self.height() - self._scaled.height()) // 2
            painter.drawPixmap(x, y, self._scaled)
        elif self._text:
            painter.setPen(QColor("#6b7280"))
            painter.drawText(self.rect().adjusted(12, 12, -12, -12),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._text)
        painter.end()


class ReviewView(QWidget):
    decision_made = Signal(int)  # sample id, after the commit
    status_message = Signal(str)  # what the last decision, undo or redo did, for the status bar
    reveal_requested = Signal()  # undo/redo changed a sample: show this view with it

    def __init__(self, session: ProjectSession, thumbnails: ThumbnailCache, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.model = SampleListModel(session, thumbnails, self)
        self.grid = SampleGrid(self.model, show_suggestion=True)
        self.grid.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys belong to the review panel
        self.grid.setMinimumWidth(220)

        self.counter = QLabel()
        self.counter.setObjectName("sectionTitle")
        self.filter_label = QLabel()
        self.filter_label.setObjectName("muted")
        # Long filter descriptions may be cut rather than widen the window.
        self.filter_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.filter_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.clear_filter_button = QPushButton("Show all flagged")
        self.clear_filter_button.clicked.connect(self.show_all_flagged)
        self.bulk_button = QPushButton("Bulk…")
        self.bulk_button.setToolTip("Accept, remove or keep many suspects at once (one undo step)")
        self.bulk_button.clicked.connect(self.open_bulk_dialog)
        for button in (self.clear_filter_button, self.bulk_button):
            # Keys belong to the review panel: a clicked button must not keep (or pass on) the focus.
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        # Why this sample: review one detector's flagged set by its score, or those most detectors agree on.
        self.order_box = QComboBox()
        self.order_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.order_box.setToolTip("Which suspects to review, in which order")
        _shrinkable(self.order_box)
        self._fill_order_box()
        self.order_box.activated.connect(lambda _: session.set_queue_order(self.order_box.currentData()))
        session.audit_changed.connect(self._fill_order_box)
        header = QHBoxLayout()
        header.setSpacing(10)
        header.addWidget(self.counter)
        header.addWidget(self.filter_label, 1)
        header.addWidget(self.clear_filter_button)
        header.addWidget(self.bulk_button)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.setSpacing(8)
        left_layout.addLayout(header)
        left_layout.addLayout(self._build_pair_row())
        left_layout.addWidget(self.grid, 1)

        self.image = ImagePane()
        self.position = QLabel()
        self.position.setObjectName("muted")
        self.given = QLabel()
        self.given.setObjectName("bigLabel")
        self.suggested = QLabel()
        self.suggested.setObjectName("bigLabel")
        self.decision_label = QLabel()
        self.decision_label.setObjectName("decision")
        self.path_label = QLabel()
        self.path_label.setObjectName("muted")
        # Elided, not wrapped: a path that wraps to more lines would resize the pane on every key.
        self.path_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.feedback = QLabel()  # what the last key did, so an overwrite or an undo is never silent
        self.feedback.setObjectName("muted")
        self.feedback.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.scores_form = QFormLayout()
        self.scores_form.setHorizontalSpacing(16)
        self._score_labels: dict[str, QLabel] = {}

        self.class_picker = QLineEdit()
        self.class_picker.setPlaceholderText("Relabel as… (type a class name, Enter)")
        completer = QCompleter(session.class_names, self.class_picker)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setFilterMode(Qt.MatchFlag.MatchStartsWith)
        self.class_picker.setCompleter(completer)
        self.class_picker.installEventFilter(self)
        # While the completions are open, keys go to their popup, and QCompleter hands Enter to the line
        # edit past its event filter: watch the popup too (installed after QCompleter's, so seen first).
        popup = completer.popup()  # made (and watched by the completer) on first ask
        assert popup is not None
        self._completions: QWidget = popup
        self._completions.installEventFilter(self)

        self.accept_button = QPushButton("Accept  ⏎")
        self.remove_button = QPushButton("Remove  R")
        self.keep_button = QPushButton("Keep  K")
        self.previous_button = QPushButton("‹ Prev")
        self.next_button = QPushButton("Next ›")
        self.accept_button.setObjectName("primary")
        self.remove_button.setObjectName("danger")
        self.accept_button.clicked.connect(lambda: self._clicked(self.accept_suggestion))
        self.remove_button.clicked.connect(lambda: self._clicked(self.remove_current))
        self.keep_button.clicked.connect(lambda: self._clicked(self.keep_current))
        self.previous_button.clicked.connect(lambda: self._clicked(lambda: self.go(-1)))
        self.next_button.clicked.connect(lambda: self._clicked(lambda: self.go(1)))
        for button in (self.accept_button, self.remove_button, self.keep_button, self.previous_button,
                       self.next_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        buttons = QHBoxLayout()
        buttons.setSpacing(6)
        for button in (self.accept_button, self.remove_button, self.keep_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.previous_button)
        buttons.addWidget(self.next_button)

        keys = QLabel(
            "⏎/A accept · 0–9 class · type a name · R/Del remove · K keep · ←/→ move · U next unreviewed"
            " · Ctrl+Z undo · Ctrl+Y redo"
        )
        keys.setObjectName("hint")
        keys.setWordWrap(True)

        info = QFrame()
        info.setObjectName("card")
        info_layout = QVBoxLayout(info)
        info_layout.setContentsMargins(14, 12, 14, 12)
        info_layout.setSpacing(6)
        info_layout.addWidget(self.position)
        info_layout.addWidget(self.given)
        info_layout.addWidget(self.suggested)
        info_layout.addWidget(self.decision_label)
        info_layout.addLayout(self.scores_form)
        self.dynamics = DynamicsPlot(session)  # why this sample, over time (helper "datamap")
        info_layout.addWidget(self.dynamics)
        info_layout.addWidget(self.path_label)
        info_layout.addWidget(self.feedback)

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.setSpacing(8)
        right_layout.addWidget(self.image, 1)
        right_layout.addWidget(info)
        right_layout.addWidget(self.class_picker)
        right_layout.addLayout(buttons)
        right_layout.addWidget(keys)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("reviewSplitter")
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 12, 12, 12)
        layout.addWidget(self.splitter)

        # A class number typed digit by digit, and the sample it was typed on.
        self._digits = ""
        self._digit_sample: int | None = None
        self._digit_timer = QTimer(self)
        self._digit_timer.setSingleShot(True)
        self._digit_timer.setInterval(DIGIT_WAIT_MS)
        self._digit_timer.timeout.connect(self._commit_digits)
        self._picker_sample: int | None = None  # the sample the type-ahead picker was opened on
        self._opened: int | None = None  # a sample opened from Browse that the review queue does not hold

        self.grid.selectionModel().currentChanged.connect(self._on_current_changed)
        session.review_filter_changed.connect(self._on_filter_changed)
        session.audit_changed.connect(self._on_filter_changed)
        session.decision_changed.connect(self._on_decision_changed)
        session.decisions_reset.connect(self._on_decisions_reset)
        self.reload_queue()

    # ---------------------------------------------------------------- queue
    def reload_queue(self) -> None:
        """Show the review queue again, staying on the current sample, else the first one not yet reviewed."""
        self._commit_digits()
        keep = self.current_sample()
        queue = self.session.review_queue()
        if self._opened is not None and not np.any(queue == self._opened):
            queue = np.array([self._opened], dtype=np.int64)
        else:
            self._opened = None
        self.model.set_ids(queue)
        row = self.model.row_of(keep) if keep is not None else -1
        self.set_current_row(row if row >= 0 else self.first_unreviewed_row())
        if self.class_picker.hasFocus():  # a half-typed class name belonged to a sample now gone
            self._cancel_picker()
        self._update_header()
        self._show_current()

    def _on_filter_changed(self) -> None:
        self._opened = None  # a new filter or audit replaces a sample opened from Browse
        self.reload_queue()

    def show_all_flagged(self) -> None:
        self._opened = None
        if self.session.pair_filter is not None or self.session.id_filter is not None:
            self.session.set_pair_filter(None)  # reloads through review_filter_changed
        else:
            self.reload_queue()
        self.setFocus()

    def open_sample(self, sample_id: int) -> None:
        """Show any sample large, decided by the same keys; one the queue lacks is shown on its own."""
        sample_id = int(sample_id)
        row = self.model.row_of(sample_id)
        if row < 0 and self._opened != sample_id:
            in_queue = bool(np.any(self.session.review_queue() == sample_id))
            self._opened = None if in_queue else sample_id
            if in_queue and self.session.pair_filter is not None:
                self.session.set_pair_filter(None)
            self.reload_queue()
            row = self.model.row_of(sample_id)
        if row >= 0:
            self.set_current_row(row)
        self.setFocus()

    def first_unreviewed_row(self, start: int = 0) -> int:
        """The first row at or after ``start`` (wrapping round) whose sample has no decision; 0 if all have."""
        ids = self.model.ids()
        if len(ids) == 0:
            return 0
        order = np.roll(np.arange(len(ids)), -start)
        open_rows = order[~self.session.decided[ids[order]]]
        return int(open_rows[0]) if len(open_rows) else 0

    def go_to_next_unreviewed(self) -> None:
        if self.model.total() == 0:
            return
        row = self.first_unreviewed_row(self.current_row() + 1)
        if self.session.decided[self.model.sample_id(row)]:
            self._tell("Every sample here is reviewed.")
        self.set_current_row(row)

    def current_row(self) -> int:
        index = self.grid.currentIndex()
        return index.row() if index.isValid() else -1

    def current_sample(self) -> int | None:
        row = self.current_row()
        return self.model.sample_id(row) if 0 <= row < self.model.total() else None

    def set_current_row(self, row: int) -> None:
        if not 0 <= row < self.model.total():
            self.grid.setCurrentIndex(QModelIndex())
            self._show_current()
            return
        if row >= self.model.rowCount():
            self.model.row_of(self.model.sample_id(row))  # expose rows up to it
        index = self.model.index(row)
        self.grid.selectionModel().setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.grid.scrollTo(index)

    def go(self, step: int) -> None:
        if self.model.total() == 0:
            return
        row = self.current_row()
        self.set_current_row(max(0, min(self.model.total() - 1, row + step)))

    def _on_current_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        if self._digits and self.current_sample() != self._digit_sample:
            self._commit_digits()  # moved by mouse: the number still belongs to where it was typed
        self._show_current()

    def _clicked(self, action: Callable[[], object]) -> None:
        """A button's action; the keys go back to the review panel after it."""
        self._commit_digits()
        action()
        self.setFocus()

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
        self._commit_digits()
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
        self.feedback.setText(text)
        self.status_message.emit(text)

    def _on_decision_changed(self, sample_id: int) -> None:
        self._update_header()
        if sample_id == self.current_sample():
            self._show_current()

    def _on_decisions_reset(self) -> None:
        self._update_header()
        self._show_current()

    def open_bulk_dialog(self) -> BulkDialog | None:
        """Decide many suspects at once; the dialog shows the count before, and it is one undo step after."""
        self._commit_digits()
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
        # Claim undo/redo while the review has focus, so they act here even without an active window.
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent) and (
                event.matches(QKeySequence.StandardKey.Undo) or event.matches(QKeySequence.StandardKey.Redo)
                or self._is_redo(event)):
            event.accept()
            return True
        return super().event(event)

    @staticmethod
    def _is_redo(event: QKeyEvent) -> bool:
        mods = event.modifiers()
        ctrl = bool(mods & Qt.KeyboardModifier.ControlModifier)
        return ctrl and (event.key() == Qt.Key.Key_Y or (
            event.key() == Qt.Key.Key_Z and bool(mods & Qt.KeyboardModifier.ShiftModifier)))

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: C901 - one flat key table reads best
        key = event.key()
        mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        if self._digits and key not in DIGIT_KEYS and key not in MODIFIER_KEYS:
            # A class number typed before this key belongs to the sample it was typed on: commit it first.
            self._commit_digits()
        if self._is_redo(event):
            self.redo()
        elif event.matches(QKeySequence.StandardKey.Undo):
            self.undo()
        elif mods & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier):
            super().keyPressEvent(event)
        elif key in DIGIT_KEYS:
            self._type_digit(DIGIT_KEYS[key])
        elif key in ACCEPT_KEYS:
            self.accept_suggestion()
        elif key in REMOVE_KEYS:
            self.remove_current()
        elif key == Qt.Key.Key_K:
            self.keep_current()
        elif key in NEXT_KEYS or key == Qt.Key.Key_Space:
            self.go(1)
        elif key in PREVIOUS_KEYS:
            self.go(-1)
        elif key == NEXT_UNREVIEWED_KEY:
            self.go_to_next_unreviewed()
        elif key == Qt.Key.Key_Home:
            self.set_current_row(0)
        elif key == Qt.Key.Key_Slash:
            self._picker_sample = self.current_sample()
            self.class_picker.clear()
            self.class_picker.setFocus()
        elif event.text().isprintable() and event.text().strip() and key not in RESERVED_LETTERS:
            # Type-ahead: the first letter of a class name opens the picker with it.
            self._picker_sample = self.current_sample()
            self.class_picker.setText(event.text())
            self.class_picker.setFocus()
            completer = self.class_picker.completer()
            completer.setCompletionPrefix(event.text())
            completer.complete()
        else:
            super().keyPressEvent(event)

    def _class_keys(self) -> set[str]:
        """Every digit string that names a class: class names made of digits, and class numbers."""
        names = self.session.class_names
        return {name for name in names if name.isdigit()} | {str(index) for index in range(len(names))}

    def _type_digit(self, digit: int) -> None:
        if not self._digits:
            self._digit_sample = self.current_sample()
        if self._digit_sample is None:
            return
        self._digits += str(digit)
        typed = self._digits
        # Wait for a second digit only where one could follow (more than ten classes); else commit at once.
        if any(len(key) > len(typed) and key.startswith(typed) for key in self._class_keys()):
            self._digit_timer.start()
        else:
            self._commit_digits()

    def _commit_digits(self) -> None:
        """Relabel the sample the digits were typed on, by the one class-resolving rule (name, else number)."""
        self._digit_timer.stop()
        digits, self._digits = self._digits, ""
        sample, self._digit_sample = self._digit_sample, None
        if not digits or sample is None:
            return
        label = self.session.resolve_class(digits)
        if label < 0:
            self._tell(f"No class {digits}: classes are numbered 0–{len(self.session.class_names) - 1}.")
            return
        self.relabel(sample, label)

    def _picked_text(self) -> str:
        """The class that Enter commits: the highlighted completion, else what was typed, else the one class
        that what was typed begins."""
        popup = self.class_picker.completer().popup()
        highlighted = popup.currentIndex() if popup is not None and popup.isVisible() else None
        if highlighted is not None and highlighted.isValid():
            return str(highlighted.data())
        text = self.class_picker.text().strip()
        if text and self.session.resolve_class(text) < 0:
            starting = [name for name in self.session.class_names if name.lower().startswith(text.lower())]
            if len(starting) == 1:
                return starting[0]
        return text

    def _commit_picker(self) -> None:
        text = self._picked_text()
        label = self.session.resolve_class(text)
        sample = self._picker_sample if self._picker_sample is not None else self.current_sample()
        self._cancel_picker()
        if label >= 0 and sample is not None:
            self.relabel(sample, label)
        elif text:
            self._tell(f"No class named “{text}”: nothing was decided.")

    def _cancel_picker(self) -> None:
        self._hide_completions()  # an open popup would keep taking the keys
        self.class_picker.clear()
        self._picker_sample = None
        self.setFocus()

    def _hide_completions(self) -> None:
        popup = self.class_picker.completer().popup()
        if popup is not None:
            popup.hide()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        # Enter and Escape are consumed here: QLineEdit lets Enter travel on to its parent,
        # which would also accept the next sample's suggestion.
        if (watched is self.class_picker or watched is self._completions) \
                and event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent):
            if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self._commit_picker()
                return True
            if event.key() == Qt.Key.Key_Escape:
                self._cancel_picker()
                return True
        return super().eventFilter(watched, event)

    # ------------------------------------------------------------------ show
    def _update_header(self) -> None:
        queue = self.model.ids()
        decided = int(self.session.decided[queue].sum())
        self.counter.setText(f"Reviewed {decided:,} / {len(queue):,} flagged" if self._opened is None
                             else f"Sample #{self._opened}")
        pair = self.session.pair_filter
        if self._opened is not None:
            self.filter_label.setText("opened from Browse · not flagged by the audit")
        elif self.session.id_filter is not None:
            self.filter_label.setText(f"{plural(len(self.session.id_filter), 'sample')} chosen on the data map · "
                                      "most suspect first")
        elif pair is not None:
            given, suggested = (self.session.class_name(i) for i in pair)
            self.filter_label.setText(f"Showing given “{given}” suggested “{suggested}”")
        elif self.session.audit is not None and self.session.queue_order == BY_PAIR:
            self.filter_label.setText("flagged · grouped by class pair, the commonest pair first")
        elif self.session.audit is not None and self.session.queue_order == AGREEMENT:
            self.filter_label.setText("flagged by any detector · most detectors agree first")
        elif self.session.audit is not None and self.session.queue_order:
            self.filter_label.setText(f"flagged by {self.session.queue_order} · by its score")
        elif self.session.audit is not None and self.session.threshold is not None:
            self.filter_label.setText(f"score ≥ {self.session.threshold:.3f} · ranked by {self.session.audit.detector}")
        elif self.session.audit is not None:
            self.filter_label.setText(f"flagged by {self.session.audit.detector} · most suspect first")
        else:
            self.filter_label.setText("")
        self.clear_filter_button.setVisible(pair is not None or self._opened is not None
                                            or self.session.id_filter is not None)
        self._sync_pair_box()

    def _fill_order_box(self) -> None:
        self.order_box.clear()
        audit = self.session.audit
        if audit is None:
            self.order_box.hide()
            return
        self.order_box.addItem(f"Ranked by {audit.detector}", None)
        for name in audit.per_detector:
            if name != audit.detector:
                self.order_box.addItem(f"Flagged by {name}, by its score", name)
        if len(audit.per_detector_flagged) > 1:
            self.order_box.addItem("Most detectors agree first", AGREEMENT)
        self.order_box.addItem("Grouped by class pair (given → suggested)", BY_PAIR)
        self.order_box.setCurrentIndex(max(0, self.order_box.findData(self.session.queue_order)))
        self.order_box.setVisible(self.order_box.count() > 1)

    # ------------------------------------------- class-pair filter (helper "datamap", issue 9 item 2)
    def _build_pair_row(self) -> QHBoxLayout:
        """The queue's order and the class-pair filter, under the header."""
        self.pair_box = QComboBox()
        self.pair_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys belong to the review panel
        self.pair_box.setToolTip("Review one class pair: samples given one class that the audit suggests is another")
        _shrinkable(self.pair_box)
        self._pairs: list[tuple[int, int]] = []  # the box's rows after "All class pairs"
        self.pair_box.activated.connect(self._on_pair_chosen)
        self.session.audit_changed.connect(self._fill_pair_box)
        self.session.samples_changed.connect(self._fill_pair_box)
        row = QHBoxLayout()
        row.setSpacing(8)
        row.addWidget(self.order_box)
        row.addWidget(self.pair_box)
        row.addStretch(1)
        self._fill_pair_box()
        return row

    def _fill_pair_box(self) -> None:
        self.pair_box.clear()
        pairs = self.session.class_pairs()
        self._pairs = [(given, suggested) for given, suggested, _ in pairs]
        self.pair_box.addItem("All class pairs")
        for given, suggested, count in pairs:
            self.pair_box.addItem(f"{self.session.class_name(given)} → {self.session.class_name(suggested)}"
                                  f"  ({count:,})")
        self.pair_box.setVisible(bool(pairs))
        self._sync_pair_box()

    def _sync_pair_box(self) -> None:
        """Show the pair the queue is filtered by, however it was chosen (here or on the noise matrix)."""
        if not hasattr(self, "pair_box"):
            return
        pair = self.session.pair_filter
        self.pair_box.setCurrentIndex(self._pairs.index(pair) + 1 if pair in self._pairs else 0)

    def _on_pair_chosen(self, index: int) -> None:
        self.session.set_pair_filter(self._pairs[index - 1] if 0 < index <= len(self._pairs) else None)
        self.setFocus()

    def _rebuild_score_rows(self) -> None:
        """One row per detector, made when the audit changes; key presses only set texts."""
        while self.scores_form.rowCount():
            self.scores_form.removeRow(0)
        self._score_labels = {}
        audit = self.session.audit
        if audit is None:
            return
        for name in [*audit.per_detector, "agreement", "rank"]:
            label = QLabel()
            self._score_labels[name] = label
            self.scores_form.addRow(name if name in ("rank", "agreement") else f"{name} score", label)

    def _show_current(self) -> None:
        sample = self.current_sample()
        self.dynamics.show_sample(sample)
        audit = self.session.audit
        if audit is not None and set(self._score_labels) != {*audit.per_detector, "agreement", "rank"}:
            self._rebuild_score_rows()
        if sample is None:
            self.image.show_image(None)
            if audit is None:
                self.image.setText("No audit yet.\nRun an audit to find suspects to review.")
            for widget in (self.position, self.given, self.suggested, self.decision_label, self.path_label,
                           *self._score_labels.values()):
                widget.setText("")
            return
        row = self.current_row()
        path = self.model.image_path(row)
        self.image.show_image(path)
        given = int(self.session.labels[sample])
        self.position.setText(f"Sample #{sample} · not flagged" if self._opened is not None
                              else f"Suspect {row + 1:,} of {self.model.total():,} · sample #{sample}")
        self.given.setText(f"Given label:  <b>{self.session.class_name(given)}</b>")
        if audit is not None:
            suggested = int(audit.suggested[sample])
            same = suggested == given or suggested < 0
            self.suggested.setText(
                f"Suggested:  <b>{self.session.class_name(suggested)}</b>" + ("  (agrees)" if same else "")
            )
            # Why this sample: each detector's score and its own verdict, and how many detectors agree.
            for name, scores in audit.per_detector.items():
                flagged = audit.per_detector_flagged.get(name)
                verdict = "" if flagged is None else ("  ·  flagged" if flagged[sample] else "  ·  not flagged")
                self._score_labels[name].setText(f"{float(scores[sample]):.3f}{verdict}")
            agree, detectors = audit.agreement(sample)
            self._score_labels["agreement"].setText(
                f"{agree} of {detectors} detector{'s' if detectors != 1 else ''} flag it")
            # Held-out samples are ranked last but never audited: count only the samples that were.
            audited = int(audit.run.summary.get("n_audited") or len(audit.rank))
            position = int(audit.rank[sample]) + 1
            self._score_labels["rank"].setText(f"{position:,} of {audited:,} audited" if position <= audited
                                               else "not audited (held-out sample)")
        decision = self.session.decision(sample)
        if decision is None:
            self.decision_label.setText("Not reviewed yet")
            self.decision_label.setProperty("action", "")
        else:
            text = ACTION_TEXT.get(decision.action, decision.action).capitalize()
            if decision.action == "relabel":
                text += f" → {self.session.class_name(decision.new_label)}"
            # Reviewed already: say that a key now replaces it, so an overwrite is never silent.
            self.decision_label.setText(f"{text}  ·  already reviewed, a key replaces it")
            self.decision_label.setProperty("action", decision.action)
        # A dynamic property restyles through the stylesheet; no per-key setStyleSheet (which re-polishes).
        self.decision_label.style().unpolish(self.decision_label)
        self.decision_label.style().polish(self.decision_label)
        self.path_label.setText(str(path))
