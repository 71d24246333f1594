"""The data map (dataset cartography): every audited sample by how confidently and how steadily it was learned.

Swayamdipta et al. 2020: y is the confidence (the mean over epochs of the probability of the given
label), x the variability (its standard deviation over epochs). Mislabeled samples gather in the
"hard to learn" corner (low confidence, low variability). The engine's cartography detector saves
both as extras in the audit's run folder (``cartography_confidence.npy``,
``cartography_variability.npy``, rows in the order of ``audited_ids.npy``); they are read with
numpy only.

Points are coloured, and shaped, by what the person knows of them: not flagged, flagged and not yet
reviewed, relabelled, removed, kept (Okabe-Ito colours, safe for colour-blind eyes, and one marker
shape each). Click a point to review it; drag a free-hand lasso (Shift+drag: a rectangle) to choose
samples, then review exactly those.

At 100,000 points: one ScatterPlotItem per category, one pen and brush each (pyqtgraph's fast path,
no per-point brushes, no hover), and only one point per pixel of the view per category is drawn
(the others are hidden under it). Clicks and lassos always search the full arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from pyqtgraph.GraphicsScene.mouseEvents import MouseClickEvent
from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QWidget

import auditor.plotting  # noqa: F401 - plot settings
from auditor.session import ProjectSession
from auditor.style import column_layout, text_label
from engine.words import plural

AUDITED_IDS_FILE = "audited_ids.npy"  # engine.evidence.run_labels.AUDITED_IDS_FILE (engine.workflows.audit is heavy)
CONFIDENCE_FILE = "cartography_confidence.npy"
DYNAMICS_FOLDER = "dynamics"  # engine.training.recorders.DYNAMICS_FOLDER (not imported: it imports torch)
VARIABILITY_FILE = "cartography_variability.npy"
CLICK_RADIUS_PX = 8  # how near a click must land to a point to choose it
LASSO_STEP_PX = 3  # a lasso vertex every few pixels of mouse travel: enough for a smooth outline
REDRAW_DELAY_MS = 60  # after zooming or panning, redraw the visible points once the view rests


@dataclass(frozen=True)
class Category:
    key: str
    label: str
    colour: str
    symbol: str
    size: int


# Drawn in this order (later ones on top); Okabe-Ito colours and distinct shapes.
CATEGORIES = (
    Category("clean", "not flagged", "#999999", "o", 5),
    Category("flagged", "flagged, not reviewed", "#E69F00", "t", 8),
    Category("keep", "kept", "#009E73", "d", 8),
    Category("relabel", "relabelled", "#0072B2", "s", 7),
    Category("remove", "removed", "#D55E00", "x", 9),
)
CATEGORY_INDEX = {category.key: index for index, category in enumerate(CATEGORIES)}
NO_MAP = ("The data map needs training dynamics. Run an audit with cartography (or aum, or all) to see every "
          "sample by how confidently and how steadily the model learned its label.")


@dataclass(frozen=True)
class DataMapData:
    """Per audited sample: its id, variability (x) and confidence (y); all (n,)."""

    ids: np.ndarray
    variability: np.ndarray
    confidence: np.ndarray


def load_data_map(run_folder: Path) -> DataMapData | None:
    """The cartography extras of an audit run, else its recorded dynamics; None when it has neither."""
    arrays = []
    for name in (AUDITED_IDS_FILE, VARIABILITY_FILE, CONFIDENCE_FILE):
        path = Path(run_folder) / name
        if not path.is_file():
            return map_from_dynamics(Path(run_folder) / DYNAMICS_FOLDER)
        try:
            arrays.append(np.load(path, allow_pickle=False))
        except (OSError, ValueError):
            return None
    ids, variability, confidence = arrays
    if not (ids.ndim == variability.ndim == confidence.ndim == 1 and len(ids) == len(variability) == len(confidence)):
        return None
    return DataMapData(ids.astype(np.int64), variability.astype(np.float64), confidence.astype(np.float64))


def map_from_dynamics(folder: Path) -> DataMapData | None:
    """Cartography's two measures computed from a dynamics recording (an audit without the cartography
    detector): the mean and the standard deviation over epochs of the probability of the trained label."""
    if not (folder / "td.npy").is_file():
        return None
    try:
        ids = np.load(folder / "ids.npy", allow_pickle=False)
        td = np.load(folder / "td.npy", mmap_mode="r", allow_pickle=False)
        if td.ndim != 3 or len(td) != len(ids):
            return None
        given = np.asarray(td[:, 0, :], dtype=np.float64)  # (n, E): column 0 is the label trained on
    except (OSError, ValueError):
        return None
    return DataMapData(ids.astype(np.int64), given.std(axis=1), given.mean(axis=1))


def points_in_polygon(x: np.ndarray, y: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(n,) bool: which points lie inside ``polygon`` ((m, 2) vertices, closed implicitly), by the even-odd rule."""
    inside = np.zeros(len(x), dtype=bool)
    if len(polygon) < 3 or len(x) == 0:
        return inside
    low, high = polygon.min(axis=0), polygon.max(axis=0)
    candidates = np.flatnonzero((x >= low[0]) & (x <= high[0]) & (y >= low[1]) & (y <= high[1]))
    px, py = x[candidates], y[candidates]
    crossings = np.zeros(len(candidates), dtype=bool)
    for (x1, y1), (x2, y2) in zip(polygon, np.roll(polygon, -1, axis=0), strict=True):
        if y1 == y2:
            continue  # a horizontal edge is never crossed by a horizontal ray
        spans = (y1 > py) != (y2 > py)
        crossings[spans] ^= px[spans] < (x2 - x1) * (py[spans] - y1) / (y2 - y1) + x1
    inside[candidates] = crossings
    return inside


