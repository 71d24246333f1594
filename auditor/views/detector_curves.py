"""How well each detector of the current audit finds the known label errors: ROC and precision-recall
curves on one plot each, and the table ``python -m engine evaluate`` prints.

Only where the truth is known (injected noise keeps it; a CSV can name a truth column);
otherwise one sentence says why there is nothing to show. Curves are computed on every
evaluated sample, then drawn through at most :data:`MAX_VERTICES` vertices each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

import auditor.plotting  # noqa: F401 - plot settings
from auditor.metrics import Curves, decimate, evaluation_report, read_truth
from auditor.session import ProjectSession
from auditor.views.lazy import RefreshWhenShown

MAX_VERTICES = 2000
# Okabe & Ito's palette, which people with any common colour-vision deficiency tell apart (its yellow
# is left out: too faint on white); each of the first seven detectors also gets its own dash pattern
# (in pen widths; None = solid), so no two curves differ by colour alone.
SAFE_COLORS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#000000", "#56B4E9"]
DASH_PATTERNS: list[list[float] | None] = [None, [5, 3], [1, 2], [6, 2, 1, 2], [10, 3], [6, 2, 1, 2, 1, 2], [2, 2]]
NO_AUDIT = "No audit yet: run an audit to see how well its detectors find the label errors."
NO_TRUTH = ("The true labels of this project are not known, so its detectors cannot be scored against them: "
            "ROC and precision-recall curves need the truth. Inject noise into a clean dataset "
            "(python -m engine inject-noise PROJECT, which keeps the original labels), open the demo, or import "
            "a CSV with a truth column.")
COLUMNS = ["Detector", "ROC-AUC", "PR-AUC (AP)", "Precision", "Recall", "F1", "Flagged", "Est. noise rate",
           "True noise rate"]


def detector_pen(index: int, width: float = 2.0) -> Any:
    """The pen of the index-th detector: a colour and a dash pattern (7 x 7 distinct pairs)."""
    colour = SAFE_COLORS[index % len(SAFE_COLORS)]
    dash = DASH_PATTERNS[(index + index // len(SAFE_COLORS)) % len(DASH_PATTERNS)]
    return pg.mkPen(colour, width=width) if dash is None else pg.mkPen(colour, width=width, dash=dash)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


@dataclass
class DetectorCurve:
    """One detector's curves: every vertex (for the figures) and the indices drawn."""

    full: Curves
    roc_drawn: np.ndarray  # indices into full.fpr/tpr
    pr_drawn: np.ndarray  # indices into full.recall/precision


def _new_plot(title: str, x_label: str, y_label: str) -> pg.PlotWidget:
    plot = pg.PlotWidget(title=title)
    plot.setMinimumSize(240, 220)
    item = plot.getPlotItem()
    item.setMenuEnabled(False)
    item.showGrid(x=True, y=True, alpha=0.15)
    item.setLabel("bottom", x_label)
    item.setLabel("left", y_label)
    item.setXRange(0, 1, padding=0.02)
    item.setYRange(0, 1, padding=0.02)
    plot.setMouseEnabled(x=False, y=False)
    return plot


