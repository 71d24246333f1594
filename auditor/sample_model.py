"""A list model over samples, paged from SQLite, for grids of 100,000 thumbnails.

The model holds only the ordered sample ids (a numpy array); paths and labels
are read a page at a time when a row is first painted, and the row count
grows by ``fetchMore`` as the view scrolls (Qt's incremental-fetch protocol).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QPixmap

from auditor.session import ProjectSession
from auditor.thumbnails import ThumbnailCache
from engine.store import Decision

PAGE = 512
FETCH_BATCH = 2048

SampleIdRole = Qt.ItemDataRole.UserRole + 1

Index = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True)
class Tile:
    sample_id: int
    pixmap: QPixmap | None
    failed: bool
    label: int
    suggested: int  # -1: no suggestion
    decision: Decision | None


class SampleListModel(QAbstractListModel):
    def __init__(self, session: ProjectSession, thumbnails: ThumbnailCache, parent: Any = None) -> None:
        super().__init__(parent)
        self.session = session
        self.thumbnails = thumbnails
        self._ids = np.zeros(0, dtype=np.int64)
        self._row_of: dict[int, int] | None = None
        self._sorted = True
        # While no view shows this model, changes are only noted: a hidden QListView with
        # 100,000 rows still does O(rows) work for each dataChanged.
        self._active = True
        self._stale = False
        self._loaded = 0  # rows exposed to the view so far
        self._pages: dict[int, list[tuple[str, str | None]]] = {}
        self._image_root = self._safe_image_root()
        session.decision_changed.connect(self._on_decision_changed)
        session.decisions_reset.connect(self._refresh_all)
        session.samples_changed.connect(self._on_samples_changed)
        thumbnails.ready.connect(self._on_thumbnails_ready)

    def _safe_image_root(self) -> Path:
        try:
            return self.session.project.image_root
        except KeyError:
            return self.session.root

    # ------------------------------------------------------------------ ids
    def set_ids(self, ids: np.ndarray) -> None:
        self.beginResetModel()
        self._ids = np.asarray(ids, dtype=np.int64)
        self._sorted = bool(len(self._ids) < 2 or np.all(np.diff(self._ids) > 0))
        self._row_of = None
        self._pages.clear()
        self._loaded = min(len(self._ids), FETCH_BATCH)
        self.endResetModel()

    def ids(self) -> np.ndarray:
        return self._ids

    def total(self) -> int:
        return len(self._ids)

    def sample_id(self, row: int) -> int:
        return int(self._ids[row])

    def _find_row(self, sample_id: int) -> int:
        if self._sorted:
            # Browse lists are in id order: a binary search, no 100,000-entry dict to build or scan.
            row = int(np.searchsorted(self._ids, sample_id))
            return row if row < len(self._ids) and self._ids[row] == sample_id else -1
        if self._row_of is None:
            self._row_of = {int(sid): row for row, sid in enumerate(self._ids)}
        return self._row_of.get(int(sample_id), -1)

    def row_of(self, sample_id: int) -> int:
        """The row of a sample, or -1; exposes more rows when the sample lies beyond them."""
        row = self._find_row(int(sample_id))
        if row >= self._loaded:
            self.beginInsertRows(QModelIndex(), self._loaded, row)
            self._loaded = row + 1
            self.endInsertRows()
        return row

    # ------------------------------------------------------- incremental fetch
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else self._loaded

    def canFetchMore(self, parent: Index) -> bool:
        return not parent.isValid() and self._loaded < len(self._ids)

    def fetchMore(self, parent: Index) -> None:
        if parent.isValid():
            return
        more = min(FETCH_BATCH, len(self._ids) - self._loaded)
        if more <= 0:
            return
        self.beginInsertRows(QModelIndex(), self._loaded, self._loaded + more - 1)
        self._loaded += more
        self.endInsertRows()

    # ----------------------------------------------------------------- data
    def _row_record(self, row: int) -> tuple[str, str | None]:
        page = row // PAGE
        records = self._pages.get(page)
        if records is None:
            ids = self._ids[page * PAGE:(page + 1) * PAGE]
            placeholders = ",".join("?" * len(ids))
            found = {
                sid: (path, override)
                for sid, path, override in self.session.project.execute(
                    f"SELECT id, path, image_override FROM samples WHERE id IN ({placeholders})",
                    [int(i) for i in ids],
                )
            }
            records = [found.get(int(i), ("", None)) for i in ids]
            if len(self._pages) > 64:  # a bounded page cache; pages are cheap to re-read
                self._pages.clear()
            self._pages[page] = records
        return records[row % PAGE]

    def image_path(self, row: int) -> Path:
        path, override = self._row_record(row)
        return self.session.root / override if override else self._image_root / path

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= self._loaded:
            return None
        row = index.row()
        sample_id = int(self._ids[row])
        if role == SampleIdRole:
            return sample_id
        if role == Qt.ItemDataRole.DisplayRole:
            return self.session.class_name(int(self.session.labels[sample_id]))
        if role == Qt.ItemDataRole.DecorationRole:
            return self.thumbnails.get(sample_id, self.image_path(row))
        if role == Qt.ItemDataRole.ToolTipRole:
            path, _ = self._row_record(row)
            return f"#{sample_id}  {path}"
        return None

    def tile(self, row: int) -> Tile:
        """Everything a grid tile paints, read in Python.

        Delegates call this rather than ``index.data(role)``: PySide6 6.12 drops a reference
        to None each time Python reads an empty QVariant, which crashes the interpreter later.
        """
        sample_id = int(self._ids[row])
        audit = self.session.audit
        source = self.image_path(row)
        return Tile(
            sample_id=sample_id,
            pixmap=self.thumbnails.get(sample_id, source),
            failed=self.thumbnails.failed(sample_id, source),
            label=int(self.session.labels[sample_id]),
            suggested=int(audit.suggested[sample_id]) if audit is not None else -1,
            decision=self.session.decision(sample_id),
        )

    # -------------------------------------------------------------- updates
    def set_active(self, active: bool) -> None:
        self._active = active
        if active and self._stale:
            self._stale = False
            self._refresh_all()

    def _emit_rows(self, sample_ids: list[int]) -> None:
        if not sample_ids or self._loaded == 0:
            return
        if not self._active:
            self._stale = True
            return
        rows = [row for row in (self._find_row(int(sid)) for sid in sample_ids) if 0 <= row < self._loaded]
        if not rows:
            return
        # One signal over the span: views repaint only what is visible anyway.
        self.dataChanged.emit(self.index(min(rows)), self.index(max(rows)))

    def _on_decision_changed(self, sample_id: int) -> None:
        self._emit_rows([sample_id])

    def _on_thumbnails_ready(self, sample_ids: list[int]) -> None:
        self._emit_rows(sample_ids)

    def _on_samples_changed(self) -> None:
        # Labels or images changed elsewhere (the CLI): re-read paths, and make thumbnails anew.
        self._pages.clear()
        self.thumbnails.forget()
        if not self._active:
            self._stale = True
            return
        self._refresh_all()

    def _refresh_all(self) -> None:
        if self._loaded:
            self.dataChanged.emit(self.index(0), self.index(self._loaded - 1))
