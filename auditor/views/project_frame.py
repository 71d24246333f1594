"""The open project's page under its banners: read-only, out-of-date suggestions, an interrupted run."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from auditor.run_notes import interrupted_run, run_note
from auditor.session import STALE_SUGGESTIONS, ProjectSession


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


class ProjectFrame(QWidget):
    """``page`` under the banners; they follow the session (staleness, runs) by themselves."""

    def __init__(self, page: QWidget, session: ProjectSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.page = page
        self.session = session
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.read_only_banner = Banner("readOnlyBanner", "#e5e7eb")
        self.stale_banner = Banner("staleBanner", "#fde68a")
        self.interrupted_banner = Banner("interruptedBanner", "#fed7aa")
        for banner in (self.read_only_banner, self.stale_banner, self.interrupted_banner):
            layout.addWidget(banner)
        layout.addWidget(page, 1)
        session.stale_changed.connect(self.update_banners)
        session.runs_changed.connect(self.update_banners)
        self.update_banners()

    def update_banners(self) -> None:
        session = self.session
        self.read_only_banner.say(
            f"<b>Read-only</b>: opened for viewing; decisions are disabled. {session.read_only_reason}"
            if session.read_only else "")
        stale = session.stale_reason()
        self.stale_banner.say(f"<b>Out of date</b>: {STALE_SUGGESTIONS} ({stale})." if stale else "")
        interrupted = interrupted_run(session.runs())
        self.interrupted_banner.say(
            f"<b>Interrupted</b>: {interrupted.kind} run {interrupted.id} did not finish. "
            f"{run_note(session.project, interrupted)}" if interrupted is not None else "")
