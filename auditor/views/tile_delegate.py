"""Paints one grid tile: the thumbnail, its label, and a coloured band for a decision."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QObject, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from auditor.sample_model import SampleListModel
from auditor.style import ACCENT, ACTION_COLORS, FLAG, MUTED

CAPTION_HEIGHT = 20
PADDING = 4


class TileDelegate(QStyledItemDelegate):
    """``show_suggestion`` adds "given → suggested" captions (the review grid)."""

    def __init__(self, thumb_size: int, class_names: list[str], show_suggestion: bool = False,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.thumb_size = thumb_size
        self.class_names = class_names
        self.show_suggestion = show_suggestion

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        return QSize(self.thumb_size + 2 * PADDING, self.thumb_size + CAPTION_HEIGHT + 2 * PADDING)

    def _name(self, label: int | None) -> str:
        if label is None or label < 0:
            return "?"
        return self.class_names[label] if label < len(self.class_names) else str(label)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        rect = option.rect.adjusted(2, 2, -2, -2)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.setPen(QPen(ACCENT, 2) if selected else QPen(QColor("#e3e6ea"), 1))
        painter.setBrush(QColor("#eaf1fd") if selected else QColor("#ffffff"))
        painter.drawRoundedRect(rect, 6, 6)

        image_rect = QRect(rect.left() + PADDING - 2, rect.top() + PADDING - 2, self.thumb_size, self.thumb_size)
        model = index.model()
        if not isinstance(model, SampleListModel):
            painter.restore()
            return
        tile = model.tile(index.row())
        pixmap = tile.pixmap
        if isinstance(pixmap, QPixmap) and not pixmap.isNull():
            scaled = pixmap.size().scaled(image_rect.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, scaled.width(), scaled.height())
            target.moveCenter(image_rect.center())
            painter.drawPixmap(target, pixmap)
        else:
            painter.fillRect(image_rect, QColor("#f1f3f5"))
            if tile.failed:
                painter.setPen(QColor("#d64541"))
                painter.drawText(image_rect, Qt.AlignmentFlag.AlignCenter, "unreadable")

        decision = tile.decision
        label = tile.label
        caption_rect = QRect(rect.left() + 4, image_rect.bottom() + 2, rect.width() - 8, CAPTION_HEIGHT)
        font = QFont(painter.font())
        font.setPointSizeF(max(7.5, font.pointSizeF() - 1))
        painter.setFont(font)
        if decision is not None:
            if decision.action == "remove":
                # Removed samples fade: they will not be part of the cleaned dataset.
                painter.fillRect(image_rect, QColor(255, 255, 255, 170))
            color = ACTION_COLORS.get(decision.action, MUTED)
            band = QRect(image_rect.left(), image_rect.bottom() - 5, image_rect.width(), 6)
            painter.fillRect(band, color)
            text = {"relabel": f"{self._name(label)} → {self._name(decision.new_label)}",
                    "remove": "removed", "keep": f"{self._name(label)} ✓"}.get(decision.action, "")
            painter.setPen(color)
        elif self.show_suggestion:
            suggested = tile.suggested
            disagrees = suggested >= 0 and suggested != label
            text = f"{self._name(label)} → {self._name(suggested)}" if disagrees else self._name(label)
            painter.setPen(FLAG if disagrees else MUTED)
        else:
            text = self._name(label)
            painter.setPen(QColor("#374151"))
        elided = painter.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, caption_rect.width())
        painter.drawText(caption_rect, Qt.AlignmentFlag.AlignCenter, elided)
        painter.restore()
