"""Thumbnails made off the GUI thread and cached on disk under <project>/thumbs/.

QImageReader.setScaledSize lets JPEG decoders skip most of the work for small
output, so a first visit of a big project stays cheap; later visits read the
tiny cached PNGs. The GUI thread only converts finished QImages to pixmaps and
keeps a bounded number of them.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QSize, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QImage, QImageReader, QPixmap

THUMB_SIZE = 96
MEMORY_ITEMS = 4000  # pixmaps kept in memory: a few screens of the grid


def thumb_path(root: Path, sample_id: int, size: int = THUMB_SIZE) -> Path:
    # Sharded by thousands so no folder holds more than 1,000 files.
    return root / "thumbs" / str(size) / f"{sample_id // 1000:04d}" / f"{sample_id}.png"


def make_thumbnail(source: Path, size: int = THUMB_SIZE) -> QImage:
    """Decode ``source`` at (at most) size x size, keeping the aspect ratio."""
    reader = QImageReader(str(source))
    reader.setAutoTransform(True)
    original = reader.size()
    if original.isValid() and (original.width() > size or original.height() > size):
        reader.setScaledSize(original.scaled(QSize(size, size), Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    if image.isNull():
        return image
    if image.width() < size // 2 and image.height() < size // 2:
        # Tiny images (digits are 8x8 → 32x32) are shown pixel-sharp rather than blurred.
        image = image.scaled(QSize(size, size), Qt.AspectRatioMode.KeepAspectRatio,
                             Qt.TransformationMode.FastTransformation)
    return image


class _Signals(QObject):
    loaded = Signal(int, QImage, int)  # sample id, image (null on failure), generation


class _ThumbnailJob(QRunnable):
    def __init__(self, sample_id: int, source: Path, cache: Path, size: int, generation: int,
                 signals: _Signals) -> None:
        super().__init__()
        self.sample_id = sample_id
        self.source = source
        self.cache = cache
        self.size = size
        self.generation = generation
        self.signals = signals

    def run(self) -> None:
        image = QImage()
        if self.cache.is_file():
            image = QImage(str(self.cache))
        if image.isNull():
            image = make_thumbnail(self.source, self.size)
            if not image.isNull():
                try:
                    self.cache.parent.mkdir(parents=True, exist_ok=True)
                    tmp = self.cache.with_name(self.cache.name + ".tmp.png")
                    if image.save(str(tmp), "PNG"):  # type: ignore[call-overload]  # the stubs say bytes; str works
                        tmp.replace(self.cache)
                except OSError:
                    pass  # a read-only project still shows thumbnails, just without caching them
        self.signals.loaded.emit(self.sample_id, image, self.generation)


class ThumbnailCache(QObject):
    """``get`` returns a pixmap or None and schedules the missing one; ``ready`` reports batches."""

    ready = Signal(list)  # sample ids whose thumbnails just arrived

    def __init__(self, project_root: Path, size: int = THUMB_SIZE, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.root = project_root
        self.size = size
        self._pixmaps: OrderedDict[int, QPixmap] = OrderedDict()
        self._failed: set[int] = set()
        self._pending: set[int] = set()
        self._generation = 0
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max(2, QThreadPool.globalInstance().maxThreadCount()))
        self._signals = _Signals()
        self._signals.loaded.connect(self._on_loaded, Qt.ConnectionType.QueuedConnection)
        self._arrived: list[int] = []
        # Coalesce arrivals so the view repaints a handful of times per second, not per image.
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(30)
        self._flush_timer.timeout.connect(self._flush)

    def get(self, sample_id: int, source: Path) -> QPixmap | None:
        pixmap = self._pixmaps.get(sample_id)
        if pixmap is not None:
            self._pixmaps.move_to_end(sample_id)
            return pixmap
        if sample_id not in self._pending and sample_id not in self._failed:
            self._pending.add(sample_id)
            job = _ThumbnailJob(sample_id, source, thumb_path(self.root, sample_id, self.size), self.size,
                                self._generation, self._signals)
            self._pool.start(job)
        return None

    def failed(self, sample_id: int) -> bool:
        return sample_id in self._failed

    def drop_queued(self) -> None:
        """Forget requests not yet started (the user scrolled past them); visible ones ask again."""
        self._pool.clear()
        self._generation += 1
        self._pending.clear()

    def wait_idle(self, msecs: int = 10000) -> bool:
        return self._pool.waitForDone(msecs)

    def _on_loaded(self, sample_id: int, image: QImage, generation: int) -> None:
        if generation == self._generation:
            self._pending.discard(sample_id)
        if image.isNull():
            self._failed.add(sample_id)
        else:
            self._pixmaps[sample_id] = QPixmap.fromImage(image)
            while len(self._pixmaps) > MEMORY_ITEMS:
                self._pixmaps.popitem(last=False)
        self._arrived.append(sample_id)
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    def _flush(self) -> None:
        arrived, self._arrived = self._arrived, []
        if arrived:
            self.ready.emit(arrived)

    def shutdown(self) -> None:
        self._pool.clear()
        self._pool.waitForDone(5000)
