"""The review loop a fast reviewer can trust: real key events, every decision checked against the
sample it was typed on (issue 11)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from auditor.main_window import MainWindow
from auditor.session import ProjectSession
from auditor.thumbnails import ThumbnailCache
from auditor.views.review_view import ReviewView
from engine.store import Decision, Project

TEN = [f"c{k}" for k in range(10)]
TWELVE = [f"c{k}" for k in range(12)]


def make_project(root: Path, classes: list[str], fake_audit: Callable[..., str], per_class: int = 2) -> Path:
    """Tiny 8x8 PNGs; the first image of every class carries the next class's label (the flagged ones)."""
    images = root / "images"
    images.mkdir(parents=True)
    rows, truth = [], []
    for k in range(len(classes)):
        for i in range(per_class):
            name = f"{k:02d}_{i}.png"
            Image.fromarray(np.full((8, 8, 3), 20 * k, dtype=np.uint8)).save(images / name)
            rows.append({"path": name, "split": "train", "label": (k + 1) % len(classes) if i == 0 else k})
            truth.append(k)
    project = Project.create(root / "project")
    project.add_classes(classes)
    project.add_samples(rows)
    project.set_meta("source", {"kind": "folder", "image_root": str(images)})
    fake_audit(project, np.array(truth), np.array([row["label"] for row in rows]))
    project.close()
    return root / "project"


@pytest.fixture
def open_review(qtbot: QtBot, tmp_path: Path, fake_audit: Callable[..., str]) -> Iterator[Callable[..., ReviewView]]:
    sessions: list[ProjectSession] = []

    def build(classes: list[str]) -> ReviewView:
        session = ProjectSession.open(make_project(tmp_path / f"p{len(sessions)}", classes, fake_audit))
        sessions.append(session)
        view = ReviewView(session, ThumbnailCache(session.root))
        qtbot.addWidget(view)
        view.show()
        view.setFocus()
        return view

    yield build
    for session in sessions:
        session.close()


def decided(view: ReviewView, sample: int) -> tuple[str, int | None] | None:
    decision = view.session.decision(sample)
    return None if decision is None else (decision.action, decision.new_label)


def relabel_to(view: ReviewView, sample: int, label: int) -> tuple[str, int | None]:
    return ("keep", None) if int(view.session.labels[sample]) == label else ("relabel", label)


# ------------------------------------------------------------------------------- item 1: digits
@pytest.mark.parametrize("pace", ["fast", "slow"])
@pytest.mark.parametrize("then", ["R", "Right", "K"])
def test_a_digit_belongs_to_the_sample_it_was_typed_on(qtbot: QtBot, open_review: Callable[..., ReviewView],
                                                       then: str, pace: str) -> None:
    view = open_review(TEN)
    queue = [int(i) for i in view.session.review_queue()]
    first, second, third = queue[:3]
    assert view.current_sample() == first and int(view.session.labels[first]) != 0
    qtbot.keyClick(view, Qt.Key.Key_0)
    if pace == "slow":
        qtbot.waitUntil(lambda: view.session.decision(first) is not None)
    qtbot.keyClick(view, getattr(Qt.Key, f"Key_{then}"))
    # With ten classes no second digit can follow: the 0 is committed at once, for the sample it was typed on.
    assert decided(view, first) == relabel_to(view, first, 0)
    expected_second = {"R": ("remove", None), "K": ("keep", None), "Right": None}[then]
    assert decided(view, second) == expected_second
    assert view.current_sample() == third
    qtbot.wait(800)  # past the old two-digit wait: nothing else may land anywhere
    assert decided(view, first) == relabel_to(view, first, 0)
    assert decided(view, second) == expected_second
    assert decided(view, third) is None


def test_with_more_than_ten_classes_a_pending_number_still_goes_to_its_sample(
        qtbot: QtBot, open_review: Callable[..., ReviewView]) -> None:
    view = open_review(TWELVE)
    queue = [int(i) for i in view.session.review_queue()]
    # "1" may start 10 or 11, so it waits; R arriving first commits it for the first sample, then acts.
    qtbot.keyClick(view, Qt.Key.Key_1)
    assert decided(view, queue[0]) is None
    qtbot.keyClick(view, Qt.Key.Key_R)
    assert decided(view, queue[0]) == relabel_to(view, queue[0], 1)
    assert decided(view, queue[1]) == ("remove", None)
    # Two digits name class 11.
    qtbot.keyClicks(view, "11")
    assert decided(view, queue[2]) == relabel_to(view, queue[2], 11)
    # "0" cannot start a longer number: committed at once. "1" alone commits when the wait ends.
    qtbot.keyClick(view, Qt.Key.Key_0)
    assert decided(view, queue[3]) == relabel_to(view, queue[3], 0)
    qtbot.keyClick(view, Qt.Key.Key_1)
    qtbot.waitUntil(lambda: view.session.decision(queue[4]) is not None)
    assert decided(view, queue[4]) == relabel_to(view, queue[4], 1)
    assert view.current_sample() == queue[5]


