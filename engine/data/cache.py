"""Every image decoded once, at training resolution, into a memory-mapped array.

``ensure_cache(project, 32)`` returns a read-only uint8 array of shape (N, 32, 32, 3)
in sample-id order. It is built once, in parallel, and reused by every later run;
epochs never decode an image again.

The file name carries a fingerprint of what went into it (image size, sample paths,
open-set replacement images, the resize policy), so a cache of other content is never
mistaken for this one. A build writes to a private temporary name and renames it when
complete: a killed build leaves at most a ``.partial`` file, never a "finished" cache.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.cancel import CancelToken
from engine.data import images
from engine.errors import MB, Cancelled, DiskFullError, UserError, ensure_free_space, is_disk_full
from engine.events import EtaEstimator, EventSink

if TYPE_CHECKING:
    from engine.cancel import CancelToken
    from engine.store import Project

# Bump when load_square_rgb's output changes, so old caches are not reused.
_POLICY_VERSION = "shorter-side-bilinear-center-crop-v1"
_PREFIX = "images-"
_HEADER_ROOM = 4096  # the .npy header, rounded up to a block


def cache_path(project: Project, image_size: int) -> Path:
    """Where the cache of ``project``'s current images at ``image_size`` lives."""
    table = project.sample_table()
    return _path_for(project.cache_dir, image_size, table.paths, table.image_override)


def ensure_cache(
    project: Project,
    image_size: int,
    *,
    open_set: bool = True,
    events: EventSink | None = None,
    workers: int | None = None,
    cancel: CancelToken | None = None,
) -> np.memmap:
    """The decoded images, shape (N, image_size, image_size, 3) uint8, read-only memmap.

    Images are read from the image root, or from the project folder where a sample has
    an ``image_override`` (open-set noise; ``open_set=False``: never, the dataset's own images).
    Progress goes to ``events`` as stage "cache".
    """
    table = project.sample_table()
    none: list[str | None] = [None] * len(table.paths)
    overrides = table.image_override if open_set else none
    sources = [project.root / override if override else project.image_root / path
               for path, override in zip(table.paths, overrides)]
    target = _path_for(project.cache_dir, image_size, table.paths, overrides)
    clean = _path_for(project.cache_dir, image_size, table.paths, none)
    return _ensure(target, sources, table.paths, image_size, events=events, workers=workers, cancel=cancel,
                   keep=clean)


def ensure_clean_cache(project: Project, image_size: int, *, events: EventSink | None = None) -> np.memmap:
    """The dataset's own images, open-set replacements ignored (what noise injection reads)."""
    return ensure_cache(project, image_size, open_set=False, events=events)


def clear_cache(project: Project, *, keep_clean: bool = False) -> list[Path]:
    """Delete cache files (finished and partial); returns what was removed.

    ``keep_clean`` keeps the caches of the dataset's own images (no open-set replacements),
    which stay valid when only the open-set images change.
    """
    if not project.cache_dir.is_dir():
        return []
    keep: set[Path] = set()
    if keep_clean:
        paths = project.sample_table().paths
        for file in project.cache_dir.glob(f"{_PREFIX}*px-*.npy"):
            size = file.name[len(_PREFIX):].split("px-", 1)[0]
            if size.isdigit():
                keep.add(_path_for(project.cache_dir, int(size), paths, [None] * len(paths)))
    removed = []
    for file in project.cache_dir.glob(_PREFIX + "*"):
        if file not in keep:
            file.unlink(missing_ok=True)
            removed.append(file)
    return removed


# ----------------------------------------------------------------- internals
def _path_for(cache_dir: Path, image_size: int, paths: list[str], overrides: list[str | None]) -> Path:
    digest = hashlib.sha1(json.dumps([_POLICY_VERSION, image_size, paths, overrides]).encode()).hexdigest()[:12]
    return cache_dir / f"{_PREFIX}{image_size}px-{digest}.npy"


def _load_if_complete(target: Path, shape: tuple[int, ...]) -> np.memmap | None:
    if not target.is_file():
        return None
    try:
        array = np.load(target, mmap_mode="r")
    except (ValueError, OSError, EOFError):
        return None  # damaged header or a short file
    if not isinstance(array, np.memmap) or array.shape != shape or array.dtype != np.uint8:
        return None
    return array


