"""The first thing a person sees: open a dataset or a project, recent projects, the demo."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal, SignalInstance
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from auditor.settings import recent_projects
from engine.store import is_project


class StartPage(QWidget):
    open_folder_requested = Signal()
    open_csv_requested = Signal()
    open_project_requested = Signal()
    demo_requested = Signal()
    project_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        title = QLabel("Label Auditor")
        title.setObjectName("appTitle")
        subtitle = QLabel("Find the images that are probably mislabeled, look at them, fix them, retrain.")
        subtitle.setObjectName("muted")

        self.demo_button = self._action_button("Try the demo", "Handwritten digits with known noise",
                                               self.demo_requested)
        self.demo_button.setObjectName("startPrimary")
        self.folder_button = self._action_button("Open an image folder…", "One sub-folder per class",
                                                 self.open_folder_requested)
        self.csv_button = self._action_button("Open a CSV…", "Image paths and labels", self.open_csv_requested)
        self.project_button = self._action_button("Open a project…", "Made here, by the CLI or on a cluster",
                                                  self.open_project_requested)
        actions = QGridLayout()
        actions.setSpacing(12)
        actions.addWidget(self.demo_button, 0, 0)
        actions.addWidget(self.folder_button, 0, 1)
        actions.addWidget(self.csv_button, 1, 0)
        actions.addWidget(self.project_button, 1, 1)

        recent_title = QLabel("Recent projects")
        recent_title.setObjectName("sectionTitle")
        self.recent = QListWidget()
        self.recent.setObjectName("recentList")
        self.recent.setMaximumHeight(240)
        self.recent.itemActivated.connect(self._on_recent)
        self.recent_empty = QLabel("Projects you open appear here.")
        self.recent_empty.setObjectName("muted")
        # Why the last project could not be opened: stays here after its message box is closed.
        self.problem = QLabel()
        self.problem.setObjectName("startProblem")
        self.problem.setWordWrap(True)
        self.problem.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problem.setStyleSheet("QLabel#startProblem { background: #fee2e2; color: #7f1d1d; padding: 8px 12px; "
                                   "border-radius: 6px; }")
        self.problem.hide()

        column = QVBoxLayout()
        column.setSpacing(14)
        column.addWidget(title)
        column.addWidget(subtitle)
        column.addSpacing(12)
        column.addLayout(actions)
        column.addWidget(self.problem)
        column.addSpacing(16)
        column.addWidget(recent_title)
        column.addWidget(self.recent_empty)
        column.addWidget(self.recent)
        column.addStretch(1)

        frame = QFrame()
        frame.setMaximumWidth(760)
        frame.setLayout(column)
        outer = QHBoxLayout(self)
        outer.setContentsMargins(40, 40, 40, 30)
        outer.addStretch(1)
        outer.addWidget(frame, 4)
        outer.addStretch(1)
        self.refresh()

    def _action_button(self, title: str, detail: str, signal: SignalInstance) -> QPushButton:
        button = QPushButton(f"{title}\n{detail}")
        button.setObjectName("startAction")
        button.setMinimumHeight(72)
        button.clicked.connect(signal.emit)
        return button

    def refresh(self) -> None:
        self.recent.clear()
        for path in recent_projects():
            item = QListWidgetItem(f"{Path(path).name}    —    {path}")
            item.setData(Qt.ItemDataRole.UserRole, path)
            if not is_project(path):
                item.setFlags(Qt.ItemFlag.NoItemFlags)
                item.setText(item.text() + "   (missing)")
            self.recent.addItem(item)
        self.recent_empty.setVisible(self.recent.count() == 0)
        self.recent.setVisible(self.recent.count() > 0)

    def show_problem(self, text: str, hint: str = "") -> None:
        """Say on the page why a project did not open ("" hides it)."""
        self.problem.setText(text + (f"\nFix: {hint}" if hint else ""))
        self.problem.setVisible(bool(text))

    def _on_recent(self, item: QListWidgetItem) -> None:
        path = item.data(Qt.ItemDataRole.UserRole)
        if path and is_project(path):
            self.project_chosen.emit(path)
