"""The main window: a composition root that wires the start page, the open project's views and the objects that
own the actions (making projects, starting jobs, exporting), and keeps the menus and the status bar in step."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import QFileDialog, QLabel, QMainWindow, QMessageBox, QStackedWidget

from auditor import settings
from auditor.engine_process import EngineProcess
from auditor.exporter import Exporter
from auditor.job_launcher import JobLauncher
from auditor.jobs import JobController
from auditor.project_maker import ProjectMaker
from auditor.run_notes import mark_dead_run, run_note
from auditor.session import ProjectSession
from auditor.views.duplicates_view import DuplicatesView
from auditor.views.outliers_view import OutliersView
from auditor.views.project_frame import ProjectFrame
from auditor.views.project_page import NEW_AUDIT_COMMANDS, ProjectPage
from auditor.views.skipped_files import skipped_details, skipped_summary
from auditor.views.start_page import StartPage
from engine.errors import UserError
from engine.store import is_project
from engine.words import plural


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
        self.frame: ProjectFrame | None = None  # the banners above the project page, and the page
        self.last_message = ""  # the latest message box text, for tests and the status bar
        self.jobs = JobController(self)
        self.jobs.job_started.connect(self._on_job_started)
        self.jobs.job_finished.connect(self._on_job_finished)
        self.launcher = JobLauncher(self.jobs, self, lambda title, text: self.tell(title, text))
        self.exporter = Exporter(self.launcher, self, self.tell)
        self.exporter.exported.connect(self._on_exported)
        self.launcher.compare_finished.connect(self._on_compare_finished)
        self.maker = ProjectMaker(self)
        self.maker.made.connect(self.open_new_project)
        self.maker.failed.connect(lambda message, details: self.tell("The engine could not finish", message, details))
        self.maker.cancelled.connect(lambda: self.statusBar().showMessage("Cancelled.", 5000))

        self.start_page = StartPage()
        self.start_page.open_folder_requested.connect(self.maker.choose_folder)
        self.start_page.open_csv_requested.connect(self.maker.choose_csv)
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
        settings.restore_window_layout(self)

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
        self.open_folder_action = self._action("Open image folder…", self.maker.choose_folder)
        self.open_csv_action = self._action("Open CSV…", self.maker.choose_csv)
        self.open_project_action = self._action("Open project…", self.choose_project, QKeySequence.StandardKey.Open)
        self.demo_action = self._action("Open the demo", self.open_demo)
        self.export_csv_action = self._action("Export corrected labels (CSV)…", self.exporter.choose_csv, "Ctrl+E")
        self.export_folder_action = self._action("Export cleaned dataset folder…", self.exporter.choose_folder)
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
        self.audit_action = self._action("Audit…", self.launcher.choose_audit, "Ctrl+R")
        self.retrain_action = self._action("Retrain with decisions applied…", self.launcher.choose_retrain, "Ctrl+T")
        self.compare_action = self._action("Compare methods…", self.launcher.choose_compare)
        self.import_action = self._action("Import predictions…", self.launcher.choose_import)
        self.embed_action = self._action("Compute embeddings", self.launcher.start_embed)
        self.cancel_action = self._action("Cancel job", self.jobs.cancel)
        for action in (self.audit_action, self.import_action, self.embed_action, self.retrain_action,
                       self.compare_action, self.cancel_action):
            run_menu.addAction(action)

    def _update_actions(self) -> None:
        has_project = self.session is not None
        busy = self.jobs.busy
        writable = self.session is not None and not self.session.read_only
        for action in (self.export_csv_action, self.export_folder_action, self.close_action):
            action.setEnabled(has_project and not busy)
        for action in (self.audit_action, self.retrain_action, self.compare_action, self.import_action,
                       self.embed_action):
            action.setEnabled(has_project and writable and not busy)
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

    def _say(self, text: str, msecs: int = 10000) -> None:
        self.statusBar().showMessage(text, msecs)

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
        self.session = self.launcher.session = session
        self.page = page
        self.frame = ProjectFrame(page, session)
        self.stack.addWidget(self.frame)
        self.stack.setCurrentWidget(self.frame)
        self._connect_project(session, page)
        if session.read_only:
            self._say(f"Opened for viewing only: {session.read_only_reason}", 15000)
        elif skipped_summary(session):
            self._say(f"{skipped_summary(session)}: Browse lists them.", 15000)
        session.start_watching()  # the CLI may change the project while it is open
        settings.restore_splitters(self)
        page.setCurrentWidget(page.review if session.audit is not None else page.browse)
        self.setWindowTitle(f"{session.name}{' (read-only)' if session.read_only else ''} — Label Auditor")
        settings.add_recent_project(session.root)
        self._update_actions()
        # The project's arrays and models live as long as it is open: move them out of the
        # cyclic GC's reach, so a full collection never lands between a key press and its repaint.
        gc.collect()
        gc.freeze()
        self.project_opened.emit(str(session.root))
        return True

    def _connect_project(self, session: ProjectSession, page: ProjectPage) -> None:
        page.audit.audit_requested.connect(self.launcher.choose_audit)
        page.audit.retrain_requested.connect(self.launcher.choose_retrain)
        page.audit.import_requested.connect(self.launcher.choose_import)
        page.duplicates.find_requested.connect(lambda: self._follow(page.duplicates, "duplicates"))
        page.outliers.find_requested.connect(lambda: self._follow(page.outliers, "outliers"))
        for view in (page.duplicates, page.outliers):
            view.status_message.connect(self._say)
        page.results.retrain_requested.connect(self.launcher.choose_retrain)
        page.results.compare_requested.connect(self.launcher.choose_compare)
        page.results.export_csv_requested.connect(self.exporter.choose_csv)
        page.results.export_folder_requested.connect(self.exporter.choose_folder)
        # Resume a run from its checkpoint; teach the detector from the reviews (finetune-detector).
        page.results.job_requested.connect(lambda command, options: self.launcher.start(command, list(options)))
        session.decision_changed.connect(self._update_actions)
        session.decisions_reset.connect(self._update_actions)  # a bulk action or its undo
        page.review.status_message.connect(self._say)
        session.review_filter_changed.connect(self._update_counter)
        session.runs_changed.connect(self._update_counter)
        session.undo_state_changed.connect(self._update_actions)
        session.decisions_reset.connect(self._update_counter)
        session.write_failed.connect(lambda message, hint: self.tell("Nothing was changed", message, hint))
        session.notice.connect(self._say)

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

    def close_project(self) -> None:
        if self.session is None or self.page is None:
            return
        if self.jobs.busy:
            self.jobs.shutdown()
        settings.save_window_layout(self)
        self.session.stop_watching()
        if self.frame is not None:
            self.stack.removeWidget(self.frame)
            self.frame.deleteLater()
        self.page.shutdown()
        self.page.deleteLater()
        self.session.close()
        self.session = self.launcher.session = None
        gc.unfreeze()  # let the closed project's objects be collected
        self.page = None
        self.frame = None
        self.start_page.refresh()
        self.stack.setCurrentWidget(self.start_page)
        self.setWindowTitle("Label Auditor")
        self._update_actions()
        self.project_closed.emit()

    def choose_project(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a Label Auditor project")
        if folder:
            self.open_project(folder)

    def open_demo(self) -> EngineProcess | None:
        """The demo project, made on first use by `engine demo` in the per-user data folder."""
        target = settings.demo_project_dir()
        if is_project(target):
            self.open_project(target)
            return None
        return self.maker.demo(target)

    # ------------------------------------------------------------------- jobs
    def _on_job_started(self, command: str, process: EngineProcess) -> None:
        self.job_label.setText(f"  {command} running…  ")
        if self.page is not None:
            self.page.follow_job(command, process)
        self._update_actions()

    def _on_job_finished(self, command: str, status: str, run_id: str) -> None:
        self.job_label.setText(f"  {command}: {status}  ")
        if status == "died" and run_id and self.session is not None:
            self._mark_dead_run(run_id)
        if self.session is not None and self.page is not None:
            if command in NEW_AUDIT_COMMANDS and status == "ok":  # its new audit becomes current
                self.session.reload_audit()
            else:
                self.session.runs_changed.emit()
            self.page.show_job_result(command, status)
            if command == "export":
                self.exporter.finished(status)
        if status == "died" and not self.statusBar().currentMessage().startswith("Run "):
            self._say("The engine stopped unexpectedly; every decision is saved.")
        self._update_actions()
        self.job_finished.emit(command, status)

    def _follow(self, view: DuplicatesView | OutliersView, command: str) -> None:
        """A search whose answer a view shows (duplicates, outliers): the view follows it, with cancel."""
        process = self.launcher.start_search(command)
        if process is not None:
            view.follow(process)

    def _on_compare_finished(self, result: dict[str, Any]) -> None:
        if self.page is not None:
            self.page.results.show_compare(result)

    def _on_exported(self, message: str) -> None:
        if self.page is not None:
            self.page.show_export(message)
        self._say(message)

    def _mark_dead_run(self, run_id: str) -> None:
        assert self.session is not None
        run = mark_dead_run(self.session.project, run_id)
        if run is None:
            return
        if self.frame is not None:
            self.frame.update_banners()
        if run.status == "interrupted":
            self._say(f"Run {run.id} was interrupted; every decision is saved. "
                      f"{run_note(self.session.project, run)}", 15000)

    # --------------------------------------------------------------- decisions
    def undo(self) -> None:
        if self.page is not None:
            self.page.undo()

    def redo(self) -> None:
        if self.page is not None:
            self.page.redo()

    # ------------------------------------------------------------------ window
    def changeEvent(self, event: QEvent) -> None:
        # Coming back to the window: runs made meanwhile (CLI, another machine) show up.
        # Labels, decisions and runs the CLI changed meanwhile show at once, not at the next tick.
        if event.type() == QEvent.Type.ActivationChange and self.isActiveWindow() and self.session is not None \
                and not self.session.reload_if_changed() and not self.jobs.busy:
            self.session.refresh_runs()
        super().changeEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        settings.save_window_layout(self)
        self.jobs.shutdown()
        self.close_project()
        super().closeEvent(event)
