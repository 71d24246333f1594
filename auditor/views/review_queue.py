"""The review's queue: the suspects as a grid under a header that says which ones and in what order.

The header counts the reviewed suspects and names the filter; the order box picks whose ranking
(one detector's flagged set by its score, those most detectors agree on, grouped by class pair)
and the pair box narrows the queue to one class pair. The grid's current row is the sample the
review shows large; the queue never takes the keys (they belong to the review panel).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from auditor.review_order import AGREEMENT, BY_PAIR
from auditor.sample_model import SampleListModel
from auditor.session import ProjectSession
from auditor.thumbnails import ThumbnailCache
from auditor.views.sample_grid import SampleGrid
from engine.words import plural


def _shrinkable(box: QComboBox) -> None:
    """Long entries ("Grouped by class pair ...") must not set the review's, and so the window's, minimum width."""
    box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(14)
    box.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys belong to the review panel


class ReviewQueue(QWidget):
    """The queue of suspects to review, and which one is current."""

    current_changed = Signal()  # another sample became current (a key, a click, a reload)
    show_all_requested = Signal()  # "Show all flagged": drop the class pair, the chosen samples, an opened one
    bulk_requested = Signal()
    pair_chosen = Signal()  # a class pair was chosen in the pair box (the keys go back to the review)

    def __init__(self, session: ProjectSession, thumbnails: ThumbnailCache, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.opened: int | None = None  # a sample opened from Browse that the review queue does not hold
        self.model = SampleListModel(session, thumbnails, self)
        self.grid = SampleGrid(self.model, show_suggestion=True)
        self.grid.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys belong to the review panel
        self.grid.setMinimumWidth(220)
        self.grid.selectionModel().currentChanged.connect(lambda *_: self.current_changed.emit())

        self.counter = QLabel()
        self.counter.setObjectName("sectionTitle")
        self.filter_label = QLabel()
        self.filter_label.setObjectName("muted")
        # Long filter descriptions may be cut rather than widen the window.
        self.filter_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.filter_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.clear_filter_button = QPushButton("Show all flagged")
        self.clear_filter_button.clicked.connect(self.show_all_requested)
        self.bulk_button = QPushButton("Bulk…")
        self.bulk_button.setToolTip("Accept, remove or keep many suspects at once (one undo step)")
        self.bulk_button.clicked.connect(self.bulk_requested)
        for button in (self.clear_filter_button, self.bulk_button):
            # Keys belong to the review panel: a clicked button must not keep (or pass on) the focus.
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        header = QHBoxLayout()
        header.setSpacing(10)
        header.addWidget(self.counter)
        header.addWidget(self.filter_label, 1)
        header.addWidget(self.clear_filter_button)
        header.addWidget(self.bulk_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        layout.addLayout(header)
        layout.addLayout(self._build_order_row())
        layout.addWidget(self.grid, 1)

    def _build_order_row(self) -> QHBoxLayout:
        """Why this sample: review one detector's flagged set by its score, or those most detectors agree on;
        and the class-pair filter (helper "datamap", issue 9 item 2)."""
        self.order_box = QComboBox()
        self.order_box.setToolTip("Which suspects to review, in which order")
        _shrinkable(self.order_box)
        self.fill_order_box()
        self.order_box.activated.connect(lambda _: self.session.set_queue_order(self.order_box.currentData()))
        self.session.audit_changed.connect(self.fill_order_box)
        self.pair_box = QComboBox()
        self.pair_box.setToolTip("Review one class pair: samples given one class that the audit suggests is another")
        _shrinkable(self.pair_box)
        self._pairs: list[tuple[int, int]] = []  # the box's rows after "All class pairs"
        self.pair_box.activated.connect(self._on_pair_chosen)
        self.session.audit_changed.connect(self.fill_pair_box)
        self.session.samples_changed.connect(self.fill_pair_box)
        row = QHBoxLayout()
        row.setSpacing(8)
        row.addWidget(self.order_box)
        row.addWidget(self.pair_box)
        row.addStretch(1)
        self.fill_pair_box()
        return row

    # ---------------------------------------------------------------- contents
    def reload(self) -> None:
        """Show the session's review queue (or the sample opened from Browse), staying on the current sample,
        else going to the first one not yet reviewed."""
        keep = self.current_sample()
        queue = self.queue_ids()
        if self.opened is not None and not np.any(queue == self.opened):
            queue = np.array([self.opened], dtype=np.int64)
        else:
            self.opened = None
        self.model.set_ids(queue)
        row = self.model.row_of(keep) if keep is not None else -1
        self.set_current_row(row if row >= 0 else self.first_unreviewed_row())

    def queue_ids(self) -> np.ndarray:
        """The samples this queue lists, in order (the review's: the session's flagged queue)."""
        return self.session.review_queue()

    def update_header(self) -> None:
        queue = self.model.ids()
        decided = int(self.session.decided[queue].sum())
        self.counter.setText(f"Reviewed {decided:,} / {len(queue):,} flagged" if self.opened is None
                             else f"Sample #{self.opened}")
        self.filter_label.setText(self._filter_text())
        self.clear_filter_button.setVisible(self.session.pair_filter is not None or self.opened is not None
                                            or self.session.id_filter is not None)
        self._sync_pair_box()

    def _filter_text(self) -> str:
        session, audit, pair = self.session, self.session.audit, self.session.pair_filter
        if self.opened is not None:
            return "opened from Browse · not flagged by the audit"
        if session.id_filter is not None:
            return f"{plural(len(session.id_filter), 'sample')} chosen on the data map · most suspect first"
        if pair is not None:
            given, suggested = (session.class_name(i) for i in pair)
            return f"Showing given “{given}” suggested “{suggested}”"
        if audit is None:
            return ""
        if session.queue_order == BY_PAIR:
            return "flagged · grouped by class pair, the commonest pair first"
        if session.queue_order == AGREEMENT:
            return "flagged by any detector · most detectors agree first"
        if session.queue_order:
            return f"flagged by {session.queue_order} · by its score"
        if session.threshold is not None:
            return f"score ≥ {session.threshold:.3f} · ranked by {audit.detector}"
        return f"flagged by {audit.detector} · most suspect first"

    def fill_order_box(self) -> None:
        self.order_box.clear()
        audit = self.session.audit
        if audit is None:
            self.order_box.hide()
            return
        self.order_box.addItem(f"Ranked by {audit.detector}", None)
        for name in audit.per_detector:
            if name != audit.detector:
                self.order_box.addItem(f"Flagged by {name}, by its score", name)
        if len(audit.per_detector_flagged) > 1:
            self.order_box.addItem("Most detectors agree first", AGREEMENT)
        self.order_box.addItem("Grouped by class pair (given → suggested)", BY_PAIR)
        self.order_box.setCurrentIndex(max(0, self.order_box.findData(self.session.queue_order)))
        self.order_box.setVisible(self.order_box.count() > 1)

    def fill_pair_box(self) -> None:
        self.pair_box.clear()
        pairs = self.session.class_pairs()
        self._pairs = [(given, suggested) for given, suggested, _ in pairs]
        self.pair_box.addItem("All class pairs")
        for given, suggested, count in pairs:
            self.pair_box.addItem(f"{self.session.class_name(given)} → {self.session.class_name(suggested)}"
                                  f"  ({count:,})")
        self.pair_box.setVisible(bool(pairs))
        self._sync_pair_box()

    def _sync_pair_box(self) -> None:
        """Show the pair the queue is filtered by, however it was chosen (here or on the noise matrix)."""
        pair = self.session.pair_filter
        self.pair_box.setCurrentIndex(self._pairs.index(pair) + 1 if pair in self._pairs else 0)

    def _on_pair_chosen(self, index: int) -> None:
        self.session.set_pair_filter(self._pairs[index - 1] if 0 < index <= len(self._pairs) else None)
        self.pair_chosen.emit()

    # -------------------------------------------------------------- the current row
    def current_row(self) -> int:
        index = self.grid.currentIndex()
        return index.row() if index.isValid() else -1

    def current_sample(self) -> int | None:
        row = self.current_row()
        return self.model.sample_id(row) if 0 <= row < self.model.total() else None

    def set_current_row(self, row: int) -> None:
        if not 0 <= row < self.model.total():
            self.grid.setCurrentIndex(QModelIndex())
            self.current_changed.emit()
            return
        if row >= self.model.rowCount():
            self.model.row_of(self.model.sample_id(row))  # expose rows up to it
        index = self.model.index(row)
        self.grid.selectionModel().setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.grid.scrollTo(index)

    def go(self, step: int) -> None:
        if self.model.total() == 0:
            return
        self.set_current_row(max(0, min(self.model.total() - 1, self.current_row() + step)))

    def first_unreviewed_row(self, start: int = 0) -> int:
        """The first row at or after ``start`` (wrapping round) whose sample has no decision; 0 if all have."""
        ids = self.model.ids()
        if len(ids) == 0:
            return 0
        order = np.roll(np.arange(len(ids)), -start)
        open_rows = order[~self.session.decided[ids[order]]]
        return int(open_rows[0]) if len(open_rows) else 0
