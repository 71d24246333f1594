"""The data map, the dynamics mini-plot and the class-pair queue, on a real tiny dynamics audit.

One real `engine audit --detectors cartography,aum` (3 epochs, 8-pixel images) of a 24-image project
is made once per module and copied for each test.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QPolygonF
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from auditor.review_order import BY_PAIR
from auditor.session import ProjectSession
from auditor.thumbnails import ThumbnailCache
from auditor.views.data_map import CATEGORY_INDEX, DataMapView, load_data_map
from auditor.views.review_view import ReviewView
from engine.store import Project
from tests.gui.conftest import make_image_project

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def audited_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_image_project(tmp_path_factory.mktemp("datamap"), scored=False)
    subprocess.run([sys.executable, "-m", "engine", "audit", str(root), "--detectors", "cartography,aum",
                    "--epochs", "3", "--image-size", "8", "--device", "cpu", "--seed", "0"],
                   cwd=REPO, check=True, capture_output=True, timeout=300)
    return root


@pytest.fixture
def audited(audited_template: Path, tmp_path: Path) -> Path:
    # The images stay where they are (the project's source points at them); the project is copied.
    target = tmp_path / "project"
    shutil.copytree(audited_template, target)
    return target


@pytest.fixture
def session(audited: Path) -> Iterator[ProjectSession]:
    opened = ProjectSession.open(audited)
    yield opened
    opened.close()


def viewport_pos(view: DataMapView, x: float, y: float) -> QPoint:
    """Where the data point (x, y) is drawn, in the plot's viewport pixels."""
    scene = view.view_box.mapViewToScene(QPointF(x, y))
    return view.plot.mapFromScene(scene)


