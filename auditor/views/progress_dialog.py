"""A modal progress dialog for short engine jobs that come before a project is open (init, demo)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QProgressDialog, QWidget

from auditor.engine_process import EngineProcess
from engine.events import Error, Progress, format_duration


class EngineProgressDialog(QProgressDialog):
    """Follows one EngineProcess; Cancel sends it SIGTERM. ``status`` holds how it ended."""

    def __init__(self, process: EngineProcess, title: str, parent: QWidget | None = None) -> None:
        super().__init__(title, "Cancel", 0, 0, parent)
        self.setWindowTitle(title)
        self.setWindowModality(Qt.WindowModality.WindowModal)
        self.setMinimumDuration(0)
        self.setAutoClose(False)
        self.setAutoReset(False)
        self.setMinimumWidth(420)
        self.process = process
        self.status = ""
        self.error_event: Error | None = None
        self.died_message = ""
        process.progress.connect(self._on_progress)
        process.error.connect(self._on_error)
        process.died.connect(self._on_died)
        process.finished.connect(self._on_finished)
        self.canceled.connect(process.cancel)

    def _on_progress(self, event: Progress) -> None:
        eta = f" — about {format_duration(event.eta_s)} left" if event.eta_s is not None else ""
        self.setLabelText(f"{event.stage.replace('_', ' ').capitalize()}: {event.message}{eta}".rstrip(": "))
        if event.total > 0:
            self.setMaximum(event.total)
            self.setValue(min(event.done, event.total))

    def _on_error(self, event: Error) -> None:
        self.error_event = event

    def _on_died(self, exit_code: int, message: str) -> None:
        self.died_message = message

    def _on_finished(self, status: str) -> None:
        self.status = status
        self.done(0)

    def report_failure(self, parent: QWidget | None) -> None:
        """Tell the person what went wrong, with the fix and the engine's log."""
        if self.status in ("ok", "cancelled"):
            return
        box = QMessageBox(parent)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("The engine could not finish")
        if self.error_event is not None:
            box.setText(self.error_event.message)
            box.setInformativeText(self.error_event.hint)
        else:
            box.setText(self.died_message or "The engine stopped unexpectedly.")
        box.setDetailedText(self.process.stderr_tail())
        box.open()
