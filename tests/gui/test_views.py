"""Each view built on its own with a small real project (napari's habit: model + view, no main window)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QImage
from pytestqt.qtbot import QtBot

from auditor.session import ProjectSession
from auditor.thumbnails import ThumbnailCache, image_identity, make_thumbnail, thumb_path
from auditor.views.browse_view import BrowseView
from auditor.views.insights_view import InsightsView
from auditor.views.review_view import ReviewView
from engine.events import EventSink
from engine.store import Project


@pytest.fixture
def session(image_project: Path) -> Iterator[ProjectSession]:
    opened = ProjectSession.open(image_project)
    yield opened
    opened.close()


def wait_thumbnails(qtbot: QtBot, cache: ThumbnailCache) -> None:
    # Made off the GUI thread, handed over through the event loop, then announced in a batch.
    qtbot.waitUntil(cache.settled, timeout=10_000)


def test_browse_filters_by_class_and_path(qtbot: QtBot, session: ProjectSession) -> None:
    cache = ThumbnailCache(session.root)
    view = BrowseView(session, cache)
    qtbot.addWidget(view)
    assert view.model.total() == 24 and view.count_label.text() == "24 of 24 samples"
    view.class_filter.setCurrentIndex(2)  # "dog"
    dog_ids = np.flatnonzero(session.labels == 1)
    assert list(view.model.ids()) == list(dog_ids)
    view.class_filter.setCurrentIndex(0)
    view.search.setText("fox_00")
    qtbot.waitUntil(lambda: view.model.total() == 8, timeout=2000)
    assert "8 of 24" in view.count_label.text()


def test_thumbnails_are_made_off_thread_and_cached_on_disk(qtbot: QtBot, session: ProjectSession) -> None:
    cache = ThumbnailCache(session.root)
    view = BrowseView(session, cache)
    qtbot.addWidget(view)
    view.resize(700, 500)
    view.show()
    source = view.model.image_path(0)
    cached = thumb_path(session.root, 0, image_identity(source) or "")
    qtbot.waitUntil(cached.is_file, timeout=5000)
    wait_thumbnails(qtbot, cache)
    assert cache.get(0, source) is not None
    # A second cache (a new session) reads the PNG from disk, without decoding the image again.
    cached.write_bytes(b"")  # an unreadable cache file is made again from the image
    again = ThumbnailCache(session.root)
    assert again.get(0, source) is None  # scheduled
    wait_thumbnails(qtbot, again)
    pixmap = again.get(0, source)
    assert pixmap is not None and pixmap.width() == 96 and cached.stat().st_size > 0


def test_unreadable_image_is_marked(qtbot: QtBot, session: ProjectSession) -> None:
    path = session.project.sample_image_path(5)
    path.write_bytes(b"not an image")
    cache = ThumbnailCache(session.root)
    assert cache.get(5, path) is None
    wait_thumbnails(qtbot, cache)
    assert cache.failed(5, path)
    view = ReviewView(session, cache)
    qtbot.addWidget(view)
    view.image.show_image(path)
    assert "cannot be read" in view.image.text()


def test_paged_model_grows_as_the_view_scrolls(qtbot: QtBot, tmp_path: Path,
                                               make_project: Callable[..., Path]) -> None:
    root = make_project(tmp_path, per_class=1000, scored=False)
    opened = ProjectSession.open(root)
    view = BrowseView(opened, ThumbnailCache(opened.root))
    qtbot.addWidget(view)
    model = view.model
    assert model.total() == 3000 and model.rowCount() == 2048
    assert model.canFetchMore(model.index(0).parent())
    model.fetchMore(model.index(0).parent())
    assert model.rowCount() == 3000
    assert model.image_path(2999).name == "fox_999.png"
    opened.close()


def test_review_keyboard(qtbot: QtBot, session: ProjectSession) -> None:
    view = ReviewView(session, ThumbnailCache(session.root))
    qtbot.addWidget(view)
    view.show()
    view.setFocus()
    queue = [int(i) for i in session.review_queue()]
    assert len(queue) == 9 and view.current_sample() == queue[0]
    assert session.audit is not None
    qtbot.keyClick(view, Qt.Key.Key_A)  # accept: the fake audit suggests the true class
    assert session.decision(queue[0]).new_label == int(session.audit.suggested[queue[0]])  # type: ignore[union-attr]
    qtbot.keyClick(view, Qt.Key.Key_Left)
    assert view.current_sample() == queue[0]
    qtbot.keyClick(view, Qt.Key.Key_J)
    qtbot.keyClick(view, Qt.Key.Key_R)
    assert session.decision(queue[1]).action == "remove"  # type: ignore[union-attr]
    # Type-ahead: a letter opens the class picker with it; the rest of the name is typed there; Enter relabels.
    qtbot.keyClicks(view, "f")
    assert view.class_picker.text() == "f"
    qtbot.keyClicks(view.class_picker, "ox")
    assert view.class_picker.text() == "fox"
    qtbot.keyClick(view.class_picker, Qt.Key.Key_Return)
    target = queue[2]
    expected = ("relabel", 2) if session.labels[target] != 2 else ("keep", None)
    decision = session.decision(target)
    assert decision is not None and (decision.action, decision.new_label) == expected
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert session.decision(target) is None and view.current_sample() == target
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert session.decision(target) is not None
    assert view.queue.counter.text() == "Reviewed 3 / 9 flagged"
    with Project.open(session.root) as project:  # committed, seen from another connection
        assert set(project.decisions()) == {queue[0], queue[1], target}


def test_threshold_and_noise_matrix_drive_the_review(qtbot: QtBot, session: ProjectSession) -> None:
    insights = InsightsView(session)
    review = ReviewView(session, ThumbnailCache(session.root))
    qtbot.addWidget(insights)
    qtbot.addWidget(review)
    insights.resize(1000, 700)
    insights.show()
    assert review.model.total() == 9
    line = insights.histogram.line
    line.setValue(0.2)
    line.sigPositionChangeFinished.emit(line)
    assert session.threshold == pytest.approx(0.2)
    audit = session.audit
    assert audit is not None and audit.audited is not None
    # A score cut flags audited samples only: held-out ones are never reviewed (issue 19).
    assert review.model.total() == int(((audit.score >= 0.2) & audit.audited).sum()) > 9
    assert "flagged at score ≥ 0.200" in insights.histogram.caption.text()
    insights.histogram.reset_button.click()  # back to the engine's own flagged set
    assert session.threshold is None and review.model.total() == 9
    assert not insights.histogram.reset_button.isVisibleTo(insights)

    matrix = insights.matrix
    # Cell (given dog=1, suggested cat=0): click its centre in scene coordinates.
    centre = matrix.plot.getPlotItem().vb.mapViewToScene(QPointF(0.5, 1.5))
    assert matrix.cell_at(centre) == (1, 0)
    with qtbot.waitSignal(matrix.pair_chosen):
        matrix.choose(1, 0)
    ids = review.model.ids()
    assert len(ids) == 3 and all(session.labels[i] == 1 for i in ids)
    assert "dog" in review.queue.filter_label.text() and review.queue.clear_filter_button.isVisibleTo(review)
    review.queue.clear_filter_button.click()
    assert session.pair_filter is None and review.model.total() == 9


def test_runs_made_elsewhere_appear(qtbot: QtBot, session: ProjectSession, tmp_path: Path) -> None:
    # A run folder made on another machine: spec, events and summary, no database row.
    folder = session.root / "runs" / "20260101-000000-crossval-cluster"
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(json.dumps({"kind": "crossval", "epochs": 2}))
    sink = EventSink(run_id=folder.name, log_path=folder / "events.jsonl")
    for epoch in range(2):
        sink.metric("train", {"loss": 1.0 - 0.3 * epoch, "acc": 0.5 + 0.2 * epoch}, fold=0, epoch=epoch)
    sink.done("ok")
    sink.close()
    (folder / "summary.json").write_text(json.dumps({"accuracy": 0.8}))
    insights = InsightsView(session)
    qtbot.addWidget(insights)
    picker = insights.runs.run_picker
    names = [picker.itemText(i) for i in range(picker.count())]
    assert any("cluster" in name for name in names)
    picker.setCurrentIndex(next(i for i, name in enumerate(names) if "cluster" in name))
    assert insights.runs.curves.point_count() == 4


def test_gui_never_imports_the_heavy_engine(tmp_path: Path) -> None:
    code = (
        "import sys, auditor.__main__, auditor.main_window, auditor.views.project_page\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'torchvision', 'cleanlab', 'sklearn'})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def _pixels(image: QImage) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a QImage."""
    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    row = rgb.bytesPerLine()
    data = np.frombuffer(rgb.constBits(), dtype=np.uint8, count=row * rgb.height()).reshape(rgb.height(), row)
    return data[:, :rgb.width() * 3].reshape(rgb.height(), rgb.width(), 3).copy()


