"""The views of one open project, as tabs."""

from __future__ import annotations

from PySide6.QtWidgets import QTabWidget, QWidget

from auditor.session import ProjectSession
from auditor.thumbnails import ThumbnailCache
from auditor.views.audit_view import AuditView
from auditor.views.browse_view import BrowseView
from auditor.views.data_map import DataMapView
from auditor.views.detector_curves import DetectorCurvesView
from auditor.views.insights_view import InsightsView
from auditor.views.noisy_grid import NoisyGridView
from auditor.views.prob_histograms import ProbHistogramsView
from auditor.views.results_view import ResultsView
from auditor.views.review_view import ReviewView


class ProjectPage(QTabWidget):
    def __init__(self, session: ProjectSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("projectTabs")
        self.setDocumentMode(True)
        self.session = session
        self.thumbnails = ThumbnailCache(session.root, parent=self)
        self.browse = BrowseView(session, self.thumbnails)
        self.review = ReviewView(session, self.thumbnails)
        self.insights = InsightsView(session)
        self.audit = AuditView(session)
        self.results = ResultsView(session)
        self.addTab(self.browse, "Browse")
        self.addTab(self.audit, "Audit")
        self.addTab(self.review, "Review")
        self.addTab(self.insights, "Plots")
        self.data_map = DataMapView(session)  # click or lasso samples, review exactly those (helper "datamap")
        self.addTab(self.data_map, "Data map")
        self.data_map.review_requested.connect(self._review_chosen)
        # Detectors against the truth, p(given label) histograms, the noisy-data grid (helper "curves").
        self.curves = DetectorCurvesView(session)
        self.histograms = ProbHistogramsView(session)
        self.noisy = NoisyGridView(session, self.thumbnails)
        self.addTab(self.curves, "Detector curves")
        self.addTab(self.histograms, "Probabilities")
        self.addTab(self.noisy, "Noisy data")
        self.noisy.sample_activated.connect(self._review_sample)
        self.addTab(self.results, "Retrain && export")
        self.insights.pair_chosen.connect(lambda *_: self.show_review())
        self.browse.sample_activated.connect(self._review_sample)
        self.review.reveal_requested.connect(self.show_review)  # an undo pressed anywhere shows what it undid
        self.currentChanged.connect(self._on_tab_changed)

    def show_review(self) -> None:
        self.setCurrentWidget(self.review)
        self.review.setFocus()

    def _review_sample(self, sample_id: int) -> None:
        # Any sample, flagged or not, opens large in the review, decided by the same keys.
        self.review.open_sample(sample_id)
        self.show_review()

    def _review_chosen(self, ids: object) -> None:
        self.session.set_id_filter(ids)  # type: ignore[arg-type]
        self.show_review()

    def _on_tab_changed(self, index: int) -> None:
        if self.widget(index) is self.review:
            self.review.setFocus()

    def shutdown(self) -> None:
        self.thumbnails.shutdown()
