"""The files an import skipped (a truncated JPEG, random bytes, a .txt), said where the project shows its samples."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from auditor.session import ProjectSession
from engine.store import Project
from engine.words import plural


def skipped_files(project: Project) -> list[tuple[str, str]]:
    """(path, reason) of every file the import skipped (unreadable, not an image): not in the project."""
    entries = project.meta("skipped", []) or []
    return [(str(entry.get("path", "?")) + (f" (data row {entry['row']})" if "row" in entry else ""),
             str(entry.get("reason", ""))) for entry in entries if isinstance(entry, dict)]


def skipped_summary(session: ProjectSession) -> str:
    """"3 of 15 files were skipped at import and are not in this project"; "" when none was."""
    skipped = len(skipped_files(session.project))
    if not skipped:
        return ""
    verb = "was" if skipped == 1 else "were"
    return (f"{skipped:,} of {plural(session.num_samples + skipped, 'file')} {verb} skipped at import "
            f"(unreadable or not an image) and {'is' if skipped == 1 else 'are'} not in this project")


def skipped_details(session: ProjectSession) -> str:
    """One line per skipped file: its path and why."""
    return "\n".join(f"{path}: {reason}" for path, reason in skipped_files(session.project))


class SkippedFilesNotice(QWidget):
    """A line with the count and a button that shows the list (file and reason); hidden when nothing was skipped."""

    def __init__(self, session: ProjectSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("skippedFiles")
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.toggle = QPushButton("Show the list")
        self.toggle.setCheckable(True)
        self.list = QListWidget()
        self.list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.list.hide()
        line = QHBoxLayout()
        line.setContentsMargins(0, 0, 0, 0)
        line.addWidget(self.summary, 1)
        line.addWidget(self.toggle)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(line)
        layout.addWidget(self.list)
        self.toggle.toggled.connect(self._show_list)
        files = skipped_files(session.project)
        for path, reason in files:
            item = QListWidgetItem(f"{path} — {reason}")
            item.setToolTip(f"{path}\n{reason}")
            self.list.addItem(item)
        self.summary.setText(f"⚠ {skipped_summary(session)}." if files else "")
        rows = max(1, min(len(files), 6))  # as tall as its rows, up to six; then it scrolls
        self.list.setMaximumHeight(rows * max(self.list.sizeHintForRow(0), 16) + 2 * self.list.frameWidth() + 4)
        if not files:
            self.hide()

    def _show_list(self, shown: bool) -> None:
        self.list.setVisible(shown)
        self.toggle.setText("Hide the list" if shown else "Show the list")
