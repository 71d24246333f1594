"""The main window: a composition root that wires the start page, the project views and engine jobs."""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QByteArray, QEvent, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from auditor import settings
from auditor.engine_process import EngineProcess
from auditor.jobs import JobController
from auditor.project_maker import ProjectMaker
from auditor.session import STALE_SUGGESTIONS, ProjectSession
from auditor.views.audit_dialog import AuditDialog, TrainOptions
from auditor.views.compare_view import CompareDialog, CompareOptions
from auditor.views.csv_dialog import CsvDialog
from auditor.views.project_page import ProjectPage
from auditor.views.retrain_dialog import RetrainDialog, RetrainOptions
from auditor.views.skipped_files import skipped_details, skipped_summary
from auditor.views.start_page import StartPage
from engine.errors import UserError
from engine.store import RunInfo, is_project
from engine.words import plural

RESUMABLE_KINDS = ("audit", "crossval", "retrain")


class Banner(QLabel):
    """A one-line notice above the project's tabs: stale results, read-only, an interrupted run."""

    def __init__(self, name: str, colour: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)  # the resume command
        self.setStyleSheet(f"QLabel#{name} {{ background: {colour}; color: #1f2937; padding: 6px 12px; "
                           "border-bottom: 1px solid rgba(0,0,0,0.12); }")
        self.hide()

    def say(self, text: str) -> None:
        self.setText(text)
        self.setVisible(bool(text))