def test_digit_keys_and_the_picker_resolve_classes_by_the_same_rule(
        qtbot: QtBot, open_review: Callable[..., ReviewView]) -> None:
    # Classes named by digits that are not their numbers: a typed string equal to a name is that class.
    view = open_review(["2", "0", "1"])
    queue = [int(i) for i in view.session.review_queue()]
    qtbot.keyClick(view, Qt.Key.Key_2)
    assert decided(view, queue[0]) == ("relabel", 0)  # the class named "2" is class 0
    qtbot.keyClicks(view, "/")  # opens the type-ahead picker
    qtbot.keyClicks(view.class_picker, "0")
    qtbot.keyClick(view.class_picker, Qt.Key.Key_Return)
    assert decided(view, queue[1]) == ("relabel", 1)  # the class named "0"


# ------------------------------------------------------------- item 4: resume, next unreviewed
def test_reopening_resumes_at_the_first_unreviewed_suspect(
        qtbot: QtBot, tmp_path: Path, fake_audit: Callable[..., str]) -> None:
    root = make_project(tmp_path, TEN, fake_audit)
    session = ProjectSession.open(root)
    queue = [int(i) for i in session.review_queue()]
    for sample in queue[:3]:
        session.decide(sample, "keep")
    session.decide(queue[5], "remove")
    session.close()

    session = ProjectSession.open(root)
    view = ReviewView(session, ThumbnailCache(session.root))
    qtbot.addWidget(view)
    view.show()
    view.setFocus()
    try:
        assert view.current_sample() == queue[3]
        qtbot.keyClick(view, Qt.Key.Key_Right)  # onto a decided one: the overwrite is announced before any key
        assert view.current_sample() == queue[4]
        qtbot.keyClick(view, Qt.Key.Key_Right)
        assert view.current_sample() == queue[5]
        assert "already reviewed" in view.details.decision_label.text()
        qtbot.keyClick(view, Qt.Key.Key_K)
        assert "changed from removed to kept" in view.details.feedback.text()
        assert view.current_sample() == queue[6]
        qtbot.keyClick(view, Qt.Key.Key_U)  # the next not yet reviewed
        assert view.current_sample() == queue[7]
        qtbot.keyClick(view, Qt.Key.Key_Home)
        qtbot.keyClick(view, Qt.Key.Key_U)  # skips the decided ones
        assert view.current_sample() == queue[3]
    finally:
        session.close()


# --------------------------------------------------------- items 2, 3, 7, 9, 13 in the window
@pytest.fixture
def opened(qtbot: QtBot, window: MainWindow, tmp_path: Path, fake_audit: Callable[..., str]) -> MainWindow:
    assert window.open_project(make_project(tmp_path, TEN, fake_audit))
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    return window


def focused() -> QWidget:
    widget = QApplication.focusWidget()
    assert widget is not None
    return widget


def test_show_all_flagged_gives_the_keys_back_to_the_review(qtbot: QtBot, opened: MainWindow) -> None:
    page, session = opened.page, opened.session
    assert page is not None and session is not None
    review = page.review
    page.show_review()
    session.decide(int(session.review_queue()[-1]), "keep")  # a decision outside the pair below
    session.set_pair_filter((1, 0))
    pair_queue = [int(i) for i in session.review_queue()]
    # One count, one meaning: the status bar and the review header count the same samples.
    assert f"reviewed 0 / {len(pair_queue)} flagged" in opened.counter.text()
    assert review.queue.counter.text() == f"Reviewed 0 / {len(pair_queue)} flagged"
    qtbot.mouseClick(review.queue.clear_filter_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not review.queue.clear_filter_button.isVisible())
    first = review.current_sample()
    assert first is not None
    qtbot.keyClick(focused(), Qt.Key.Key_K)
    assert decided(review, first) == ("keep", None)
    second = review.current_sample()
    assert second is not None and second != first
    qtbot.keyClick(focused(), Qt.Key.Key_Return)
    assert session.decision(second) is not None
    assert review.queue.counter.text() == f"Reviewed 3 / {len(session.review_queue())} flagged"
    assert f"reviewed 3 / {len(session.review_queue())} flagged" in opened.counter.text()