def test_project_copy_keeps_working(qtbot: QtBot, image_project: Path, tmp_path: Path) -> None:
    # The original, viewed once, has its thumbnails cached inside the project folder.
    original = ProjectSession.open(image_project)
    first = BrowseView(original, ThumbnailCache(original.root))
    qtbot.addWidget(first)
    first.resize(700, 500)
    first.show()
    qtbot.waitUntil(lambda: all(first.model.tile(row).pixmap is not None for row in range(24)), timeout=10_000)
    wait_thumbnails(qtbot, first.model.thumbnails)
    original.close()
    copy = tmp_path / "copy"
    shutil.copytree(image_project, copy)
    assert any((copy / "thumbs").rglob("*.png"))  # the cache travelled with the copy

    opened = ProjectSession.open(copy)
    assert opened.num_samples == 24 and opened.audit is not None
    view = BrowseView(opened, ThumbnailCache(opened.root))
    qtbot.addWidget(view)
    view.resize(700, 500)
    view.show()
    thumbnails = view.model.thumbnails
    qtbot.waitUntil(lambda: all(view.model.tile(row).pixmap is not None for row in (0, 8, 16)), timeout=10_000)
    for row in (0, 8, 16):  # one sample of each class: red, green, blue images
        tile = view.model.tile(row)
        assert not thumbnails.failed(tile.sample_id, view.model.image_path(row))
        shown = _pixels(tile.pixmap.toImage())  # type: ignore[union-attr]
        expected = _pixels(make_thumbnail(view.model.image_path(row)))
        assert shown.shape == expected.shape == (96, 96, 3)
        assert np.abs(shown.astype(int) - expected.astype(int)).max() <= 2  # the image itself, not a blank
        assert shown.std() > 1 and shown.mean(axis=(0, 1)).argmax() == row // 8  # its class's colour
    opened.close()


