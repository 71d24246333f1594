"""The views of one open project, as tabs."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QFrame, QScrollArea, QTabWidget, QWidget

from auditor.engine_process import EngineProcess
from auditor.session import ProjectSession
from auditor.thumbnails import ThumbnailCache
from auditor.views.audit_view import AuditView
from auditor.views.browse_view import BrowseView
from auditor.views.data_map import DataMapView
from auditor.views.detector_curves import DetectorCurvesView
from auditor.views.duplicates_view import DuplicatesView
from auditor.views.insights_view import InsightsView
from auditor.views.noisy_grid import NoisyGridView
from auditor.views.outliers_view import OutliersView
from auditor.views.prob_histograms import ProbHistogramsView
from auditor.views.results_view import ResultsView
from auditor.views.review_view import ReviewView

# Their progress comes to the front.
TRAINING_COMMANDS = ("audit", "retrain", "crossval", "compare", "import-predictions", "embed")
# A finished one makes a new audit the current one (an import of predictions records an audit run).
NEW_AUDIT_COMMANDS = ("audit", "finetune-detector", "import-predictions")


class PageScroll(QScrollArea):
    """Holds one view: the view fills the tab exactly, and scrolls only when the tab is below the view's minimum
    size. (A resizable QScrollArea would size a view with wrapped text to its preferred height, and scroll.)"""

    def __init__(self, view: QWidget) -> None:
        super().__init__()
        self.setObjectName("pageScroll")
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setWidgetResizable(False)
        self.setWidget(view)
        self.setFocusProxy(view)

    def fit(self) -> None:
        view = self.widget()
        if view is None:
            return
        minimum = view.minimumSizeHint().expandedTo(view.minimumSize())
        room = self.maximumViewportSize()  # the viewport without scroll bars
        width, height = room.width(), room.height()
        if minimum.width() > width:  # a horizontal scroll bar takes height
            height -= self.horizontalScrollBar().sizeHint().height()
        if minimum.height() > height:  # a vertical one takes width
            width -= self.verticalScrollBar().sizeHint().width()
            if minimum.width() > width and minimum.width() <= room.width():
                height -= self.horizontalScrollBar().sizeHint().height()
        view.resize(max(width, minimum.width()), max(height, minimum.height()))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.fit()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.fit()  # the view's minimum size changed (more detectors, a longer text)
        return super().eventFilter(watched, event)


class ProjectPage(QTabWidget):
    """The tabs of one project. Each view sits in its own :class:`PageScroll`: a view whose content needs more room
    (six detectors' curves, a long retrain result) scrolls instead of growing the window past the screen.

    ``widget``, ``currentWidget``, ``setCurrentWidget`` and ``indexOf`` speak of the views, not their scroll areas.
    """

    def addTab(self, view: QWidget, title: str) -> int:  # type: ignore[override]
        return super().addTab(PageScroll(view), title)

    @staticmethod
    def _view(scroll: QWidget | None) -> QWidget | None:
        return scroll.widget() if isinstance(scroll, QScrollArea) else scroll

    def widget(self, index: int) -> QWidget | None:
        return self._view(super().widget(index))

    def currentWidget(self) -> QWidget:
        current = super().currentWidget()
        return self._view(current) or current

    def indexOf(self, view: QWidget) -> int:
        return next((index for index in range(self.count()) if self.widget(index) is view), -1)

    def setCurrentWidget(self, view: QWidget) -> None:
        index = self.indexOf(view)
        if index >= 0:
            self.setCurrentIndex(index)

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
        # The dataset seen through embeddings and hashes: its copies and its odd ones out (issue 21).
        self.duplicates = DuplicatesView(session, self.thumbnails)
        self.outliers = OutliersView(session, self.thumbnails)
        self.addTab(self.duplicates, "Duplicates")
        self.addTab(self.outliers, "Outliers")
        self.outliers.reveal_requested.connect(lambda: self.setCurrentWidget(self.outliers))
        self.addTab(self.results, "Retrain && export")
        self.insights.pair_chosen.connect(lambda *_: self.show_review())
        self.browse.sample_activated.connect(self._review_sample)
        self.review.reveal_requested.connect(self.show_review)  # an undo pressed anywhere shows what it undid
        self.currentChanged.connect(self._on_tab_changed)

    # ------------------------------------------------------------------ jobs
    def follow_job(self, command: str, process: EngineProcess) -> None:
        """Show a job's progress; a training job brings its progress to the front."""
        self.audit.follow(command, process)
        if command in TRAINING_COMMANDS:
            self.setCurrentWidget(self.audit)

    def show_job_result(self, command: str, status: str) -> None:
        """Where a finished job's result is: a new audit's suspects, a retrain's or a comparison's figures."""
        if status != "ok":
            return
        if command in NEW_AUDIT_COMMANDS:
            self.show_review()
        elif command in ("retrain", "compare"):
            self.setCurrentWidget(self.results)

    def show_export(self, message: str) -> None:
        self.results.show_export(message)
        if self.currentWidget() is self.review:  # Ctrl+E mid-review: the keys stay there
            self.show_review()
        else:
            self.setCurrentWidget(self.results)

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
        view = self.widget(index)
        if view in (self.review, self.outliers, self.duplicates):
            view.setFocus()

    def undo(self) -> None:
        """Undo where the person is: the Duplicates and Outliers views show what it undid there; else the review."""
        self._history_view().undo()

    def redo(self) -> None:
        self._history_view().redo()

    def _history_view(self) -> ReviewView | DuplicatesView:
        current = self.currentWidget()
        return current if isinstance(current, (OutliersView, DuplicatesView)) else self.review

    def shutdown(self) -> None:
        self.thumbnails.shutdown()
