"""The review's large view: the current sample as large as fits, painted by hand."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QImage, QImageReader, QPainter, QPaintEvent, QPixmap, QResizeEvent
from PySide6.QtWidgets import QSizePolicy, QStyle, QStyleOption, QWidget


class ImagePane(QWidget):
    """The current sample, as large as fits; small images are shown pixel-sharp.

    Painted by hand rather than with QLabel.setPixmap: a label re-asks the layout for room on
    every new pixmap, which makes the neighbouring grid relayout and repaint on every key.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("imagePane")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._image = QImage()
        self._scaled = QPixmap()
        self._text = ""

    def minimumSizeHint(self) -> QSize:
        # Small enough that the review with six detectors' scores fits a 720-px-high window unscrolled.
        return QSize(200, 120)

    def sizeHint(self) -> QSize:
        return QSize(480, 480)

    def text(self) -> str:
        return self._text

    def setText(self, text: str) -> None:
        self._text = text
        self.update()

    def show_image(self, path: Path | None) -> None:
        self._image = QImage()
        self._text = ""
        if path is not None:
            reader = QImageReader(str(path))
            reader.setAutoTransform(True)
            size = reader.size()
            limit = QSize(1600, 1600)
            if size.isValid() and (size.width() > limit.width() or size.height() > limit.height()):
                reader.setScaledSize(size.scaled(limit, Qt.AspectRatioMode.KeepAspectRatio))
            self._image = reader.read()
            if self._image.isNull():
                self._text = f"This image cannot be read:\n{path}"
        else:
            self._text = "Nothing to review"
        self._rescale()
        self.update()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._image.isNull():
            self._scaled = QPixmap()
            return
        target = self.size() - QSize(16, 16)
        scaled_size = self._image.size().scaled(target, Qt.AspectRatioMode.KeepAspectRatio)
        upscale = scaled_size.width() > 2 * self._image.width()
        mode = Qt.TransformationMode.FastTransformation if upscale else Qt.TransformationMode.SmoothTransformation
        self._scaled = QPixmap.fromImage(self._image.scaled(scaled_size, Qt.AspectRatioMode.KeepAspectRatio, mode))

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        option = QStyleOption()
        option.initFrom(self)
        self.style().drawPrimitive(QStyle.PrimitiveElement.PE_Widget, option, painter, self)  # the stylesheet frame
        if not self._scaled.isNull():
            x = (self.width() - self._scaled.width()) // 2
            y = (self.height() - self._scaled.height()) // 2
            painter.drawPixmap(x, y, self._scaled)
        elif self._text:
            painter.setPen(QColor("#6b7280"))
            painter.drawText(self.rect().adjusted(12, 12, -12, -12),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._text)
        painter.end()
