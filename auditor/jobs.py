"""One engine job at a time for the open project, and what it finished."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from auditor.engine_process import EngineProcess


class JobController(QObject):
    """Starts engine commands as processes; ``job_finished(command, status, run_id)`` when each ends."""

    job_started = Signal(str, object)  # command, EngineProcess
    job_finished = Signal(str, str, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.process: EngineProcess | None = None

    @property
    def busy(self) -> bool:
        return self.process is not None and self.process.is_running()

    def start(self, command: str, project: Path | str, options: Sequence[str] = ()) -> EngineProcess | None:
        if self.busy:
            return None
        process = EngineProcess(self)
        self.process = process
        process.finished.connect(lambda status: self.job_finished.emit(command, status, process.run_id))
        self.job_started.emit(command, process)
        process.start(command, project, options)
        return process

    def cancel(self) -> None:
        if self.process is not None:
            self.process.cancel()

    def shutdown(self, msecs: int = 15000) -> None:
        """Stop a running job before the app quits: a clean cancel first, a kill if it hangs."""
        if self.process is not None and self.process.is_running():
            self.process.cancel()
            if not self.process.wait(msecs):
                self.process.kill()
                self.process.wait(5000)
