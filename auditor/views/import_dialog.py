"""Import predictions: choose your own model's predictions (and embeddings), see what they match, then import.

The dialog checks every row of the chosen files as the engine's import will (``engine.evidence.imported.validate``:
numpy and pandas only) and shows the class columns and samples matched, and every problem with its row and
fix. The check reads whole files, which takes seconds at 50k rows: it runs on a worker thread, a few hundred
milliseconds after the last edit, so typing never waits for it. Import stays disabled until a check of
exactly what is chosen now found nothing wrong. The import itself is an engine job (``import-predictions``).
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QPushButton,
    QWidget,
)

from auditor.style import column_layout, text_label
from engine.errors import UserError
from engine.evidence.imported import ImportPreview, default_name, validate
from engine.store import Project
from engine.words import plural

CHECK_DELAY_MS = 300  # after the last edit: a name typed letter by letter is checked once
TABLES = "Predictions (*.csv *.npy);;All files (*)"
PATHS = "Paths, one a line (*.txt *.csv);;All files (*)"


@dataclass(frozen=True)
class ImportOptions:
    """What the dialog chose; :meth:`args` are `engine import-predictions`' options."""

    pred_probs: Path | None = None
    embeddings: Path | None = None
    paths: Path | None = None
    logits: bool = False
    name: str | None = None

    @property
    def empty(self) -> bool:
        return self.pred_probs is None and self.embeddings is None

    def args(self) -> list[str]:
        args: list[str] = []
        for option, value in (("--pred-probs", self.pred_probs), ("--embeddings", self.embeddings),
                              ("--paths", self.paths), ("--name", self.name)):
            if value is not None:
                args += [option, str(value)]
        return args + (["--logits"] if self.logits else [])


def check(root: Path, options: ImportOptions) -> ImportPreview | str:
    """The preview of importing ``options`` into the project at ``root``, or why the files cannot be checked.

    Runs on a worker thread: it opens its own read-only connection, never the GUI's."""
    try:
        with Project.open(root, read_only=True) as project:
            return validate(project, pred_probs=options.pred_probs, embeddings=options.embeddings,
                            paths=options.paths, logits=options.logits, name=options.name)
    except UserError as exc:
        return f"{exc.message}" + (f" — {exc.hint}" if exc.hint else "")
    except (OSError, ValueError) as exc:  # a file that vanished or cannot be read as it claims to be
        return f"{type(exc).__name__}: {exc}"


def _count(info: dict[str, object], key: str) -> int:
    value = info.get(key, 0)
    return int(value) if isinstance(value, (int, float)) else 0


def describe_file(what: str, info: dict[str, object] | None) -> str:
    """One file's match in words: its rows, the samples they name, its class columns."""
    if not info or "rows" not in info:
        return ""
    text = (f"{what}: {Path(str(info['file'])).name}: {plural(_count(info, 'rows'), 'row')}, "
            f"{_count(info, 'matched'):,} matched to samples — "
            f"{_count(info, 'train_matched'):,} of {_count(info, 'train_total'):,} training, "
            f"{_count(info, 'heldout_matched'):,} of {_count(info, 'heldout_total'):,} held-out")
    columns = info.get("columns")
    if what == "Predictions" and isinstance(columns, list) and columns:
        shown = ", ".join(str(column) for column in columns[:12])
        text += f". Class columns: {shown}" + (f" and {len(columns) - 12} more" if len(columns) > 12 else "")
    dims = info.get("dims")
    if isinstance(dims, int):
        text += f". {dims:,} dimensions"
    return text + "."


