"""Audit: start a job, follow it (stage, progress, ETA, live curves), cancel it, see why it failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from auditor.engine_process import EngineProcess
from auditor.session import ProjectSession
from auditor.views.job_view import JobView

JOB_TITLES = {"audit": "Audit", "retrain": "Retrain on the cleaned data", "export": "Export",
              "crossval": "Cross-validation", "import-predictions": "Import predictions",
              "embed": "Compute embeddings", "duplicates": "Find duplicates", "outliers": "Find outliers"}


class AuditView(QWidget):
    audit_requested = Signal()
    retrain_requested = Signal()
    import_requested = Signal()

    def __init__(self, session: ProjectSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.audit_button = QPushButton("New audit…")
        self.audit_button.setObjectName("primary")
        self.audit_button.clicked.connect(self.audit_requested)
        self.retrain_button = QPushButton("Retrain…")
        self.retrain_button.clicked.connect(self.retrain_requested)
        self.import_button = QPushButton("Import predictions…")
        self.import_button.setToolTip("Your own model's out-of-sample predictions, audited like a run of ours")
        self.import_button.clicked.connect(self.import_requested)
        self.summary = QLabel()
        self.summary.setObjectName("muted")
        self.summary.setWordWrap(True)
        top = QHBoxLayout()
        top.setSpacing(8)
        top.addWidget(self.summary, 1)
        top.addWidget(self.audit_button)
        top.addWidget(self.import_button)
        top.addWidget(self.retrain_button)
        self.job = JobView()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 12, 12, 12)
        layout.setSpacing(12)
        layout.addLayout(top)
        layout.addWidget(self.job, 1)
        session.runs_changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        audit = self.session.audit
        if audit is None:
            self.summary.setText("No audit yet. An audit trains one model per fold and scores every sample: "
                                 "the suspects then wait for you under Review. Or import your own model's "
                                 "predictions.")
        else:
            self.summary.setText(audit_summary(audit.run.spec, audit.run.summary, int(audit.flagged.sum()),
                                               audit.detector, audit.run.id))

    def follow(self, command: str, process: EngineProcess) -> None:
        for button in (self.audit_button, self.import_button, self.retrain_button):
            button.setEnabled(False)
        self.job.attach(process, JOB_TITLES.get(command, command.capitalize()))
        process.finished.connect(self._on_finished)

    def _on_finished(self, status: str) -> None:
        for button in (self.audit_button, self.import_button, self.retrain_button):
            button.setEnabled(True)


def imported_source(spec: dict[str, Any]) -> dict[str, Any] | None:
    """Where an imported run's probabilities came from (``spec["evidence"]["oof_probs"]``); None for our runs."""
    evidence = spec.get("evidence")
    source = evidence.get("oof_probs") if isinstance(evidence, dict) else None
    return source if isinstance(source, dict) and source.get("source") == "imported" else None


def audit_summary(spec: dict[str, Any], summary: dict[str, Any], flagged: int, detector: str, run_id: str) -> str:
    """The current audit in words: its model, and what its held-out accuracy measured (review helper, issue 11)."""
    imported = imported_source(spec)
    if imported is not None:
        return _imported_summary(imported, summary, flagged, detector, run_id)
    nested = spec.get("train")
    train: dict[str, Any] = nested if isinstance(nested, dict) else spec  # older specs kept them at the top
    model, epochs, folds = train.get("model", "?"), train.get("epochs", "?"), spec.get("folds", "?")
    text = f"Current audit: {run_id} — {model}, {epochs} epoch{'s' if epochs != 1 else ''}, {folds} folds; " \
           f"{flagged:,} samples flagged by {detector}."
    accuracy = summary.get("heldout_accuracy")
    if isinstance(accuracy, (int, float)):
        share = f"{int(folds) - 1}/{folds} of" if isinstance(folds, int) and folds > 1 else "part of"
        text += f" Held-out accuracy of its fold models (each trained on {share} the training split, so lower " \
                f"than a model trained on all of it): {100 * float(accuracy):.1f}%" + _against(summary)
    return text


def _imported_summary(source: dict[str, Any], summary: dict[str, Any], flagged: int, detector: str,
                      run_id: str) -> str:
    """An imported run: the file its predictions came from, not a model and folds of ours."""
    file = Path(str(source.get("file", "?"))).name
    logits = " (logits, softmaxed)" if source.get("logits") else ""
    text = f"Current audit: {run_id} — imported predictions “{source.get('name', file)}” from {file}{logits}; " \
           f"{flagged:,} samples flagged by {detector}."
    accuracy = summary.get("heldout_accuracy")
    if isinstance(accuracy, (int, float)):
        text += f" Held-out accuracy of the imported predictions: {100 * float(accuracy):.1f}%" + _against(summary)
    return text


def _against(summary: dict[str, Any]) -> str:
    against = summary.get("heldout_accuracy_measured_against", summary.get("heldout_evaluated_against", ""))
    return f" against {str(against).replace('_', ' ')}." if against else "."