def one_per_pixel(x: np.ndarray, y: np.ndarray, x_range: tuple[float, float], y_range: tuple[float, float],
                  width_px: int, height_px: int) -> np.ndarray:
    """Indices of the points worth drawing: those in view, one per pixel cell (the rest lie under it)."""
    (x0, x1), (y0, y1) = x_range, y_range
    inside = np.flatnonzero((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))
    if len(inside) == 0:
        return inside
    columns = np.floor((x[inside] - x0) / max(x1 - x0, 1e-12) * width_px).astype(np.int64)
    rows = np.floor((y[inside] - y0) / max(y1 - y0, 1e-12) * height_px).astype(np.int64)
    _, first = np.unique(rows * (width_px + 1) + columns, return_index=True)
    return np.sort(inside[first])


class LassoViewBox(pg.ViewBox):
    """A view box where a left drag draws a lasso (Shift: a rectangle).

    The wheel zooms, a right drag zooms an axis, a middle drag pans (pyqtgraph's own handling).
    """

    lasso_finished = Signal(object)  # (m, 2) polygon in data coordinates

    def __init__(self) -> None:
        super().__init__(enableMenu=False)
        self.outline = pg.PlotCurveItem(pen=pg.mkPen("#111827", width=1.5, style=Qt.PenStyle.DashLine))
        self.outline.setZValue(100)
        self.addItem(self.outline, ignoreBounds=True)
        self._vertices: list[tuple[float, float]] = []
        self._last_scene: QPointF | None = None
        self._rectangle = False

    def mouseDragEvent(self, ev: object, axis: int | None = None) -> None:  # noqa: N802 - pyqtgraph's name
        if ev.button() != Qt.MouseButton.LeftButton or axis is not None:  # type: ignore[attr-defined]
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()  # type: ignore[attr-defined]
        scene = ev.scenePos()  # type: ignore[attr-defined]
        if ev.isStart():  # type: ignore[attr-defined]
            self._rectangle = bool(ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)  # type: ignore[attr-defined]
            start = ev.buttonDownScenePos()  # type: ignore[attr-defined]
            point = self.mapSceneToView(start)
            self._vertices = [(point.x(), point.y())]
            self._last_scene = start
        moved = self._last_scene is None or (scene - self._last_scene).manhattanLength() >= LASSO_STEP_PX
        if moved or ev.isFinish():  # type: ignore[attr-defined]
            point = self.mapSceneToView(scene)
            if self._rectangle:
                (x0, y0), (x1, y1) = self._vertices[0], (point.x(), point.y())
                self._vertices = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
            else:
                self._vertices.append((point.x(), point.y()))
            self._last_scene = scene
            closed = np.array([*self._vertices, self._vertices[0]])
            self.outline.setData(closed[:, 0], closed[:, 1])
        if ev.isFinish():  # type: ignore[attr-defined]
            polygon = np.array(self._vertices, dtype=np.float64)
            self._vertices, self._last_scene = [], None
            self.outline.setData([], [])
            self.lasso_finished.emit(polygon)


