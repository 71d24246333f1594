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
    QWidget,
)

from auditor.style import column_layout, text_label

NO_TRUTH = "(none)"
CHOOSE = "(choose a column)"


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
    """``chosen``: the `engine init` options of an earlier try (see :meth:`init_args`), shown again as chosen."""

    def __init__(self, csv_path: Path, parent: QWidget | None = None, *, chosen: list[str] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Open {csv_path.name}")
        self.csv_path = csv_path
        self.columns = read_header(csv_path)
        self.path_column = QComboBox()
        self.label_column = QComboBox()
        self.truth_column = QComboBox()
        # No guess means "(choose a column)", never silently the first column (which is often the path).
        self.path_column.addItems([CHOOSE, *self.columns])
        self.label_column.addItems([CHOOSE, *self.columns])
        self.truth_column.addItems([NO_TRUTH, *self.columns])
        path_guess = _guess(self.columns, ("path", "file", "image", "filename"))
        self.path_column.setCurrentText(path_guess or CHOOSE)
        truth = _guess(self.columns, ("true_label", "truth", "clean_label"))
        label_guess = _guess([c for c in self.columns if c not in (path_guess, truth)], ("label", "class", "target", "y"))
        self.label_column.setCurrentText(label_guess or CHOOSE)
        self.truth_column.setCurrentText(truth if truth and truth != self.label_column.currentText() else NO_TRUTH)
        self.problem = QLabel()  # why "Create project" is not yet possible, in words
        self.problem.setWordWrap(True)
        self.problem.setObjectName("problem")
        self.problem.setStyleSheet("color: #b42318;")
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
        note = text_label(f"{len(self.columns)} columns in {csv_path.name}. Paths are read relative to the image "
                          "root; other columns are kept and exported unchanged.")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Create project")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        column_layout(self, [note, form, self.problem, self.buttons], margins=(18, 16, 18, 14), spacing=12)
        self.setMinimumWidth(480)
        for box in (self.path_column, self.label_column, self.truth_column):
            box.currentIndexChanged.connect(self.check)
        if chosen:
            self.choose(chosen)
        self.check()

    def choose(self, args: list[str]) -> None:
        """Show the choices of :meth:`init_args`'s options again (after an import that failed)."""
        values = dict(zip(args[::2], args[1::2]))
        for option, box in (("--path-column", self.path_column), ("--label-column", self.label_column),
                            ("--truth-column", self.truth_column)):
            if option in values and box.findText(values[option]) >= 0:
                box.setCurrentText(values[option])
        if "--truth-column" not in values:
            self.truth_column.setCurrentText(NO_TRUTH)
        if "--image-root" in values:
            self.image_root.setText(values["--image-root"])

    def problem_text(self) -> str:
        """What stops the import, in words ('' when the choice can be imported)."""
        path, label, truth = (box.currentText() for box in (self.path_column, self.label_column, self.truth_column))
        name = self.csv_path.name
        if len(self.columns) < 2:
            return f"{name} needs at least two columns, the image path and its label; its header has " \
                   f"{len(self.columns)}."
        if path == CHOOSE:
            return f"Choose the column of {name} that holds each image's path."
        if label == CHOOSE:
            return f"No column of {name} looks like a label. Choose the column that holds each image's class " \
                   "(a label column is needed to audit)."
        if label == path:
            return f"The label and the image path are both the column “{path}”: choose a different label column."
        if truth in (path, label):
            return f"The true label column “{truth}” is already the {'image path' if truth == path else 'label'} " \
                   "column: choose another one, or (none)."
        return ""

    def check(self) -> None:
        text = self.problem_text()
        self.problem.setText(text)
        self.problem.setVisible(bool(text))
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not text)

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
