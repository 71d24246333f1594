"""Starting the engine's jobs on the open project: the audit, retrain and compare dialogs, the training options
they carry from one dialog to the next, and any command a view asks for. One job runs at a time."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget

from auditor.engine_process import EngineProcess
from auditor.jobs import JobController
from auditor.session import ProjectSession
from auditor.views.audit_dialog import AuditDialog, TrainOptions
from auditor.views.compare_view import CompareDialog, CompareOptions
from auditor.views.import_dialog import ImportDialog, ImportOptions
from auditor.views.outliers_view import OUTLIERS_LISTED
from auditor.views.retrain_dialog import RetrainDialog, RetrainOptions
from engine.errors import UserError
from engine.workflows.budget import DEFAULT_PRESET, fit_sample_count


class JobLauncher(QObject):
    compare_finished = Signal(object)  # a compare job's result (its data): its table, for Results

    def __init__(self, jobs: JobController, dialog_parent: QWidget, tell: Callable[[str, str], object]) -> None:
        super().__init__(dialog_parent)
        self.jobs = jobs
        self.dialog_parent = dialog_parent
        self._tell = tell
        self.session: ProjectSession | None = None  # the open project; the window sets it
        self.train_options = TrainOptions(preset=DEFAULT_PRESET)  # a first audit: the default preset's budget
        self.retrain_epochs = TrainOptions().epochs  # the retrain dialog's own setting, not the audit's K-fold one

    def start(self, command: str, options: list[str]) -> EngineProcess | None:
        """Run ``engine <command>`` on the open project; refused (and said why) while another job runs."""
        if self.session is None:
            return None
        if self.jobs.busy:
            self._tell("A job is running", "Wait for the running job to finish, or cancel it first.")
            return None
        return self.jobs.start(command, self.session.root, options)

    def choose_audit(self) -> None:
        dialog = self.audit_dialog()
        if dialog.exec():
            self.train_options = dialog.options()
            self.start_audit(self.train_options)

    def audit_dialog(self) -> AuditDialog:
        """The audit dialog with the last options, the open project (for its estimate) and its count of samples."""
        if self.session is None:
            return AuditDialog(self.train_options, parent=self.dialog_parent)
        return AuditDialog(self.train_options, parent=self.dialog_parent, project_root=self.session.root,
                           n_train=self._audit_sample_count())

    def _audit_sample_count(self) -> int | None:
        """The samples an audit would train on (the train split less the removed ones); None if unreadable."""
        assert self.session is not None
        try:
            return fit_sample_count(self.session.project)
        except (UserError, OSError, sqlite3.Error):
            return None  # the dialog opens all the same; the engine's estimate counts again

    def start_audit(self, options: TrainOptions) -> EngineProcess | None:
        return self.start("audit", options.audit_args())

    def choose_retrain(self) -> None:
        if self.session is None:
            return
        dialog = self.retrain_dialog()
        if dialog.exec():
            chosen = dialog.options()
            self.retrain_epochs = chosen.train.epochs
            # Model, image size, device and seed carry over to the next audit; epochs stay each dialog's own.
            self.train_options = dataclasses.replace(chosen.train, epochs=self.train_options.epochs)
            self.start_retrain(chosen)

    def retrain_dialog(self) -> RetrainDialog:
        assert self.session is not None
        return RetrainDialog(self.session.project, self._retrain_options(), parent=self.dialog_parent)

    def _retrain_options(self) -> TrainOptions:
        return dataclasses.replace(self.train_options, epochs=self.retrain_epochs)

    def start_retrain(self, options: TrainOptions | RetrainOptions) -> EngineProcess | None:
        return self.start("retrain", options.args() if isinstance(options, RetrainOptions) else options.train_args())

    def choose_compare(self) -> None:
        if self.session is None:
            return
        # It trains as a retrain does: the retrain's epochs.
        dialog = CompareDialog(self.session.project, self._retrain_options(), parent=self.dialog_parent)
        if dialog.exec():
            self.start_compare(dialog.options())

    def start_compare(self, options: CompareOptions) -> EngineProcess | None:
        """One `compare` job; its progress shows like a retrain's, its result as a table under Results."""
        process = self.start("compare", options.args())
        if process is not None:
            process.result.connect(self._on_result)
        return process

    def choose_import(self) -> None:
        """Import predictions (and embeddings): the dialog checks every row first, then the import is a job."""
        if self.session is None:
            return
        dialog = self.import_dialog()
        if dialog.exec():
            self.start_import(dialog.options())

    def import_dialog(self) -> ImportDialog:
        assert self.session is not None
        return ImportDialog(self.session.root, parent=self.dialog_parent)

    def start_import(self, options: ImportOptions) -> EngineProcess | None:
        """One `import-predictions` job; its run becomes the current audit when it finishes."""
        return self.start("import-predictions", options.args())

    def start_embed(self) -> EngineProcess | None:
        """`embed`: one embedding per sample (the offline default backbone), for duplicates, outliers and knn."""
        return self.start("embed", [])

    def start_search(self, command: str) -> EngineProcess | None:
        """`duplicates` or `outliers`: a search whose JSON answer a view shows."""
        return self.start(command, ["--limit", str(OUTLIERS_LISTED)] if command == "outliers" else [])

    def _on_result(self, event: object) -> None:
        if getattr(event, "kind", "") == "compare":
            self.compare_finished.emit(getattr(event, "data", {}))
