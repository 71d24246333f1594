"""Review: the ranked suspects as a grid, the current one large, decided from the keyboard.

Keys (the review panel has focus):
  Enter / A       accept the suggestion (relabel to it; keep when it equals the given label)
  0-9             relabel to that class number (two digits for more than ten classes)
  / or a letter   type a class name (type-ahead), Enter to relabel
  Delete / R      remove the sample from the training set
  K               keep it as verified
  → J N ↓         next      ← P ↑   previous
  Ctrl+Z          undo      Ctrl+Shift+Z / Ctrl+Y   redo
Every decision is committed to the project before the next key is read.
"""

from __future__ import annotations

from pathlib import Path

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
from auditor.session import ProjectSession
from auditor.style import ACTION_TEXT
from auditor.thumbnails import ThumbnailCache
from auditor.views.sample_grid import SampleGrid

DIGIT_KEYS = {getattr(Qt.Key, f"Key_{d}"): d for d in range(10)}
NEXT_KEYS = {Qt.Key.Key_Right, Qt.Key.Key_Down, Qt.Key.Key_J, Qt.Key.Key_N}
PREVIOUS_KEYS = {Qt.Key.Key_Left, Qt.Key.Key_Up, Qt.Key.Key_P}
ACCEPT_KEYS = {Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_A}
REMOVE_KEYS = {Qt.Key.Key_Delete, Qt.Key.Key_R}
RESERVED_LETTERS = {Qt.Key.Key_A, Qt.Key.Key_R, Qt.Key.Key_K, Qt.Key.Key_J, Qt.Key.Key_N, Qt.Key.Key_P}


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
        return QSize(200, 200)

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
        self.clear_filter_button.clicked.connect(lambda: self.session.set_pair_filter(None))
        header = QHBoxLayout()
        header.setSpacing(10)
        header.addWidget(self.counter)
        header.addWidget(self.filter_label, 1)
        header.addWidget(self.clear_filter_button)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.setSpacing(8)
        left_layout.addLayout(header)
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

        self.accept_button = QPushButton("Accept  ⏎")
        self.remove_button = QPushButton("Remove  R")
        self.keep_button = QPushButton("Keep  K")
        self.previous_button = QPushButton("‹ Prev")
        self.next_button = QPushButton("Next ›")
        self.accept_button.setObjectName("primary")
        self.remove_button.setObjectName("danger")
        self.accept_button.clicked.connect(self.accept_suggestion)
        self.remove_button.clicked.connect(self.remove_current)
        self.keep_button.clicked.connect(self.keep_current)
        self.previous_button.clicked.connect(lambda: self.go(-1))
        self.next_button.clicked.connect(lambda: self.go(1))
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
            "⏎/A accept · 0–9 class · type a name · R/Del remove · K keep · ←/→ move · Ctrl+Z undo · Ctrl+Y redo"
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
        info_layout.addWidget(self.path_label)

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

        self._digits = ""
        self._digit_timer = QTimer(self)
        self._digit_timer.setSingleShot(True)
        self._digit_timer.setInterval(700)
        self._digit_timer.timeout.connect(self._commit_digits)

        self.grid.selectionModel().currentChanged.connect(self._on_current_changed)
        session.review_filter_changed.connect(self.reload_queue)
        session.audit_changed.connect(self.reload_queue)
        session.decision_changed.connect(self._on_decision_changed)
        self.reload_queue()

    # ---------------------------------------------------------------- queue
    def reload_queue(self) -> None:
        keep = self.current_sample()
        self.model.set_ids(self.session.review_queue())
        row = self.model.row_of(keep) if keep is not None else -1
        self.set_current_row(row if row >= 0 else 0)
        self._update_header()
        self._show_current()

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
        self._show_current()

    # ------------------------------------------------------------- decisions
    def accept_suggestion(self) -> None:
        sample = self.current_sample()
        if sample is None or self.session.audit is None:
            return
        suggested = int(self.session.audit.suggested[sample])
        if suggested >= 0 and suggested != int(self.session.labels[sample]):
            self._decide(sample, "relabel", suggested)
        else:
            self._decide(sample, "keep")

    def relabel_current(self, label: int) -> None:
        sample = self.current_sample()
        if sample is None or not 0 <= label < len(self.session.class_names):
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
        self.session.decide(sample, action, label)
        self.decision_made.emit(sample)
        self.go(1)

    def undo(self) -> None:
        self._go_to(self.session.undo())

    def redo(self) -> None:
        self._go_to(self.session.redo())

    def _go_to(self, state: object) -> None:
        sample_id = getattr(state, "sample_id", None)
        if sample_id is not None:
            row = self.model.row_of(sample_id)
            if row >= 0:
                self.set_current_row(row)

    def _on_decision_changed(self, sample_id: int) -> None:
        self._update_header()
        if sample_id == self.current_sample():
            self._show_current()

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
        elif key == Qt.Key.Key_Home:
            self.set_current_row(0)
        elif key == Qt.Key.Key_Slash:
            self.class_picker.clear()
            self.class_picker.setFocus()
        elif event.text().isprintable() and event.text().strip() and key not in RESERVED_LETTERS:
            # Type-ahead: the first letter of a class name opens the picker with it.
            self.class_picker.setText(event.text())
            self.class_picker.setFocus()
            completer = self.class_picker.completer()
            completer.setCompletionPrefix(event.text())
            completer.complete()
        else:
            super().keyPressEvent(event)

    def _type_digit(self, digit: int) -> None:
        self._digits += str(digit)
        number = int(self._digits)
        classes = len(self.session.class_names)
        # Commit at once when no further digit could name a class.
        if number * 10 >= classes:
            self._commit_digits()
        else:
            self._digit_timer.start()

    def _commit_digits(self) -> None:
        self._digit_timer.stop()
        digits, self._digits = self._digits, ""
        if digits:
            self.relabel_current(int(digits))

    def _commit_picker(self) -> None:
        label = self.session.resolve_class(self.class_picker.text().strip())
        self._hide_completions()  # an open popup would keep taking the keys
        self.class_picker.clear()
        self.setFocus()
        if label >= 0:
            self.relabel_current(label)

    def _hide_completions(self) -> None:
        popup = self.class_picker.completer().popup()
        if popup is not None:
            popup.hide()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        # Enter and Escape are consumed here: QLineEdit lets Enter travel on to its parent,
        # which would also accept the next sample's suggestion.
        if watched is self.class_picker and event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent):
            if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self._commit_picker()
                return True
            if event.key() == Qt.Key.Key_Escape:
                self._hide_completions()
                self.class_picker.clear()
                self.setFocus()
                return True
        return super().eventFilter(watched, event)

    # ------------------------------------------------------------------ show
    def _update_header(self) -> None:
        queue = self.model.ids()
        decided = int(self.session.decided[queue].sum())
        self.counter.setText(f"Reviewed {decided:,} / {len(queue):,} flagged")
        pair = self.session.pair_filter
        if pair is not None:
            given, suggested = (self.session.class_name(i) for i in pair)
            self.filter_label.setText(f"Showing given “{given}” suggested “{suggested}”")
        elif self.session.audit is not None and self.session.threshold is not None:
            self.filter_label.setText(f"score ≥ {self.session.threshold:.3f} · ranked by {self.session.audit.detector}")
        elif self.session.audit is not None:
            self.filter_label.setText(f"flagged by {self.session.audit.detector} · most suspect first")
        else:
            self.filter_label.setText("")
        self.clear_filter_button.setVisible(pair is not None)

    def _rebuild_score_rows(self) -> None:
        """One row per detector, made when the audit changes; key presses only set texts."""
        while self.scores_form.rowCount():
            self.scores_form.removeRow(0)
        self._score_labels = {}
        audit = self.session.audit
        if audit is None:
            return
        for name in [*audit.per_detector, "rank"]:
            label = QLabel()
            self._score_labels[name] = label
            self.scores_form.addRow("rank" if name == "rank" else f"{name} score", label)

    def _show_current(self) -> None:
        sample = self.current_sample()
        audit = self.session.audit
        if audit is not None and set(self._score_labels) != {*audit.per_detector, "rank"}:
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
        self.position.setText(f"Suspect {row + 1:,} of {self.model.total():,} · sample #{sample}")
        self.given.setText(f"Given label:  <b>{self.session.class_name(given)}</b>")
        if audit is not None:
            suggested = int(audit.suggested[sample])
            same = suggested == given or suggested < 0
            self.suggested.setText(
                f"Suggested:  <b>{self.session.class_name(suggested)}</b>" + ("  (agrees)" if same else "")
            )
            for name, scores in audit.per_detector.items():
                self._score_labels[name].setText(f"{float(scores[sample]):.3f}")
            self._score_labels["rank"].setText(f"{int(audit.rank[sample]) + 1:,} of {len(audit.rank):,}")
        decision = self.session.decision(sample)
        if decision is None:
            self.decision_label.setText("Not reviewed yet")
            self.decision_label.setProperty("action", "")
        else:
            text = ACTION_TEXT.get(decision.action, decision.action).capitalize()
            if decision.action == "relabel":
                text += f" → {self.session.class_name(decision.new_label)}"
            self.decision_label.setText(text)
            self.decision_label.setProperty("action", decision.action)
        # A dynamic property restyles through the stylesheet; no per-key setStyleSheet (which re-polishes).
        self.decision_label.style().unpolish(self.decision_label)
        self.decision_label.style().polish(self.decision_label)
        self.path_label.setText(str(path))
