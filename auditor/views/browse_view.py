"""Browse: every sample as a thumbnail, with a class filter, a path search and counts."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QVBoxLayout, QWidget

from auditor.sample_model import SampleListModel
from auditor.session import ProjectSession
from auditor.thumbnails import ThumbnailCache
from auditor.views.sample_grid import SampleGrid
from auditor.views.skipped_files import SkippedFilesNotice
from engine.words import plural


class BrowseView(QWidget):
    sample_activated = Signal(int)

    def __init__(self, session: ProjectSession, thumbnails: ThumbnailCache, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.model = SampleListModel(session, thumbnails, self)

        self.class_filter = QComboBox()
        self.class_filter.setMinimumWidth(180)
        counts = np.bincount(session.labels, minlength=len(session.class_names))
        self.class_filter.addItem(f"All classes ({session.num_samples:,})", -1)
        for index, name in enumerate(session.class_names):
            self.class_filter.addItem(f"{name} ({int(counts[index]):,})", index)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search paths…")
        self.search.setClearButtonEnabled(True)
        self.count_label = QLabel()
        self.count_label.setObjectName("muted")

        bar = QHBoxLayout()
        bar.setSpacing(8)
        bar.addWidget(QLabel("Class"))
        bar.addWidget(self.class_filter)
        bar.addWidget(self.search, 1)
        bar.addWidget(self.count_label)

        self.grid = SampleGrid(self.model)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 12, 12, 12)
        layout.setSpacing(8)
        layout.addLayout(bar)
        self.skipped = SkippedFilesNotice(session)  # what the import left out, and why
        layout.addWidget(self.skipped)
        layout.addWidget(self.grid, 1)

        # Typing re-queries after a pause, not per key.
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(200)
        self._search_timer.timeout.connect(self.refresh)
        self.search.textChanged.connect(self._search_timer.start)
        self.class_filter.currentIndexChanged.connect(self.refresh)
        self.grid.doubleClicked.connect(lambda index: self.sample_activated.emit(self.model.sample_id(index.row())))
        self.refresh()

    def refresh(self) -> None:
        label = self.class_filter.currentData()
        text = self.search.text().strip()
        clauses: list[str] = []
        params: list[int | str] = []
        if label is not None and label >= 0:
            clauses.append("label = ?")
            params.append(int(label))
        if text:
            # instr() is a plain substring test: no LIKE wildcards to escape in user text.
            clauses.append("instr(lower(path), ?) > 0")
            params.append(text.lower())
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.session.project.execute(f"SELECT id FROM samples{where} ORDER BY id", params)
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        self.model.set_ids(ids)
        self.grid.scrollToTop()  # a new filter shows its first samples, not the old scroll position
        self.count_label.setText(f"{len(ids):,} of {plural(self.session.num_samples, 'sample')}")