def test_undo_on_browse_says_what_it_undid_and_shows_it(qtbot: QtBot, opened: MainWindow) -> None:
    page, session = opened.page, opened.session
    assert page is not None and session is not None
    page.show_review()
    sample = page.review.current_sample()
    assert sample is not None
    qtbot.keyClick(focused(), Qt.Key.Key_R)
    page.setCurrentWidget(page.browse)
    page.browse.grid.setFocus()
    qtbot.keyClick(focused(), Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: session.decision(sample) is None)
    assert page.currentWidget() is page.review and page.review.current_sample() == sample
    assert f"Undid: sample #{sample} was removed, now not reviewed" in opened.statusBar().currentMessage()


def test_browse_opens_any_sample_and_the_same_keys_decide_it(qtbot: QtBot, opened: MainWindow) -> None:
    page, session = opened.page, opened.session
    assert page is not None and session is not None
    unflagged = next(i for i in range(session.num_samples) if i not in set(session.review_queue().tolist()))
    page.setCurrentWidget(page.browse)
    grid = page.browse.grid
    index = page.browse.model.index(page.browse.model.row_of(unflagged))
    grid.scrollTo(index)
    centre = grid.visualRect(index).center()
    qtbot.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=centre)  # a double click starts with a press
    qtbot.mouseDClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    qtbot.waitUntil(lambda: page.currentWidget() is page.review)
    assert page.review.current_sample() == unflagged
    assert "not flagged" in page.review.details.position.text()
    qtbot.keyClick(focused(), Qt.Key.Key_3)
    assert decided(page.review, unflagged) == relabel_to(page.review, unflagged, 3)
    qtbot.mouseClick(page.review.queue.clear_filter_button, Qt.MouseButton.LeftButton)  # back to the flagged queue
    assert page.review.model.total() == len(session.review_queue())


