"""Issue 19, first use as a new user found it: one Enter in the class picker, skipped files shown,
a window that never resizes itself, one detector per plot, and the smaller slips (items 6, 13-17)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget
from pytestqt.qtbot import QtBot

from auditor.main_window import MainWindow
from auditor.session import ProjectSession
from auditor.thumbnails import ThumbnailCache
from auditor.views.browse_view import BrowseView
from auditor.views.insights_view import InsightsView
from auditor.views.review_view import ReviewView
from engine.data.importing import import_folder
from engine.stats import paired_difference
from engine.store import Project
from tests.gui.conftest import make_image_project


@pytest.fixture
def session(image_project: Path) -> Iterator[ProjectSession]:
    opened = ProjectSession.open(image_project)
    yield opened
    opened.close()


def active_review(qtbot: QtBot, session: ProjectSession) -> ReviewView:
    """A review with the keyboard, as on a desktop: the completer's popup takes the keys while it is open."""
    view = ReviewView(session, ThumbnailCache(session.root))
    qtbot.addWidget(view)
    view.show()
    view.activateWindow()
    qtbot.waitUntil(view.isActiveWindow)
    view.setFocus()
    return view


def keys_target(view: ReviewView) -> QWidget:
    """Where a real key press lands: the open completions, else the focused widget."""
    widget = QApplication.activePopupWidget() or QApplication.focusWidget()
    assert widget is not None
    return widget


# ----------------------------------------------------------------- item 14: one Enter commits
@pytest.mark.parametrize(("typed", "highlight", "expected"), [("dog", False, 1), ("fo", False, 2), ("c", True, 0)])
def test_one_enter_in_the_class_picker_commits_the_class(qtbot: QtBot, session: ProjectSession, typed: str,
                                                         highlight: bool, expected: int) -> None:
    view = active_review(qtbot, session)
    sample = view.current_sample()
    assert sample is not None
    qtbot.keyClicks(view, typed[0])  # type-ahead opens the picker and its completions
    assert view.class_picker.completer().popup().isVisible()
    for letter in typed[1:]:
        qtbot.keyClicks(keys_target(view), letter)
    if highlight:
        qtbot.keyClick(keys_target(view), Qt.Key.Key_Down)
    qtbot.keyClick(keys_target(view), Qt.Key.Key_Return)  # once
    decision = session.decision(sample)
    assert decision is not None
    given = int(session.labels[sample])
    assert (decision.action, decision.new_label) == (("relabel", expected) if given != expected else ("keep", None))
    assert not view.class_picker.completer().popup().isVisible() and view.class_picker.text() == ""
    assert view.hasFocus()  # the next key decides the next sample


