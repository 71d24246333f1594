"""Thumbnails made off the GUI thread and cached on disk under <project>/thumbs/.

QImageReader.setScaledSize lets JPEG decoders skip most of the work for small
output, so a first visit of a big project stays cheap; later visits read the
tiny cached PNGs. The GUI thread only converts finished QImages to pixmaps and
keeps a bounded number of them.

A thumbnail belongs to a sample AND to the image it was made from: the cached file's
name carries a digest of the source's path, size and modification time, and pixmaps in
memory are keyed by (sample id, source path). So when a sample's image is replaced
(open-set noise, a file edited in place), the grid shows the new image, not the old one.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QSize, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QImage, QImageReader, QPixmap

THUMB_SIZE = 96
MEMORY_ITEMS = 4000  # pixmaps kept in memory: a few screens of the grid


ThumbKey = tuple[int, str]  # (sample id, source image path)


def image_identity(source: Path) -> str | None:
    """A short digest of what the thumbnail is made from: the path, byte size and modification time.

    None when the file cannot be read (no thumbnail is cached for it then).
    """
    try:
        stat = os.stat(source)
    except OSError:
        return None
    text = f"{source}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()


def thumb_path(root: Path, sample_id: int, identity: str, size: int = THUMB_SIZE) -> Path:
    """Where the thumbnail of ``sample_id`` made from the image with ``identity`` is cached."""
    # Sharded by thousands so no folder holds more than 1,000 samples.
    return root / "thumbs" / str(size) / f"{sample_id // 1000:04d}" / f"{sample_id}-{identity}.png"


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
    loaded = Signal(int, str, QImage, int)  # sample id, source path, image (null on failure), generation


class _ThumbnailJob(QRunnable):
    def __init__(self, sample_id: int, source: Path, root: Path, size: int, generation: int,
                 signals: _Signals) -> None:
        super().__init__()
        self.sample_id = sample_id
        self.source = source
        self.root = root
        self.size = size
        self.generation = generation
        self.signals = signals

    def run(self) -> None:
        image = QImage()
        identity = image_identity(self.source)  # stat here, off the GUI thread
        cache = thumb_path(self.root, self.sample_id, identity, self.size) if identity else None
        if cache is not None and cache.is_file():
            image = QImage(str(cache))
        if image.isNull():
            image = make_thumbnail(self.source, self.size)
            if not image.isNull() and cache is not None:
                self._save(image, cache)
        self.signals.loaded.emit(self.sample_id, str(self.source), image, self.generation)

    def _save(self, image: QImage, cache: Path) -> None:
        tmp = cache.with_name(f".{cache.stem}.{os.getpid()}.tmp.png")
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            if image.save(str(tmp), "PNG"):  # type: ignore[call-overload]  # the stubs say bytes; str works
                tmp.replace(cache)
        except OSError:
            pass  # a read-only or full disk still shows thumbnails, just without caching them
        finally:
            if tmp.exists():
                tmp.unlink(missing_ok=True)


class ThumbnailCache(QObject):
    """``get`` returns a pixmap or None and schedules the missing one; ``ready`` reports batches."""

    ready = Signal(list)  # sample ids whose thumbnails just arrived

    def __init__(self, project_root: Path, size: int = THUMB_SIZE, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.root = project_root
        self.size = size
        self._pixmaps: OrderedDict[ThumbKey, QPixmap] = OrderedDict()
        self._failed: set[ThumbKey] = set()
        self._pending: set[ThumbKey] = set()
        self._generation = 0
        self._valid_from = 0  # results of jobs from an older generation than this are discarded
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
        key = (sample_id, str(source))
        pixmap = self._pixmaps.get(key)
        if pixmap is not None:
            self._pixmaps.move_to_end(key)
            return pixmap
        if key not in self._pending and key not in self._failed:
            self._pending.add(key)
            self._pool.start(_ThumbnailJob(sample_id, source, self.root, self.size, self._generation, self._signals))
        return None

    def failed(self, sample_id: int, source: Path) -> bool:
        return (sample_id, str(source)) in self._failed

    def forget(self) -> None:
        """Drop every pixmap held in memory: the project's images changed (an image edited in place keeps
        its path); each thumbnail is then made again, or read from the disk cache if its image is the same."""
        self.drop_queued()
        self._valid_from = self._generation
        self._pixmaps.clear()
        self._failed.clear()

    def drop_queued(self) -> None:
        """Forget requests not yet started (the user scrolled past them); visible ones ask again."""
        self._pool.clear()
        self._generation += 1
        self._pending.clear()

    def wait_idle(self, msecs: int = 10000) -> bool:
        return self._pool.waitForDone(msecs)

    def settled(self) -> bool:
        """Nothing requested is still being made or waiting to be handed to the views."""
        return not self._pending and not self._arrived and self._pool.activeThreadCount() == 0

    def _on_loaded(self, sample_id: int, source: str, image: QImage, generation: int) -> None:
        key = (sample_id, source)
        if generation < self._valid_from:
            return  # started before forget(): it may show an image that has since changed
        if generation == self._generation:
            self._pending.discard(key)
        if image.isNull():
            self._failed.add(key)
        else:
            self._pixmaps[key] = QPixmap.fromImage(image)
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
