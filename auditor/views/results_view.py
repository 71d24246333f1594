"""Retrain and export: decisions so far, before/after held-out accuracy, every run, the exports."""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from auditor.session import ProjectSession
from engine.store import RunInfo


def _percent(value: Any) -> str:
    return f"{100 * float(value):.1f}%" if isinstance(value, (int, float)) else "—"


class AccuracyCard(QFrame):
    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("card")
        self.title = QLabel(title)
        self.title.setObjectName("muted")
        self.value = QLabel("—")
        self.value.setObjectName("bigNumber")
        self.detail = QLabel("")
        self.detail.setObjectName("muted")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 12, 16, 12)
        layout.addWidget(self.title)
        layout.addWidget(self.value)
        layout.addWidget(self.detail)


class ResultsView(QWidget):
    retrain_requested = Signal()
    export_csv_requested = Signal()
    export_folder_requested = Signal()

    def __init__(self, session: ProjectSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        decisions_title = QLabel("Your decisions")
        decisions_title.setObjectName("sectionTitle")
        self.decision_counts = QLabel()
        self.retrain_button = QPushButton("Retrain with decisions applied…")
        self.retrain_button.setObjectName("primary")
        self.retrain_button.clicked.connect(self.retrain_requested)
        self.export_csv_button = QPushButton("Export corrected labels (CSV)…")
        self.export_csv_button.clicked.connect(self.export_csv_requested)
        self.export_folder_button = QPushButton("Export cleaned dataset folder…")
        self.export_folder_button.clicked.connect(self.export_folder_requested)
        actions = QHBoxLayout()
        actions.setSpacing(8)
        actions.addWidget(self.retrain_button)
        actions.addWidget(self.export_csv_button)
        actions.addWidget(self.export_folder_button)
        actions.addStretch(1)

        accuracy_title = QLabel("Held-out accuracy of one model trained on the whole training split")
        accuracy_title.setObjectName("sectionTitle")
        self.before = AccuracyCard("Before — original labels")
        self.after = AccuracyCard("After — cleaned labels")
        self.gain = AccuracyCard("Change")
        cards = QHBoxLayout()
        cards.setSpacing(12)
        cards.addWidget(self.before)
        cards.addWidget(self.after)
        cards.addWidget(self.gain)
        self.accuracy_note = QLabel()
        self.accuracy_note.setObjectName("muted")
        self.accuracy_note.setWordWrap(True)

        runs_title = QLabel("Runs")
        runs_title.setObjectName("sectionTitle")
        self.runs_table = QTableWidget(0, 5)
        self.runs_table.setHorizontalHeaderLabels(["Kind", "Status", "Started", "Run", "Summary"])
        self.runs_table.verticalHeader().setVisible(False)
        self.runs_table.setWordWrap(False)
        self.runs_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.runs_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.runs_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.export_status = QLabel()
        self.export_status.setObjectName("muted")
        self.export_status.setWordWrap(True)
        self.export_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 14, 16, 14)
        layout.setSpacing(10)
        layout.addWidget(decisions_title)
        layout.addWidget(self.decision_counts)
        layout.addLayout(actions)
        layout.addWidget(self.export_status)
        layout.addSpacing(8)
        layout.addWidget(accuracy_title)
        layout.addLayout(cards)
        layout.addWidget(self.accuracy_note)
        layout.addSpacing(8)
        layout.addWidget(runs_title)
        layout.addWidget(self.runs_table, 1)

        session.runs_changed.connect(self.refresh)
        session.decision_changed.connect(self._update_counts)
        session.decisions_reset.connect(self._update_counts)  # a bulk action, or its undo
        self.refresh()

    def refresh(self) -> None:
        self._update_counts()
        runs = self.session.runs()
        self._show_runs(runs)
        retrains = [run for run in runs if run.kind == "retrain" and run.status == "ok"]
        self._show_accuracy(retrains[-1] if retrains else None)

    def _update_counts(self, *_: object) -> None:
        counts = self.session.action_counts()
        self.decision_counts.setText(
            f"<b>{counts['relabel']:,}</b> relabelled · <b>{counts['remove']:,}</b> removed · "
            f"<b>{counts['keep']:,}</b> kept as verified — saved in the project as you make them."
        )

    def _show_accuracy(self, run: RunInfo | None) -> None:
        if run is None:
            for card in (self.before, self.after, self.gain):
                card.value.setText("—")
                card.detail.setText("")
            self.accuracy_note.setText("Retrain to compare a model trained on your cleaned labels with one trained "
                                       "on the original labels.")
            return
        summary = run.summary
        before, after = summary.get("accuracy_original"), summary.get("accuracy_cleaned")
        self.before.value.setText(_percent(before))
        self.after.value.setText(_percent(after))
        self.before.detail.setText(f"{summary.get('n_train_original', '?')} training samples")
        self.after.detail.setText(f"{summary.get('n_train_cleaned', '?')} training samples · "
                                  f"{summary.get('n_removed', 0)} removed · {summary.get('n_relabeled', 0)} relabelled")
        if isinstance(before, (int, float)) and isinstance(after, (int, float)):
            delta = 100 * (float(after) - float(before))
            self.gain.value.setText(f"{delta:+.1f} pts")
            self.gain.value.setProperty("trend", "up" if delta > 0 else "down" if delta < 0 else "flat")
        else:
            self.gain.value.setText("—")
        self.gain.value.style().unpolish(self.gain.value)
        self.gain.value.style().polish(self.gain.value)
        self.gain.detail.setText(f"run {run.id}")
        against = str(summary.get("accuracy_original_measured_against", summary.get("evaluated_against", "")))
        # Say what the numbers measure: the audit's held-out accuracy comes from fold models trained on
        # part of the data, so it is lower than "Before" for the very same labels.
        self.accuracy_note.setText(
            f"Both models: trained on the whole training split (before: the given labels; after: with your "
            f"decisions), same architecture and seed, scored on the {summary.get('n_eval', '?')} held-out samples"
            + (f" against {against.replace('_', ' ')}" if against else "")
            + ". The audit's held-out accuracy is lower: its fold models each saw only part of the training split.")

    def _show_runs(self, runs: list[RunInfo]) -> None:
        self.runs_table.setRowCount(len(runs))
        for row, run in enumerate(reversed(runs)):
            summary = run.summary
            if run.kind == "retrain" and "accuracy_cleaned" in summary:
                text = f"accuracy {_percent(summary.get('accuracy_original'))} → " \
                       f"{_percent(summary.get('accuracy_cleaned'))}"
            elif "error" in summary:
                text = str(summary["error"])
            elif run.status == "interrupted":
                text = self.session.run_note(run)  # why, and the command that resumes it (helper "app")
            elif "reason" in summary:
                text = str(summary["reason"])
            else:
                text = ", ".join(f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}"
                                 for k, v in summary.items() if isinstance(v, (int, float, str)))[:200]
            cells = [run.kind, run.status, time.strftime("%Y-%m-%d %H:%M", time.localtime(run.created)), run.id,
                     text]
            for column, value in enumerate(cells):
                self.runs_table.setItem(row, column, QTableWidgetItem(value))

    def show_export(self, text: str) -> None:
        self.export_status.setText(text)
