"""Why this sample, over time: its training dynamics as a small plot in the review's large view.

The probability of the label it was trained on and of the strongest other classes, per epoch (the
seeds' "sample dissection"). Read from the latest audit's dynamics recording (``dynamics/`` in the
run folder, written by the engine's DynamicsRecorder): ``ids.npy`` (n,) the trained sample ids,
sorted; ``td.npy`` (n, W, E) float16, column 0 the probability of the label trained on, then the
other classes strongest first; ``td_classes.npy`` (n, W) those classes. The big arrays are
memory-mapped and only the current sample's row is read, so a key press costs microseconds.
numpy only: the app never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

import auditor.plotting  # noqa: F401 - plot settings
from auditor.session import ProjectSession

DYNAMICS_FOLDER = "dynamics"  # engine.training.recorders.DYNAMICS_FOLDER (not imported: it imports torch)
SHOWN_CLASSES = 4  # the label trained on and the three strongest other classes
# Okabe-Ito colours (safe for colour-blind eyes), and a dash pattern per line so they differ without colour.
LINE_STYLES = (
    ("#0072B2", Qt.PenStyle.SolidLine, 3),
    ("#D55E00", Qt.PenStyle.DashLine, 2),
    ("#009E73", Qt.PenStyle.DashDotLine, 2),
    ("#CC79A7", Qt.PenStyle.DotLine, 2),
)
SYMBOLS = ("o", "t", "s", "d")
SYMBOL_GLYPHS = ("●", "▼", "■", "◆")  # the same shapes, for the legend line above the plot
NO_DYNAMICS = ("This audit recorded no training dynamics: run an audit with aum, cartography or all "
               "to see how each sample was learned.")
NOT_TRAINED = "not trained on in this audit\n(removed or held out): no dynamics"


@dataclass(frozen=True)
class SampleDynamics:
    """One sample's curves: ``probs[i]`` is the probability of ``classes[i]`` at each epoch."""

    classes: np.ndarray  # (W,) int; classes[0] is the label the sample was trained on
    probs: np.ndarray  # (W, E) float32


class DynamicsRecording:
    """The dynamics of one audit run, opened once; :meth:`sample` reads one row."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ids = np.load(folder / "ids.npy", allow_pickle=False)
        self.td = np.load(folder / "td.npy", mmap_mode="r", allow_pickle=False)
        self.td_classes = np.load(folder / "td_classes.npy", mmap_mode="r", allow_pickle=False)
        if self.td.ndim != 3 or self.td.shape[:2] != self.td_classes.shape or len(self.ids) != len(self.td):
            raise ValueError(f"the dynamics in {folder} do not fit together: ids {self.ids.shape}, "
                             f"td {self.td.shape}, td_classes {self.td_classes.shape}")

    @classmethod
    def open(cls, run_folder: Path) -> DynamicsRecording | None:
        """The finished recording of a run (``td.npy`` is written last); None when there is none or it is unreadable."""
        folder = Path(run_folder) / DYNAMICS_FOLDER
        if not (folder / "td.npy").is_file():
            return None
        try:
            return cls(folder)
        except (OSError, ValueError):
            return None

    @property
    def epochs(self) -> int:
        return int(self.td.shape[2])

    def sample(self, sample_id: int, width: int = SHOWN_CLASSES) -> SampleDynamics | None:
        """The sample's curves (the first ``width`` classes); None when it was not trained on."""
        row = int(np.searchsorted(self.ids, sample_id))
        if row >= len(self.ids) or int(self.ids[row]) != sample_id:
            return None
        classes = np.asarray(self.td_classes[row, :width], dtype=np.int64)
        probs = np.asarray(self.td[row, :width, :], dtype=np.float32)
        keep = classes >= 0  # a recording narrower than the classes pads with class -1
        return SampleDynamics(classes[keep], probs[keep])


