"""Look instead of read: the score histogram with a threshold, the noise matrix, every run's curves."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import QComboBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

import auditor.plotting  # noqa: F401 - plot settings
from auditor.session import ProjectSession
from auditor.style import FLAG
from auditor.views.curves import TrainingCurves
from engine.events import read_events
from engine.words import plural

BINS = 50
ESTIMATING_DETECTOR = "cl"  # the detector whose estimated noise matrix an audit saves (noise_matrix.npy)
NO_AUDIT_TITLE = "Noise matrix — click a cell to review that pair"


class ScoreHistogram(QWidget):
    """Scores of the current audit; drag the line to choose what counts as flagged."""

    def __init__(self, session: ProjectSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.plot = pg.PlotWidget()
        self.plot.setMinimumSize(200, 160)
        item = self.plot.getPlotItem()
        item.setMenuEnabled(False)
        item.showGrid(x=False, y=True, alpha=0.15)
        item.setLabel("bottom", "score (higher = more likely mislabeled)")
        item.setLabel("left", "samples")
        item.setLogMode(x=False, y=False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.below = pg.PlotCurveItem(x=[0.0, 1.0], y=[0.0], stepMode="center", fillLevel=0,
                                      brush=pg.mkBrush("#c9d3e0"), pen=pg.mkPen("#9aa8bb"))
        self.above = pg.PlotCurveItem(x=[0.0, 1.0], y=[0.0], stepMode="center", fillLevel=0,
                                      brush=pg.mkBrush(FLAG.lighter(130)), pen=pg.mkPen(FLAG))
        item.addItem(self.below)
        item.addItem(self.above)
        self.line = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen(FLAG, width=2),
                                    hoverPen=pg.mkPen("#b35f00", width=3), bounds=(0.0, 1.0))
        self.line.setZValue(10)
        item.addItem(self.line)
        self.caption = QLabel()
        self.caption.setObjectName("muted")
        self.caption.setWordWrap(True)
        title = QLabel("Scores — drag the line to set the flagged set")
        title.setObjectName("sectionTitle")
        title.setWordWrap(True)
        self.reset_button = QPushButton("Use the engine's flagged set")
        self.reset_button.clicked.connect(lambda: self.session.set_threshold(None))
        bottom = QHBoxLayout()
        bottom.addWidget(self.caption, 1)
        bottom.addWidget(self.reset_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(title)
        layout.addWidget(self.plot, 1)
        layout.addLayout(bottom)
        self._edges = np.linspace(0, 1, BINS + 1)
        self._counts = np.zeros(BINS)
        self.line.sigPositionChanged.connect(self._on_dragging)
        self.line.sigPositionChangeFinished.connect(self._on_dropped)
        session.audit_changed.connect(self.refresh)
        session.review_filter_changed.connect(self._sync_line)
        self.refresh()

    def refresh(self) -> None:
        audit = self.session.audit
        self.line.setVisible(audit is not None)
        if audit is None:
            self.below.setData([0, 1], [0])
            self.above.setData([0, 1], [0])
            self.caption.setText("No audit yet.")
            return
        # Audited samples only: held-out ones are never scored for review (the review counts "of N audited").
        audited = audit.audited if audit.audited is not None else np.ones(len(audit.score), dtype=bool)
        self._counts, self._edges = np.histogram(audit.score[audited], bins=BINS, range=(0.0, 1.0))
        self._sync_line()

    def _sync_line(self) -> None:
        value = self.session.threshold_line
        if value is not None:
            self.line.blockSignals(True)
            self.line.setValue(value)
            self.line.blockSignals(False)
            self._paint(value)

    def _paint(self, threshold: float) -> None:
        audit = self.session.audit
        if audit is None:
            return
        engine_set = self.session.threshold is None and abs(threshold - audit.engine_threshold) < 1e-12
        audited = audit.audited if audit.audited is not None else np.ones(len(audit.score), dtype=bool)
        mask = audit.flagged if engine_set else audit.score >= threshold
        above, _ = np.histogram(audit.score[mask & audited], bins=self._edges)
        self.below.setData(self._edges, self._counts - above)
        self.above.setData(self._edges, above)
        engine_count = int(audit.flagged.sum())
        self.reset_button.setVisible(not engine_set)
        # The engine's set is not a score cut (confident learning flags by class-pair counts): a dashed
        # line says the orange bars are not "everything right of the line".
        self.line.setPen(pg.mkPen(FLAG, width=2, style=Qt.PenStyle.DashLine if engine_set else Qt.PenStyle.SolidLine))
        if engine_set:
            low = float(audit.score[audit.flagged].min()) if engine_count else threshold
            self.caption.setText(
                f"Orange: the engine's flagged set, {engine_count:,} of {audit.audited_count:,} audited samples, "
                f"chosen by {audit.detector} (not by a score cut: they score from {low:.3f} up). The dashed line marks as "
                f"many top scores; drag it to flag by score instead.")
        else:
            flagged = int(((audit.score >= threshold) & audited).sum())
            self.caption.setText(f"{flagged:,} of {audit.audited_count:,} audited samples flagged at score ≥ "
                                 f"{threshold:.3f} (the engine flagged {engine_count:,}).")

    def _on_dragging(self) -> None:
        self._paint(float(self.line.value()))

    def _on_dropped(self) -> None:
        self.session.set_threshold(float(self.line.value()))


class NoiseMatrixView(QWidget):
    """Rows: given label; columns: suggested (estimated true) label. Click a cell to review that pair."""

    pair_chosen = Signal(int, int)

    def __init__(self, session: ProjectSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.plot = pg.PlotWidget()
        self.plot.setMinimumSize(200, 160)
        self.plot.setMouseEnabled(x=False, y=False)
        item = self.plot.getPlotItem()
        item.setMenuEnabled(False)
        item.hideButtons()
        item.invertY(True)
        item.setAspectLocked(True)
        item.setLabel("left", "given label")
        item.setLabel("bottom", "suggested label")
        self.image = pg.ImageItem()
        self.image.setColorMap(pg.ColorMap([0.0, 0.5, 1.0], [QColor("#ffffff"), QColor("#f7b267"),
                                                              QColor("#d64541")]))
        item.addItem(self.image)
        self.texts: list[pg.TextItem] = []
        self.title = QLabel(NO_AUDIT_TITLE)
        self.title.setObjectName("sectionTitle")
        self.title.setWordWrap(True)
        self.caption = QLabel()
        self.caption.setObjectName("muted")
        self.caption.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.caption)
        self.matrix: np.ndarray = np.zeros((0, 0))
        self.counts: np.ndarray = np.zeros((0, 0), dtype=np.int64)
        self.plot.scene().sigMouseClicked.connect(self._on_click)
        session.audit_changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        for text in self.texts:
            self.plot.getPlotItem().removeItem(text)
        self.texts = []
        audit = self.session.audit
        k = len(self.session.class_names)
        if audit is None or k == 0:
            self.image.clear()
            self.title.setText(NO_AUDIT_TITLE)
            self.caption.setText("No audit yet.")
            return
        # Pair counts as the review filter sees them: given label i, suggested label j.
        suggested = np.where(audit.suggested >= 0, audit.suggested, self.session.labels)
        counts = np.zeros((k, k), dtype=np.int64)
        np.add.at(counts, (self.session.labels, suggested), 1)
        self.counts = counts
        # One detector per view: the cells and the click filter both speak of the detector the review ranks by.
        # The run's estimated noise matrix is confident learning's (cl), so it is shown only when cl ranks.
        estimated = audit.detector == ESTIMATING_DETECTOR and audit.noise_matrix is not None \
            and audit.noise_matrix.shape == (k, k)
        matrix = audit.noise_matrix if estimated and audit.noise_matrix is not None \
            else counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        self.matrix = matrix
        self.title.setText(f"Noise matrix of {audit.detector}'s suggestions — click a cell to review that pair")
        # Colour only the off-diagonal: the diagonal (agreement) would swamp the scale.
        shown = matrix.astype(float).copy()
        np.fill_diagonal(shown, 0.0)
        top = float(shown.max()) or 1.0
        self.image.setImage(shown, levels=(0.0, top))
        self.image.setRect(0, 0, k, k)
        names = self.session.class_names
        ticks = [[(i + 0.5, names[i]) for i in range(k)]]
        item = self.plot.getPlotItem()
        item.getAxis("bottom").setTicks(ticks)
        item.getAxis("left").setTicks(ticks)
        if k <= 20:
            font = QFont()
            font.setPointSizeF(7.5 if k > 10 else 8.5)
            for i in range(k):
                for j in range(k):
                    value = matrix[i, j]
                    label = "·" if value < 0.005 else (f"{value:.2f}" if value < 0.995 else "1")
                    text = pg.TextItem(label, anchor=(0.5, 0.5),
                                       color="#9aa3ad" if i == j else ("#ffffff" if shown[i, j] > 0.6 * top
                                                                       else "#1f2937"))
                    text.setFont(font)
                    text.setPos(j + 0.5, i + 0.5)
                    item.addItem(text)
                    self.texts.append(text)
        item.setRange(xRange=(0, k), yRange=(0, k), padding=0.02)
        self.caption.setText(self.describe(counts, matrix, estimated))

    def describe(self, counts: np.ndarray, matrix: np.ndarray, estimated: bool) -> str:
        """The caption: what the cells show (rates), and the largest pair both as a count and as a rate."""
        names = self.session.class_names
        pairs = counts.copy()
        np.fill_diagonal(pairs, 0)
        if not pairs.max():
            return "No disagreements."
        rates = matrix.astype(float).copy()
        np.fill_diagonal(rates, 0.0)
        i, j = (int(v) for v in np.unravel_index(int(np.argmax(pairs)), pairs.shape))
        r, c = (int(v) for v in np.unravel_index(int(np.argmax(rates)), rates.shape))
        detector = self.session.audit.detector if self.session.audit is not None else "?"
        cells = (f"Cells: {detector}'s estimated rates (of the samples truly in the column's class, the share given "
                 "the row's label)" if estimated
                 else f"Cells: share of each given class that {detector} suggests as the column's class")
        return (f"{cells}; the hottest is “{names[r]}” → “{names[c]}” ({rates[r, c]:.2f}). Most samples: given "
                f"“{names[i]}”, suggested “{names[j]}” ({plural(int(pairs[i, j]), 'sample')}; rate {rates[i, j]:.2f}).")

    def cell_at(self, scene_pos: QPointF) -> tuple[int, int] | None:
        point = self.plot.getPlotItem().vb.mapSceneToView(scene_pos)
        k = len(self.session.class_names)
        j, i = int(np.floor(point.x())), int(np.floor(point.y()))
        return (i, j) if 0 <= i < k and 0 <= j < k else None

    def choose(self, given: int, suggested: int) -> None:
        self.session.set_pair_filter((given, suggested))
        self.pair_chosen.emit(given, suggested)

    def _on_click(self, event: object) -> None:
        if self.session.audit is None:
            return
        cell = self.cell_at(event.scenePos())  # type: ignore[attr-defined]
        if cell is not None:
            self.choose(*cell)


class RunCurvesView(QWidget):
    """Training curves of any run, replayed from its events.jsonl (runs made elsewhere included)."""

    def __init__(self, session: ProjectSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.run_picker = QComboBox()
        self.run_picker.setMinimumWidth(200)
        self.curves = TrainingCurves()
        title = QLabel("Training curves")
        title.setObjectName("sectionTitle")
        top = QHBoxLayout()
        top.addWidget(title)
        top.addStretch(1)
        top.addWidget(QLabel("Run"))
        top.addWidget(self.run_picker)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.curves, 1)
        self.run_picker.currentIndexChanged.connect(self._show_run)
        session.runs_changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        # currentData() of an empty combo box is an empty QVariant: never read one (see sample_model.tile).
        current = self.run_picker.currentData() if self.run_picker.count() else ""
        self.run_picker.blockSignals(True)
        self.run_picker.clear()
        for run in reversed(self.session.runs()):
            if (run.folder / "events.jsonl").is_file():
                self.run_picker.addItem(f"{run.kind} · {run.id} · {run.status}", run.id)
        index = self.run_picker.findData(current)
        if index < 0:  # by default the latest run that finished, not a cancelled or failed one
            finished = [i for i in range(self.run_picker.count()) if self.run_picker.itemText(i).endswith(" · ok")]
            index = finished[0] if finished else 0
        self.run_picker.setCurrentIndex(index)
        self.run_picker.blockSignals(False)
        self._show_run()

    def _show_run(self) -> None:
        self.curves.clear()
        if self.run_picker.count() == 0:
            return
        run_id = self.run_picker.currentData()
        events_path = self.session.root / "runs" / run_id / "events.jsonl"
        if events_path.is_file():
            self.curves.add_events(read_events(events_path))


class InsightsView(QWidget):
    pair_chosen = Signal(int, int)

    def __init__(self, session: ProjectSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.histogram = ScoreHistogram(session)
        self.matrix = NoiseMatrixView(session)
        self.runs = RunCurvesView(session)
        self.runs.setMinimumHeight(300)  # room for the curves and their legends
        self.matrix.pair_chosen.connect(self.pair_chosen)
        grid = QGridLayout(self)
        grid.setContentsMargins(12, 12, 12, 12)
        grid.setHorizontalSpacing(16)
        grid.setVerticalSpacing(16)
        grid.addWidget(self.histogram, 0, 0)
        grid.addWidget(self.matrix, 0, 1)
        grid.addWidget(self.runs, 1, 0, 1, 2)
        grid.setRowStretch(0, 1)
        grid.setRowStretch(1, 1)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)
