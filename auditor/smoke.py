"""`auditor --smoke`: open a project (or the demo), paint every page once, print one JSON line, quit.

The check that an installed or frozen app really starts: the stylesheet and icons were found,
the engine could be launched (the demo is made by it on first use), and each view paints.
Exit status 0 when all of that happened, 1 otherwise (a failure, or nothing opened in time).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from auditor.style import RESOURCES, stylesheet

if TYPE_CHECKING:
    from auditor.main_window import MainWindow

SMOKE_TIMEOUT_S = 600  # making the demo on a slow machine takes a minute; a hang must still end


def arm(app: QApplication, window: MainWindow, timeout_s: float = SMOKE_TIMEOUT_S) -> None:
    """Make ``app`` quit once ``window`` has opened a project and painted each of its pages."""

    def finish(code: int, **report: object) -> None:
        print(json.dumps({"smoke": "ok" if code == 0 else "failed", **report}), flush=True)
        app.exit(code)

    def opened(root: str) -> None:
        page = window.page
        if page is None:
            finish(1, reason="a project was reported open but no page was built")
            return
        painted = []
        for index in range(page.count()):
            page.setCurrentIndex(index)
            app.processEvents()
            image = page.currentWidget().grab()
            painted.append(page.tabText(index).replace("&&", "&") + ("" if image.isNull() else " (painted)"))
        styled = bool(stylesheet()) and app.styleSheet() == stylesheet()
        has_icon = not app.windowIcon().isNull()
        code = 0 if styled and has_icon and all(entry.endswith("(painted)") for entry in painted) else 1
        finish(code, project=root, pages=painted, styled=styled, icon=has_icon, resources=str(RESOURCES),
               frozen=bool(getattr(sys, "frozen", False)))

    window.project_opened.connect(opened)
    window.maker.failed.connect(lambda message, details: finish(1, reason=message, details=details[-2000:]))
    window.maker.cancelled.connect(lambda: finish(1, reason="making the project was cancelled"))
    QTimer.singleShot(int(timeout_s * 1000), lambda: finish(
        1, reason=f"no project opened within {timeout_s:g} s", last_message=getattr(window, "last_message", "")))
