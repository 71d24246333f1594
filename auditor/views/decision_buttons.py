"""The review's buttons (accept, remove, keep, previous, next) and the line that lists their keys.

The buttons never take the focus: the keys belong to the review panel, before and after a click.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from auditor.views.review_keys import KEY_HINT


class DecisionButtons(QWidget):
    accept = Signal()
    remove = Signal()
    keep = Signal()
    step = Signal(int)  # +1 next, -1 previous

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.accept_button = QPushButton("Accept  ⏎")
        self.remove_button = QPushButton("Remove  R")
        self.keep_button = QPushButton("Keep  K")
        self.previous_button = QPushButton("‹ Prev")
        self.next_button = QPushButton("Next ›")
        self.accept_button.setObjectName("primary")
        self.remove_button.setObjectName("danger")
        self.accept_button.clicked.connect(lambda: self.accept.emit())
        self.remove_button.clicked.connect(lambda: self.remove.emit())
        self.keep_button.clicked.connect(lambda: self.keep.emit())
        self.previous_button.clicked.connect(lambda: self.step.emit(-1))
        self.next_button.clicked.connect(lambda: self.step.emit(1))
        row = QHBoxLayout()
        row.setSpacing(6)
        for button in (self.accept_button, self.remove_button, self.keep_button, self.previous_button,
                       self.next_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            if button is self.previous_button:
                row.addStretch(1)
            row.addWidget(button)
        keys = QLabel(KEY_HINT)
        keys.setObjectName("hint")
        keys.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        layout.addLayout(row)
        layout.addWidget(keys)
