"""Open a CSV dataset: which columns hold the path, the label and (optionally) the true label."""

from __future__ import annotations

import csv
from pathlib import Path

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

NO_TRUTH = "(none)"


def read_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return next(csv.reader(handle), [])


def _guess(columns: list[str], words: tuple[str, ...]) -> str | None:
    for word in words:
        for column in columns:
            if column.lower() == word:
                return column
    for word in words:
        for column in columns:
            if word in column.lower():
                return column
    return None


class CsvDialog(QDialog):
    def __init__(self, csv_path: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Open {csv_path.name}")
        self.csv_path = csv_path
        self.columns = read_header(csv_path)
        self.path_column = QComboBox()
        self.label_column = QComboBox()
        self.truth_column = QComboBox()
        self.path_column.addItems(self.columns)
        self.label_column.addItems(self.columns)
        self.truth_column.addItems([NO_TRUTH, *self.columns])
        self.path_column.setCurrentText(_guess(self.columns, ("path", "file", "image", "filename")) or "")
        self.label_column.setCurrentText(_guess(self.columns, ("label", "class", "target", "y")) or "")
        truth = _guess(self.columns, ("true_label", "truth", "clean_label"))
        self.truth_column.setCurrentText(truth if truth and truth != self.label_column.currentText() else NO_TRUTH)
        self.image_root = QLineEdit(str(csv_path.parent))
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._choose_root)
        root_row = QHBoxLayout()
        root_row.addWidget(self.image_root, 1)
        root_row.addWidget(browse)

        form = QFormLayout()
        form.setHorizontalSpacing(14)
        form.setVerticalSpacing(8)
        form.addRow("Image path column", self.path_column)
        form.addRow("Label column", self.label_column)
        form.addRow("True label column", self.truth_column)
        form.addRow("Image root", root_row)
        note = QLabel(f"{len(self.columns)} columns in {csv_path.name}. Paths are read relative to the image root; "
                      "other columns are kept and exported unchanged.")
        note.setWordWrap(True)
        note.setObjectName("muted")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Create project")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 16, 18, 14)
        layout.setSpacing(12)
        layout.addWidget(note)
        layout.addLayout(form)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(480)

    def _choose_root(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Image root", self.image_root.text())
        if folder:
            self.image_root.setText(folder)

    def init_args(self) -> list[str]:
        """The `engine init` options for this CSV."""
        args = ["--csv", str(self.csv_path), "--image-root", self.image_root.text(),
                "--path-column", self.path_column.currentText(), "--label-column", self.label_column.currentText()]
        if self.truth_column.currentText() != NO_TRUTH:
            args += ["--truth-column", self.truth_column.currentText()]
        return args