def test_audit_dialog_builds_engine_arguments(qtbot: QtBot) -> None:
    from auditor.views.audit_dialog import AuditDialog, TrainOptions

    dialog = AuditDialog(TrainOptions(epochs=3))
    qtbot.addWidget(dialog)
    assert "cl" in dialog.detector_boxes  # listed from the engine's numpy-only registry
    dialog.epochs.setValue(1)
    dialog.folds.setValue(2)
    dialog.image_size.setValue(16)
    dialog.device.setCurrentText("cpu")
    dialog.dynamics_epochs.setValue(4)
    args = dialog.options().audit_args()
    assert args == ["--model", "cnn7p", "--epochs", "1", "--image-size", "16", "--device", "cpu", "--seed", "0",
                    "--folds", "2", "--dynamics-epochs", "4", "--detectors", "cl"]
    retrain = AuditDialog(TrainOptions(), retrain=True)
    qtbot.addWidget(retrain)
    assert not retrain.detector_boxes and "--folds" not in retrain.options().train_args()


def test_an_audit_made_meanwhile_by_the_cli_takes_over(qtbot: QtBot, session: ProjectSession,
                                                       fake_audit: Callable[..., str]) -> None:
    review = ReviewView(session, ThumbnailCache(session.root))
    qtbot.addWidget(review)
    old = session.audit.run.id  # type: ignore[union-attr]
    assert not session.refresh_runs()  # nothing new
    with Project.open(session.root) as other:  # another process writes a newer audit run
        table = other.sample_table()
        truth = table.true_label.copy()
        truth[:3] = (truth[:3] + 1) % 3  # a different noise pattern, so a different queue
        new = fake_audit(other, truth, table.label)
    with qtbot.waitSignal(session.audit_changed):
        assert session.refresh_runs()
    assert session.audit is not None and session.audit.run.id == new != old
    assert list(review.model.ids()) == list(session.review_queue())
