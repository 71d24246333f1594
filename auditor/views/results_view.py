"""Retrain and export: decisions so far, before/after held-out accuracy, every run, the exports."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
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

from auditor.run_notes import run_note
from auditor.session import ProjectSession
from auditor.style import column_layout, text_label
from auditor.views.audit_view import imported_source
from auditor.views.compare_view import ComparePlot, CompareTable
from engine.stats import NO_MEASURABLE_CHANGE, difference_from_dict, points
from engine.store import RunInfo
from engine.words import plural


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


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def _figure(value: Any) -> str:
    return f"{float(value):.3f}" if isinstance(value, (int, float)) else "—"


def _audit_line(run: RunInfo) -> str:
    """``aum, td_lstm, ensemble · flagged aum 18, td_lstm 13 of 36 · 3 epochs``."""
    summary, spec = run.summary, run.spec
    flagged = summary.get("n_flagged")
    names = list(flagged) if isinstance(flagged, dict) else list(spec.get("detectors") or [])
    parts = [", ".join(map(str, names)) or "audit"]
    if isinstance(flagged, dict):
        parts.append("flagged " + ", ".join(f"{name} {_count(count)}" for name, count in flagged.items())
                     + f" of {_count(summary.get('n_audited'))}")
    elif "flagged" in summary:
        parts.append(f"flagged {_count(summary.get('flagged'))}")
    imported = imported_source(spec)
    if imported is not None:
        parts.append(f"imported from {Path(str(imported.get('file', '?'))).name}")
    epochs = (spec.get("train") or {}).get("epochs") if isinstance(spec.get("train"), dict) else spec.get("epochs")
    if epochs is not None:
        parts.append(f"{epochs} epoch{'s' if epochs != 1 else ''}")
    finetune = summary.get("finetune")
    if spec.get("rescored_from") and isinstance(finetune, dict):
        crossed = finetune.get("after_cross_validated") or {}
        parts.append(f"td_lstm fine-tuned on {_count(finetune.get('n_reviewed'))} reviews, re-scored from "
                     f"{spec['rescored_from']} (agreement {_figure((finetune.get('before') or {}).get('roc_auc'))} → "
                     f"{_figure(crossed.get('roc_auc'))})")
    return " · ".join(parts)


def _retrain_line(run: RunInfo) -> str:
    """``sln (sigma=0.5) · 3 seeds · accuracy 80.0% → 82.0% ± 0.4 pts (no measurable change over 3 seeds)``."""
    summary = run.summary
    method = summary.get("method")
    name = method.get("name") if isinstance(method, dict) else run.spec.get("method", "ce")
    options = run.spec.get("options") or {}
    seeds = len(summary.get("seeds") or [None])
    text = (f"{name}" + (" (" + ", ".join(f"{k}={v}" for k, v in options.items()) + ")" if options else "")
            + f" · {seeds} seed{'s' if seeds != 1 else ''} · accuracy {_percent(summary.get('accuracy_original'))} → "
            f"{_percent(summary.get('accuracy_cleaned'))}")
    std = summary.get("accuracy_cleaned_std")
    if isinstance(std, (int, float)) and seeds > 1:
        text += f" ± {100 * float(std):.1f} pts"
    if summary.get("verdict"):
        text += f" ({summary['verdict']} over {plural(seeds, 'seed')})"
    return text


def _compare_line(run: RunInfo) -> str:
    methods = run.summary.get("methods")
    names = list(methods) if isinstance(methods, dict) else [
        str(m.get("name")) for m in run.spec.get("methods", []) if isinstance(m, dict)]
    seeds = len(run.summary.get("seeds") or run.spec.get("seeds") or [])
    line = f"methods {', '.join(names)}" + (f" · {plural(seeds, 'seed')}" if seeds else "")
    lines = run.summary.get("lines")
    return line + (" · " + "; ".join(map(str, lines)) if lines else "")


def _tune_line(run: RunInfo) -> str:
    summary = run.summary
    trials = f"{_count(summary.get('n_complete'))} trials ({_count(summary.get('n_pruned'))} pruned)"
    best = summary.get("best_params")
    if isinstance(best, dict):
        found = ", ".join(f"{k}={v}" for k, v in best.items())
        return (f"{summary.get('method', '?')} · {trials} · best {found} (validation accuracy "
                f"{_percent(summary.get('best_value'))})")
    return f"{summary.get('method', '?')} · {trials} · no trial finished"


SUMMARY_LINES = {"audit": _audit_line, "retrain": _retrain_line, "compare": _compare_line, "tune": _tune_line}


def run_summary_line(run: RunInfo) -> str:
    """A readable one-line summary of a finished run, by kind (never raw ``key: value`` text)."""
    describe = SUMMARY_LINES.get(run.kind)
    if describe is not None:
        try:
            return describe(run)
        except (TypeError, ValueError, AttributeError):
            pass  # an older or foreign summary: fall through to the plain figures
    figures = [f"{key.replace('_', ' ')} {value:.3g}" if isinstance(value, float) else f"{key.replace('_', ' ')} {value}"
               for key, value in run.summary.items() if isinstance(value, (int, float, str))]
    return " · ".join(figures)[:200]


@functools.lru_cache(maxsize=4)
def _recorded_ids(path: str) -> frozenset[int]:
    """The sample ids a finished dynamics recording holds (read once per run: a run's files never change)."""
    try:
        return frozenset(np.load(path, allow_pickle=False).tolist())
    except (OSError, ValueError):
        return frozenset()


def teach_readiness(session: ProjectSession) -> tuple[bool, str]:
    """Whether the td_lstm detector can be fine-tuned on the reviews now, and a sentence saying why (not)."""
    from engine.workflows.finetune_detector import MIN_REVIEWED

    audits = [run for run in session.runs()
              if run.kind == "audit" and run.status == "ok" and (run.folder / "dynamics" / "td.npy").is_file()]
    if not audits:
        return False, ("Needs an audit with training dynamics (any detector but cl, e.g. all) and your reviews of "
                       "its suggestions.")
    recorded = _recorded_ids(str(audits[-1].folder / "dynamics" / "ids.npy"))
    decisions = [d for sample, d in session.decisions().items() if sample in recorded]
    mislabeled = sum(d.action in ("relabel", "remove") for d in decisions)
    kept = sum(d.action == "keep" for d in decisions)
    counts = f"you have {mislabeled + kept} ({mislabeled} relabelled or removed, {kept} kept)"
    if mislabeled + kept < MIN_REVIEWED or not mislabeled or not kept:
        return False, (f"Needs at least {MIN_REVIEWED} reviewed samples of the latest audit with training dynamics, "
                       f"at least one relabelled or removed and one kept: {counts}.")
    return True, (f"Fine-tune the LSTM detector on your {mislabeled + kept} reviews ({mislabeled} relabelled or "
                  "removed, kept ones as correct) and re-score the project from the latest audit's dynamics, "
                  "without training again")


def resume_command(run: RunInfo) -> tuple[str, list[str]] | None:
    """The engine command and options that continue ``run`` from its checkpoint, or None when it cannot."""
    from engine.commands.status import RESUMABLE

    if run.status not in RESUMABLE:
        return None
    from engine.models import MODEL_CHOICES  # imports torch: only for a run that can be resumed
    if run.spec.get("rescored_from"):
        return "finetune-detector", []  # it trains nothing: running it again is the resume
    if run.kind not in ("audit", "crossval", "retrain", "compare", "tune"):
        return None
    model = str((run.spec.get("train") or {}).get("model", "small_cnn"))
    if model not in MODEL_CHOICES:
        return None  # custom code named in a project folder: the person resumes it knowingly, from the CLI
    return run.kind, ["--resume", run.id]


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
        for label in (self.title, self.value, self.detail):
            label.setWordWrap(True)  # a long change ("No measurable change", its interval) wraps, never widens
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
    job_requested = Signal(str, list)  # an engine command and its options: a resume, the detector's fine-tuning

    def __init__(self, session: ProjectSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.decision_counts = QLabel()
        actions = self._build_actions()
        self.export_status = text_label(selectable=True)
        # The review teaches the detector (finetune-detector): enabled once there are enough reviews.
        self.teach_button = QPushButton("Teach the detector")
        self.teach_button.clicked.connect(lambda: self.job_requested.emit("finetune-detector", []))
        self.teach_result = text_label(selectable=True)
        teach_row = QHBoxLayout()  # its own row: the actions above still fit an 800-px screen
        teach_row.addWidget(self.teach_button, 0, Qt.AlignmentFlag.AlignTop)
        teach_row.addWidget(self.teach_result, 1)
        self.before = AccuracyCard("Before — original labels")
        self.after = AccuracyCard("After — cleaned labels")
        self.gain = AccuracyCard("Change")
        cards = QHBoxLayout()
        cards.setSpacing(12)
        for card in (self.before, self.after, self.gain):
            cards.addWidget(card)
        self.accuracy_note = text_label()
        # A `compare` job's table (auditor.views.compare_view), shown once one has finished this session.
        self.compare_title = text_label("Compared methods: held-out accuracy over paired seeds", "sectionTitle",
                                        wrap=False)
        self.compare_table = CompareTable()
        self.compare_plot = ComparePlot()
        for widget in (self.compare_title, self.compare_table, self.compare_plot):
            widget.hide()
        runs_header = self._build_runs()
        column_layout(self, [
            text_label("Your decisions", "sectionTitle", wrap=False), self.decision_counts, actions,
            self.export_status, teach_row, 8,
            text_label("Held-out accuracy of one model trained on the whole training split", "sectionTitle",
                       wrap=False),
            cards, self.accuracy_note, self.compare_title, self.compare_table, self.compare_plot, 8,
            runs_header, (self.runs_table, 1),
        ], margins=(16, 14, 16, 14), spacing=10)

        session.runs_changed.connect(self.refresh)
        session.decision_changed.connect(self._update_counts)
        session.decisions_reset.connect(self._update_counts)  # a bulk action, or its undo
        # Off the key press's path: a burst of decisions updates the button once, after it.
        self._teach_timer = QTimer(self)
        self._teach_timer.setSingleShot(True)
        self._teach_timer.setInterval(150)
        self._teach_timer.timeout.connect(self._update_teach)
        session.decision_changed.connect(self._teach_timer.start)
        session.decisions_reset.connect(self._teach_timer.start)
        self.refresh()

    def _build_actions(self) -> QHBoxLayout:
        """Retrain, compare and export: the buttons that start a job on the decisions."""
        self.retrain_button = QPushButton("Retrain…")
        self.retrain_button.setToolTip('Retrain with your decisions applied, beside the original labels, over paired seeds')
        self.retrain_button.setObjectName("primary")
        self.retrain_button.clicked.connect(self.retrain_requested)
        self.compare_button = QPushButton("Compare methods…")
        self.compare_button.clicked.connect(self.compare_requested)
        self.export_csv_button = QPushButton("Export CSV…")
        self.export_csv_button.setToolTip('Export the corrected labels as a CSV')
        self.export_csv_button.clicked.connect(self.export_csv_requested)
        self.export_folder_button = QPushButton("Export folder…")
        self.export_folder_button.setToolTip('Export the cleaned dataset as an image folder')
        self.export_folder_button.clicked.connect(self.export_folder_requested)
        actions = QHBoxLayout()
        actions.setSpacing(8)
        for button in (self.retrain_button, self.compare_button, self.export_csv_button, self.export_folder_button):
            actions.addWidget(button)
        actions.addStretch(1)
        return actions

    def _build_runs(self) -> QHBoxLayout:
        """Every run of the project in a table, and the button that resumes the selected (or latest) one."""
        self.runs_table = QTableWidget(0, 5)
        self.runs_table.setHorizontalHeaderLabels(["Kind", "Status", "Started", "Run", "Summary"])
        self.runs_table.verticalHeader().setVisible(False)
        self.runs_table.setWordWrap(False)
        self.runs_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.runs_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.runs_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.resume_button = QPushButton("Resume")
        self.resume_button.clicked.connect(self._resume_selected)
        self._row_runs: list[RunInfo] = []
        self.runs_table.itemSelectionChanged.connect(self._update_resume)
        runs_header = QHBoxLayout()
        runs_header.addWidget(text_label("Runs", "sectionTitle", wrap=False))
        runs_header.addStretch(1)
        runs_header.addWidget(self.resume_button)
        return runs_header

    def refresh(self) -> None:
        self._update_counts()
        runs = self.session.runs()
        self._show_runs(runs)
        retrains = [run for run in runs if run.kind == "retrain" and run.status == "ok"]
        self._show_accuracy(retrains[-1] if retrains else None)
        self._update_teach()
        self._show_teach_result(runs)

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
        selected = self.selected_run()
        self._row_runs = list(reversed(runs))
        self.runs_table.setRowCount(len(runs))
        for row, run in enumerate(self._row_runs):
            summary = run.summary
            if "error" in summary:
                text = str(summary["error"])
            elif run.status == "interrupted":
                text = run_note(self.session.project, run)  # why, and the command that resumes it (helper "app")
            elif "reason" in summary:
                text = str(summary["reason"])
            else:
                text = run_summary_line(run)
            cells = [run.kind, run.status, time.strftime("%Y-%m-%d %H:%M", time.localtime(run.created)), run.id,
                     text]
            for cell, value in enumerate(cells):
                self.runs_table.setItem(row, cell, QTableWidgetItem(value))
        if selected is not None:
            for row, run in enumerate(self._row_runs):
                if run.id == selected.id:
                    self.runs_table.selectRow(row)
        self._update_resume()

    # ------------------------------------------------------------------ resume
    def selected_run(self) -> RunInfo | None:
        rows = {index.row() for index in self.runs_table.selectedIndexes()}
        return self._row_runs[min(rows)] if rows and min(rows) < len(self._row_runs) else None

    def _resumable_run(self) -> RunInfo | None:
        """The selected run, or else the latest one, when it can be resumed from the app."""
        selected = self.selected_run()
        candidates = [selected] if selected is not None else self._row_runs[:1]
        return next((run for run in candidates if resume_command(run) is not None), None)

    def _update_resume(self) -> None:
        run = self._resumable_run()
        self.resume_button.setEnabled(run is not None and not self.session.read_only)
        self.resume_button.setToolTip(
            f"Continue {run.kind} run {run.id} from its last checkpoint" if run is not None
            else "Select an interrupted, cancelled or failed run to continue it from its last checkpoint")

    def _resume_selected(self) -> None:
        run = self._resumable_run()
        command = resume_command(run) if run is not None else None
        if command is not None:
            self.job_requested.emit(command[0], command[1])

    # ------------------------------------------------- the review teaches the detector
    def _update_teach(self, *_: object) -> None:
        ready, why = teach_readiness(self.session)
        self.teach_button.setEnabled(ready and not self.session.read_only)
        self.teach_button.setToolTip(why)

    def _show_teach_result(self, runs: list[RunInfo]) -> None:
        """The detector's agreement with the person, before and after, from the latest fine-tuning."""
        tuned = [run for run in runs if run.status == "ok" and isinstance(run.summary.get("finetune"), dict)]
        self.teach_result.setText(finetune_text(tuned[-1].summary["finetune"]) if tuned else "")

    def show_compare(self, data: dict[str, Any]) -> None:
        self.compare_table.show_result(data)
        self.compare_plot.show_result(data)
        self.compare_title.show()
        self.compare_table.show()
        self.compare_plot.show()

    def show_export(self, text: str) -> None:
        self.export_status.setText(text)


def finetune_text(agreement: dict[str, Any]) -> str:
    """The agreement of td_lstm with the person's reviews, as shown after fine-tuning."""
    crossed = agreement.get("after_cross_validated") or {}
    folds = crossed.get("folds") or 0
    after = (f"<b>{_figure(crossed.get('roc_auc'))}</b> ({folds}-fold cross-validated over your reviews)" if folds
             else f"— ({crossed.get('note', 'too few reviews of each kind to cross-validate')})")
    return (f"Detector agreement with your {agreement.get('n_reviewed')} reviews ({agreement.get('n_mislabeled')} "
            f"relabelled or removed, {agreement.get('n_correct')} kept), ROC-AUC: before "
            f"<b>{_figure((agreement.get('before') or {}).get('roc_auc'))}</b> → after {after}; "
            f"{_figure((agreement.get('after_in_sample') or {}).get('roc_auc'))} on the reviews it learned from "
            "(optimistic). The re-scored audit is now the current one.")
