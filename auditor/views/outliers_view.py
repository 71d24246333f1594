"""Outliers: samples far from every other, ranked, decided with the review's own keys and parts.

The ranking comes from the engine (``python -m engine outliers PROJECT --json``: the cosine distance of
each training sample's embedding to its k-th nearest neighbour, farthest first). The view is the
review (:class:`~auditor.views.review_view.ReviewView`: its grid, large image, detail card, class
picker, buttons and key table) over that ranking instead of the audit's suspects: Enter accepts,
0-9 relabels, R removes, K keeps, Ctrl+Z undoes, as everywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QVBoxLayout, QWidget

from auditor.engine_process import EngineProcess
from auditor.session import ProjectSession
from auditor.style import text_label
from auditor.thumbnails import ThumbnailCache
from auditor.views.review_queue import ReviewQueue
from auditor.views.review_view import ReviewView
from auditor.views.search_controls import SearchControls

OUTLIERS_LISTED = 1000  # the farthest samples the engine lists (`outliers --limit`)


class OutlierQueue(ReviewQueue):
    """The review's queue over the outlier ranking: no audit order or class-pair filter, no bulk action."""

    def __init__(self, session: ProjectSession, thumbnails: ThumbnailCache, parent: QWidget | None = None) -> None:
        self.ranked = np.zeros(0, dtype=np.int64)
        self.distance: dict[int, float] = {}
        self.flagged: set[int] = set()
        self.about = ("Outliers: the samples least like any other, by the distance of their embedding to its "
                      "k-th nearest neighbour. Needs embeddings (Run ▸ Compute embeddings).")
        super().__init__(session, thumbnails, parent)
        self.bulk_button.hide()
        self.clear_filter_button.setText("Show all outliers")

    def fill_order_box(self) -> None:
        self.order_box.hide()

    def fill_pair_box(self) -> None:
        self._pairs = []
        self.pair_box.hide()

    def set_ranking(self, answer: dict[str, Any]) -> None:
        """Take ``outliers --json``'s answer: its samples, farthest first."""
        top = answer.get("top") or []
        self.ranked = np.array([int(row["sample_id"]) for row in top], dtype=np.int64)
        self.distance = {int(row["sample_id"]): float(row["distance"]) for row in top}
        self.flagged = {int(row["sample_id"]) for row in top if row.get("flagged")}
        self.about = (f"Ranked by the cosine distance to each sample's {answer.get('k', '?')}th nearest neighbour "
                      f"(embeddings “{answer.get('source', '?')}”), farthest first; "
                      f"{int(answer.get('n_flagged', 0)):,} beyond the threshold {float(answer.get('threshold', 0.0)):.3f}.")
        self.opened = None

    def queue_ids(self) -> np.ndarray:
        return self.ranked

    def update_header(self) -> None:
        queue = self.model.ids()
        decided = int(self.session.decided[queue].sum())
        self.counter.setText(f"Reviewed {decided:,} / {len(queue):,} outliers" if self.opened is None
                             else f"Sample #{self.opened}")
        self.filter_label.setText("not among the outliers listed" if self.opened is not None else "farthest first")
        self.clear_filter_button.setVisible(self.opened is not None)


class OutliersView(ReviewView):
    find_requested = Signal()

    def __init__(self, session: ProjectSession, thumbnails: ThumbnailCache, parent: QWidget | None = None) -> None:
        super().__init__(session, thumbnails, parent)
        self.search = SearchControls("Find outliers")
        self.search.find_requested.connect(self.find_requested)
        self.search.answered.connect(self.show_ranking)
        self.search.message.connect(self._tell)
        self.find_button = self.search.find_button
        for widget in (self.search.find_button, self.search.cancel_button):
            widget.setFocusPolicy(self.buttons.accept_button.focusPolicy())  # the keys stay on the review
        top = QHBoxLayout()
        top.addWidget(self.search)
        self.about = text_label(self.outliers.about)
        top.insertWidget(0, self.about, 1)
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        layout.insertLayout(0, top)

    def make_queue(self, session: ProjectSession, thumbnails: ThumbnailCache) -> ReviewQueue:
        return OutlierQueue(session, thumbnails)

    @property
    def outliers(self) -> OutlierQueue:
        assert isinstance(self.queue, OutlierQueue)
        return self.queue

    # ------------------------------------------------------------------ the ranking
    def follow(self, process: EngineProcess) -> None:
        self.search.follow(process)

    def show_ranking(self, answer: object) -> None:
        if isinstance(answer, dict):
            self.outliers.set_ranking(answer)
            self.find_button.setText("Rank again")
            self.about.setText(self.outliers.about)
            self.reload_queue()

    def open_sample(self, sample_id: int) -> None:
        """Show a sample (one an undo changed): from the ranking when it is there, else on its own."""
        row = self.model.row_of(int(sample_id))
        if row < 0:
            self.queue.opened = int(sample_id)
            self.reload_queue()
            row = self.model.row_of(int(sample_id))
        if row >= 0:
            self.set_current_row(row)
        self.setFocus()

    def show_all_flagged(self) -> None:
        self.queue.opened = None
        self.reload_queue()
        self.setFocus()

    def _on_filter_changed(self) -> None:
        self.reload_queue()  # the audit's filters do not narrow the outliers; a decision elsewhere may show

    def _show_current(self) -> None:
        sample = self.current_sample()
        if sample is None:
            self.details.show_sample(None)
            self.image.show_image(None)
            self.image.setText("Find outliers to rank the samples." if not len(self.outliers.ranked)
                               else "Nothing to review")
            return
        row = self.queue.current_row()
        path = self.model.image_path(row)
        self.image.show_image(path)
        distance = self.outliers.distance.get(sample)
        where = (f"Sample #{sample} · not among the outliers listed" if distance is None else
                 f"Outlier {row + 1:,} of {self.model.total():,} · sample #{sample} · distance {distance:.3f}"
                 + (" · beyond the threshold" if sample in self.outliers.flagged else ""))
        self.details.show_sample(sample, where, path)
