"""GUI benchmark on a generated 100,000-sample project: open time, decision latency, peak memory.

usage: python bench/gui.py [--samples N] [--decisions D] [--root DIR]

Prints, with the targets beside them:
  open     time from MainWindow.open_project to the first grid page painted   (target < 2 s)
  decide   key press → committed row → view updated, median and worst       (target < 50 ms worst)
  scroll   time per page when jumping through the whole browse grid
  memory   the GUI process's peak resident memory (getrusage)                 (target < 1 GB)
The project is made fast: a few distinct tiny PNGs written many times, one bulk insert,
and fake "cl" scores saved in a fake audit run.
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
    run = project.new_run("audit", {"detectors": ["cl"], "model": "fake", "epochs": 0, "folds": 0})
    scores = rng.beta(1, 8, samples)
    suggested = np.where(scores > 0.3, (labels + 1) % len(CLASSES), labels)
    project.save_scores(run.id, "cl", scores, suggested, scores > 0.3)
    project.finish_run(run.id, "ok", {"fake": True})
    project.close()
    return root / "project"


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

    session.project.decide = timed_decide  # type: ignore[method-assign]
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
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
