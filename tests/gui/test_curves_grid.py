"""Detector curves and the evaluation table, p(given label) histograms, and the noisy-data grid (issue 9)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from auditor.session import ProjectSession
from auditor.thumbnails import ThumbnailCache
from auditor.views import detector_curves
from auditor.views.detector_curves import NO_TRUTH, DetectorCurvesView
from auditor.views.noisy_grid import NoisyGridView
from auditor.views.prob_histograms import BINS, LAST_EPOCH, ProbHistogramsView
from engine.store import DB_NAME, Project
from engine.workflows.evaluate import evaluate_run
from tests.gui.conftest import make_image_project

DETECTORS = ("cl", "aum")


def add_two_detector_audit(root: Path, seed: int = 1) -> dict[str, np.ndarray]:
    """A finished audit run with two detectors' scores (one with ties), pred_probs.npy and dynamics."""
    rng = np.random.default_rng(seed)
    with Project.open(root) as project:
        table = project.sample_table()
        n, k = len(table.label), project.num_classes
        noisy = table.true_label != table.label
        train = table.split == "train"
        scores = {
            "cl": np.where(train, rng.random(n) * 0.6 + 0.4 * noisy, 0.0),
            "aum": np.where(train, np.round(rng.random(n) * 0.5 + 0.3 * noisy, 1), 0.0),  # ties
        }
        run = project.new_run("audit", {"detectors": list(DETECTORS), "epochs": 1})
        for name, score in scores.items():
            project.save_scores(run.id, name, score, np.full(n, -1), train & (score >= 0.5))
        np.save(run.folder / "pred_probs.npy", rng.dirichlet(np.ones(k), size=n).astype(np.float32))
        dynamics = run.folder / "dynamics"
        dynamics.mkdir()
        ids = np.flatnonzero(train)
        np.save(dynamics / "ids.npy", ids)
        np.save(dynamics / "td.npy", rng.random((len(ids), k, 3)).astype(np.float16))
        project.finish_run(run.id, "ok", {"detectors": {"cl": {"estimated_noise_rate": 0.25}}})
    return scores


def forget_truth(root: Path) -> None:
    with sqlite3.connect(root / DB_NAME) as db:
        db.execute("UPDATE samples SET true_label = NULL")


@pytest.fixture
def truth_project(tmp_path: Path) -> Path:
    root = make_image_project(tmp_path, per_class=12, scored=False)
    add_two_detector_audit(root)
    return root


@pytest.fixture
def session(truth_project: Path) -> Iterator[ProjectSession]:
    opened = ProjectSession.open(truth_project)
    yield opened
    opened.close()


def _on_curve(points: tuple[np.ndarray, np.ndarray], x: np.ndarray, y: np.ndarray) -> bool:
    """Every drawn vertex is a vertex of the full curve (x, y)."""
    return all(np.any(np.isclose(x, px) & np.isclose(y, py)) for px, py in zip(*points))


