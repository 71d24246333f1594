"""Screenshots of the real app's main views, for the docs.

usage: python packaging/screenshots.py [OUT_DIR] [--only app|byom]      (default docs/screenshots, both)

Runs offscreen with its own settings and data folder: makes the demo project through
the engine, then

- ``app`` (01-09): runs a small real audit (captured mid-run), reviews a few samples from the
  keyboard, retrains, and saves start, browse, audit, review, plots and results views; then audits
  with every detector and saves the detector curves, probability histograms, noisy-data grid,
  the data map and the review's training-dynamics plot; the audit, retrain and compare dialogs and
  a comparison's results;
- ``byom`` (10-12, minutes: no audit): the import dialog with valid files and with a file's problems
  listed, and the Duplicates and Outliers views on embeddings computed by `engine embed`
  (packaging/screenshots_byom.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


SIZE = (1280, 820)
SECTIONS = ("app", "byom")


def wait_until(app: object, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout_s:.0f} s")
        app.processEvents()  # type: ignore[attr-defined]
        time.sleep(0.02)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=REPO / "docs" / "screenshots", metavar="OUT_DIR")
    parser.add_argument("--only", choices=SECTIONS, default=None,
                        help="app: 01-09 (trains audits; tens of minutes); byom: 10-12 (no audit); default both")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="auditor-screenshots-"))
    os.environ["LABEL_AUDITOR_DATA_DIR"] = str(scratch / "data")

    from PySide6.QtCore import QSettings

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(scratch / "settings"))
    from auditor.__main__ import make_app
    from auditor.main_window import MainWindow

    app = make_app()
    window = MainWindow()
    window.resize(*SIZE)
    window.show()
    app.processEvents()

    def pump(seconds: float) -> None:
        # Thumbnails arrive through the event loop (a queued signal and a 30 ms coalescing timer).
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)

    def shot(name: str) -> None:
        if window.page is not None:
            window.page.thumbnails.wait_idle(30_000)
        pump(0.3)
        path = out / f"{name}.png"
        window.grab().save(str(path))
        print(f"wrote {path}")

    if args.only != "byom":
        shot("01-start")

    window.open_demo()
    wait_until(app, lambda: window.page is not None, 180, "the demo project")
    page = window.page
    assert page is not None
    if args.only != "byom" and app_screenshots(app, window, out, pump, shot) != 0:
        return 1
    if args.only != "app":
        # Bring your own model: the import dialog, the Duplicates and Outliers views (no audit needed).
        from screenshots_byom import byom_screenshots  # beside this script (its folder is on sys.path)

        byom_screenshots(app, window, out, pump, wait_until)
    window.close()
    return 0


def app_screenshots(app: Any, window: Any, out: Path, pump: Callable[[float], None], shot: Callable[[str], None]) -> int:
    """02-09 on the open demo project: audits, review, retrain, dialogs, comparison."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    from auditor.views.audit_dialog import TrainOptions

    page = window.page
    page.setCurrentWidget(page.browse)
    shot("02-browse")

    options = TrainOptions(epochs=4, folds=2, image_size=16, device="cpu")
    process = window.launcher.start_audit(options)
    assert process is not None
    metrics: list[object] = []
    process.metric.connect(metrics.append)
    finished: list[str] = []
    window.job_finished.connect(lambda command, status: finished.append(status))
    wait_until(app, lambda: len(metrics) >= 5 or bool(finished), 600, "training metrics")
    shot("03-audit-running")
    wait_until(app, lambda: bool(finished), 900, "the audit")
    if finished[-1] != "ok":
        print(f"the audit ended with {finished[-1]}", file=sys.stderr)
        return 1

    page.show_review()
    review = page.review
    review.setFocus()
    for key in (Qt.Key.Key_Return, Qt.Key.Key_Return, Qt.Key.Key_R, Qt.Key.Key_K, Qt.Key.Key_Return):
        QTest.keyClick(review, key)
    shot("04-review")

    page.setCurrentWidget(page.insights)
    shot("05-plots")

    finished.clear()
    window.launcher.start_retrain(TrainOptions(epochs=2, image_size=16, device="cpu"))
    wait_until(app, lambda: bool(finished), 900, "the retrain")
    page.setCurrentWidget(page.results)
    shot("06-results")

    # Every detector against the demo's known truth: curves, p(given label) histograms, the noisy grid.
    finished.clear()
    window.launcher.start_audit(TrainOptions(epochs=3, folds=2, image_size=16, device="cpu", detectors=["all"]))
    wait_until(app, lambda: bool(finished), 900, "the audit with every detector")
    for view, name in ((page.curves, "09-curves"), (page.histograms, "09-histograms"), (page.noisy, "09-noisy-grid")):
        page.setCurrentWidget(view)
        shot(name)

    # That audit's data map, with a lasso around its hard-to-learn corner, and the review's dynamics plot.
    import numpy as np

    page.setCurrentWidget(page.data_map)
    pump(0.3)
    data_map = page.data_map
    if data_map.data is not None:
        high = float(data_map.data.variability.max())
        data_map.select_polygon(np.array([[0.0, 0.0], [high * 0.35, 0.0], [high * 0.35, 0.3], [0.0, 0.3]]))
    shot("08-data-map")
    page.show_review()
    shot("08-dynamics")

    # The dialogs: audit (every detector by evidence), retrain (method, options, trusted set), compare.
    from auditor.views.audit_dialog import AuditDialog
    from auditor.views.compare_view import CompareDialog, CompareOptions
    from auditor.views.retrain_dialog import RetrainDialog

    session = window.session
    assert session is not None
    retrain_dialog = RetrainDialog(session.project, TrainOptions(), parent=window)
    compare_dialog = CompareDialog(session.project, TrainOptions(), parent=window)
    for dialog, name in ((AuditDialog(TrainOptions(), parent=window), "07-audit-dialog"),
                         (retrain_dialog, "07-retrain-dialog"), (compare_dialog, "07-compare-dialog")):
        dialog.show()
        pump(0.3)
        dialog.grab().save(str(out / f"{name}.png"))
        print(f"wrote {out / f'{name}.png'}")
        dialog.close()

    # A comparison run as one job: the table and the plot of paired differences under Results.
    finished.clear()
    window.launcher.start_compare(CompareOptions(TrainOptions(epochs=2, image_size=16, device="cpu"), ["ce", "sln", "mixgen"], 2))
    wait_until(app, lambda: bool(finished), 900, "the comparison")
    page.setCurrentWidget(page.results)
    shot("07-compare-results")

    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