def send_mouse(widget: QWidget, kind: QEvent.Type, pos: QPoint, button: Qt.MouseButton,
               buttons: Qt.MouseButton) -> None:
    # QTest.mouseMove carries no pressed buttons under Qt 6: a drag is sent event by event.
    local = QPointF(pos)
    event = QMouseEvent(kind, local, QPointF(widget.mapToGlobal(pos)), button, buttons,
                        Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def drag(widget: QWidget, path: list[QPoint]) -> None:
    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    send_mouse(widget, QEvent.Type.MouseButtonPress, path[0], left, left)
    for point in path[1:]:
        time.sleep(0.012)  # pyqtgraph drops moves that come faster than 100 a second, as a hand never does
        send_mouse(widget, QEvent.Type.MouseMove, point, none, left)
    send_mouse(widget, QEvent.Type.MouseButtonRelease, path[-1], left, none)


def click(widget: QWidget, pos: QPoint) -> None:
    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    send_mouse(widget, QEvent.Type.MouseButtonPress, pos, left, left)
    send_mouse(widget, QEvent.Type.MouseButtonRelease, pos, left, none)


def open_map(qtbot: QtBot, window: object, project: Path) -> DataMapView:
    assert window.open_project(project)  # type: ignore[attr-defined]
    window.resize(1100, 760)  # type: ignore[attr-defined]
    page = window.page  # type: ignore[attr-defined]
    page.setCurrentWidget(page.data_map)
    view: DataMapView = page.data_map
    qtbot.waitUntil(lambda: view.data is not None and view.plot.isVisible(), timeout=5000)
    qtbot.wait(100)  # the plot's first layout, so data and pixels map as they will for the mouse
    return view


def test_click_on_a_point_reviews_that_sample(qtbot: QtBot, window: object, audited: Path) -> None:
    view = open_map(qtbot, window, audited)
    data = view.data
    assert data is not None and len(data.ids) == 21  # the 21 training samples (3 are held out)
    pixels = np.array([[p.x(), p.y()] for p in (viewport_pos(view, x, y)
                                              for x, y in zip(data.variability, data.confidence, strict=True))])
    # The point farthest from its nearest neighbour: a click on it can only mean it.
    gaps = np.linalg.norm(pixels[:, None] - pixels[None], axis=2) + np.eye(len(pixels)) * 1e9
    chosen = int(np.argmax(gaps.min(axis=1)))
    assert gaps[chosen].min() > 10
    click(view.plot.viewport(), QPoint(*map(int, pixels[chosen])))
    page = window.page  # type: ignore[attr-defined]
    qtbot.waitUntil(lambda: page.currentWidget() is page.review, timeout=3000)
    sample = int(data.ids[chosen])
    assert page.review.current_sample() == sample
    assert list(window.session.review_queue()) == [sample]  # type: ignore[attr-defined]
    assert "chosen on the data map" in page.review.queue.filter_label.text()
    page.review.show_all_flagged()  # back to the flagged set
    assert window.session.id_filter is None  # type: ignore[attr-defined]
    assert set(window.session.review_queue()) == set(np.flatnonzero(window.session.flagged_mask()))  # type: ignore[attr-defined]


def test_lasso_selects_exactly_the_points_inside_and_reviews_them(qtbot: QtBot, window: object,
                                                                  audited: Path) -> None:
    view = open_map(qtbot, window, audited)
    data = view.data
    assert data is not None
    pixels = [viewport_pos(view, x, y) for x, y in zip(data.variability, data.confidence, strict=True)]
    xs = np.array([p.x() for p in pixels])
    ys = np.array([p.y() for p in pixels])
    # A free-hand triangle around the lower-left part of the cloud (in pixels), walked in small steps.
    middle_x, middle_y = float(np.median(xs)), float(np.median(ys))
    corners = [(xs.min() - 15, ys.max() + 15), (middle_x + 20, ys.max() + 15), (xs.min() - 15, middle_y - 20)]
    path: list[QPoint] = []
    for (x0, y0), (x1, y1) in zip(corners, corners[1:], strict=False):
        for t in np.linspace(0, 1, 12, endpoint=False):
            path.append(QPoint(round(x0 + t * (x1 - x0)), round(y0 + t * (y1 - y0))))
    path.append(QPoint(round(corners[-1][0]), round(corners[-1][1])))
    drag(view.plot.viewport(), path)
    # Independently: Qt's own point-in-polygon test on the pixel path (closed back to its start).
    outline = QPolygonF([QPointF(p) for p in path])
    expected = {int(sample) for sample, p in zip(data.ids, pixels, strict=True)
                if outline.containsPoint(QPointF(p), Qt.FillRule.OddEvenFill)}
    assert 0 < len(expected) < len(data.ids)
    assert set(view.selected.tolist()) == expected
    assert view.review_button.isEnabled() and f"{len(expected)}" in view.review_button.text()
    view.review_button.click()
    page = window.page  # type: ignore[attr-defined]
    assert page.currentWidget() is page.review
    queue = window.session.review_queue()  # type: ignore[attr-defined]
    assert sorted(queue.tolist()) == sorted(expected) and len(queue) == len(expected)
    assert set(page.review.model.ids().tolist()) == expected
    ranks = window.session.audit.rank[queue]  # type: ignore[attr-defined]
    assert list(ranks) == sorted(ranks)  # most suspect first


def test_points_are_coloured_by_flagged_and_by_decision(qtbot: QtBot, session: ProjectSession) -> None:
    view = DataMapView(session)
    qtbot.addWidget(view)
    view.resize(900, 650)
    view.show()
    qtbot.waitUntil(lambda: view.data is not None, timeout=3000)
    data = view.data
    assert data is not None
    flagged = session.flagged_mask()[data.ids]
    assert (view.category == np.where(flagged, CATEGORY_INDEX["flagged"], CATEGORY_INDEX["clean"])).all()
    relabelled, removed = int(data.ids[0]), int(data.ids[1])
    session.decide(relabelled, "relabel", (int(session.labels[relabelled]) + 1) % 3)
    session.decide(removed, "remove")
    qtbot.waitUntil(lambda: not view._colours_dirty, timeout=2000)  # recoloured once the event loop runs
    assert view.category[0] == CATEGORY_INDEX["relabel"] and view.category[1] == CATEGORY_INDEX["remove"]
    # What is drawn: the relabelled point is in the "relabelled" scatter, at its place.
    drawn_x, drawn_y = view.scatters[CATEGORY_INDEX["relabel"]].getData()
    assert list(zip(drawn_x, drawn_y, strict=True)) == [(data.variability[0], data.confidence[0])]
    counts = np.bincount(view.category, minlength=5)
    assert counts[CATEGORY_INDEX["flagged"]] + counts[CATEGORY_INDEX["clean"]] == len(data.ids) - 2


def test_data_map_arrays_are_the_cartography_extras(session: ProjectSession) -> None:
    audit = session.audit
    assert audit is not None
    data = load_data_map(audit.run.folder)
    assert data is not None
    # Cartography's score is 1 - confidence; the extras and the stored scores describe the same samples.
    np.testing.assert_allclose(1.0 - data.confidence, audit.per_detector["cartography"][data.ids], atol=1e-6)


def test_without_cartography_the_map_comes_from_the_dynamics(audited: Path) -> None:
    with Project.open(audited) as project:
        run = project.runs("audit")[-1]
    with_extras = load_data_map(run.folder)
    for name in ("cartography_confidence.npy", "cartography_variability.npy"):
        (run.folder / name).unlink()  # as an audit with aum alone leaves it
    from_dynamics = load_data_map(run.folder)
    assert with_extras is not None and from_dynamics is not None
    # The same samples (nothing removed before this audit), the same measures up to float16 storage.
    np.testing.assert_array_equal(from_dynamics.ids, with_extras.ids)
    np.testing.assert_allclose(from_dynamics.confidence, with_extras.confidence, atol=1e-3)
    np.testing.assert_allclose(from_dynamics.variability, with_extras.variability, atol=1e-3)
    shutil.rmtree(run.folder / "dynamics")
    assert load_data_map(run.folder) is None


def test_dynamics_plot_draws_the_samples_own_row(qtbot: QtBot, session: ProjectSession) -> None:
    review = ReviewView(session, ThumbnailCache(session.root))
    qtbot.addWidget(review)
    review.show()
    audit = session.audit
    assert audit is not None
    folder = audit.run.folder / "dynamics"
    ids = np.load(folder / "ids.npy")
    td = np.load(folder / "td.npy", mmap_mode="r")
    td_classes = np.load(folder / "td_classes.npy", mmap_mode="r")
    plot = review.details.dynamics
    assert plot.plot.isVisible() and not plot.note.isVisible()
    for _ in range(3):
        sample = review.current_sample()
        assert sample is not None
        row = int(np.flatnonzero(ids == sample)[0])
        width = min(4, td.shape[1])
        for index in range(width):
            x, y = plot.curves[index].getData()
            assert list(x) == list(range(1, td.shape[2] + 1))
            np.testing.assert_array_equal(y, np.asarray(td[row, index], dtype=np.float32))
            np.testing.assert_array_equal(plot.markers[index].getData()[1], y)  # the epoch markers too
        names = [session.class_name(int(k)) for k in td_classes[row, :width]]
        assert [name.split(" (")[0] for name in plot.legend_names()] == names
        assert plot.legend_names()[0].endswith("(given)")
        review.go(1)


def test_dynamics_plot_says_why_it_is_hidden_without_dynamics(qtbot: QtBot, image_project: Path) -> None:
    opened = ProjectSession.open(image_project)  # a fake confident-learning audit: no dynamics recorded
    try:
        review = ReviewView(opened, ThumbnailCache(opened.root))
        qtbot.addWidget(review)
        review.show()
        assert review.current_sample() is not None
        assert not review.details.dynamics.plot.isVisible() and review.details.dynamics.shown is None
        assert review.details.dynamics.note.isVisible() and "dynamics" in review.details.dynamics.note.text()
        view = DataMapView(opened)
        qtbot.addWidget(view)
        view.show()
        assert view.data is None and view.note.isVisible() and "cartography" in view.note.text()
    finally:
        opened.close()


def save_pair_audit(project_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """A fake audit whose suggestions make pairs of unequal size: 5 cat→dog, 2 dog→fox, 1 fox→cat."""
    with Project.open(project_root) as project:
        labels = np.array([row[0] for row in project.execute("SELECT label FROM samples ORDER BY id")])
        suggested = labels.copy()
        for given, other, count in ((0, 1, 5), (1, 2, 2), (2, 0, 1)):
            suggested[np.flatnonzero(labels == given)[:count]] = other
        score = np.linspace(0.9, 0.1, len(labels))
        run = project.new_run("audit", {"detectors": ["cl"], "epochs": 1})
        project.save_scores(run.id, "cl", score, suggested, np.ones(len(labels), dtype=bool))
        project.finish_run(run.id, "ok", {})
    return labels, suggested


def test_review_queue_by_class_pair(qtbot: QtBot, image_project: Path) -> None:
    labels, suggested = save_pair_audit(image_project)
    opened = ProjectSession.open(image_project)
    try:
        assert opened.class_pairs() == [(0, 1, 5), (1, 2, 2), (2, 0, 1)]
        review = ReviewView(opened, ThumbnailCache(opened.root))
        qtbot.addWidget(review)
        # The pair box lists the pairs with their counts; choosing one filters the queue to it.
        assert [review.queue.pair_box.itemText(i) for i in range(review.queue.pair_box.count())] == [
            "All class pairs", "cat → dog  (5)", "dog → fox  (2)", "fox → cat  (1)"]
        review.queue.pair_box.setCurrentIndex(2)
        review.queue.pair_box.activated.emit(2)
        assert opened.pair_filter == (1, 2)
        assert list(review.model.ids()) == list(np.flatnonzero((labels == 1) & (suggested == 2)))
        review.show_all_flagged()
        assert opened.pair_filter is None and review.queue.pair_box.currentIndex() == 0
        # Ordered by class pair: the commonest pair first, each pair by rank, samples with no other class last.
        review.queue.order_box.setCurrentIndex(review.queue.order_box.findData(BY_PAIR))
        review.queue.order_box.activated.emit(review.queue.order_box.currentIndex())
        queue = list(review.model.ids())
        assert queue[:5] == list(np.flatnonzero((labels == 0) & (suggested == 1)))
        assert queue[5:7] == list(np.flatnonzero((labels == 1) & (suggested == 2)))
        assert queue[7:8] == list(np.flatnonzero((labels == 2) & (suggested == 0)))
        assert sorted(queue) == list(range(len(labels)))
        assert "class pair" in review.queue.filter_label.text()
    finally:
        opened.close()