def test_bulk_accept_for_one_class_pair_is_counted_before_and_one_undo_after(
        qtbot: QtBot, opened: MainWindow) -> None:
    page, session = opened.page, opened.session
    assert page is not None and session is not None and session.audit is not None
    page.show_review()
    session.decide(int(session.review_queue()[0]), "keep")  # reviewed already: left as it is
    dialog = page.review.open_bulk_dialog()
    assert dialog is not None
    expected = [int(i) for i in session.review_queue()[1:]]
    assert dialog.summary.text() == f"{len(expected)} samples: {len(expected)} relabelled to the suggestion"
    assert dialog.apply_button.text() == f"Apply to {len(expected)} samples"
    dialog.given.setCurrentIndex(1 + 2)  # given class c2 only: one flagged sample (truth c1)
    assert dialog.apply_button.text() == "Apply to 1 sample"
    dialog.given.setCurrentIndex(0)
    qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    for sample in expected:
        assert session.decision(sample) == Decision(sample, "relabel", int(session.audit.suggested[sample]), "bulk")
    assert "Bulk:" in opened.statusBar().currentMessage()
    qtbot.keyClick(focused(), Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert all(session.decision(sample) is None for sample in expected)
    assert session.reviewed_count == 1
    assert f"Undid a bulk action: {len(expected)} decisions" in opened.statusBar().currentMessage()


# ------------------------------------------------------------------ items 5, 6: say what numbers are
def test_the_audit_summary_names_model_epochs_and_what_its_accuracy_measured() -> None:
    from auditor.views.audit_view import audit_summary

    spec = {"kind": "audit", "train": {"model": "small_cnn", "epochs": 4}, "folds": 3, "detectors": ["cl"]}
    summary = {"heldout_accuracy": 0.805, "heldout_accuracy_measured_against": "truth"}
    text = audit_summary(spec, summary, 45, "cl", "run-1")
    assert "?" not in text
    assert "small_cnn, 4 epochs, 3 folds; 45 samples flagged by cl" in text
    assert "fold models (each trained on 2/3 of the training split" in text and "80.5% against truth" in text


# --------------------------------------------------------------------- item 8: captions that match
def test_plots_say_which_is_which(qtbot: QtBot, open_review: Callable[..., ReviewView]) -> None:
    from auditor.views.insights_view import InsightsView

    session = open_review(TEN).session
    view = InsightsView(session)
    qtbot.addWidget(view)
    audit = session.audit
    assert audit is not None
    low = float(audit.score[audit.flagged].min())
    caption = view.histogram.caption.text()
    assert "not by a score cut" in caption and f"from {low:.3f} up" in caption
    caption = view.matrix.caption.text()
    assert caption.startswith("Cells: cl's estimated rates") and "the hottest is" in caption  # cl ranks here
    assert "Most samples: given" in caption and "(1 sample; rate" in caption


# ------------------------------------------------------------- item 10: the CSV dialog says it in words
def test_the_csv_dialog_stops_a_missing_label_column_in_words(qtbot: QtBot, tmp_path: Path) -> None:
    from PySide6.QtWidgets import QDialogButtonBox

    from auditor.views.csv_dialog import CsvDialog

    table = tmp_path / "photos.csv"
    table.write_text("path,photographer\na.png,ann\nb.png,bob\n")
    dialog = CsvDialog(table)
    qtbot.addWidget(dialog)
    create = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert dialog.path_column.currentText() == "path"
    assert dialog.label_column.currentText() != "path"  # never silently the path column
    assert not create.isEnabled()
    assert "No column of photos.csv looks like a label" in dialog.problem.text()
    dialog.label_column.setCurrentText("path")
    assert not create.isEnabled()
    assert "label and the image path are both the column “path”" in dialog.problem.text()
    assert "--" not in dialog.problem.text()  # words, not flag names
    dialog.label_column.setCurrentText("photographer")
    assert create.isEnabled() and dialog.problem.text() == ""
    args = dialog.init_args()
    assert args[args.index("--label-column") + 1] == "photographer"


# ------------------------------------------------------------------------ item 12: cosmetic, but seen
def test_job_view_after_cancel_progress_per_stage_and_an_honest_eta(qtbot: QtBot) -> None:
    from auditor.views.job_view import JobView
    from engine.events import Progress

    view = JobView()
    qtbot.addWidget(view)
    view._on_progress(Progress(stage="cleaned", done=48, total=48, eta_s=0.0))
    view._on_progress(Progress(stage="original", done=1, total=48, eta_s=222.0))
    assert view.progress_bar.format().startswith("original: 1 / 48")
    assert view.eta.text() == "ETA …"  # 3:42 from the first batch of a 7 s stage is start-up cost
    view._on_progress(Progress(stage="caching", done=10, total=100, eta_s=0.0))
    assert view.eta.text() == "ETA …"  # never "0:00" while work is left
    view._on_progress(Progress(stage="original", done=24, total=48, eta_s=3.5))
    assert view.eta.text() == "ETA 0:04"
    view._cancel()
    assert view.cancel_button.text() == "Cancelling…"
    view._on_finished("cancelled")
    assert view.cancel_button.text() == "Cancel"


def test_retrain_curves_get_one_colour_per_model_and_fresh_axes() -> None:
    from auditor.views.curves import TrainingCurves
    from engine.events import Metric

    curves = TrainingCurves()
    for stage in ("cleaned", "original"):
        for epoch in range(2):
            curves.add_metric(Metric(stage=stage, epoch=epoch, values={"loss": 1.0 - epoch / 4}))
    colours = {curve.opts["pen"].color().name() for curve, _xs, _ys in curves._series.values()}
    assert len(colours) == 2
    curves.loss_plot.getPlotItem().setXRange(0, 50)  # a long, killed run's axes
    curves.clear()
    assert curves.loss_plot.getPlotItem().getViewBox().autoRangeEnabled()[0]


def test_the_curves_open_on_the_latest_finished_run(qtbot: QtBot, open_review: Callable[..., ReviewView]) -> None:
    from auditor.views.insights_view import RunCurvesView

    session = open_review(TEN).session
    project = session.project
    for status in ("ok", "cancelled"):
        run = project.new_run("crossval", {"folds": 2})
        (run.folder / "events.jsonl").write_text("")
        project.finish_run(run.id, status, {})
    view = RunCurvesView(session)
    qtbot.addWidget(view)
    assert view.run_picker.currentText().endswith(" · ok") and view.run_picker.currentIndex() > 0


def test_a_new_browse_filter_starts_at_the_top(qtbot: QtBot, open_review: Callable[..., ReviewView]) -> None:
    from auditor.views.browse_view import BrowseView

    review = open_review(TWELVE)
    view = BrowseView(review.session, ThumbnailCache(review.session.root))
    qtbot.addWidget(view)
    view.resize(260, 200)
    view.show()
    bar = view.grid.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0)
    bar.setValue(bar.maximum())
    assert bar.value() > 0
    # Every sample still matches: the list is as long as before. The search's own refresh (after its pause
    # for more typing) is waited for, so that it never fires once this test's project is closed.
    view.search.setText(".png")
    qtbot.waitUntil(lambda: bar.value() == 0)