class DataMapView(QWidget):
    """Confidence against variability; click or lasso samples, then review exactly those."""

    review_requested = Signal(object)  # np.ndarray of sample ids to review

    def __init__(self, session: ProjectSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.data: DataMapData | None = None
        self.category = np.zeros(0, dtype=np.int8)  # (n,) index into CATEGORIES, per point
        self.selected = np.zeros(0, dtype=np.int64)  # sample ids
        self._data_dirty = True  # a new audit: read the arrays again
        self._colours_dirty = True  # decisions or the flagged set moved: recolour

        self._build_plot()
        title = text_label("Data map — how confidently and how steadily each sample's label was learned",
                           "sectionTitle")
        self.selection_label = text_label(wrap=False)
        self.review_button = QPushButton("Review selected")
        self.review_button.setObjectName("primary")
        self.review_button.clicked.connect(self.review_selected)
        self.clear_button = QPushButton("Clear selection")
        self.clear_button.clicked.connect(lambda: self.select(np.zeros(0, dtype=np.int64)))
        header = QHBoxLayout()
        header.addWidget(title, 1)
        header.addWidget(self.selection_label)
        header.addWidget(self.clear_button)
        header.addWidget(self.review_button)
        self.caption = text_label()
        self.hint = text_label("Click a point to review it · drag to lasso samples (Shift+drag: a rectangle) · "
                               "wheel: zoom · right-drag: stretch an axis · middle-drag: pan", "hint")
        self.note = text_label(NO_MAP)
        self.note.setAlignment(Qt.AlignmentFlag.AlignCenter)
        column_layout(self, [header, (self.plot, 1), (self.note, 1), self.caption, self.hint],
                      margins=(12, 12, 12, 12), spacing=8)

        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(REDRAW_DELAY_MS)
        self._redraw_timer.timeout.connect(self.draw)
        self.view_box.sigRangeChanged.connect(lambda *_: self._redraw_timer.start())
        self.view_box.sigResized.connect(lambda *_: self._redraw_timer.start())  # pixels per cell changed
        # Changes are applied once the event loop is back, and only while the map is on screen: a click
        # that sends samples to the review switches tabs first, so the map is not redrawn for nothing.
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(0)
        self._refresh_timer.timeout.connect(self._refresh_if_shown)
        # Clicks are taken from the scene: a scatter item accepts a click on its own points before the view box.
        self.plot.scene().sigMouseClicked.connect(self._on_scene_click)
        self.view_box.lasso_finished.connect(self.select_polygon)
        session.audit_changed.connect(self._on_audit_changed)
        for signal in (session.decision_changed, session.decisions_reset, session.review_filter_changed):
            signal.connect(self._on_colours_changed)
        self._update_selection_widgets()

    def _build_plot(self) -> None:
        """The scatter plot: one item per category of point, the selection's rings, the regions' names."""
        self.view_box = LassoViewBox()
        self.plot = pg.PlotWidget(viewBox=self.view_box)
        self.plot.setMinimumSize(320, 260)
        self.plot.hideButtons()
        item = self.plot.getPlotItem()
        item.showGrid(x=True, y=True, alpha=0.12)
        item.setLabel("bottom", "variability (spread of that probability over epochs)")
        item.setLabel("left", "confidence (mean probability of the given label)")
        for side in ("left", "bottom"):
            item.getAxis(side).enableAutoSIPrefix(False)  # variability reads 0.1, not 100 (x0.001)
        self.legend = item.addLegend(offset=(-10, 10), labelTextSize="9pt", brush=pg.mkBrush(255, 255, 255, 225),
                                     pen=pg.mkPen("#d1d5db"))
        self.scatters: list[pg.ScatterPlotItem] = []
        for category in CATEGORIES:
            scatter = pg.ScatterPlotItem(pen=pg.mkPen(category.colour) if category.symbol == "x" else None,
                                         brush=pg.mkBrush(category.colour), symbol=category.symbol,
                                         size=category.size, pxMode=True, hoverable=False, name=category.label)
            item.addItem(scatter)
            self.scatters.append(scatter)
        self.selection_ring = pg.ScatterPlotItem(pen=pg.mkPen("#111827", width=1), brush=None, symbol="o",
                                                 size=11, pxMode=True, hoverable=False)
        self.selection_ring.setZValue(50)
        item.addItem(self.selection_ring)
        self.region_labels = [pg.TextItem(text, color="#4b5563", anchor=anchor, fill=pg.mkBrush(255, 255, 255, 210))
                              for text, anchor in (("easy to learn", (0, 0)), ("hard to learn", (0, 1)),
                                                   ("ambiguous", (1, 0.5)))]
        for label in self.region_labels:
            label.setZValue(60)  # readable above the points and the selection
            item.addItem(label, ignoreBounds=True)

    # ----------------------------------------------------------------- state
    def _on_audit_changed(self) -> None:
        self._data_dirty = True
        self.selected = np.zeros(0, dtype=np.int64)
        self._update_selection_widgets()
        self._refresh_timer.start()

    def _on_colours_changed(self, *_: object) -> None:
        # Decisions arrive on every review key: recolour only when the map is on screen (or next shown).
        self._colours_dirty = True
        self._refresh_timer.start()

    def _refresh_if_shown(self) -> None:
        if self.isVisible() and (self._data_dirty or self._colours_dirty):
            self.refresh()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if self._data_dirty or self._colours_dirty:
            self.refresh()

    def refresh(self) -> None:
        """Read the audit's map (when it changed), colour every point, and draw."""
        if self._data_dirty:
            audit = self.session.audit
            self.data = load_data_map(audit.run.folder) if audit is not None else None
            self._data_dirty = False
            self._colours_dirty = True
            self.plot.setVisible(self.data is not None)
            self.note.setVisible(self.data is None)
            self.hint.setVisible(self.data is not None)
            if self.data is not None:
                self._fit_view()
        if self._colours_dirty:
            self.category = self._categories()
            self._colours_dirty = False
        self._update_caption()
        self.draw()

    def _categories(self) -> np.ndarray:
        if self.data is None:
            return np.zeros(0, dtype=np.int8)
        ids = self.data.ids
        category = np.where(self.session.flagged_mask()[ids], CATEGORY_INDEX["flagged"],
                            CATEGORY_INDEX["clean"]).astype(np.int8)
        decided = self.session.decided[ids]
        if decided.any():
            action_of = {sample: decision.action for sample, decision in self.session.decisions().items()}
            rows = np.flatnonzero(decided)
            category[rows] = [CATEGORY_INDEX.get(action_of[int(ids[row])], category[row]) for row in rows]
        return category

    def _fit_view(self) -> None:
        assert self.data is not None
        x_high = max(float(self.data.variability.max(initial=0.0)), 0.05)
        self.view_box.setRange(xRange=(0.0, x_high * 1.05), yRange=(0.0, 1.0), padding=0.02)
        self.region_labels[0].setPos(0.0, 1.0)
        self.region_labels[1].setPos(0.0, 0.0)
        self.region_labels[2].setPos(x_high * 1.05, 0.5)

    def _update_caption(self) -> None:
        if self.data is None:
            self.caption.setText("")
            return
        counts = np.bincount(self.category, minlength=len(CATEGORIES))
        for scatter, category, count in zip(self.scatters, CATEGORIES, counts, strict=True):
            label = self.legend.getLabel(scatter)
            if label is not None:
                label.setText(f"{category.label} ({int(count):,})")
        audit = self.session.audit
        flagged_by = audit.detector if audit is not None else ""
        self.caption.setText(f"{plural(len(self.data.ids), 'audited sample')}. Confidence: the mean over epochs of the "
                             f"probability of the given label; variability: its standard deviation. Flagged: the "
                             f"review's flagged set ({flagged_by}). Mislabeled samples gather low on the left.")

    # ------------------------------------------------------------------ draw
    def draw(self) -> None:
        """Draw the points of the visible range, one per pixel cell per category (the data stays whole)."""
        if self.data is None:
            for scatter in (*self.scatters, self.selection_ring):
                scatter.setData(x=[], y=[])
            return
        (x0, x1), (y0, y1) = self.view_box.viewRange()
        width = max(1, int(self.view_box.width()))
        height = max(1, int(self.view_box.height()))
        x, y = self.data.variability, self.data.confidence
        for index, scatter in enumerate(self.scatters):
            rows = np.flatnonzero(self.category == index)
            shown = rows[one_per_pixel(x[rows], y[rows], (x0, x1), (y0, y1), width, height)]
            scatter.setData(x=x[shown], y=y[shown])
        rows = np.flatnonzero(np.isin(self.data.ids, self.selected)) if len(self.selected) else np.zeros(0, np.int64)
        shown = rows[one_per_pixel(x[rows], y[rows], (x0, x1), (y0, y1), width, height)]
        self.selection_ring.setData(x=x[shown], y=y[shown])

    # ------------------------------------------------------------- selection
    def point_at(self, x: float, y: float, radius_px: float = CLICK_RADIUS_PX) -> int | None:
        """The sample id of the point nearest (x, y) in data coordinates, within ``radius_px``; of all points."""
        if self.data is None or len(self.data.ids) == 0:
            return None
        pixel_x, pixel_y = self.view_box.viewPixelSize()
        dx = (self.data.variability - x) / max(pixel_x, 1e-12)
        dy = (self.data.confidence - y) / max(pixel_y, 1e-12)
        distance = dx * dx + dy * dy
        nearest = int(np.argmin(distance))
        return int(self.data.ids[nearest]) if distance[nearest] <= radius_px * radius_px else None

    def _on_scene_click(self, ev: MouseClickEvent) -> None:
        position = ev.scenePos()
        if ev.button() != Qt.MouseButton.LeftButton or self.data is None \
                or not self.view_box.sceneBoundingRect().contains(position) \
                or self.legend.sceneBoundingRect().contains(position):
            return
        point = self.view_box.mapSceneToView(position)
        self.click_at(point.x(), point.y())

    def click_at(self, x: float, y: float) -> None:
        """A click on a point reviews that sample; a click on nothing clears the selection."""
        sample = self.point_at(x, y)
        if sample is None:
            self.select(np.zeros(0, dtype=np.int64))
            return
        self.select(np.array([sample], dtype=np.int64))
        self.review_selected()

    def select_polygon(self, polygon: np.ndarray) -> None:
        """Select every audited sample inside the polygon (data coordinates)."""
        if self.data is None:
            return
        inside = points_in_polygon(self.data.variability, self.data.confidence, np.asarray(polygon, np.float64))
        self.select(self.data.ids[inside])

    def select(self, ids: np.ndarray) -> None:
        self.selected = np.unique(np.asarray(ids, dtype=np.int64))
        self._update_selection_widgets()
        if self.data is not None:
            self.draw()

    def _update_selection_widgets(self) -> None:
        count = len(self.selected)
        self.selection_label.setText(f"{count:,} selected" if count else "")
        self.review_button.setText(f"Review {count:,} selected" if count else "Review selected")
        self.review_button.setEnabled(count > 0)
        self.clear_button.setVisible(count > 0)

    def review_selected(self) -> None:
        if len(self.selected):
            self.review_requested.emit(self.selected.copy())
