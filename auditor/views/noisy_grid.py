"""The noisy-data view (the SLN seed's ``viz.py``): random samples of every class, one row per given
label, each tile showing its given label and, where the truth is known, its true label.

A mislabeled tile (the truth differs) gets a thick dashed vermillion frame, a ✗ in its corner and
its caption says "✗ true: …" in bold, so it stands out without relying on colour. The draw is
seeded: the same seed shows the same samples; Reshuffle moves to the next seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QMouseEvent, QPainter, QPaintEvent, QPen, QPixmap
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from auditor.metrics import Truth, read_truth
from auditor.session import ProjectSession
from auditor.thumbnails import ThumbnailCache
from auditor.views.lazy import RefreshWhenShown
from engine.errors import UserError
from engine.store import OUTSIDE_LABEL_SET, UNKNOWN_TRUTH
from engine.words import plural

DEFAULT_COLUMNS = 8
MISMATCH = QColor("#D55E00")  # Okabe & Ito's vermillion; the dashed frame and ✗ carry it for colour-blind eyes
CAPTION_LINES = 2
LINE_HEIGHT = 15
PADDING = 4


@dataclass(frozen=True)
class TileInfo:
    sample_id: int
    given: int
    true: int  # UNKNOWN_TRUTH where unknown, OUTSIDE_LABEL_SET for an open-set sample

    @property
    def truth_known(self) -> bool:
        return self.true != UNKNOWN_TRUTH

    @property
    def mismatch(self) -> bool:
        return self.truth_known and self.true != self.given


class NoisyTile(QWidget):
    """One sample: its thumbnail, "given: …" and, where known, "true: …"."""

    activated = Signal(int)  # sample id, on double-click

    def __init__(self, info: TileInfo, given_text: str, true_text: str, thumb_size: int,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.info = info
        self.given_text = given_text
        self.true_text = true_text
        self.thumb_size = thumb_size
        self.pixmap: QPixmap | None = None
        self.failed = False
        self.setFixedSize(self.sizeHint())
        tip = f"#{info.sample_id}  {given_text}"
        if true_text:
            tip += f"\n{true_text}"
        self.setToolTip(tip + "\nDouble-click to review it.")

    def sizeHint(self) -> QSize:
        return QSize(self.thumb_size + 2 * PADDING + 4, self.thumb_size + CAPTION_LINES * LINE_HEIGHT + 2 * PADDING + 6)

    def set_pixmap(self, pixmap: QPixmap | None, failed: bool) -> None:
        self.pixmap, self.failed = pixmap, failed
        self.update()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        self.activated.emit(self.info.sample_id)
        super().mouseDoubleClickEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        rect = self.rect().adjusted(2, 2, -2, -2)
        mismatch = self.info.mismatch
        frame = QPen(MISMATCH, 3, Qt.PenStyle.DashLine) if mismatch else QPen(QColor("#e3e6ea"), 1)
        painter.setPen(frame)
        painter.setBrush(QColor("#fff4ec") if mismatch else QColor("#ffffff"))
        painter.drawRoundedRect(rect, 6, 6)
        image_rect = QRect(rect.left() + PADDING, rect.top() + PADDING, self.thumb_size, self.thumb_size)
        if self.pixmap is not None and not self.pixmap.isNull():
            scaled = self.pixmap.size().scaled(image_rect.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, scaled.width(), scaled.height())
            target.moveCenter(image_rect.center())
            painter.drawPixmap(target, self.pixmap)
        else:
            painter.fillRect(image_rect, QColor("#f1f3f5"))
            if self.failed:
                painter.setPen(QColor("#6b7280"))
                painter.drawText(image_rect, Qt.AlignmentFlag.AlignCenter, "unreadable")
        if mismatch:  # a marker in the corner, readable in greyscale
            badge = QRect(image_rect.right() - 19, image_rect.top() + 1, 19, 19)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(MISMATCH)
            painter.drawEllipse(badge)
            painter.setPen(QColor("#ffffff"))
            bold = QFont(painter.font())
            bold.setBold(True)
            painter.setFont(bold)
            painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, "✗")
        font = QFont(painter.font())
        font.setPointSizeF(max(7.5, QFont().pointSizeF() - 1))
        font.setBold(False)
        top = image_rect.bottom() + 3
        for line, text in enumerate((self.given_text, self.true_text)):
            if not text:
                continue
            line_font = QFont(font)
            line_font.setBold(line == 1 and mismatch)
            painter.setFont(line_font)
            painter.setPen(QColor("#9a3d00") if line == 1 and mismatch else QColor("#374151"))
            caption = QRect(rect.left() + 2, top + line * LINE_HEIGHT, rect.width() - 4, LINE_HEIGHT)
            elided = painter.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, caption.width())
            painter.drawText(caption, Qt.AlignmentFlag.AlignCenter, elided)
        painter.end()


class NoisyGridView(RefreshWhenShown):
    """Rows: classes (by given label); columns: random samples of that class."""

    sample_activated = Signal(int)

    def __init__(self, session: ProjectSession, thumbnails: ThumbnailCache, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.thumbnails = thumbnails
        self.seed = 0
        self.columns = QSpinBox()
        self.columns.setRange(1, 30)
        self.columns.setValue(DEFAULT_COLUMNS)
        self.columns.setSuffix(" per class")
        self.reshuffle_button = QPushButton("Reshuffle")
        self.reshuffle_button.setToolTip("Draw other random samples (the next seed)")
        self.seed_label = QLabel()
        self.seed_label.setObjectName("muted")
        self.caption = QLabel()
        self.caption.setObjectName("muted")
        self.caption.setWordWrap(True)
        title = QLabel("Noisy data: random samples of each class")
        title.setObjectName("sectionTitle")
        bar = QHBoxLayout()
        bar.setSpacing(8)
        bar.addWidget(title)
        bar.addStretch(1)
        bar.addWidget(QLabel("Samples"))
        bar.addWidget(self.columns)
        bar.addWidget(self.reshuffle_button)
        bar.addWidget(self.seed_label)
        self.canvas = QWidget()
        self.grid = QGridLayout(self.canvas)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setHorizontalSpacing(4)
        self.grid.setVerticalSpacing(4)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.canvas)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 12, 12, 12)
        layout.setSpacing(8)
        layout.addLayout(bar)
        layout.addWidget(self.caption)
        layout.addWidget(scroll, 1)
        self.chosen: dict[int, np.ndarray] = {}  # class -> the sample ids drawn for its row
        self.tiles: list[NoisyTile] = []
        self._row_headers: list[QLabel] = []
        self._paths: dict[int, Path | None] = {}
        self._dirty = True
        self.reshuffle_button.clicked.connect(self.reshuffle)
        self.columns.valueChanged.connect(lambda _: self.refresh())
        thumbnails.ready.connect(self._on_thumbnails_ready)
        session.samples_changed.connect(self._changed)  # noise injected, labels changed elsewhere


    def reshuffle(self) -> None:
        self.seed += 1
        self.refresh()

    def choose(self, truth: Truth) -> dict[int, np.ndarray]:
        """The seeded draw: up to ``columns`` distinct random samples of each given label."""
        rng = np.random.default_rng(self.seed)
        per_class = self.columns.value()
        chosen: dict[int, np.ndarray] = {}
        for label in range(len(self.session.class_names)):
            ids = np.flatnonzero(truth.label == label)
            chosen[label] = rng.choice(ids, size=min(per_class, len(ids)), replace=False) if len(ids) else ids
        return chosen

    def _true_text(self, info: TileInfo) -> str:
        if not info.truth_known:
            return ""
        name = "outside the classes" if info.true == OUTSIDE_LABEL_SET else self.session.class_name(info.true)
        return f"✗ true: {name}" if info.mismatch else f"true: {name}"

    def _clear(self) -> None:
        for widget in [*self.tiles, *self._row_headers]:
            self.grid.removeWidget(widget)
            widget.deleteLater()
        self.tiles = []
        self._row_headers = []

    def refresh(self) -> None:
        self._dirty = False
        self._clear()
        truth = read_truth(self.session.project)
        self.chosen = self.choose(truth)
        self.seed_label.setText(f"seed {self.seed}")
        self._paths = self._read_image_paths([int(i) for ids in self.chosen.values() for i in ids])
        counts = np.bincount(truth.label[truth.label >= 0], minlength=len(self.session.class_names))
        for row, (label, ids) in enumerate(self.chosen.items()):
            header = QLabel(f"<b>{self.session.class_name(label)}</b><br>{plural(int(counts[label]), 'sample')}")
            header.setWordWrap(True)
            header.setFixedWidth(110)
            header.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.grid.addWidget(header, row, 0)
            self._row_headers.append(header)
            for column, sample_id in enumerate(ids):
                info = TileInfo(int(sample_id), int(truth.label[sample_id]), int(truth.true_label[sample_id]))
                tile = NoisyTile(info, f"given: {self.session.class_name(info.given)}", self._true_text(info),
                                 self.thumbnails.size)
                tile.activated.connect(self.sample_activated)
                self.grid.addWidget(tile, row, column + 1)
                self.tiles.append(tile)
                self._load_thumbnail(tile)
        shown_known = [tile for tile in self.tiles if tile.info.truth_known]
        wrong = sum(tile.info.mismatch for tile in self.tiles)
        if not truth.known.any():
            self.caption.setText("Rows: the given label. The true labels of this project are not known, so each tile "
                                 "shows its given label only (inject noise, or import a CSV with a truth column, to "
                                 "compare).")
        else:
            self.caption.setText(
                f"Rows: the given label. Framed, dashed tiles marked ✗ are mislabeled: their true label differs "
                f"({wrong} of the {len(shown_known)} shown with a known truth; "
                f"{int(truth.mislabeled.sum()):,} of {int(truth.known.sum()):,} in the project). "
                "Double-click a tile to review it.")

    def _read_image_paths(self, sample_ids: list[int]) -> dict[int, Path | None]:
        """Each shown sample's image, read once per draw (thumbnails arriving later need no query)."""
        paths: dict[int, Path | None] = {}
        for sample_id in sample_ids:
            try:
                paths[sample_id] = self.session.project.sample_image_path(sample_id)
            except UserError:  # no image root recorded: the tile says "unreadable"
                paths[sample_id] = None
        return paths

    def _load_thumbnail(self, tile: NoisyTile) -> None:
        path = self._paths.get(tile.info.sample_id)
        if path is None:
            tile.set_pixmap(None, True)
            return
        tile.set_pixmap(self.thumbnails.get(tile.info.sample_id, path), self.thumbnails.failed(tile.info.sample_id, path))

    def _on_thumbnails_ready(self, sample_ids: list[int]) -> None:
        arrived = set(sample_ids)
        for tile in self.tiles:
            if tile.info.sample_id in arrived:
                self._load_thumbnail(tile)

    def mismatched_ids(self) -> set[int]:
        """The sample ids whose tiles are marked mislabeled."""
        return {tile.info.sample_id for tile in self.tiles if tile.info.mismatch}
