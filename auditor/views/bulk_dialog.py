"""Bulk decisions: accept every suggestion above a score, or for one class pair, or remove every
flagged sample of a class. The dialog counts what it will do before, and it is one undo step after.

Which samples it decides and what it records come from ``engine.workflows.bulk``, as for the CLI's
``decide --all-flagged``; the decisions are recorded as bulk, so none of them is trusted."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from auditor.session import ProjectSession
from engine.workflows import bulk

ACTIONS = (
    ("accept", "Accept the suggestion (relabel to it)"),
    ("remove", "Remove from the training set"),
    ("keep", "Keep as verified"),
)
SCOPES = (
    ("flagged", "the flagged samples"),
    ("score", "every sample scoring at least"),
)


class BulkDialog(QDialog):
    applied = Signal(str)  # what was done, in words

    def __init__(self, session: ProjectSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        assert session.audit is not None, "bulk actions need an audit"
        self.setWindowTitle("Bulk decision")
        self.session = session
        audit = session.audit
        # Held-out samples are never decided as if they were training data.
        self._held_out = np.zeros(session.num_samples, dtype=bool)
        held = [row[0] for row in session.project.execute("SELECT id FROM samples WHERE split = 'test'")]
        self._held_out[held] = True

        self.action = QComboBox()
        for key, text in ACTIONS:
            self.action.addItem(text, key)
        self.scope = QComboBox()
        for key, text in SCOPES:
            self.scope.addItem(text, key)
        self.min_score = QDoubleSpinBox()
        self.min_score.setDecimals(3)
        low, high = float(np.nanmin(audit.score)), float(np.nanmax(audit.score))
        self.min_score.setRange(min(0.0, low), max(1.0, high))
        self.min_score.setSingleStep(0.01)
        self.min_score.setValue(session.threshold_line or high)
        self.given = self._class_box()
        self.suggested = self._class_box()
        if session.pair_filter is not None:
            self.given.setCurrentIndex(session.pair_filter[0] + 1)
            self.suggested.setCurrentIndex(session.pair_filter[1] + 1)
        self.skip_decided = QCheckBox("Leave samples already reviewed as they are")
        self.skip_decided.setChecked(True)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setObjectName("sectionTitle")

        form = QFormLayout()
        form.addRow("Decision", self.action)
        form.addRow("Samples", self.scope)
        form.addRow("Score at least", self.min_score)
        form.addRow("Given class", self.given)
        form.addRow("Suggested class", self.suggested)
        form.addRow("", self.skip_decided)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.apply_button = QPushButton("Apply")
        self.apply_button.setObjectName("primary")
        self.buttons.addButton(self.apply_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.apply)
        self.buttons.rejected.connect(self.reject)
        hint = QLabel("Every decision of a bulk action is undone together by one Ctrl+Z. Bulk decisions are "
                      "never trusted samples for the meta methods: nobody looked at each.")
        hint.setObjectName("hint")
        hint.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.summary)
        layout.addWidget(hint)
        layout.addWidget(self.buttons)

        for box in (self.action, self.scope, self.given, self.suggested):
            box.currentIndexChanged.connect(self.refresh)
        self.min_score.valueChanged.connect(self.refresh)
        self.skip_decided.toggled.connect(self.refresh)
        self.refresh()

    def _class_box(self) -> QComboBox:
        box = QComboBox()
        box.addItem("any class", -1)
        for index, name in enumerate(self.session.class_names):
            box.addItem(name, index)
        return box

    def selected(self) -> np.ndarray:
        """The sample ids the action will decide, most suspect first."""
        audit = self.session.audit
        assert audit is not None
        flagged_only = self.scope.currentData() == "flagged"
        given, suggested = int(self.given.currentData()), int(self.suggested.currentData())
        return bulk.select(
            self.session.flagged_mask() if flagged_only else audit.score >= self.min_score.value(),
            rank=audit.rank, labels=self.session.labels, suggested=audit.suggested, held_out=self._held_out,
            decided=self.session.decided if self.skip_decided.isChecked() else None,
            given_class=given if given >= 0 else None, suggested_class=suggested if suggested >= 0 else None)

    def items(self) -> list[tuple[int, str, int | None]]:
        audit = self.session.audit
        assert audit is not None
        return bulk.items(self.selected(), str(self.action.currentData()), labels=self.session.labels,
                          suggested=audit.suggested)

    def describe(self) -> str:
        return bulk.describe(self.items())

    def refresh(self) -> None:
        self.min_score.setEnabled(self.scope.currentData() == "score")
        count = len(self.selected())
        self.summary.setText(self.describe())
        self.apply_button.setText(f"Apply to {count:,} sample{'s' if count != 1 else ''}")
        self.apply_button.setEnabled(count > 0)

    def apply(self) -> None:
        items = self.items()
        if items:
            text = self.describe()
            self.session.decide_many(items)
            self.applied.emit(f"Bulk: {text} (Ctrl+Z undoes all of them)")
        self.accept()
