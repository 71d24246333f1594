"""A running (or finished) engine job: stage, progress with ETA, live curves, log, and what went wrong."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from auditor.engine_process import EngineProcess
from auditor.views.curves import TrainingCurves
from engine.events import Error, Log, Metric, Progress, format_duration

ETA_AFTER_SHARE = 0.05  # an estimate from the first few batches of a stage is mostly start-up cost

STATUS_TEXT = {
    "ok": "Finished",
    "cancelled": "Cancelled — the project is unchanged by the unfinished run",
    "error": "Failed",
    "died": "The engine stopped unexpectedly",
}


class ErrorPanel(QFrame):
    """What went wrong, what to do, and the log to look at."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("errorPanel")
        self.title = QLabel()
        self.title.setObjectName("errorTitle")
        self.title.setWordWrap(True)
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setMaximumHeight(140)
        self.details.setFont(QFont("DejaVu Sans Mono", 8))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 10)
        layout.addWidget(self.title)
        layout.addWidget(self.hint)
        layout.addWidget(self.details)
        self.hide()

    def show_problem(self, message: str, hint: str, details: str) -> None:
        self.title.setText(message)
        self.hint.setText(f"What to do: {hint}" if hint else "The log below has the details; your project and "
                          "every decision are saved.")
        self.details.setPlainText(details.strip() or "(the engine wrote nothing to its log)")
        self.details.setVisible(bool(details.strip()))
        self.show()


class JobView(QWidget):
    """Attach an EngineProcess with :meth:`attach`; the view follows it until it ends."""

    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.process: EngineProcess | None = None
        self._last_error: Error | None = None
        self.title = QLabel("No job running")
        self.title.setObjectName("sectionTitle")
        self.stage = QLabel("")
        self.stage.setObjectName("muted")
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(True)
        self.eta = QLabel("")
        self.eta.setMinimumWidth(110)
        self.eta.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self._cancel)
        self.status = QLabel("")
        self.status.setObjectName("jobStatus")
        self.error_panel = ErrorPanel()
        self.curves = TrainingCurves()
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(3000)
        self.log_view.setFont(QFont("DejaVu Sans Mono", 8))
        self.log_view.setPlaceholderText("Engine log")

        row = QHBoxLayout()
        row.setSpacing(10)
        row.addWidget(self.progress_bar, 1)
        row.addWidget(self.eta)
        row.addWidget(self.cancel_button)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.setObjectName("jobSplitter")
        splitter.addWidget(self.curves)
        splitter.addWidget(self.log_view)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        self.splitter = splitter

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        layout.addWidget(self.title)
        layout.addWidget(self.stage)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(self.error_panel)
        layout.addWidget(splitter, 1)

    def attach(self, process: EngineProcess, title: str) -> None:
        self.process = process
        self._last_error = None
        self.title.setText(title)
        self.stage.setText("Starting the engine…")
        self.progress_bar.setRange(0, 0)  # busy until the first progress event
        self.eta.setText("")
        self.status.setText("")
        self.error_panel.hide()
        self.curves.clear()
        self.log_view.clear()
        self.cancel_button.setEnabled(True)
        self.cancel_button.setText("Cancel")
        process.progress.connect(self._on_progress)
        process.metric.connect(self._on_metric)
        process.log.connect(self._on_log)
        process.error.connect(self._on_error)
        process.stderr_text.connect(self._on_stderr)
        process.died.connect(self._on_died)
        process.finished.connect(self._on_finished)

    # -------------------------------------------------------------- handlers
    def _on_progress(self, event: Progress) -> None:
        stage = event.stage.replace("_", " ")
        self.stage.setText(f"{stage[:1].upper()}{stage[1:]}" + (f" — {event.message}" if event.message else ""))
        if event.total > 0:
            self.progress_bar.setRange(0, event.total)
            self.progress_bar.setValue(min(event.done, event.total))
            # The stage is named in the bar, so a second model starting again at 1 reads as a new stage.
            self.progress_bar.setFormat(f"{stage}: {event.done:,} / {event.total:,}  (%p%)")
        self.eta.setText(eta_text(event))

    def _on_metric(self, event: Metric) -> None:
        self.curves.add_metric(event)

    def _on_log(self, event: Log) -> None:
        prefix = "" if event.level == "info" else f"{event.level}: "
        self.log_view.appendPlainText(prefix + event.message)

    def _on_stderr(self, text: str) -> None:
        self.log_view.appendPlainText(text)

    def _on_error(self, event: Error) -> None:
        self.log_view.appendPlainText(f"error: {event.message}")
        self._last_error = event
        self.error_panel.show_problem(event.message, event.hint, self._details(event.detail))

    def _details(self, detail: str = "") -> str:
        tail = self.process.stderr_tail() if self.process is not None else ""
        return "\n".join(part for part in (detail.strip(), tail.strip()) if part)

    def _on_died(self, exit_code: int, message: str) -> None:
        tail = self.process.stderr_tail() if self.process is not None else ""
        self.error_panel.show_problem(
            f"{message[:1].upper()}{message[1:]}.",
            "start the job again; decisions you made are saved, and a checkpointed run can be resumed",
            tail,
        )

    def _on_finished(self, status: str) -> None:
        self.cancel_button.setEnabled(False)
        self.cancel_button.setText("Cancel")  # not "Cancelling…" once the job has ended
        if status == "ok" and self.progress_bar.maximum() == 0:
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(1)
        elif status != "ok" and self.progress_bar.maximum() == 0:
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)
        self.eta.setText("")
        if self._last_error is not None:
            # stderr may arrive after the error event: show the complete tail now.
            self.error_panel.show_problem(self._last_error.message, self._last_error.hint,
                                          self._details(self._last_error.detail))
        self.status.setText(STATUS_TEXT.get(status, status))
        self.status.setProperty("status", status)
        self.status.style().unpolish(self.status)
        self.status.style().polish(self.status)
        if self.process is not None:
            for signal, slot in ((self.process.progress, self._on_progress), (self.process.metric, self._on_metric),
                                 (self.process.log, self._on_log), (self.process.error, self._on_error),
                                 (self.process.stderr_text, self._on_stderr),
                                 (self.process.died, self._on_died), (self.process.finished, self._on_finished)):
                signal.disconnect(slot)

    def _cancel(self) -> None:
        self.cancel_button.setEnabled(False)
        self.cancel_button.setText("Cancelling…")
        self.stage.setText("Stopping: the engine saves a checkpoint first…")
        self.cancel_requested.emit()
        if self.process is not None:
            self.process.cancel()


def eta_text(event: Progress) -> str:
    """'ETA 1:23' once an estimate means something: not while a stage has barely started (start-up cost
    makes it far too long) or reports no time left before it is done (a cache fill reads 0:00)."""
    if event.eta_s is None or event.total <= 0 or not 0 < event.done < event.total:
        return ""
    if event.done / event.total < ETA_AFTER_SHARE or event.eta_s < 1:
        return "ETA …"
    return f"ETA {format_duration(event.eta_s)}"

