"""Writing an embedding source: in chunks through a memory map, resumable, moved into place when complete.

:class:`PartialEmbeddings` is what ``embed`` writes with (and what an importer of a large file can use);
:func:`save_embeddings` stores an array that is already in memory. Imports only numpy and the store's
atomic-write helpers.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.embeddings import DTYPE, EmbeddingInfo, array_path, embeddings_folder, file_sha256, meta_path, read_info
from engine.errors import ensure_free_space
from engine.store import atomic_write_bytes

WRITE_CHUNK_ROWS = 65536


def save_embeddings(project_root: Path, source: str, array: np.ndarray, meta: dict[str, Any] | None = None) -> EmbeddingInfo:
    """Store ``array`` (N, D) as the source ``source`` (float32, in chunks: ``array`` may be a memory map)."""
    array = np.asarray(array) if not isinstance(array, np.memmap) else array
    if array.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {array.shape}")
    writer = PartialEmbeddings(Path(project_root), source, int(array.shape[0]), int(array.shape[1]),
                               {"saved": time.time()}, resume=False)
    for start in range(0, len(array), WRITE_CHUNK_ROWS):
        writer.write(start, np.asarray(array[start:start + WRITE_CHUNK_ROWS], dtype=DTYPE))
    writer.save_progress(len(array))
    return writer.finish({"source": source, "created": time.time(), **(meta or {})})


class PartialEmbeddings:
    """An embedding array being written: ``<source>.partial.npy`` and its progress, ``<source>.partial.json``.

    Opening continues a partial file made with the same ``key`` (the settings and samples) from its
    saved row count; any other partial file is discarded.
    """

    def __init__(self, project_root: Path, source: str, num_samples: int, dims: int, key: dict[str, Any],
                 *, resume: bool = True) -> None:
        self.project_root, self.source, self.num_samples, self.dims, self.key = project_root, source, num_samples, dims, key
        folder = embeddings_folder(project_root)
        folder.mkdir(parents=True, exist_ok=True)
        self.partial = folder / f"{source}.partial.npy"
        self.progress = folder / f"{source}.partial.json"
        self.rows_done = self._resumable_rows() if resume else 0
        if self.rows_done:
            self.array = np.load(self.partial, mmap_mode="r+")
        else:
            self.progress.unlink(missing_ok=True)
            self.partial.unlink(missing_ok=True)
            ensure_free_space(folder, num_samples * dims * np.dtype(DTYPE).itemsize)
            self.array = np.lib.format.open_memmap(self.partial, mode="w+", dtype=DTYPE, shape=(num_samples, dims))

    def _resumable_rows(self) -> int:
        try:
            saved = json.loads(self.progress.read_text(encoding="utf-8"))
            rows = int(saved["rows_done"])
            if saved.get("key") != self.key or not 0 < rows <= self.num_samples:
                return 0
            on_disk = np.load(self.partial, mmap_mode="r")
            return rows if on_disk.shape == (self.num_samples, self.dims) and on_disk.dtype == DTYPE else 0
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def write(self, start: int, rows: np.ndarray) -> None:
        self.array[start:start + len(rows)] = rows

    def save_progress(self, rows_done: int) -> None:
        """Flush the rows written so far, then record their count (in that order: the count never runs ahead)."""
        self.array.flush()
        self.rows_done = rows_done
        atomic_write_bytes(self.progress, json.dumps({"rows_done": rows_done, "key": self.key}).encode())

    def finish(self, meta: dict[str, Any]) -> EmbeddingInfo:
        """Sync, hash and move the finished array into place, then write its ``.json``; the source's info."""
        if self.rows_done != self.num_samples:
            raise RuntimeError(f"finish() after {self.rows_done} of {self.num_samples} rows")
        self.array.flush()
        del self.array
        with open(self.partial, "rb+") as handle:
            os.fsync(handle.fileno())
        sha256 = file_sha256(self.partial)
        target, meta_file = array_path(self.project_root, self.source), meta_path(self.project_root, self.source)
        meta_file.unlink(missing_ok=True)  # no moment where an old .json describes the new array
        os.replace(self.partial, target)
        record = {**meta, "sha256": sha256, "dims": self.dims, "num_samples": self.num_samples}
        atomic_write_bytes(meta_file, json.dumps(record, indent=2).encode())
        with contextlib.suppress(OSError):
            self.progress.unlink()
        info = read_info(self.project_root, self.source)
        assert info is not None
        return info