class FileField(QWidget):
    """A path typed or chosen with a file dialog."""

    changed = Signal()

    def __init__(self, title: str, filters: str, placeholder: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title, self.filters = title, filters
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        self.edit.setClearButtonEnabled(True)
        self.edit.textChanged.connect(lambda _: self.changed.emit())
        browse = QPushButton("Choose…")
        browse.clicked.connect(self.choose)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(browse)

    def choose(self) -> None:
        start = self.edit.text() or str(Path.home())
        chosen, _ = QFileDialog.getOpenFileName(self, self.title, start, self.filters)
        if chosen:
            self.edit.setText(chosen)

    def path(self) -> Path | None:
        text = self.edit.text().strip()
        return Path(text).expanduser() if text else None

    def set_path(self, path: Path | str | None) -> None:
        self.edit.setText("" if path is None else str(path))


class ImportDialog(QDialog):
    """Choose the files; the preview and the problems follow every change; Import once the check is clean."""

    checked = Signal()  # a check of what is chosen now finished (its preview, or its problem, is shown)
    _preview_ready = Signal(int, object)  # generation, ImportPreview | str: from the worker thread

    def __init__(self, project_root: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import predictions")
        self.root = Path(project_root)
        self.preview: ImportPreview | None = None
        self._generation = 0  # a result of an older choice is dropped
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-check")
        self._preview_ready.connect(self._on_preview)
        self._build()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(CHECK_DELAY_MS)
        self._timer.timeout.connect(self.check_now)
        for field in (self.pred_probs, self.paths, self.embeddings):
            field.changed.connect(self.schedule_check)
        self.logits.toggled.connect(self.schedule_check)
        self.name.textChanged.connect(self.schedule_check)
        self.finished.connect(lambda _: self._worker.shutdown(wait=False, cancel_futures=True))
        self._show_state()

    def _build(self) -> None:
        self.pred_probs = FileField("Predictions", TABLES, ".csv: path + one column per class; or .npy (N, K)")
        self.paths = FileField("Sample paths", PATHS, "for .npy files: one sample path per line")
        self.embeddings = FileField("Embeddings", TABLES, "optional: .csv (path + numbers) or .npy (N, D)")
        self.logits = QCheckBox("These are logits (scores before a softmax): apply a softmax")
        self.name = QLineEdit()
        self.name.setPlaceholderText("the file's name")
        form = QFormLayout()
        form.setHorizontalSpacing(14)
        form.setVerticalSpacing(8)
        form.addRow("Predictions", self.pred_probs)
        form.addRow("Paths file", self.paths)
        form.addRow("Embeddings", self.embeddings)
        form.addRow("", self.logits)
        form.addRow("Name", self.name)
        note = text_label("Out-of-sample class probabilities from your own model (out-of-fold for training "
                          "samples) become an audit like any other: ranked by confident learning and reviewed "
                          "under Review. Every row is checked first; nothing is imported while any has a problem.")
        self.status = text_label("", "sectionTitle")
        self.matched = text_label("")
        self.matched.setObjectName("importMatched")
        self.problems = QListWidget()
        self.problems.setObjectName("importProblems")
        self.problems.setWordWrap(True)
        self.problems.setMinimumHeight(120)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.import_button = QPushButton("Import")
        self.import_button.setObjectName("primary")
        self.buttons.addButton(self.import_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.problems.setAlternatingRowColors(True)
        self.problems.setSpacing(2)
        layout = column_layout(self, [note, form, 6, self.status, self.matched, (self.problems, 1), self.buttons],
                               margins=(18, 16, 18, 14), spacing=10)
        layout.insertStretch(layout.count() - 1, 0)  # takes the room while no problem is listed
        self.setMinimumSize(640, 520)
        self.resize(780, 600)

    # ---------------------------------------------------------------- choices
    def options(self) -> ImportOptions:
        name = self.name.text().strip()
        return ImportOptions(self.pred_probs.path(), self.embeddings.path(), self.paths.path(),
                             self.logits.isChecked(), name or None)

    def schedule_check(self) -> None:
        """Check again shortly; Import waits for that check."""
        self._generation += 1
        self.preview = None
        self.name.setPlaceholderText(default_name(self.pred_probs.path(), self.embeddings.path()))
        self._show_state(checking=not self.options().empty)
        if not self.options().empty:
            self._timer.start()

    def check_now(self) -> Future[ImportPreview | str] | None:
        """Check what is chosen now on the worker thread; the result arrives through ``checked``."""
        self._timer.stop()
        options = self.options()
        if options.empty:
            return None
        generation = self._generation
        future = self._worker.submit(check, self.root, options)
        future.add_done_callback(lambda done: self._deliver(generation, done))
        return future

    def _deliver(self, generation: int, future: Future[ImportPreview | str]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        result: ImportPreview | str = f"the check failed: {error}" if error is not None else future.result()
        with contextlib.suppress(RuntimeError):  # the dialog was deleted meanwhile
            self._preview_ready.emit(generation, result)  # queued: the dialog lives on the GUI thread

    def _on_preview(self, generation: int, result: ImportPreview | str) -> None:
        if generation != self._generation:
            return  # the choice moved on since: a newer check is on its way
        self.preview = result if isinstance(result, ImportPreview) else None
        self._show_state(problem=result if isinstance(result, str) else "")
        self.checked.emit()

    # ---------------------------------------------------------------- showing
    def _show_state(self, *, checking: bool = False, problem: str = "") -> None:
        self.problems.clear()
        preview = self.preview
        lines = [] if preview is None else [describe_file("Predictions", preview.pred_probs),
                                            describe_file("Embeddings", preview.embeddings)]
        self.matched.setText("\n".join(line for line in lines if line))
        self.matched.setVisible(any(lines))
        if self.options().empty:
            self.status.setText("Choose a predictions file (.csv or .npy), an embeddings file, or both.")
        elif checking:
            self.status.setText("Checking every row…")
        elif problem:
            self.status.setText("These files cannot be checked:")
            self.problems.addItem(problem)
        elif preview is not None and preview.ok:
            self.status.setText(f"Ready: every row checked, nothing wrong. It will be imported as “{preview.name}”.")
        elif preview is not None:
            self.status.setText(f"{plural(len(preview.problems), 'problem')} — nothing can be imported until "
                                "each is fixed:")
            for item in preview.problems:
                # The file by its name (the fields above show where it is); the whole path in the tooltip.
                self.problems.addItem(f"{item.message.replace(item.file, Path(item.file).name, 1)}\n"
                                      f"    fix: {item.fix}")
                self.problems.item(self.problems.count() - 1).setToolTip(item.message)
        self.problems.setVisible(self.problems.count() > 0)
        self.import_button.setEnabled(preview is not None and preview.ok and not checking)
