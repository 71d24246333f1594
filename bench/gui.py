"""GUI benchmark on a generated 100,000-sample project: open time, decision latency, peak memory.

usage: python bench/gui.py [--samples N] [--decisions D] [--root DIR]

Prints, with the targets beside them:
  open     time from MainWindow.open_project to the first grid page painted   (target < 2 s)
  decide   key press → committed row → view updated, median and worst       (target < 50 ms worst)
  scroll   time per page when jumping through the whole browse grid
  memory   the GUI process's peak resident memory (getrusage)                 (target < 1 GB)
  data map data map tab shown → every audited point drawn                   (target < 1 s)
  lasso    a free-hand lasso around half the map → the selected ids
The project is made fast: a few distinct tiny PNGs written many times, one bulk insert,
and a fake audit run with scores from every registered detector, the cartography extras
(the data map) and a small fake dynamics recording (the review's dynamics plot, read on every key).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from engine.store import Project  # noqa: E402

CLASSES = [f"class_{k}" for k in range(10)]


def tiny_pngs(count: int = 10, size: int = 24) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    images = []
    for k in range(count):
        pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        pixels[..., k % 3] = 200
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        images.append(buffer.getvalue())
    return images


def make_project(root: Path, samples: int) -> Path:
    images = root / "images"
    pngs = tiny_pngs()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(CLASSES), samples)
    rows = []
    for name in CLASSES:
        (images / name).mkdir(parents=True, exist_ok=True)
    for sample_id, label in enumerate(labels):
        path = f"{CLASSES[label]}/{sample_id:06d}.png"
        (images / path).write_bytes(pngs[sample_id % len(pngs)])
        rows.append({"path": path, "split": "test" if sample_id % 5 == 0 else "train", "label": int(label)})
    project = Project.create(root / "project")
    project.add_classes(CLASSES)
    project.add_samples(rows)
    project.set_meta("source", {"kind": "folder", "image_root": str(images)})
    from engine.detectors import DETECTORS

    run = project.new_run("audit", {"detectors": list(DETECTORS), "model": "fake", "epochs": FAKE_EPOCHS,
                                    "folds": 0})
    noisy = rng.random(samples) < 0.2
    for name in DETECTORS:  # every detector: scores that mostly agree on the noisy samples
        scores = np.clip(np.where(noisy, rng.beta(6, 3, samples), rng.beta(1, 8, samples)), 0.0, 1.0)
        suggested = np.where(scores > 0.5, (labels + 1) % len(CLASSES), labels)
        project.save_scores(run.id, name, scores, suggested, scores > 0.5)
    save_fake_dynamics(run.folder, np.flatnonzero(np.array([row["split"] == "train" for row in rows])), labels,
                       noisy, rng)
    project.finish_run(run.id, "ok", {"fake": True})
    project.close()
    return root / "project"


FAKE_EPOCHS = 6
FAKE_TD_WIDTH = 4


def save_fake_dynamics(folder: Path, train_ids: np.ndarray, labels: np.ndarray, noisy: np.ndarray,
                       rng: np.random.Generator) -> None:
    """The cartography extras of the audited (train) samples, and a small dynamics recording of them."""
    n = len(train_ids)
    curve = np.linspace(0.2, 1.0, FAKE_EPOCHS)  # the given label learned over the epochs, unless noisy
    given = np.where(noisy[train_ids, None], 0.6 - 0.5 * curve, curve) + rng.normal(0, 0.08, (n, FAKE_EPOCHS))
    given = np.clip(given, 0.0, 1.0)
    np.save(folder / "audited_ids.npy", train_ids)
    np.save(folder / "cartography_confidence.npy", given.mean(axis=1).astype(np.float32))
    np.save(folder / "cartography_variability.npy", given.std(axis=1).astype(np.float32))
    np.save(folder / "cartography_correctness.npy", (given > 0.5).mean(axis=1).astype(np.float32))
    dynamics = folder / "dynamics"
    dynamics.mkdir()
    np.save(dynamics / "ids.npy", train_ids)
    np.save(dynamics / "labels.npy", labels[train_ids])
    td = np.empty((n, FAKE_TD_WIDTH, FAKE_EPOCHS), dtype=np.float16)
    td[:, 0] = given
    rest = (1.0 - given)[:, None, :] * np.array([0.6, 0.25, 0.1])[None, :, None]
    td[:, 1:] = rest
    classes = (labels[train_ids, None] + np.arange(FAKE_TD_WIDTH)[None]) % len(CLASSES)
    np.save(dynamics / "td_classes.npy", classes.astype(np.int32))
    np.save(dynamics / "td.npy", td)  # last, as the recorder does: its presence says the set is complete


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--decisions", type=int, default=200)
    parser.add_argument("--root", type=Path, default=None, help="where to generate (default: a temp folder)")
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="auditor-bench-"))

    start = time.perf_counter()
    project_root = make_project(root, args.samples)
    print(f"generated {args.samples:,} samples in {time.perf_counter() - start:.1f} s at {project_root}")

    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    from auditor.__main__ import make_app
    from auditor.main_window import MainWindow

    app = make_app()
    window = MainWindow()
    window.resize(1280, 800)
    window.show()
    app.processEvents()

    start = time.perf_counter()
    assert window.open_project(project_root)
    page = window.page
    assert page is not None
    page.setCurrentWidget(page.browse)
    window.repaint()  # the first grid page, painted (thumbnails still on their way)
    app.processEvents()
    opened = time.perf_counter() - start
    page.thumbnails.wait_idle(60_000)
    app.processEvents()
    with_thumbs = time.perf_counter() - start

    # Scrolling: jump through the whole grid; each stop paints a page (thumbnails made off-thread).
    grid = page.browse.grid
    bar = grid.verticalScrollBar()
    stops = 40
    start = time.perf_counter()
    model = grid.model()
    while model.canFetchMore(grid.rootIndex()):  # every row exposed: the layout of all 100,000 is in play
        model.fetchMore(grid.rootIndex())
    app.processEvents()
    for step in range(1, stops + 1):
        bar.setValue(bar.maximum() * step // stops)
        grid.viewport().repaint()
        app.processEvents()
    per_page = (time.perf_counter() - start) / stops
    page.thumbnails.wait_idle(60_000)

    # The data map: every audited sample drawn (a fresh view, as on the first visit to the tab).
    start = time.perf_counter()
    page.setCurrentWidget(page.data_map)
    window.repaint()
    app.processEvents()
    map_draw = time.perf_counter() - start
    data_map = page.data_map
    assert data_map.data is not None, "the fake audit's cartography extras did not load"
    mapped = len(data_map.data.ids)
    drawn = sum(len(scatter.getData()[0]) for scatter in data_map.scatters)
    # A lasso around the lower half of the map: the selection searches every point, not only those drawn.
    angles = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    high = float(data_map.data.variability.max())
    lasso = np.column_stack([high / 2 + high * 0.6 * np.cos(angles), 0.25 + 0.3 * np.sin(angles)])
    start = time.perf_counter()
    data_map.select_polygon(lasso)
    app.processEvents()
    lasso_time = time.perf_counter() - start
    lassoed = len(data_map.selected)
    data_map.select(np.zeros(0, dtype=np.int64))

    page.show_review()
    review = page.review
    review.setFocus()
    # Let the review tab finish its first layout and thumbnails, as it has long before a person's first key.
    settle = time.perf_counter() + 0.3
    while time.perf_counter() < settle:
        page.thumbnails.wait_idle(1000)
        app.processEvents()
    keys = [Qt.Key.Key_A, Qt.Key.Key_R, Qt.Key.Key_K, Qt.Key.Key_3, Qt.Key.Key_Left]
    timings = []
    session = window.session
    assert session is not None
    # Time the store's commit on its own too: an fsync outlier is the disk's, not the GUI's.
    commit_times: list[float] = []
    store_decide = session.project.decide

    def timed_decide(*a: object, **k: object) -> object:
        begin = time.perf_counter()
        try:
            return store_decide(*a, **k)  # type: ignore[arg-type]
        finally:
            commit_times.append(time.perf_counter() - begin)

    session.project.decide = timed_decide  # type: ignore[method-assign,assignment]
    for index in range(args.decisions):
        key = keys[index % len(keys)]
        before = session.reviewed_count
        start = time.perf_counter()
        QTest.keyClick(review, key)  # decide() has committed the row when this returns
        app.processEvents()  # and the grid, counter and large view have caught up
        elapsed = time.perf_counter() - start
        if key != Qt.Key.Key_Left:
            timings.append(elapsed)
        assert key == Qt.Key.Key_Left or session.reviewed_count >= before
    with Project.open(project_root) as check:
        committed = len(check.decisions())

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    median_ms = statistics.median(timings) * 1000
    worst_ms = max(timings) * 1000
    p95_ms = float(np.percentile(timings, 95)) * 1000
    commit_median, commit_worst = statistics.median(commit_times) * 1000, max(commit_times) * 1000

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    print(f"open      {opened:6.3f} s to the first grid page ({with_thumbs:.2f} s with its thumbnails)"
          f"   target < 2 s   {verdict(opened < 2)}")
    print(f"scroll    {per_page * 1000:6.1f} ms per page, jumping through {args.samples:,} samples in {stops} stops")
    print(f"decide    median {median_ms:.1f} ms, worst {worst_ms:.1f} ms over {len(timings)} decisions "
          f"({committed} committed)   target < 50 ms worst   {verdict(worst_ms < 50)}")
    print(f"          p95 {p95_ms:.1f} ms; of which the SQLite commit (fsync): median {commit_median:.1f} ms, "
          f"worst {commit_worst:.1f} ms")
    print(f"memory    peak {peak_mb:.0f} MiB   target < 1024 MiB   {verdict(peak_mb < 1024)}")
    print(f"data map draw {map_draw:6.3f} s for {mapped:,} audited samples ({drawn:,} drawn, one per pixel)"
          f"   target < 1 s   {verdict(map_draw < 1)}")
    print(f"lasso     {lasso_time * 1000:6.1f} ms to select {lassoed:,} samples inside a 200-vertex lasso")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
