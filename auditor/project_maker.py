"""Making projects with the engine (`init` for a dataset, `demo`), behind a progress dialog."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget

from auditor import settings
from auditor.engine_process import EngineProcess
from auditor.views.progress_dialog import EngineProgressDialog
from engine.store import is_project


def new_project_dir(name: str) -> Path:
    """A fresh folder for a project made from a dataset, in the per-user data folder."""
    base = settings.data_dir() / "projects"
    candidate = base / name
    number = 2
    while candidate.exists():
        candidate = base / f"{name}-{number}"
        number += 1
    return candidate


class ProjectMaker(QObject):
    made = Signal(str)  # the new project's folder
    failed = Signal(str, str)  # what went wrong, the details (hint and engine log)
    cancelled = Signal()

    def __init__(self, dialog_parent: QWidget) -> None:
        super().__init__(dialog_parent)
        self.dialog_parent = dialog_parent

    def from_dataset(self, name: str, init_args: list[str]) -> EngineProcess:
        """Import a dataset (`engine init` with ``--images`` or ``--csv`` options) into a new project."""
        target = new_project_dir(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        return self.run("init", target, init_args, f"Importing {name}…")

    def demo(self, target: Path) -> EngineProcess:
        target.parent.mkdir(parents=True, exist_ok=True)
        return self.run("demo", target, [], "Making the demo project (digits with label noise)…")

    def run(self, command: str, target: Path, options: list[str], title: str) -> EngineProcess:
        process = EngineProcess(self)
        # init and demo stream progress events (writing images, reading them): the dialog shows a real bar.
        dialog = EngineProgressDialog(process, title, self.dialog_parent)

        def finished(status: str) -> None:
            if status == "ok" and is_project(target):
                self.made.emit(str(target))
            elif status == "cancelled":
                self.cancelled.emit()
            else:
                error = dialog.error_event
                message = error.message if error else (dialog.died_message or "the engine stopped")
                hint = f"{error.hint}\n\n" if error and error.hint else ""
                self.failed.emit(message, hint + process.stderr_tail())
            dialog.deleteLater()
            process.deleteLater()

        process.finished.connect(finished)
        dialog.open()
        process.start(command, target, options)
        return process
