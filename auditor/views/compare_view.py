"""Compare robust-training methods: pick several, run them as one `compare` job, read the held-out accuracies."""

from __future__ import annotations

import dataclasses
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from auditor.views.audit_dialog import TrainOptions, option_spin_box
from auditor.views.retrain_dialog import review_trusted_summary
from engine.methods import METHODS
from engine.store import Project
from engine.words import plural

BASELINE = "ce"
NEUTRAL = QColor("#6b7280")  # "no measurable change": grey, never the colour of a gain
LOSS = QColor("#9a3412")  # a measurable loss: dark orange (tells apart from grey without relying on red/green)


@dataclasses.dataclass
class CompareOptions:
    train: TrainOptions
    methods: list[str]
    seeds: int = 3

    def args(self) -> list[str]:
        return [*self.train.train_args(), "--methods", ",".join(self.methods), "--seeds", str(self.seeds)]


class CompareDialog(QDialog):
    """Methods as checkboxes (plain cross-entropy, the baseline, always runs), seeds, epochs."""

    def __init__(self, project: Project, options: TrainOptions | None = None, *,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Compare training methods")
        self.train = options or TrainOptions()
        trusted = review_trusted_summary(project)
        truth_known = project.sample_table().truth_known
        self.method_boxes: dict[str, QCheckBox] = {}
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        for name, info in METHODS.items():
            box = QCheckBox(f"{name} — {info.summary}")
            why_not = ""
            if info.needs_trusted and not trusted.usable:
                why_not = f"needs a trusted set of every class; the review gives {trusted.describe()}"
            elif info.needs_truth and not truth_known:
                why_not = "trains on the true labels, which this project does not know"
            if name == BASELINE:
                box.setChecked(True)
                box.setEnabled(False)  # every difference is measured against it
                box.setText(f"{name} — {info.summary} (the baseline, always run)")
            elif why_not:
                box.setEnabled(False)
                box.setText(f"{name} — cannot run: {why_not}")
            box.setToolTip(info.summary)
            form.addRow("Methods" if not self.method_boxes else "", box)
            self.method_boxes[name] = box
        self.seeds = option_spin_box("--seeds", minimum=2)  # one seed has no interval: a paired difference needs two
        self.seeds.setValue(3)
        self.epochs = option_spin_box("--epochs")
        self.epochs.setValue(self.train.epochs)
        form.addRow("Seeds", self.seeds)
        form.addRow("Epochs", self.epochs)
        self.cost = QLabel()
        self.cost.setObjectName("muted")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.start_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.start_button.setText("Start comparison")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        intro = QLabel("Each method trains once per seed with the same seeds, on the cleaned training split; "
                       "the held-out accuracies are compared with plain cross-entropy, paired by seed.")
        intro.setWordWrap(True)
        intro.setObjectName("muted")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 16, 18, 14)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.cost)
        layout.addWidget(buttons)
        for box in self.method_boxes.values():
            box.toggled.connect(self._update)
        self.seeds.valueChanged.connect(self._update)
        self._update()

    def chosen(self) -> list[str]:
        return [name for name, box in self.method_boxes.items() if box.isChecked()]

    def _update(self) -> None:
        methods = self.chosen()
        self.start_button.setEnabled(len(methods) >= 2)
        self.cost.setText(f"{plural(len(methods) * self.seeds.value(), 'model')} to train" if len(methods) >= 2
                          else "choose at least one method to compare with cross-entropy")

    def options(self) -> CompareOptions:
        train = dataclasses.replace(self.train, epochs=self.epochs.value())
        return CompareOptions(train, self.chosen(), self.seeds.value())


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