# ----------------------------------------------------------------- item 15: skipped files are shown
def folder_with_bad_files(root: Path) -> Path:
    """15 files in 3 class folders: 12 images, a truncated JPEG, random bytes named .png, and a .txt."""
    rng = np.random.default_rng(0)
    images = root / "images"
    for name in ("cat", "dog", "fox"):
        (images / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(images / name / f"{i}.png")
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(images / "cat" / "cut.jpg")
    whole = (images / "cat" / "cut.jpg").read_bytes()
    (images / "cat" / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    (images / "dog" / "noise.png").write_bytes(rng.integers(0, 255, 500, dtype=np.uint8).tobytes())
    (images / "fox" / "notes.txt").write_text("not an image")
    return images


@pytest.fixture
def skipped_project(tmp_path: Path) -> Path:
    import_folder(tmp_path / "project", folder_with_bad_files(tmp_path), test_fraction=0.0, folds=2).close()
    return tmp_path / "project"


def test_browse_lists_the_skipped_files_with_their_reasons(qtbot: QtBot, skipped_project: Path) -> None:
    session = ProjectSession.open(skipped_project)
    view = BrowseView(session, ThumbnailCache(session.root))
    try:
        view.show()
        notice = view.skipped
        assert notice.isVisible() and session.num_samples == 12
        assert "3 of 15 files were skipped at import" in notice.summary.text()
        assert not notice.list.isVisible()
        qtbot.mouseClick(notice.toggle, Qt.MouseButton.LeftButton)
        assert notice.list.isVisible()
        rows = [notice.list.item(i).text() for i in range(notice.list.count())]
        assert [row.split(" — ")[0] for row in rows] == ["cat/cut.jpg", "dog/noise.png", "fox/notes.txt"]
        assert all(len(row.split(" — ")[1]) > 5 for row in rows)  # each with its reason
    finally:
        view.close()
        view.deleteLater()
        QApplication.processEvents()
        session.close()


def test_browse_says_nothing_when_nothing_was_skipped(qtbot: QtBot, session: ProjectSession) -> None:
    view = BrowseView(session, ThumbnailCache(session.root))
    qtbot.addWidget(view)
    view.show()
    assert not view.skipped.isVisible()


def test_a_new_project_tells_its_skipped_files_where_it_opens(window: MainWindow, skipped_project: Path) -> None:
    assert window.open_new_project(skipped_project)
    assert "3 of 15 files were skipped at import" in window.last_message
    box = window.findChildren(QMessageBox)[-1]
    for path in ("cat/cut.jpg", "dog/noise.png", "fox/notes.txt"):
        assert path in box.detailedText()
    window.close_project()
    assert window.open_project(skipped_project)  # reopened later: the status bar says it, Browse lists them
    assert "3 of 15 files were skipped" in window.statusBar().currentMessage()
    assert window.page is not None and window.page.currentWidget() is window.page.browse


# ----------------------------------------------------------------- item 16: the window never grows itself
DETECTORS = ("ensemble", "cl", "aum", "cartography", "ocl", "td_lstm")


def crowded_project(root: Path) -> Path:
    """An audit by six detectors (against a known truth) and a retrain whose result is long."""
    path = make_image_project(root, per_class=12, scored=False)
    with Project.open(path) as project:
        table = project.sample_table()
        labels, truth = np.asarray(table.given_label), np.asarray(table.true_label)
        run = project.new_run("audit", {"detectors": list(DETECTORS), "epochs": 1})
        rng = np.random.default_rng(0)
        for name in DETECTORS:
            score = rng.random(len(labels)) * 0.5 + 0.5 * (labels != truth)
            project.save_scores(run.id, name, score, np.where(labels != truth, truth, labels), score > 0.6)
        project.finish_run(run.id, "ok", {})
        cleaned, original = [0.8412, 0.8523, 0.8634], [0.8012, 0.8023, 0.8134]
        difference = paired_difference(cleaned, original)
        retrain = project.new_run("retrain", {})
        project.finish_run(retrain.id, "ok", {
            "accuracy_cleaned": float(np.mean(cleaned)), "accuracy_original": float(np.mean(original)),
            "accuracy_cleaned_std": 0.01, "accuracy_original_std": 0.02, "seeds": [0, 1, 2],
            "difference": difference.to_dict(), "verdict": difference.verdict,
            "method": {"name": "meta_mixup_with_a_long_name", "options": {}}, "n_train_cleaned": 1438,
            "n_train_original": 1438, "n_removed": 12, "n_relabeled": 293, "n_eval": 359,
            "accuracy_original_measured_against": "the_given_labels_of_the_held_out_split"})
    return path


def test_no_view_resizes_the_window(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    window.resize(1280, 720)
    qtbot.waitUntil(lambda: window.size().toTuple() == (1280, 720))
    assert window.open_project(crowded_project(tmp_path))
    page = window.page
    assert page is not None
    for index in range(page.count()):  # every view, the six detectors' curves and the long result included
        page.setCurrentIndex(index)
        qtbot.wait(20)
        assert window.size().toTuple() == (1280, 720), page.tabText(index)
    assert page.currentWidget() is page.results and page.curves.table.rowCount() == len(DETECTORS)
    for card in (page.results.before, page.results.after, page.results.gain):
        assert card.detail.wordWrap() and card.geometry().right() < 1280
    window.resize(900, 600)  # smaller than a view's minimum: the view scrolls, the window stays as asked
    qtbot.waitUntil(lambda: window.size().toTuple() == (900, 600))
    page.setCurrentWidget(page.review)
    qtbot.wait(20)
    assert window.size().toTuple() == (900, 600) and page.currentWidget() is page.review


# ----------------------------------------------------------------- item 6: one detector per view
def two_detector_audit(root: Path) -> Path:
    """The ensemble ranks; cl's estimated noise matrix (saved by the run) puts its hottest cell on a pair
    that the ensemble never suggests: fox given, cat suggested."""
    path = make_image_project(root, scored=False)
    with Project.open(path) as project:
        table = project.sample_table()
        labels, truth = np.asarray(table.given_label), np.asarray(table.true_label)
        train = np.asarray(table.split) == "train"
        noisy = (labels != truth) & train
        run = project.new_run("audit", {"detectors": ["ensemble", "cl"], "epochs": 1})
        score = np.where(noisy, 0.9, 0.1) * train
        project.save_scores(run.id, "ensemble", score, np.where(noisy, truth, labels), noisy)
        cl_suggested = np.where(train & (labels == 2), 0, labels)  # cl: every "fox" is a cat
        project.save_scores(run.id, "cl", score, cl_suggested, cl_suggested != labels)
        estimated = np.full((3, 3), 0.05) + np.eye(3) * 0.5
        estimated[2, 0] = 0.9  # the hottest cell: given fox, truly cat
        np.save(run.folder / "noise_matrix.npy", estimated)
        project.finish_run(run.id, "ok", {})
    return path


def test_the_noise_matrix_shows_and_filters_by_the_ranking_detector(qtbot: QtBot, tmp_path: Path) -> None:
    session = ProjectSession.open(two_detector_audit(tmp_path))
    try:
        view = InsightsView(session)
        qtbot.addWidget(view)
        audit = session.audit
        assert audit is not None and audit.detector == "ensemble"
        matrix = view.matrix
        assert "ensemble" in matrix.title.text() and "ensemble" in matrix.caption.text()
        rates = matrix.matrix.astype(float).copy()
        np.fill_diagonal(rates, 0.0)
        given, suggested = (int(v) for v in np.unravel_index(int(np.argmax(rates)), rates.shape))
        matrix.choose(given, suggested)  # a click on the hottest cell
        queue = session.review_queue()
        # Its samples are those the matrix counted for the cell, and the review's detector suggested exactly that.
        assert len(queue) == int(matrix.counts[given, suggested]) > 0
        assert all(int(audit.suggested[i]) == suggested and int(session.labels[i]) == given for i in queue)
        for i in range(3):  # every cell shown has samples behind it: no rate from another detector
            for j in range(3):
                assert (matrix.matrix[i, j] > 0) == (matrix.counts[i, j] > 0)
    finally:
        session.close()


# ----------------------------------------------------------------- item 17: Plots counts as Review does
def test_the_score_caption_counts_audited_samples_like_the_review(qtbot: QtBot, session: ProjectSession) -> None:
    view = InsightsView(session)
    qtbot.addWidget(view)
    train = int(session.project.execute("SELECT COUNT(*) FROM samples WHERE split = 'train'")[0][0])
    assert train < session.num_samples  # the project holds held-out samples
    assert f"of {train:,} audited samples" in view.histogram.caption.text()
    session.set_threshold(0.0)  # every audited sample, and not one held-out sample
    assert f"{train:,} of {train:,} audited samples flagged" in view.histogram.caption.text()
    assert len(session.review_queue()) == train


def test_the_retrain_dialog_keeps_its_own_epochs(window: MainWindow, image_project: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from auditor.views.audit_dialog import TrainOptions
    from auditor.views.retrain_dialog import RetrainDialog

    assert window.open_project(image_project)
    window.launcher.train_options = TrainOptions(epochs=4, folds=5)  # what the last audit dialog chose (K-fold epochs)
    shown: list[int] = []

    def run_dialog(dialog: RetrainDialog) -> int:
        shown.append(dialog.epochs.value())
        dialog.epochs.setValue(7)
        return 1

    started: list[list[str]] = []
    monkeypatch.setattr(RetrainDialog, "exec", run_dialog)
    monkeypatch.setattr(window.launcher, "start_retrain", lambda options: started.append(options.args()))
    window.launcher.choose_retrain()
    assert shown == [TrainOptions().epochs]  # its own default, not the audit's 4
    assert started[0][started[0].index("--epochs") + 1] == "7"
    assert window.launcher.train_options.epochs == 4  # and the audit's setting is not the retrain's either
    window.launcher.choose_retrain()
    assert shown[-1] == 7  # the retrain's own last choice


def test_a_failed_csv_import_reopens_the_dialog_with_its_choices(qtbot: QtBot, window: MainWindow,
                                                                tmp_path: Path) -> None:
    from auditor.views.csv_dialog import CsvDialog

    table = tmp_path / "labels.csv"
    table.write_text("file,annotator,truth,note\nmissing/a.png,cat,cat,x\nmissing/b.png,dog,dog,y\n")
    first = window.maker.open_csv_dialog(table)
    first.label_column.setCurrentText("annotator")
    first.truth_column.setCurrentText("truth")
    first.image_root.setText(str(tmp_path / "nowhere"))
    chosen = first.init_args()
    first.accept()  # the import starts, and fails: no image can be read
    qtbot.waitUntil(lambda: any(d.isVisible() for d in window.findChildren(CsvDialog)), timeout=60_000)
    again = next(d for d in window.findChildren(CsvDialog) if d.isVisible())
    assert again is not first and again.init_args() == chosen
    assert window.last_message  # the engine's reason, told above the dialog
    assert window.session is None


def test_focus_stays_with_the_review_through_an_export(qtbot: QtBot, window: MainWindow, image_project: Path,
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtWidgets import QFileDialog

    assert window.open_project(image_project)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    page, session = window.page, window.session
    assert page is not None and session is not None
    page.show_review()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *args, **kwargs: (str(tmp_path / "out.csv"), ""))
    with qtbot.waitSignal(window.job_finished, timeout=60_000):
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
    assert (tmp_path / "out.csv").is_file()
    assert page.currentWidget() is page.review
    sample = page.review.current_sample()
    assert sample is not None
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_K)  # the next key still decides
    decision = session.decision(sample)
    assert decision is not None and decision.action == "keep"
    assert "· 1 decision in all" in window.counter.text()  # not "1 decisions"