def _ensure(
    target: Path,
    sources: list[Path],
    names: list[str],
    image_size: int,
    *,
    events: EventSink | None,
    workers: int | None,
    cancel: CancelToken | None,
    keep: Path,
) -> np.memmap:
    if image_size < 1:
        raise UserError(f"image size {image_size} is not a positive number of pixels", "use e.g. --image-size 32")
    shape = (len(sources), image_size, image_size, 3)
    cached = _load_if_complete(target, shape)
    if cached is not None:
        return cached
    target.unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_partials(target)
    events = events or EventSink()
    # Private temporary name: two processes building at once never write the same file.
    partial = target.with_name(f"{target.name}.{uuid.uuid4().hex[:8]}.partial")
    # A memory-mapped file is sparse: on a full disk, writing its pages kills the process with
    # SIGBUS, no message. So check the room first, then reserve every block before mapping it.
    ensure_free_space(target.parent, int(np.prod(shape)) + _HEADER_ROOM)
    try:
        array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
        _reserve_blocks(partial, target.parent)
        _fill(array, sources, names, image_size, events, workers, cancel)
        array.flush()
        del array
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    # Caches of the same size with other content are stale now (except ``keep``, the cache
    # of the dataset's own images, which open-set noise reads): free the disk.
    for other in target.parent.glob(f"{_PREFIX}{image_size}px-*.npy"):
        if other not in (target, keep):
            other.unlink(missing_ok=True)
    loaded = _load_if_complete(target, shape)
    if loaded is None:
        raise RuntimeError(f"the image cache {target} did not load right after it was written")
    return loaded


def _reserve_blocks(partial: Path, folder: Path) -> None:
    """Allocate the whole file on disk now, so a full disk is an error here and not a SIGBUS later."""
    if not hasattr(os, "posix_fallocate"):
        return  # macOS/Windows: the free-space check before it is the guard
    size = partial.stat().st_size
    with open(partial, "rb+") as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, size)
        except OSError as exc:
            if is_disk_full(exc):
                allocated = partial.stat().st_blocks * 512
                raise DiskFullError(folder, size + MB - shutil.disk_usage(folder).free - allocated) from None
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            # this file system cannot preallocate: rely on the free-space check


def _remove_abandoned_partials(target: Path, older_than_s: float = 3600.0) -> None:
    # A killed build leaves its .partial file; one untouched for an hour has no writer left.
    now = time.time()
    for partial in target.parent.glob(f"{target.name}.*.partial"):
        try:
            if now - partial.stat().st_mtime > older_than_s:
                partial.unlink()
        except OSError:
            continue


def _fill(
    array: np.ndarray,
    sources: list[Path],
    names: list[str],
    image_size: int,
    events: EventSink,
    workers: int | None,
    cancel: CancelToken | None,
) -> None:
    total = len(sources)
    workers = max(1, workers or os.cpu_count() or 1)
    chunk = max(16, min(256, total // (workers * 8) or 1))

    stop_all = threading.Event()  # set on error or cancel: workers stop at the next image

    def decode(start: int) -> int:
        stop = min(start + chunk, total)
        for index in range(start, stop):
            if stop_all.is_set() or (cancel is not None and cancel.requested):
                return 0
            try:
                # Called through the module so tests can observe or replace the decoder.
                array[index] = images.load_square_rgb(sources[index], image_size)
            except images.BadImage as exc:
                raise UserError(
                    f"sample {index} ({names[index]!r}) can no longer be read: {exc.reason}",
                    f"restore {sources[index]} (it was readable at import), or import the dataset again",
                ) from None
        return stop - start

    eta = EtaEstimator(total)
    done = 0
    events.progress("cache", 0, total, None, f"decoding {total} images at {image_size}px")
    # Pillow releases the GIL while decoding and resizing, so threads scale across cores.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: set[Future[int]] = {pool.submit(decode, start) for start in range(0, total, chunk)}
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in finished:
                    done += future.result()
                if cancel is not None and cancel.requested:
                    raise Cancelled(cancel.reason)
                if finished:
                    events.progress("cache", done, total, eta.eta(done))
        except BaseException:
            stop_all.set()
            for future in pending:
                future.cancel()
            raise
