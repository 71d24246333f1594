"""A thumbnail grid: QListView in icon mode, tuned for very long models."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtGui import QHideEvent, QShowEvent
from PySide6.QtWidgets import QAbstractItemView, QListView, QWidget

from auditor.sample_model import SampleListModel
from auditor.views.tile_delegate import TileDelegate


class SampleGrid(QListView):
    def __init__(self, model: SampleListModel, show_suggestion: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(True)
        # Uniform sizes and batched layout keep layout O(visible) for 100,000 rows.
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(1000)
        self.setSpacing(2)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalScrollBar().setSingleStep(24)
        self.setItemDelegate(TileDelegate(model.thumbnails.size, model.session.class_names, show_suggestion, self))
        self.setModel(model)
        # When the user scrolls fast, queued thumbnails for rows already gone are dropped;
        # the rows now visible ask again when painted.
        self._scroll_settle = QTimer(self)
        self._scroll_settle.setSingleShot(True)
        self._scroll_settle.setInterval(60)
        self._scroll_settle.timeout.connect(self._after_scroll)
        self.verticalScrollBar().valueChanged.connect(self._on_scrolled)

    def sample_model(self) -> SampleListModel:
        model = self.model()
        assert isinstance(model, SampleListModel)
        return model

    def showEvent(self, event: QShowEvent) -> None:
        self.sample_model().set_active(True)
        super().showEvent(event)

    def hideEvent(self, event: QHideEvent) -> None:
        self.sample_model().set_active(False)
        super().hideEvent(event)

    def _on_scrolled(self) -> None:
        self._scroll_settle.start()

    def _after_scroll(self) -> None:
        self.sample_model().thumbnails.drop_queued()
        self.viewport().update()
