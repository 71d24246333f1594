"""The predicted probability of each sample's given label, for mislabeled against clean samples
(the SLN seed's ``pred_probs`` plot): two overlaid histograms.

A model that learned the classes gives clean samples a high probability of their label and
mislabeled samples a low one; where the two histograms overlap, no score can tell them apart.
Where the truth is unknown, the two groups are the audit's flagged and unflagged samples
instead, and the title says so. Train samples only: the audit scores no others.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

import auditor.plotting  # noqa: F401 - plot settings
from auditor.metrics import read_truth
from auditor.session import ProjectSession
from auditor.views.lazy import RefreshWhenShown

BINS = 40
PRED_PROBS_FILE = "pred_probs.npy"  # engine.workflows.crossval.PRED_PROBS_FILE (not imported: it imports torch)
DYNAMICS_FOLDER = "dynamics"  # engine.training.recorders.DYNAMICS_FOLDER (likewise)
KFOLD = "kfold"
LAST_EPOCH = "last_epoch"
SOURCE_TITLES = {KFOLD: "K-fold probabilities (each sample scored by a model that never saw it)",
                 LAST_EPOCH: "the training run's last epoch (the model had trained on each sample)"}
# Okabe & Ito's blue and vermillion; the groups also differ by outline (solid against dashed).
GROUP_STYLES = (("#0072B2", Qt.PenStyle.SolidLine), ("#D55E00", Qt.PenStyle.DashLine))
NO_AUDIT = "No audit yet: run an audit to see the probabilities its models give each sample's label."
NO_PROBABILITIES = ("This audit kept no per-sample probabilities (neither K-fold pred_probs.npy nor a training run's "
                    "dynamics): run an audit with a K-fold detector (cl) or a training-dynamics one (aum).")


def given_label_probability(run_folder: Path, source: str, labels: np.ndarray) -> np.ndarray | None:
    """(N,) float: each sample's probability of its given label, NaN where not recorded; None when absent.

    ``KFOLD``: out-of-fold probabilities of ``labels`` (the ones the audit used). ``LAST_EPOCH``: the dynamics'
    probability of the label trained on (the given label, or the person's relabel) at the last epoch.
    """
    try:
        if source == KFOLD:
            path = run_folder / PRED_PROBS_FILE
            if not path.is_file():
                return None
            probs = np.load(path, mmap_mode="r", allow_pickle=False)
            if probs.ndim != 2 or len(probs) != len(labels):
                return None
            result = np.full(len(labels), np.nan)
            valid = (labels >= 0) & (labels < probs.shape[1])
            result[valid] = probs[np.flatnonzero(valid), labels[valid]]
            return result
        folder = run_folder / DYNAMICS_FOLDER
        if not (folder / "td.npy").is_file():
            return None
        ids = np.load(folder / "ids.npy", allow_pickle=False)
        td = np.load(folder / "td.npy", mmap_mode="r", allow_pickle=False)  # (n, W, E): column 0 = trained label
        keep = (ids >= 0) & (ids < len(labels))
        result = np.full(len(labels), np.nan)
        result[ids[keep]] = np.asarray(td[:, 0, -1], dtype=np.float64)[keep]
        return result
    except (OSError, ValueError):  # a damaged or half-written array: as if absent
        return None


class ProbHistogramsView(RefreshWhenShown):
    """Histograms of p(given label): mislabeled against clean (or flagged against not flagged)."""

    def __init__(self, session: ProjectSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.title = QLabel()
        self.title.setObjectName("sectionTitle")
        self.title.setWordWrap(True)
        self.source_picker = QComboBox()
        self.share = QCheckBox("as % of each group")
        self.share.setToolTip("Each group's bars sum to 100%, so a small group (the errors) is as visible as a large one")
        self.share.setChecked(True)
        self.caption = QLabel()
        self.caption.setObjectName("muted")
        self.caption.setWordWrap(True)
        self.plot = pg.PlotWidget()
        self.plot.setMinimumSize(240, 200)
        self.plot.setMouseEnabled(x=False, y=False)
        item = self.plot.getPlotItem()
        item.setMenuEnabled(False)
        item.showGrid(x=False, y=True, alpha=0.15)
        item.setLabel("bottom", "predicted probability of the sample's given label")
        item.getAxis("left").enableAutoSIPrefix(False)  # no "(x0.001)" beside a share
        # Top right: the mislabeled pile up at the left, the clean spread thinly to the right.
        item.addLegend(offset=(-8, 8), labelTextSize="9pt", brush=pg.mkBrush(255, 255, 255, 225))
        top = QHBoxLayout()
        top.addWidget(QLabel("Probabilities from"))
        top.addWidget(self.source_picker, 1)
        top.addWidget(self.share)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 12, 12, 12)
        layout.addWidget(self.title)
        layout.addLayout(top)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.caption)
        self.edges = np.linspace(0.0, 1.0, BINS + 1)
        self.groups: dict[str, np.ndarray] = {}  # group name -> the sample ids in it
        self.counts: dict[str, np.ndarray] = {}  # group name -> (BINS,) sample counts
        self.values: np.ndarray | None = None  # (N,) p(given label) of the chosen source
        self.truth_known = False
        self.items: dict[str, pg.PlotCurveItem] = {}
        self._dirty = True
        self.source_picker.currentIndexChanged.connect(self._draw)
        self.share.toggled.connect(self._draw)
        session.audit_changed.connect(self._changed)
        session.samples_changed.connect(self._changed)
        session.review_filter_changed.connect(self._on_filter_changed)  # the flagged set moved


    def _on_filter_changed(self) -> None:
        if not self.truth_known:  # the groups are flagged / not flagged: the threshold moves them
            self._changed()


    def refresh(self) -> None:
        """Re-read which probabilities this audit kept, then draw."""
        self._dirty = False
        audit = self.session.audit
        current = self.source_picker.currentData() if self.source_picker.count() else None
        self.source_picker.blockSignals(True)
        self.source_picker.clear()
        if audit is not None:
            for source in (KFOLD, LAST_EPOCH):
                exists = (audit.run.folder / PRED_PROBS_FILE).is_file() if source == KFOLD \
                    else (audit.run.folder / DYNAMICS_FOLDER / "td.npy").is_file()
                if exists:
                    self.source_picker.addItem(SOURCE_TITLES[source], source)
        index = self.source_picker.findData(current) if current is not None else -1
        self.source_picker.setCurrentIndex(max(index, 0) if self.source_picker.count() else -1)
        self.source_picker.blockSignals(False)
        self._draw()

    def _draw(self) -> None:
        item = self.plot.getPlotItem()
        item.clear()
        self.items.clear()
        self.groups.clear()
        self.counts.clear()
        self.values = None
        audit = self.session.audit
        if audit is None or not self.source_picker.count():
            self.title.setText("Probability of the given label")
            self.caption.setText(NO_AUDIT if audit is None else NO_PROBABILITIES)
            return
        truth = read_truth(self.session.project, audit.run)  # the labels the audit trained on
        values = given_label_probability(audit.run.folder, str(self.source_picker.currentData()), truth.label)
        if values is None:
            self.caption.setText(NO_PROBABILITIES)
            return
        self.values = values
        recorded = truth.train & ~np.isnan(values)
        self.truth_known = bool((truth.known & recorded).any())
        if self.truth_known:
            self.title.setText("Probability of the given label: mislabeled against clean samples (truth known)")
            considered = truth.known & recorded
            noisy = truth.mislabeled
            self.groups = {"mislabeled (truth differs)": np.flatnonzero(considered & noisy),
                           "clean": np.flatnonzero(considered & ~noisy)}
        else:
            self.title.setText("Probability of the given label: flagged against not flagged "
                               "(the truth is not known, so the audit's flags stand in for it)")
            flagged = self.session.flagged_mask()
            self.groups = {"flagged": np.flatnonzero(recorded & flagged),
                           "not flagged": np.flatnonzero(recorded & ~flagged)}
        share = self.share.isChecked()
        item.setLabel("left", "% of the group" if share else "samples")
        # Clean (or not flagged) first, underneath; the errors drawn over it.
        for position, name in enumerate(reversed(list(self.groups))):
            ids = self.groups[name]
            counts, _ = np.histogram(values[ids], bins=self.edges)
            self.counts[name] = counts
            heights = 100.0 * counts / max(len(ids), 1) if share else counts.astype(float)
            colour, style = GROUP_STYLES[position]
            fill = pg.mkColor(colour)
            fill.setAlpha(70)
            curve = pg.PlotCurveItem(self.edges, heights, stepMode="center", fillLevel=0, brush=pg.mkBrush(fill),
                                     pen=pg.mkPen(colour, width=2, style=style), name=f"{name}: {len(ids):,}")
            item.addItem(curve)
            self.items[name] = curve
        item.setXRange(0, 1, padding=0.02)
        medians = {name: float(np.median(values[ids])) for name, ids in self.groups.items() if len(ids)}
        source = "K-fold" if self.source_picker.currentData() == KFOLD else "last-epoch"
        self.caption.setText(
            f"{sum(len(ids) for ids in self.groups.values()):,} train samples; {source} probabilities. Median: "
            + ", ".join(f"{name} {value:.2f}" for name, value in medians.items())
            + ". The less the two overlap, the better a score can separate them.")
