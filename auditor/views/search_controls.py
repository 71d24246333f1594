"""The bar of a view that asks the engine one question (``duplicates``, ``outliers``): Find, a busy bar, Cancel.

The engine answers with one JSON document and no progress, so the bar is busy until the
answer (``answered``), an error or a cancel arrives; what to say goes out as ``message``.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QProgressBar, QPushButton, QWidget

from auditor.engine_process import EngineProcess


class SearchControls(QWidget):
    find_requested = Signal()
    answered = Signal(object)  # the engine's answer (a dict)
    message = Signal(str)

    def __init__(self, find_text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.process: EngineProcess | None = None
        self.find_button = QPushButton(find_text)
        self.find_button.setObjectName("primary")
        self.find_button.clicked.connect(self.find_requested)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.busy)
        row.addWidget(self.cancel_button)
        row.addWidget(self.find_button)
        self.set_busy(False)

    def follow(self, process: EngineProcess) -> None:
        """Busy until ``process``'s answer arrives, or it fails or is cancelled."""
        self.process = process
        self.set_busy(True)
        process.answer.connect(self.answered)
        process.error.connect(lambda event: self.message.emit(f"The search failed: {event.message} — {event.hint}"))
        process.finished.connect(self._on_finished)

    def cancel(self) -> None:
        if self.process is not None:
            self.process.cancel()

    def _on_finished(self, status: str) -> None:
        self.set_busy(False)
        self.process = None
        if status == "cancelled":
            self.message.emit("Search cancelled.")

    def set_busy(self, busy: bool) -> None:
        self.busy.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self.find_button.setEnabled(not busy)
