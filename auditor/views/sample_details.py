"""The review's detail card: why this sample (its labels, each detector's score and verdict, its training
dynamics), the decision it has, its file, and what the last key did."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFormLayout, QFrame, QLabel, QSizePolicy, QVBoxLayout, QWidget

from auditor.audit_scores import AuditScores
from auditor.session import ProjectSession
from auditor.style import ACTION_TEXT
from auditor.views.dynamics_plot import DynamicsPlot


def _label(name: str) -> QLabel:
    label = QLabel()
    label.setObjectName(name)
    return label


class SampleDetails(QFrame):
    """One sample's details; score rows are made when the audit changes, a new sample only sets texts."""

    def __init__(self, session: ProjectSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setObjectName("card")
        self.position = _label("muted")
        self.given = _label("bigLabel")
        self.suggested = _label("bigLabel")
        self.decision_label = _label("decision")
        self.path_label = _label("muted")
        # Elided, not wrapped: a path that wraps to more lines would resize the pane on every key.
        self.path_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.feedback = _label("muted")  # what the last key did, so an overwrite or an undo is never silent
        self.feedback.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.scores_form = QFormLayout()
        self.scores_form.setHorizontalSpacing(16)
        self.score_labels: dict[str, QLabel] = {}
        self.dynamics = DynamicsPlot(session)  # why this sample, over time (helper "datamap")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 12, 14, 12)
        layout.setSpacing(6)
        for label in (self.position, self.given, self.suggested, self.decision_label):
            layout.addWidget(label)
        layout.addLayout(self.scores_form)
        layout.addWidget(self.dynamics)
        layout.addWidget(self.path_label)
        layout.addWidget(self.feedback)

    def _rebuild_score_rows(self) -> None:
        """One row per detector, made when the audit changes; key presses only set texts."""
        while self.scores_form.rowCount():
            self.scores_form.removeRow(0)
        self.score_labels = {}
        audit = self.session.audit
        if audit is None:
            return
        for name in [*audit.per_detector, "agreement", "rank"]:
            label = QLabel()
            self.score_labels[name] = label
            self.scores_form.addRow(name if name in ("rank", "agreement") else f"{name} score", label)

    def show_sample(self, sample: int | None, position: str = "", path: Path | None = None) -> None:
        """``sample``'s details (None: none, all blank), under ``position`` (where it stands in the queue)."""
        self.dynamics.show_sample(sample)
        audit = self.session.audit
        if audit is not None and set(self.score_labels) != {*audit.per_detector, "agreement", "rank"}:
            self._rebuild_score_rows()
        if sample is None:
            for widget in (self.position, self.given, self.suggested, self.decision_label, self.path_label,
                           *self.score_labels.values()):
                widget.setText("")
            return
        given = int(self.session.labels[sample])
        self.position.setText(position)
        self.given.setText(f"Given label:  <b>{self.session.class_name(given)}</b>")
        if audit is not None:
            self._show_scores(audit, sample, given)
        self._show_decision(sample)
        self.path_label.setText(str(path))

    def _show_scores(self, audit: AuditScores, sample: int, given: int) -> None:
        suggested = int(audit.suggested[sample])
        same = suggested == given or suggested < 0
        self.suggested.setText(
            f"Suggested:  <b>{self.session.class_name(suggested)}</b>" + ("  (agrees)" if same else "")
        )
        # Why this sample: each detector's score and its own verdict, and how many detectors agree.
        for name, scores in audit.per_detector.items():
            flagged = audit.per_detector_flagged.get(name)
            verdict = "" if flagged is None else ("  ·  flagged" if flagged[sample] else "  ·  not flagged")
            self.score_labels[name].setText(f"{float(scores[sample]):.3f}{verdict}")
        agree, detectors = audit.agreement(sample)
        self.score_labels["agreement"].setText(
            f"{agree} of {detectors} detector{'s' if detectors != 1 else ''} flag it")
        # Held-out samples are ranked last but never audited: count only the samples that were.
        audited = int(audit.run.summary.get("n_audited") or len(audit.rank))
        position = int(audit.rank[sample]) + 1
        self.score_labels["rank"].setText(f"{position:,} of {audited:,} audited" if position <= audited
                                          else "not audited (held-out sample)")

    def _show_decision(self, sample: int) -> None:
        decision = self.session.decision(sample)
        if decision is None:
            self.decision_label.setText("Not reviewed yet")
            self.decision_label.setProperty("action", "")
        else:
            text = ACTION_TEXT.get(decision.action, decision.action).capitalize()
            if decision.action == "relabel":
                text += f" → {self.session.class_name(decision.new_label)}"
            # Reviewed already: say that a key now replaces it, so an overwrite is never silent.
            self.decision_label.setText(f"{text}  ·  already reviewed, a key replaces it")
            self.decision_label.setProperty("action", decision.action)
        # A dynamic property restyles through the stylesheet; no per-key setStyleSheet (which re-polishes).
        self.decision_label.style().unpolish(self.decision_label)
        self.decision_label.style().polish(self.decision_label)