class MainWindow(QMainWindow):
    project_opened = Signal(str)
    project_closed = Signal()
    job_finished = Signal(str, str)  # command, status

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Label Auditor")
        self.resize(1280, 820)
        self.session: ProjectSession | None = None
        self.page: ProjectPage | None = None
        self.page_frame: QWidget | None = None  # the banners above the project page, and the page
        self.read_only_banner = self.stale_banner = self.interrupted_banner = None  # type: Banner | None
        self.jobs = JobController(self)
        self.jobs.job_started.connect(self._on_job_started)
        self.jobs.job_finished.connect(self._on_job_finished)
        self.train_options = TrainOptions()
        self.maker = ProjectMaker(self)
        self.maker.made.connect(self.open_new_project)
        self.maker.failed.connect(self._on_make_failed)
        self.maker.cancelled.connect(lambda: self.statusBar().showMessage("Cancelled.", 5000))
        self.last_message = ""  # the latest message box text, for tests and the status bar
        self._pending_export: str = ""
        self._pending_csv: tuple[Path, list[str]] | None = None  # a CSV being imported, with the dialog's choices
        self.retrain_epochs = TrainOptions().epochs  # the retrain dialog's own setting, not the audit's K-fold one

        self.start_page = StartPage()
        self.start_page.open_folder_requested.connect(self.choose_folder)
        self.start_page.open_csv_requested.connect(self.choose_csv)
        self.start_page.open_project_requested.connect(self.choose_project)
        self.start_page.demo_requested.connect(self.open_demo)
        self.start_page.project_chosen.connect(self.open_project)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.start_page)
        self.setCentralWidget(self.stack)

        self.counter = QLabel()
        self.job_label = QLabel()
        self.statusBar().addPermanentWidget(self.job_label)
        self.statusBar().addPermanentWidget(self.counter)
        self._build_menus()
        self._update_actions()
        self.restore_layout()

    # ------------------------------------------------------------------ menus
    def _action(self, text: str, slot: Callable[[], object],
                shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        return action

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.open_folder_action = self._action("Open image folder…", self.choose_folder)
        self.open_csv_action = self._action("Open CSV…", self.choose_csv)
        self.open_project_action = self._action("Open project…", self.choose_project, QKeySequence.StandardKey.Open)
        self.demo_action = self._action("Open the demo", self.open_demo)
        self.export_csv_action = self._action("Export corrected labels (CSV)…", self.choose_export_csv,
                                              "Ctrl+E")
        self.export_folder_action = self._action("Export cleaned dataset folder…", self.choose_export_folder)
        self.close_action = self._action("Close project", self.close_project, QKeySequence.StandardKey.Close)
        quit_action = self._action("Quit", self.close, QKeySequence.StandardKey.Quit)
        for action in (self.open_folder_action, self.open_csv_action, self.open_project_action, self.demo_action):
            file_menu.addAction(action)
        file_menu.addSeparator()
        file_menu.addAction(self.export_csv_action)
        file_menu.addAction(self.export_folder_action)
        file_menu.addSeparator()
        file_menu.addAction(self.close_action)
        file_menu.addAction(quit_action)

        edit_menu = self.menuBar().addMenu("&Edit")
        self.undo_action = self._action("Undo decision", self.undo, QKeySequence.StandardKey.Undo)
        self.redo_action = self._action("Redo decision", self.redo, QKeySequence.StandardKey.Redo)
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        edit_menu.addAction(self.undo_action)
        edit_menu.addAction(self.redo_action)

        run_menu = self.menuBar().addMenu("&Run")
        self.audit_action = self._action("Audit…", self.choose_audit, "Ctrl+R")
        self.retrain_action = self._action("Retrain with decisions applied…", self.choose_retrain, "Ctrl+T")
        self.compare_action = self._action("Compare methods…", self.choose_compare)
        self.cancel_action = self._action("Cancel job", self.jobs.cancel)
        for action in (self.audit_action, self.retrain_action, self.compare_action, self.cancel_action):
            run_menu.addAction(action)

    def _update_actions(self) -> None:
        has_project = self.session is not None
        busy = self.jobs.busy
        writable = self.session is not None and not self.session.read_only
        for action in (self.export_csv_action, self.export_folder_action, self.close_action):
            action.setEnabled(has_project and not busy)
        self.audit_action.setEnabled(has_project and writable and not busy)
        self.retrain_action.setEnabled(has_project and writable and not busy)
        self.compare_action.setEnabled(has_project and writable and not busy)
        self.cancel_action.setEnabled(busy)
        self.undo_action.setEnabled(has_project and self.session is not None and self.session.can_undo())
        self.redo_action.setEnabled(has_project and self.session is not None and self.session.can_redo())
        self._update_counter()

    def _update_counter(self, *_: object) -> None:
        if self.session is None:
            self.counter.setText("")
            return
        # The same count as the review header: decided samples among those the review shows.
        queue = self.session.review_queue()
        reviewed = int(self.session.decided[queue].sum())
        self.counter.setText(f"  {self.session.name} · reviewed {reviewed:,} / {len(queue):,} flagged · "
                             f"{plural(self.session.reviewed_count, 'decision')} in all  ")

    # --------------------------------------------------------------- messages
    def tell(self, title: str, text: str, detail: str = "", warning: bool = True) -> QMessageBox:
        """A non-blocking message box (tests and the event loop keep running)."""
        self.last_message = text
        box = QMessageBox(QMessageBox.Icon.Warning if warning else QMessageBox.Icon.Information, title, text,
                          QMessageBox.StandardButton.Ok, self)
        if detail:
            box.setDetailedText(detail)
        box.open()
        self.statusBar().showMessage(text, 10000)
        return box

    # --------------------------------------------------------------- projects
    def open_project(self, path: str | Path) -> bool:
        try:
            session = ProjectSession.open(path)
        except UserError as exc:
            self.tell("Cannot open project", exc.message, exc.hint)
            self.start_page.show_problem(f"{path}: {exc.message}", exc.hint)
            return False
        try:
            # Building the views reads the whole project: damage found there is told like damage found on open.
            page = ProjectPage(session)
        except UserError as exc:
            session.close()
            self.tell("Cannot open project", exc.message, exc.hint)
            self.start_page.show_problem(f"{path}: {exc.message}", exc.hint)
            return False
        self.close_project()
        self.start_page.show_problem("")
        self.session = session
        self.page = page
        self.page_frame = self._framed(self.page, session)
        self.stack.addWidget(self.page_frame)
        self.stack.setCurrentWidget(self.page_frame)
        self.page.audit.audit_requested.connect(self.choose_audit)
        self.page.audit.retrain_requested.connect(self.choose_retrain)
        self.page.results.retrain_requested.connect(self.choose_retrain)
        self.page.results.compare_requested.connect(self.choose_compare)
        self.page.results.export_csv_requested.connect(self.choose_export_csv)
        self.page.results.export_folder_requested.connect(self.choose_export_folder)
        # Resume a run from its checkpoint; teach the detector from the reviews (finetune-detector).
        self.page.results.job_requested.connect(lambda command, options: self._start_job(command, list(options)))
        session.decision_changed.connect(self._update_actions)
        session.decisions_reset.connect(self._update_actions)  # a bulk action or its undo
        self.page.review.status_message.connect(lambda text: self.statusBar().showMessage(text, 10000))
        session.review_filter_changed.connect(self._update_counter)
        session.runs_changed.connect(self._update_counter)
        session.undo_state_changed.connect(self._update_actions)
        session.decisions_reset.connect(self._update_counter)
        session.write_failed.connect(lambda message, hint: self.tell("Nothing was changed", message, hint))
        session.notice.connect(lambda text: self.statusBar().showMessage(text, 10000))
        session.stale_changed.connect(self._update_banners)
        session.runs_changed.connect(self._update_banners)
        self._update_banners()
        if session.read_only:
            self.statusBar().showMessage(f"Opened for viewing only: {session.read_only_reason}", 15000)
        elif skipped_summary(session):
            self.statusBar().showMessage(f"{skipped_summary(session)}: Browse lists them.", 15000)
        session.start_watching()  # the CLI may change the project while it is open
        self.restore_splitters()
        self.page.setCurrentWidget(self.page.review if session.audit is not None else self.page.browse)
        self.setWindowTitle(f"{session.name}{' (read-only)' if session.read_only else ''} — Label Auditor")
        settings.add_recent_project(session.root)
        self._update_actions()
        # The project's arrays and models live as long as it is open: move them out of the
        # cyclic GC's reach, so a full collection never lands between a key press and its repaint.
        gc.collect()
        gc.freeze()
        self.project_opened.emit(str(session.root))
        return True

    def open_new_project(self, path: str | Path) -> bool:
        """Open a project the app just imported; files the import skipped are told at once, with the list."""
        if not self.open_project(path):
            return False
        assert self.session is not None
        summary = skipped_summary(self.session)
        if summary:
            self.tell("Some files were skipped", f"{summary[0].upper()}{summary[1:]}. Browse lists them; "
                      "“Show Details” lists each file and why.", skipped_details(self.session), warning=False)
        return True

    def _framed(self, page: ProjectPage, session: ProjectSession) -> QWidget:
        """The project page under its banners (read-only, stale results, an interrupted run)."""
        frame = QWidget()
        layout = QVBoxLayout(frame)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.read_only_banner = Banner("readOnlyBanner", "#e5e7eb")
        self.stale_banner = Banner("staleBanner", "#fde68a")
        self.interrupted_banner = Banner("interruptedBanner", "#fed7aa")
        for banner in (self.read_only_banner, self.stale_banner, self.interrupted_banner):
            layout.addWidget(banner)
        layout.addWidget(page, 1)
        return frame

    def _update_banners(self) -> None:
        session = self.session
        if session is None or self.read_only_banner is None or self.stale_banner is None \
                or self.interrupted_banner is None:
            return
        self.read_only_banner.say(
            f"<b>Read-only</b>: opened for viewing; decisions are disabled. {session.read_only_reason}"
            if session.read_only else "")
        stale = session.stale_reason()
        self.stale_banner.say(f"<b>Out of date</b>: {STALE_SUGGESTIONS} ({stale})." if stale else "")
        interrupted = self.interrupted_run()
        self.interrupted_banner.say(
            f"<b>Interrupted</b>: {interrupted.kind} run {interrupted.id} did not finish. "
            f"{session.run_note(interrupted)}" if interrupted is not None else "")

    def interrupted_run(self) -> RunInfo | None:
        """The latest interrupted audit/crossval/retrain run, unless a run of its kind finished after it."""
        if self.session is None:
            return None
        latest: dict[str, RunInfo] = {}
        for run in self.session.runs():  # oldest first
            if run.kind in RESUMABLE_KINDS and run.status != "running":
                latest[run.kind] = run
        interrupted = [run for run in latest.values() if run.status == "interrupted"]
        return max(interrupted, key=lambda run: run.created) if interrupted else None

    def close_project(self) -> None:
        if self.session is None or self.page is None:
            return
        if self.jobs.busy:
            self.jobs.shutdown()
        self.save_layout()
        self.session.stop_watching()
        if self.page_frame is not None:
            self.stack.removeWidget(self.page_frame)
            self.page_frame.deleteLater()
        self.page.shutdown()
        self.page.deleteLater()
        self.session.close()
        self.session = None
        gc.unfreeze()  # let the closed project's objects be collected
        self.page = None
        self.page_frame = None
        self.read_only_banner = self.stale_banner = self.interrupted_banner = None
        self.start_page.refresh()
        self.stack.setCurrentWidget(self.start_page)
        self.setWindowTitle("Label Auditor")
        self._update_actions()
        self.project_closed.emit()

    def choose_project(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a Label Auditor project")
        if folder:
            self.open_project(folder)

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open an image folder (one sub-folder per class)")
        if folder:
            self.create_project(Path(folder).name, ["--images", folder])

    def choose_csv(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a CSV of image paths and labels", "", "CSV (*.csv)")
        if path:
            self.open_csv_dialog(Path(path))

    def open_csv_dialog(self, csv_path: Path, chosen: list[str] | None = None) -> CsvDialog:
        """The column dialog (with ``chosen``, the choices of a try that failed); accepted, it imports the CSV."""
        dialog = CsvDialog(csv_path, self, chosen=chosen)
        dialog.accepted.connect(lambda: self.import_csv(csv_path, dialog.init_args()))
        dialog.finished.connect(dialog.deleteLater)
        dialog.open()
        return dialog

    def import_csv(self, csv_path: Path, init_args: list[str]) -> EngineProcess:
        process = self.create_project(csv_path.stem, init_args)
        self._pending_csv = (csv_path, init_args)  # a failed import reopens the dialog with these choices
        return process

    def create_project(self, name: str, init_args: list[str]) -> EngineProcess:
        """Import a dataset with `engine init`, then open the new project."""
        self._pending_csv = None
        return self.maker.from_dataset(name, init_args)

    def _on_make_failed(self, message: str, details: str) -> None:
        pending, self._pending_csv = self._pending_csv, None
        if pending is not None:  # the person fixes one choice, not all of them again
            self.open_csv_dialog(*pending)
        self.tell("The engine could not finish", message, details)  # above the dialog: read first

    def open_demo(self) -> EngineProcess | None:
        """The demo project, made on first use by `engine demo` in the per-user data folder."""
        target = settings.demo_project_dir()
        if is_project(target):
            self.open_project(target)
            return None
        return self.maker.demo(target)

    # ------------------------------------------------------------------- jobs
    def choose_audit(self) -> None:
        dialog = AuditDialog(self.train_options, parent=self)
        if dialog.exec():
            self.train_options = dialog.options()
            self.start_audit(self.train_options)

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
        return RetrainDialog(self.session.project, dataclasses.replace(self.train_options, epochs=self.retrain_epochs),
                             parent=self)

    def start_audit(self, options: TrainOptions) -> EngineProcess | None:
        return self._start_job("audit", options.audit_args())

    def start_retrain(self, options: TrainOptions | RetrainOptions) -> EngineProcess | None:
        return self._start_job("retrain", options.args() if isinstance(options, RetrainOptions)
                               else options.train_args())

    def choose_compare(self) -> None:
        if self.session is None:
            return
        dialog = CompareDialog(self.session.project, dataclasses.replace(self.train_options, epochs=self.retrain_epochs),
                               parent=self)  # it trains as a retrain does: the retrain's epochs
        if dialog.exec():
            self.start_compare(dialog.options())

    def start_compare(self, options: CompareOptions) -> EngineProcess | None:
        """One `compare` job; its progress shows like a retrain's, its result as a table under Results."""
        process = self._start_job("compare", options.args())
        if process is not None:
            process.result.connect(self._on_result)
        return process

    def _on_result(self, event: object) -> None:
        if self.page is not None and getattr(event, "kind", "") == "compare":
            self.page.results.show_compare(getattr(event, "data", {}))

    def choose_export_csv(self) -> None:
        if self.session is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export corrected labels",
                                              str(Path.home() / f"{self.session.name}-labels.csv"), "CSV (*.csv)")
        if path:
            self.export(Path(path))

    def choose_export_folder(self) -> None:
        if self.session is None:
            return
        folder = QFileDialog.getExistingDirectory(self, "Export the cleaned dataset into a new folder")
        if folder:
            target = Path(folder) / f"{self.session.name}-cleaned"
            self.export(target.with_suffix(".csv"), folder=target)

    def export(self, csv_path: Path, folder: Path | None = None) -> EngineProcess | None:
        options = ["--out", str(csv_path)]
        if folder is not None:
            options += ["--folder", str(folder)]
        self._pending_export = f"Exported corrected labels to {csv_path}" + (
            f" and the cleaned dataset to {folder}" if folder is not None else "") + self._export_scores_note()
        return self._start_job("export", options)

    def _export_scores_note(self) -> str:
        """What the export's score columns say, when the audit they come from saw other labels (as the CLI warns)."""
        from engine.export import scores_source

        if self.session is None:
            return ""
        try:
            source = scores_source(self.session.project)
        except UserError:
            return ""  # the export itself reports it
        if not source["stale"]:
            return ""
        return (f". Its score columns come from {source['detector']} of audit {source['run_id']}, which is out of "
                f"date: {source['stale']}; run a new audit for scores of the current labels")

    def _start_job(self, command: str, options: list[str]) -> EngineProcess | None:
        if self.session is None:
            return None
        if self.jobs.busy:
            self.tell("A job is running", "Wait for the running job to finish, or cancel it first.")
            return None
        return self.jobs.start(command, self.session.root, options)

    def _on_job_started(self, command: str, process: EngineProcess) -> None:
        self.job_label.setText(f"  {command} running…  ")
        if self.page is not None and command in ("audit", "retrain", "crossval", "compare"):
            self.page.audit.follow(command, process)
            self.page.setCurrentWidget(self.page.audit)
        elif self.page is not None:
            self.page.audit.follow(command, process)
        self._update_actions()

    def _on_job_finished(self, command: str, status: str, run_id: str) -> None:
        self.job_label.setText(f"  {command}: {status}  ")
        if status == "died" and run_id and self.session is not None:
            self._mark_dead_run(run_id)
        if self.session is not None and self.page is not None:
            if command in ("audit", "finetune-detector") and status == "ok":  # its new audit becomes current
                self.session.reload_audit()
                self.page.show_review()
            else:
                self.session.runs_changed.emit()
            if command in ("retrain", "compare") and status == "ok":
                self.page.setCurrentWidget(self.page.results)
            if command == "export":
                if status == "ok":
                    self.page.results.show_export(self._pending_export)
                    self.statusBar().showMessage(self._pending_export, 10000)
                    if self.page.currentWidget() is self.page.review:  # Ctrl+E mid-review: the keys stay there
                        self.page.show_review()
                    else:
                        self.page.setCurrentWidget(self.page.results)
                else:
                    errors = self.jobs.process.errors if self.jobs.process is not None else []
                    self.tell("Export failed", errors[-1].message if errors else "the export did not finish",
                              self.jobs.process.stderr_tail() if self.jobs.process is not None else "")
        if status == "died" and not self.statusBar().currentMessage().startswith("Run "):
            self.statusBar().showMessage("The engine stopped unexpectedly; every decision is saved.", 10000)
        self._update_actions()
        self.job_finished.emit(command, status)

    def _mark_dead_run(self, run_id: str) -> None:
        """A killed engine never finishes its run row: the store reads it as interrupted (its process is
        gone); record that now, with the reason, and say how to resume it."""
        assert self.session is not None
        try:
            run = self.session.project.run(run_id)
            if run.status == "running":
                self.session.project.finish_run(run_id, "interrupted",
                                                {"reason": "the engine process died before it finished"})
                run = self.session.project.run(run_id)
        except UserError:
            return
        self._update_banners()
        if run.status == "interrupted":
            self.statusBar().showMessage(f"Run {run.id} was interrupted; every decision is saved. "
                                         f"{self.session.run_note(run)}", 15000)

    # --------------------------------------------------------------- decisions
    def undo(self) -> None:
        if self.page is not None:
            self.page.review.undo()

    def redo(self) -> None:
        if self.page is not None:
            self.page.review.redo()

    # ----------------------------------------------------------------- layout
    def _splitters(self) -> list[QSplitter]:
        return [s for s in self.findChildren(QSplitter) if s.objectName()]

    def save_layout(self) -> None:
        store = settings.app_settings()
        store.setValue("window/geometry", self.saveGeometry())
        store.setValue("window/state", self.saveState())
        for splitter in self._splitters():
            store.setValue(f"splitters/{splitter.objectName()}", splitter.saveState())
        store.sync()

    def restore_layout(self) -> None:
        store = settings.app_settings()
        geometry = store.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        state = store.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)

    def restore_splitters(self) -> None:
        store = settings.app_settings()
        for splitter in self._splitters():
            state = store.value(f"splitters/{splitter.objectName()}")
            if isinstance(state, QByteArray):
                splitter.restoreState(state)

    def changeEvent(self, event: QEvent) -> None:
        # Coming back to the window: runs made meanwhile (CLI, another machine) show up.
        # Labels, decisions and runs the CLI changed meanwhile show at once, not at the next tick.
        if event.type() == QEvent.Type.ActivationChange and self.isActiveWindow() and self.session is not None \
                and not self.session.reload_if_changed() and not self.jobs.busy:
            self.session.refresh_runs()
        super().changeEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_layout()
        self.jobs.shutdown()
        self.close_project()
        super().closeEvent(event)

