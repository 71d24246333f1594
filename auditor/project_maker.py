"""Making projects with the engine (`init` for a dataset, `demo`), behind a progress dialog: the image folder or
CSV the person chooses (a CSV through its column dialog, reopened with the same choices when the import fails)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QWidget

from auditor import settings
from auditor.engine_process import EngineProcess
from auditor.views.csv_dialog import CsvDialog
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
        self._pending_csv: tuple[Path, list[str]] | None = None  # a CSV being imported, with the dialog's choices

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.dialog_parent, "Open an image folder (one sub-folder per class)")
        if folder:
            self.create_project(Path(folder).name, ["--images", folder])

    def choose_csv(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.dialog_parent, "Open a CSV of image paths and labels", "",
                                              "CSV (*.csv)")
        if path:
            self.open_csv_dialog(Path(path))

    def open_csv_dialog(self, csv_path: Path, chosen: list[str] | None = None) -> CsvDialog:
        """The column dialog (with ``chosen``, the choices of a try that failed); accepted, it imports the CSV."""
        dialog = CsvDialog(csv_path, self.dialog_parent, chosen=chosen)
        dialog.accepted.connect(lambda: self.import_csv(csv_path, dialog.init_args()))
        dialog.finished.connect(dialog.deleteLater)
        dialog.open()
        return dialog

    def import_csv(self, csv_path: Path, init_args: list[str]) -> EngineProcess:
        process = self.create_project(csv_path.stem, init_args)
        self._pending_csv = (csv_path, init_args)  # a failed import reopens the dialog with these choices
        return process

    def create_project(self, name: str, init_args: list[str]) -> EngineProcess:
        """Import a dataset with `engine init`; ``made`` gives the new project to open."""
        self._pending_csv = None
        return self.from_dataset(name, init_args)

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
                pending, self._pending_csv = self._pending_csv, None
                if pending is not None:  # the person fixes one choice, not all of them again
                    self.open_csv_dialog(*pending)
                self.failed.emit(message, hint + process.stderr_tail())  # told above the dialog: read first
            dialog.deleteLater()
            process.deleteLater()

        process.finished.connect(finished)
        dialog.open()
        process.start(command, target, options)
        return process
