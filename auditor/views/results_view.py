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
from auditor.views.compare_view import CompareTable
from engine.stats import NO_MEASURABLE_CHANGE, difference_from_dict, points
from engine.store import RunInfo


def _percent(value: Any) -> str:
    return f"{100 * float(value):.1f}%" if isinstance(value, (int, float)) else "—"


def _spread(std: Any, seeds: int) -> str:
    """"± 0.4 pts over 3 seeds · " (nothing for one seed, or an older summary without it)."""
    if not isinstance(std, (int, float)) or seeds < 2:
        return ""
    return f"± {100 * float(std):.1f} pts over {seeds} seeds · "


def _method_note(summary: dict[str, Any]) -> str:
    method = summary.get("method")
    name = method.get("name") if isinstance(method, dict) else None
    return f" and method ({name})" if name else ""


def _change(summary: dict[str, Any]) -> tuple[str, str, str]:
    """The change card: (value, trend, detail). Green or red only for a difference whose interval excludes zero."""
    before, after = summary.get("accuracy_original"), summary.get("accuracy_cleaned")
    if not isinstance(before, (int, float)) or not isinstance(after, (int, float)):
        return "—", "flat", ""
    recorded = summary.get("difference")
    if not isinstance(recorded, dict):
        # An older retrain: one seed each, no interval; its difference may be seed noise alone.
        return (f"{points(float(after) - float(before))} pts", "flat",
                "one seed, no interval: retrain again to measure it")
    difference = difference_from_dict(recorded)
    if difference.low is None or difference.high is None:
        interval = f"{points(difference.mean)} pts with one seed: no interval"
    else:
        interval = (f"{points(difference.mean)} pts, {difference.confidence:.0%} interval {points(difference.low)} "
                    f"to {points(difference.high)} over {difference.n} paired seeds")
    if not difference.measurable:
        return NO_MEASURABLE_CHANGE[:1].upper() + NO_MEASURABLE_CHANGE[1:], "flat", interval
    return f"{points(difference.mean)} pts", "up" if difference.mean > 0 else "down", interval


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
    compare_requested = Signal()

    def __init__(self, session: ProjectSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        decisions_title = QLabel("Your decisions")
        decisions_title.setObjectName("sectionTitle")
        self.decision_counts = QLabel()
        self.retrain_button = QPushButton("Retrain…")
        self.retrain_button.setToolTip('Retrain with your decisions applied, beside the original labels, over paired seeds')
        self.retrain_button.setObjectName("primary")
        self.retrain_button.clicked.connect(self.retrain_requested)
        self.export_csv_button = QPushButton("Export CSV…")
        self.export_csv_button.setToolTip('Export the corrected labels as a CSV')
        self.export_csv_button.clicked.connect(self.export_csv_requested)
        self.export_folder_button = QPushButton("Export folder…")
        self.export_folder_button.setToolTip('Export the cleaned dataset as an image folder')
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
        # A `compare` job's table (auditor.views.compare_view), shown once one has finished this session.
        self.compare_button = QPushButton("Compare methods…")
        self.compare_button.clicked.connect(self.compare_requested)
        actions.insertWidget(1, self.compare_button)
        self.compare_title = QLabel("Compared methods: held-out accuracy over paired seeds")
        self.compare_title.setObjectName("sectionTitle")
        self.compare_table = CompareTable()
        self.compare_title.hide()
        self.compare_table.hide()
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
        layout.addWidget(self.compare_title)
        layout.addWidget(self.compare_table)
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
        seeds = summary.get("seeds") or [None]
        spread_before = _spread(summary.get("accuracy_original_std"), len(seeds))
        spread_after = _spread(summary.get("accuracy_cleaned_std"), len(seeds))
        self.before.detail.setText(f"{spread_before}{summary.get('n_train_original', '?')} training samples")
        self.after.detail.setText(f"{spread_after}{summary.get('n_train_cleaned', '?')} training samples · "
                                  f"{summary.get('n_removed', 0)} removed · {summary.get('n_relabeled', 0)} relabelled")
        value, trend, detail = _change(summary)
        self.gain.value.setText(value)
        self.gain.value.setProperty("trend", trend)
        self.gain.value.style().unpolish(self.gain.value)
        self.gain.value.style().polish(self.gain.value)
        self.gain.detail.setText(f"{detail} · run {run.id}" if detail else f"run {run.id}")
        against = str(summary.get("accuracy_original_measured_against", summary.get("evaluated_against", "")))
        # Say what the numbers measure: the audit's held-out accuracy comes from fold models trained on
        # part of the data, so it is lower than "Before" for the very same labels.
        self.accuracy_note.setText(
            f"Both models: trained on the whole training split (before: the given labels; after: with your "
            f"decisions), same architecture{_method_note(summary)}, once per seed ({len(seeds)}), scored on the "
            f"{summary.get('n_eval', '?')} held-out samples"
            + (f" against {against.replace('_', ' ')}" if against else "")
            + ". The change is measured seed by seed; 'No measurable change' means its 95% interval holds zero: "
            "the difference is within what another seed alone would give. The audit's held-out accuracy is lower: "
            "its fold models each saw only part of the training split.")

    def _show_runs(self, runs: list[RunInfo]) -> None:
        self.runs_table.setRowCount(len(runs))
        for row, run in enumerate(reversed(runs)):
            summary = run.summary
            if run.kind == "retrain" and "accuracy_cleaned" in summary:
                text = f"accuracy {_percent(summary.get('accuracy_original'))} → " \
                       f"{_percent(summary.get('accuracy_cleaned'))}"
                if summary.get("verdict"):
                    text += f" ({summary['verdict']} over {len(summary.get('seeds') or [])} seeds)"
            elif run.kind == "compare" and summary.get("lines"):
                text = "; ".join(map(str, summary["lines"]))
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

    def show_compare(self, data: dict[str, Any]) -> None:
        self.compare_table.show_result(data)
        self.compare_title.show()
        self.compare_table.show()

    def show_export(self, text: str) -> None:
        self.export_status.setText(text)
