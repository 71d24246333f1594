"""Loss and accuracy curves from Metric events: live during a job, or replayed from events.jsonl.

Curve items are created once per (metric, fold) and then only updated with
setData (pyqtgraph's advice for live plots).
"""

from __future__ import annotations

from collections.abc import Iterable

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QWidget

import auditor.plotting  # noqa: F401 - plot settings
from auditor.style import CURVE_COLORS
from engine.events import Event, Metric


def _is_loss(name: str) -> bool:
    return "loss" in name


def _is_plotted(name: str) -> bool:
    # Learning rate, throughput and the like are in the log; the plots show how well it learns.
    return "loss" in name or "acc" in name


class EpochAxis(pg.AxisItem):
    """An x axis of whole epochs: no "epoch 2.5" ticks when a run has only a few."""

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, list[float]]]:  # noqa: N802, N803
        levels = super().tickValues(minVal, maxVal, size)
        return [(spacing, [value for value in values if float(value).is_integer()]) for spacing, values in levels]


class TrainingCurves(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss_plot = pg.PlotWidget(title="Loss", axisItems={"bottom": EpochAxis("bottom")})
        self.acc_plot = pg.PlotWidget(title="Accuracy", axisItems={"bottom": EpochAxis("bottom")})
        for plot, label in ((self.loss_plot, "loss"), (self.acc_plot, "accuracy")):
            item = plot.getPlotItem()
            item.showGrid(x=True, y=True, alpha=0.15)
            item.setLabel("bottom", "epoch")
            item.setLabel("left", label)
            # Loss falls towards the bottom right, accuracy rises to the top right: legends go opposite.
            offset = (-8, 8) if plot is self.loss_plot else (-8, -8)
            item.addLegend(offset=offset, labelTextSize="8pt", brush=pg.mkBrush(255, 255, 255, 215), colCount=2)
            item.setMenuEnabled(False)
            plot.setMinimumSize(160, 160)
        self.acc_plot.getPlotItem().setYRange(0, 1, padding=0.02)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        layout.addWidget(self.loss_plot)
        layout.addWidget(self.acc_plot)
        self._series: dict[tuple[str, str, int | None], tuple[pg.PlotDataItem, list[float], list[float]]] = {}
        self._names: list[str] = []
        self._colors: dict[tuple[str, int | None], str] = {}  # one colour per (stage, fold): cleaned ≠ original

    def clear(self) -> None:
        self.loss_plot.getPlotItem().clear()
        self.acc_plot.getPlotItem().clear()
        for plot in (self.loss_plot, self.acc_plot):
            legend = plot.getPlotItem().legend
            if legend is not None:
                legend.clear()
        self._series.clear()
        self._colors.clear()
        # A new run gets its own axes, not the previous (perhaps cancelled) run's range.
        self.loss_plot.getPlotItem().enableAutoRange()
        self.acc_plot.getPlotItem().enableAutoRange(x=True, y=False)
        self.acc_plot.getPlotItem().setYRange(0, 1, padding=0.02)

    def curve_count(self) -> int:
        return len(self._series)

    def point_count(self) -> int:
        return sum(len(xs) for _, xs, _ in self._series.values())

    def add_events(self, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event, Metric):
                self.add_metric(event)

    def add_metric(self, event: Metric) -> None:
        if event.epoch is None:
            return  # end-of-stage summaries (a fold's held-out accuracy) are single numbers, not curves
        x = float(event.epoch + 1)
        for name, value in event.values.items():
            if not _is_plotted(name):
                continue
            key = (event.stage, name, event.fold)
            series = self._series.get(key)
            if series is None:
                series = self._new_series(event.stage, name, event.fold)
            curve, xs, ys = series
            xs.append(x)
            ys.append(float(value))
            curve.setData(xs, ys)

    def _new_series(self, stage: str, name: str, fold: int | None) -> tuple[pg.PlotDataItem, list[float], list[float]]:
        if name not in self._names:
            self._names.append(name)
        color = self._colors.setdefault((stage, fold), CURVE_COLORS[len(self._colors) % len(CURVE_COLORS)])
        validation = name.startswith("val") or name.startswith("test") or name.startswith("held")
        pen = pg.mkPen(color, width=2, style=Qt.PenStyle.DashLine if validation else Qt.PenStyle.SolidLine)
        label = name if fold is None else f"{name} · fold {fold + 1}"
        if stage not in ("train", ""):
            label = f"{stage} {label}"
        plot = self.loss_plot if _is_loss(name) else self.acc_plot
        curve = plot.getPlotItem().plot([], [], pen=pen, name=label, symbol="o", symbolSize=4,
                                        symbolBrush=color, symbolPen=None)
        curve.setClipToView(True)
        curve.setDownsampling(auto=True, method="peak")
        series: tuple[pg.PlotDataItem, list[float], list[float]] = (curve, [], [])
        self._series[(stage, name, fold)] = series
        return series
