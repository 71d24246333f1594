"""Exporting the open project with `engine export`: the corrected labels as a CSV, or the cleaned dataset as a
folder, and the sentence that says what was written (and where the score columns come from)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QWidget

from auditor.engine_process import EngineProcess
from auditor.job_launcher import JobLauncher
from engine.errors import UserError


class Exporter(QObject):
    exported = Signal(str)  # what was written, in words

    def __init__(self, launcher: JobLauncher, dialog_parent: QWidget, tell: Callable[[str, str, str], object]) -> None:
        super().__init__(dialog_parent)
        self.launcher = launcher
        self.dialog_parent = dialog_parent
        self._tell = tell
        self._pending = ""  # what the running export will have written

    def choose_csv(self) -> None:
        session = self.launcher.session
        if session is None:
            return
        path, _ = QFileDialog.getSaveFileName(self.dialog_parent, "Export corrected labels",
                                              str(Path.home() / f"{session.name}-labels.csv"), "CSV (*.csv)")
        if path:
            self.export(Path(path))

    def choose_folder(self) -> None:
        session = self.launcher.session
        if session is None:
            return
        folder = QFileDialog.getExistingDirectory(self.dialog_parent, "Export the cleaned dataset into a new folder")
        if folder:
            target = Path(folder) / f"{session.name}-cleaned"
            self.export(target.with_suffix(".csv"), folder=target)

    def export(self, csv_path: Path, folder: Path | None = None) -> EngineProcess | None:
        options = ["--out", str(csv_path)]
        if folder is not None:
            options += ["--folder", str(folder)]
        self._pending = f"Exported corrected labels to {csv_path}" + (
            f" and the cleaned dataset to {folder}" if folder is not None else "") + self._scores_note()
        return self.launcher.start("export", options)

    def _scores_note(self) -> str:
        """What the export's score columns say, when the audit they come from saw other labels (as the CLI warns)."""
        from engine.export import scores_source

        session = self.launcher.session
        if session is None:
            return ""
        try:
            source = scores_source(session.project)
        except UserError:
            return ""  # the export itself reports it
        if not source["stale"]:
            return ""
        return (f". Its score columns come from {source['detector']} of audit {source['run_id']}, which is out of "
                f"date: {source['stale']}; run a new audit for scores of the current labels")

    def finished(self, status: str) -> None:
        """The export job ended: say what it wrote, or why it failed."""
        if status == "ok":
            self.exported.emit(self._pending)
            return
        process = self.launcher.jobs.process
        errors = process.errors if process is not None else []
        self._tell("Export failed", errors[-1].message if errors else "the export did not finish",
                   process.stderr_tail() if process is not None else "")