def test_curves_match_sklearn_and_the_table_matches_evaluate(qtbot: QtBot, session: ProjectSession,
                                                           truth_project: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.metrics import precision_recall_curve, roc_curve

    monkeypatch.setattr(detector_curves, "MAX_VERTICES", 6)  # the tiny project's curves are decimated too
    view = DetectorCurvesView(session)
    qtbot.addWidget(view)
    view.refresh()
    with Project.open(truth_project) as project:
        report = evaluate_run(project)
        table = project.sample_table()
    evaluated = (table.split == "train") & (table.true_label >= -1)
    noisy = (table.true_label != table.label)[evaluated]
    assert view.message.isHidden()
    assert set(view.roc_items) == set(DETECTORS) == set(view.pr_items)
    legend_roc = view.legend_labels(view.roc_plot)
    legend_pr = view.legend_labels(view.pr_plot)
    for row, name in enumerate(view.report["detectors"]):  # type: ignore[index]
        scores = session.audit.per_detector[name][evaluated]  # type: ignore[union-attr]
        fpr, tpr, _ = roc_curve(noisy, scores, drop_intermediate=False)
        drawn = view.roc_items[name].getData()
        assert 2 < len(drawn[0]) <= 6 < len(fpr) or len(fpr) <= 6
        assert _on_curve(drawn, fpr, tpr)
        assert (drawn[0][0], drawn[1][0]) == (0.0, 0.0) and (drawn[0][-1], drawn[1][-1]) == (1.0, 1.0)
        precision, recall, _ = precision_recall_curve(noisy, scores)
        assert _on_curve(view.pr_items[name].getData(), recall, precision)
        expected = report["detectors"][name]
        assert f"{name}  AUC {expected['roc_auc']:.3f}" in legend_roc
        assert f"{name}  AP {expected['average_precision']:.3f}" in legend_pr
        cells = [view.table.item(row, column).text() for column in range(view.table.columnCount())]  # type: ignore[union-attr]
        estimated = expected["estimated_noise_rate"]
        assert cells == [name, f"{expected['roc_auc']:.3f}", f"{expected['average_precision']:.3f}",
                         f"{expected['precision']:.3f}", f"{expected['recall']:.3f}", f"{expected['f1']:.3f}",
                         f"{expected['n_flagged']:,} ({expected['flagged_rate']:.1%})",
                         "n/a" if estimated is None else f"{estimated:.3f}", f"{expected['true_noise_rate']:.3f}"]
        for key in ("roc_auc", "average_precision", "precision", "recall", "f1", "true_noise_rate"):
            assert view.report["detectors"][name][key] == pytest.approx(expected[key])  # type: ignore[index]
    assert view.table.item(0, 7).text() == "0.250"  # type: ignore[union-attr]  # cl recorded its estimate
    assert f"{report['n_evaluated']:,} train samples" in view.caption.text()


def test_without_truth_the_views_say_so(qtbot: QtBot, truth_project: Path) -> None:
    forget_truth(truth_project)
    session = ProjectSession.open(truth_project)
    try:
        curves = DetectorCurvesView(session)
        qtbot.addWidget(curves)
        curves.refresh()
        assert curves.message.text() == NO_TRUTH and not curves.message.isHidden()
        assert curves.body.isHidden() and not curves.roc_items and curves.table.rowCount() == 0

        histograms = ProbHistogramsView(session)
        qtbot.addWidget(histograms)
        histograms.refresh()
        assert "flagged against not flagged" in histograms.title.text()
        assert "truth is not known" in histograms.title.text()
        probs = np.load(session.audit.run.folder / "pred_probs.npy")  # type: ignore[union-attr]
        given = probs[np.arange(len(probs)), session.labels]
        train = np.array([row[0] == "train" for row in session.project.execute("SELECT split FROM samples")])
        flagged = session.flagged_mask()
        for name, mask in (("flagged", train & flagged), ("not flagged", train & ~flagged)):
            expected, _ = np.histogram(given[mask], bins=BINS, range=(0.0, 1.0))
            assert np.array_equal(histograms.counts[name], expected)

        grid = NoisyGridView(session, ThumbnailCache(session.root))
        qtbot.addWidget(grid)
        grid.refresh()
        assert grid.tiles and not grid.mismatched_ids()
        assert all(tile.true_text == "" for tile in grid.tiles)
        assert "not known" in grid.caption.text()
        grid.thumbnails.shutdown()
    finally:
        session.close()


def test_histograms_count_mislabeled_against_clean(qtbot: QtBot, session: ProjectSession) -> None:
    view = ProbHistogramsView(session)
    qtbot.addWidget(view)
    view.refresh()
    table = session.project.sample_table()
    train = table.split == "train"
    noisy = train & (table.true_label != table.label)
    clean = train & (table.true_label == table.label)
    assert "mislabeled against clean" in view.title.text()
    probs = np.load(session.audit.run.folder / "pred_probs.npy")  # type: ignore[union-attr]
    given = probs[np.arange(len(probs)), table.label]
    for name, mask in (("mislabeled (truth differs)", noisy), ("clean", clean)):
        expected, _ = np.histogram(given[mask], bins=BINS, range=(0.0, 1.0))
        assert np.array_equal(view.counts[name], expected)
        _, heights = view.items[name].getData()
        assert np.allclose(heights, 100 * expected / mask.sum())  # drawn as a % of the group
    view.share.setChecked(False)
    assert np.array_equal(view.items["clean"].getData()[1], view.counts["clean"])

    # The training run's last epoch: column 0 of td is the probability of the label trained on.
    view.source_picker.setCurrentIndex(view.source_picker.findData(LAST_EPOCH))
    dynamics = session.audit.run.folder / "dynamics"  # type: ignore[union-attr]
    last = np.full(len(table.label), np.nan)
    last[np.load(dynamics / "ids.npy")] = np.load(dynamics / "td.npy")[:, 0, -1]
    expected, _ = np.histogram(last[noisy], bins=BINS, range=(0.0, 1.0))
    assert np.array_equal(view.counts["mislabeled (truth differs)"], expected)


def test_noisy_grid_shows_given_and_true_labels_and_marks_exactly_the_mismatches(
        qtbot: QtBot, session: ProjectSession) -> None:
    with sqlite3.connect(session.root / DB_NAME) as db:  # one open-set sample: its class is none of ours
        db.execute("UPDATE samples SET true_label = -1 WHERE id = 1")
    cache = ThumbnailCache(session.root)
    grid = NoisyGridView(session, cache)
    qtbot.addWidget(grid)
    grid.columns.setValue(12)  # every sample of a class of 12: the open-set one is shown
    table = session.project.sample_table()
    names = session.class_names
    assert len(grid.tiles) == len(table.label)
    for tile in grid.tiles:
        sid = tile.info.sample_id
        assert tile.given_text == f"given: {names[table.label[sid]]}"
        truth = table.true_label[sid]
        true_name = "outside the classes" if truth == -1 else names[truth]
        wrong = truth != table.label[sid]
        assert tile.true_text == (f"✗ true: {true_name}" if wrong else f"true: {true_name}")
    assert grid.mismatched_ids() == set(np.flatnonzero(table.true_label != table.label).tolist())
    assert 1 in grid.mismatched_ids()

    grid.columns.setValue(5)
    first = {label: ids.tolist() for label, ids in grid.chosen.items()}
    for label, ids in grid.chosen.items():
        assert len(ids) == 5 and len(set(ids.tolist())) == 5 and (table.label[ids] == label).all()
    assert grid.mismatched_ids() == {int(i) for ids in grid.chosen.values() for i in ids
                                     if table.true_label[i] != table.label[i]}
    grid.reshuffle()
    assert grid.seed == 1 and {label: ids.tolist() for label, ids in grid.chosen.items()} != first
    grid.seed = 0
    grid.refresh()  # the same seed draws the same samples
    assert {label: ids.tolist() for label, ids in grid.chosen.items()} == first
    qtbot.waitUntil(lambda: all(tile.pixmap is not None for tile in grid.tiles), timeout=10000)
    cache.shutdown()


def test_the_tabs_are_in_the_project_page_and_a_tile_opens_the_review(qtbot: QtBot,
                                                                    session: ProjectSession) -> None:
    from auditor.views.project_page import ProjectPage

    page = ProjectPage(session)
    qtbot.addWidget(page)
    titles = [page.tabText(index) for index in range(page.count())]
    assert {"Detector curves", "Probabilities", "Noisy data"} <= set(titles)
    page.show()
    page.setCurrentWidget(page.curves)  # computed when first shown
    assert set(page.curves.roc_items) == set(DETECTORS)
    page.setCurrentWidget(page.noisy)
    tile = page.noisy.tiles[0]
    qtbot.mouseDClick(tile, Qt.MouseButton.LeftButton)
    assert page.currentWidget() is page.review
    assert page.review.current_sample() == tile.info.sample_id
    page.shutdown()


def test_labels_changed_elsewhere_redraw_the_visible_views(qtbot: QtBot, session: ProjectSession) -> None:
    """Noise injected by the CLI while the app is open: the grid and the table follow the new labels."""
    cache = ThumbnailCache(session.root)
    grid = NoisyGridView(session, cache)
    curves = DetectorCurvesView(session)
    for view in (grid, curves):
        qtbot.addWidget(view)
        view.show()
    qtbot.waitUntil(lambda: bool(grid.tiles) and curves.report is not None)
    train = session.project.sample_table().split == "train"
    clean = next(tile.info.sample_id for tile in grid.tiles if not tile.info.mismatch and train[tile.info.sample_id])
    before = curves.report["true_noise_rate"]  # type: ignore[index]
    new_label = (int(session.labels[clean]) + 1) % len(session.class_names)
    with sqlite3.connect(session.root / DB_NAME) as db:
        db.execute("UPDATE samples SET label = ? WHERE id = ?", (new_label, clean))
    assert session.reload_if_changed()
    qtbot.waitUntil(lambda: clean in grid.mismatched_ids() or clean not in
                    {tile.info.sample_id for tile in grid.tiles})
    wrong = {tile.info.sample_id for tile in grid.tiles if tile.info.mismatch}
    table = session.project.sample_table()
    assert wrong == {int(i) for ids in grid.chosen.values() for i in ids if table.true_label[i] != table.label[i]}
    qtbot.waitUntil(lambda: curves.report is not None and curves.report["true_noise_rate"] != before)
    cache.shutdown()