class CompareTable(QTableWidget):
    """The `compare` result: accuracy mean ± std per method, and its paired difference to the baseline."""

    COLUMNS = ("Method", "Held-out accuracy (mean ± std)", "Per seed", "Difference to the baseline")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(self.COLUMNS), parent)
        self.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)

    def show_result(self, data: dict[str, Any]) -> None:
        methods: dict[str, dict[str, Any]] = data.get("methods") or {}
        differences: dict[str, dict[str, Any]] = data.get("differences") or {}
        baseline = str(data.get("baseline", BASELINE))
        self.setRowCount(len(methods))
        for row, (name, figures) in enumerate(methods.items()):
            mean, std = figures.get("accuracy_mean"), figures.get("accuracy_std")
            accuracy = "—" if mean is None else f"{_percent(mean)} ± {100 * (std or 0.0):.1f}"
            per_seed = ", ".join(_percent(value) for value in figures.get("accuracy_per_seed", []) if value is not None)
            difference = differences.get(name)
            colour: QColor | None
            if name == baseline:
                text, colour, italic = "baseline", NEUTRAL, False
            elif difference is None:
                text, colour, italic = "—", NEUTRAL, False
            elif not difference.get("measurable"):
                text, colour, italic = str(difference.get("text", "no measurable change")), NEUTRAL, True
            else:
                loss = (difference.get("mean") or 0.0) < 0
                text, colour, italic = str(difference.get("text", "")), LOSS if loss else None, False
            for column, value in enumerate((name, accuracy, per_seed, text)):
                item = QTableWidgetItem(value)
                if column == 3:
                    if colour is not None:
                        item.setForeground(QBrush(colour))
                    if italic:
                        font = QFont(item.font())
                        font.setItalic(True)
                        item.setFont(font)
                    item.setData(Qt.ItemDataRole.UserRole, (difference or {}).get("verdict", "baseline"))
                self.setItem(row, column, item)
        # Every method's row in view: a comparison is a handful of rows, never worth a scroll bar.
        self.resizeRowsToContents()
        rows = sum(self.rowHeight(row) for row in range(self.rowCount()))
        self.setMinimumHeight(self.horizontalHeader().height() + rows + 2 * self.frameWidth() + 2)


GAIN = QColor("#0072b2")  # a measurable gain: blue (Okabe-Ito), never green-versus-red alone


class ComparePlot(QWidget):
    """The same result as a picture: each method's paired difference to the baseline, with its 95% interval.

    One row per method, a dot at the mean difference (points) and a bar across its interval, a
    vertical line at 0. A method whose interval holds 0 is drawn hollow and grey ("no measurable
    change"); a gain is blue and a loss dark orange, and the marker shape differs too (square,
    triangle), so neither depends on colour alone.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        import pyqtgraph as pg

        import auditor.plotting  # noqa: F401 - plot settings

        super().__init__(parent)
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(140)
        item = self.plot.getPlotItem()
        item.setMenuEnabled(False)
        item.showGrid(x=True, y=False, alpha=0.15)
        item.setLabel("bottom", "difference to the baseline's held-out accuracy (points, 95% interval)")
        item.hideButtons()
        self.plot.setMouseEnabled(x=False, y=False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)
        self.rows: list[tuple[str, float, float | None, float | None, str]] = []  # name, mean, low, high, verdict

    def show_result(self, data: dict[str, Any]) -> None:
        import pyqtgraph as pg

        differences: dict[str, dict[str, Any]] = data.get("differences") or {}
        baseline = str(data.get("baseline", BASELINE))
        self.rows = []
        for name in data.get("methods") or {}:
            difference = differences.get(name)
            if name == baseline or difference is None or difference.get("mean") is None:
                continue
            verdict = "no measurable change" if not difference.get("measurable") else (
                "gain" if difference["mean"] > 0 else "loss")
            low, high = difference.get("low"), difference.get("high")
            self.rows.append((name, 100 * float(difference["mean"]),
                              None if low is None else 100 * float(low), None if high is None else 100 * float(high),
                              verdict))
        item = self.plot.getPlotItem()
        item.clear()
        item.addItem(pg.InfiniteLine(pos=0, angle=90, pen=pg.mkPen(NEUTRAL, width=1, style=Qt.PenStyle.DashLine)))
        for row, (_, mean, low, high, verdict) in enumerate(self.rows):
            colour = {"gain": GAIN, "loss": LOSS}.get(verdict, NEUTRAL)
            if low is not None and high is not None:
                item.addItem(pg.PlotDataItem([low, high], [row, row], pen=pg.mkPen(colour, width=2)))
            symbol = {"gain": "s", "loss": "t"}.get(verdict, "o")
            brush = pg.mkBrush(colour) if verdict != "no measurable change" else pg.mkBrush(255, 255, 255)
            item.addItem(pg.ScatterPlotItem([mean], [row], symbol=symbol, size=11, brush=brush,
                                            pen=pg.mkPen(colour, width=2)))
        axis = item.getAxis("left")
        axis.setTicks([[(row, f"{name} vs {baseline}") for row, (name, *_) in enumerate(self.rows)]])
        item.setYRange(-0.6, max(len(self.rows) - 0.4, 0.4), padding=0)
        self.plot.setMinimumHeight(70 + 28 * len(self.rows))