class DynamicsPlot(QWidget):
    """The current review sample's probabilities over epochs; a note instead when there are none."""

    def __init__(self, session: ProjectSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.recording: DynamicsRecording | None = None
        self.shown: SampleDynamics | None = None  # what the curves hold now (tests compare it to the memmap)
        self.plot = pg.PlotWidget()
        self.plot.setFixedHeight(120)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        item = self.plot.getPlotItem()
        item.setYRange(0, 1, padding=0.05)
        item.getAxis("left").setTicks([[(0.0, "0"), (0.5, "0.5"), (1.0, "1")]])
        item.getAxis("left").setStyle(hideOverlappingLabels=False)  # 0 and 1 sit at the edges of a small plot
        # A line and its epoch markers per class, as two light items: a PlotDataItem costs 5x more per key.
        self.curves: list[pg.PlotCurveItem] = []
        self.markers: list[pg.ScatterPlotItem] = []
        for (colour, style, width), symbol in zip(LINE_STYLES, SYMBOLS, strict=True):
            curve = pg.PlotCurveItem(pen=pg.mkPen(colour, width=width, style=style))
            marker = pg.ScatterPlotItem(symbol=symbol, size=6, pen=None, brush=pg.mkBrush(colour), hoverable=False)
            item.addItem(curve)
            item.addItem(marker)
            self.curves.append(curve)
            self.markers.append(marker)
        self._names: list[str] = []  # the legend's entries, one per drawn curve
        self.blank = pg.TextItem(NOT_TRAINED, color="#6b7280", anchor=(0.5, 0.5))
        self.blank.setPos(0.5, 0.5)
        self.blank.hide()
        item.addItem(self.blank, ignoreBounds=True)
        self.title = QLabel("Training dynamics: probability of each class per epoch")
        self.title.setObjectName("muted")
        # The legend as one line of text above the plot: inside a plot this small it would hide the curves.
        self.legend = QLabel()
        self.legend.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.note = QLabel(NO_DYNAMICS)
        self.note.setObjectName("muted")
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.title)
        layout.addWidget(self.legend)
        layout.addWidget(self.plot)
        layout.addWidget(self.note)
        session.audit_changed.connect(self.reload)
        self.reload()

    def reload(self) -> None:
        """Open the current audit's recording (once per audit, not per key)."""
        audit = self.session.audit
        self.recording = DynamicsRecording.open(audit.run.folder) if audit is not None else None
        has = self.recording is not None
        for widget in (self.title, self.legend, self.plot):
            widget.setVisible(has)
        self.note.setVisible(not has and audit is not None)
        if self.recording is not None:
            epochs = self.recording.epochs
            self.plot.getPlotItem().setXRange(1, max(2, epochs), padding=0.05)
            step = max(1, -(-epochs // 10))  # at most about ten epoch ticks, whole epochs only
            self.plot.getPlotItem().getAxis("bottom").setTicks(
                [[(epoch, f"epoch {epoch}" if epoch == 1 else str(epoch)) for epoch in range(1, epochs + 1, step)]])
        self.show_sample(None)

    def show_sample(self, sample_id: int | None) -> None:
        """Draw one sample's curves (None: clear them)."""
        dynamics = None
        if self.recording is not None and sample_id is not None:
            dynamics = self.recording.sample(int(sample_id))
        self.shown = dynamics
        self.blank.setVisible(self.recording is not None and sample_id is not None and dynamics is None)
        if self.blank.isVisible() and self.recording is not None:
            self.blank.setPos((1 + max(2, self.recording.epochs)) / 2, 0.5)
        names: list[str] = []
        for index, (curve, marker) in enumerate(zip(self.curves, self.markers, strict=True)):
            if dynamics is None or index >= len(dynamics.classes):
                curve.setData([], [])
                marker.setData(x=[], y=[])
                continue
            probs = dynamics.probs[index]
            epochs = np.arange(1, len(probs) + 1)
            curve.setData(epochs, probs)
            marker.setData(x=epochs, y=probs)
            name = self.session.class_name(int(dynamics.classes[index]))
            if index == 0:
                given = sample_id is not None and int(self.session.labels[int(sample_id)]) == int(dynamics.classes[0])
                name += " (given)" if given else " (trained on)"
            names.append(name)
        self._set_legend(names)

    def legend_names(self) -> list[str]:
        return list(self._names)

    def _set_legend(self, names: list[str]) -> None:
        if names == self._names:
            return
        self._names = names
        entries = [f'<span style="color:{colour}">{glyph} {escape(name)}</span>'
                   for (colour, _, _), glyph, name in zip(LINE_STYLES, SYMBOL_GLYPHS, names, strict=False)]
        self.legend.setText("&nbsp;&nbsp;&nbsp;".join(entries))