class DetectorCurvesView(RefreshWhenShown):
    """ROC and precision-recall curves of every detector, and the evaluation table, of the current audit."""

    def __init__(self, session: ProjectSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.title = QLabel("Detectors against the known truth")
        self.title.setObjectName("sectionTitle")
        self.caption = QLabel()
        self.caption.setObjectName("muted")
        self.caption.setWordWrap(True)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)  # the command
        self.message.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.roc_plot = _new_plot("ROC: which share of the errors is found, at which cost",
                                  "false positive rate (clean samples flagged)", "true positive rate (errors found)")
        self.pr_plot = _new_plot("Precision–recall", "recall (share of the errors found)",
                                 "precision (share of flagged that are errors)")
        self.roc_plot.getPlotItem().addLegend(offset=(-8, -8), labelTextSize="8pt",
                                              brush=pg.mkBrush(255, 255, 255, 225))
        # Bottom left: precision-recall curves keep to the top and the right edge.
        self.pr_plot.getPlotItem().addLegend(offset=(8, -8), labelTextSize="8pt",
                                             brush=pg.mkBrush(255, 255, 255, 225))
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setDefaultSectionSize(24)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # every row shows (below)
        plots = QHBoxLayout()
        plots.setSpacing(12)
        plots.addWidget(self.roc_plot, 1)
        plots.addWidget(self.pr_plot, 1)
        self.body = QWidget()
        body = QVBoxLayout(self.body)
        body.setContentsMargins(0, 0, 0, 0)
        body.addLayout(plots, 1)
        body.addWidget(self.table)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 12, 12, 12)
        layout.addWidget(self.title)
        layout.addWidget(self.caption)
        layout.addWidget(self.message)
        layout.addWidget(self.body, 1)
        self.report: dict[str, Any] | None = None
        self.curves: dict[str, DetectorCurve] = {}
        self.roc_items: dict[str, pg.PlotDataItem] = {}
        self.pr_items: dict[str, pg.PlotDataItem] = {}
        self._dirty = True
        session.audit_changed.connect(self._changed)
        session.samples_changed.connect(self._changed)  # labels changed: the truth compares differently
        session.stale_changed.connect(self._changed)

    # Computed when shown, not on every audit change: opening a project of 100,000 samples stays quick.

    def _say(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))
        self.body.setVisible(not text)
        # The sentence takes the room the plots leave, its text at the top (not spread down the page).
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        layout.setStretchFactor(self.message, 1 if text else 0)

    def _clear(self) -> None:
        for plot in (self.roc_plot, self.pr_plot):
            item = plot.getPlotItem()
            item.clear()  # also empties the legend
        self.table.setRowCount(0)
        self.roc_items.clear()
        self.pr_items.clear()
        self.curves.clear()
        self.report = None

    def refresh(self) -> None:
        self._dirty = False
        self._clear()
        audit = self.session.audit
        if audit is None:
            self.caption.setText("")
            self._say(NO_AUDIT)
            return
        truth = read_truth(self.session.project, audit.run)  # graded against the labels the audit used
        if not truth.any_known:
            self.caption.setText(f"Audit {audit.run.id}.")
            self._say(NO_TRUTH)
            return
        self._say("")
        found: dict[str, Curves] = {}
        report = evaluation_report(truth, audit.run, audit.per_detector, audit.per_detector_flagged, found)
        self.report = report
        stale = self.session.audit_stale
        self.caption.setText(
            (f"⚠ Out of date: the audit saw labels that have since changed ({stale}). " if stale else "")
            + f"Audit {audit.run.id}: {report['n_evaluated']:,} train samples with known truth, "
            f"{report['true_noise_rate']:.1%} of them mislabeled (graded against {report['graded_against']}). "
            "Higher curves are better; a detector at the grey line guesses.")
        self._draw_references(report["true_noise_rate"])
        for index, name in enumerate(report["detectors"]):
            self._draw_detector(index, name, found[name], report["detectors"][name])
        self._fill_table(report)

    def _draw_references(self, noise_rate: float) -> None:
        chance = pg.mkPen("#9ca3af", width=1, style=Qt.PenStyle.DotLine)
        self.roc_plot.getPlotItem().plot([0, 1], [0, 1], pen=chance)
        self.pr_plot.getPlotItem().plot([0, 1], [noise_rate, noise_rate], pen=chance)

    def _draw_detector(self, index: int, name: str, full: Curves, metrics: dict[str, Any]) -> None:
        curve = DetectorCurve(full, decimate(full.fpr, full.tpr, MAX_VERTICES),
                              decimate(full.recall, full.precision, MAX_VERTICES))
        self.curves[name] = curve
        pen = detector_pen(index)
        if len(full.fpr):  # undefined when every evaluated sample is mislabeled (the table says n/a)
            self.roc_items[name] = self.roc_plot.getPlotItem().plot(
                full.fpr[curve.roc_drawn], full.tpr[curve.roc_drawn], pen=pen,
                name=f"{name}  AUC {_fmt(metrics['roc_auc'])}")
        if len(full.recall):  # undefined when no evaluated sample is mislabeled
            self.pr_items[name] = self.pr_plot.getPlotItem().plot(
                full.recall[curve.pr_drawn], full.precision[curve.pr_drawn], pen=pen,
                name=f"{name}  AP {_fmt(metrics['average_precision'])}")

    def _fill_table(self, report: dict[str, Any]) -> None:
        self.table.setRowCount(len(report["detectors"]))
        for row, (name, m) in enumerate(report["detectors"].items()):
            cells = [name, _fmt(m["roc_auc"]), _fmt(m["average_precision"]), _fmt(m["precision"]),
                     _fmt(m["recall"]), _fmt(m["f1"]), f"{m['n_flagged']:,} ({m['flagged_rate']:.1%})",
                     _fmt(m["estimated_noise_rate"]), _fmt(m["true_noise_rate"])]
            for column, text in enumerate(cells):
                cell = QTableWidgetItem(text)
                if column:
                    cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, column, cell)
        # As tall as its rows: one row per detector, none hidden behind a scroll bar.
        rows = sum(self.table.rowHeight(row) for row in range(self.table.rowCount()))
        self.table.setFixedHeight(self.table.horizontalHeader().sizeHint().height() + rows
                                  + 2 * self.table.frameWidth() + 2)

    def legend_labels(self, plot: pg.PlotWidget) -> list[str]:
        """The legend's texts, in order (what a person reads next to each curve)."""
        legend = plot.getPlotItem().legend
        return [label.text for _, label in legend.items] if legend is not None else []
