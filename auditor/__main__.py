"""`auditor [PROJECT] [--demo]` / `python -m auditor`: start the desktop app."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from PySide6.QtCore import QTimer
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QApplication

from auditor import platform_check, settings
from auditor.style import icon, stylesheet


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="auditor", description="Label Auditor: find, review and fix mislabeled "
                                     "images; retrain on the cleaned data; export corrected labels.")
    parser.add_argument("project", nargs="?", help="a project folder to open")
    parser.add_argument("--demo", action="store_true", help="open the demo project (made on first use)")
    parser.add_argument("--start-page", action="store_true", help="do not reopen the last project")
    parser.add_argument("--smoke", action="store_true",
                        help="check an install: open PROJECT (or the demo with --demo), paint every page, print "
                        "one JSON line and quit (exit 1 if that failed)")
    return parser.parse_args(argv)


def make_app(argv: Sequence[str] | None = None) -> QApplication:
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        app = QApplication(list(argv) if argv is not None else sys.argv[:1])
    app.setOrganizationName(settings.ORGANIZATION)
    app.setApplicationName(settings.APPLICATION)
    app.setApplicationDisplayName(settings.APPLICATION)
    app.setDesktopFileName("label-auditor")  # ties the windows to packaging/label-auditor.desktop (Wayland)
    app.setWindowIcon(icon("app"))
    app.setFont(QFont("DejaVu Sans", 9))
    app.setStyle("Fusion")  # the same look on every platform, and what the stylesheet is tuned for
    app.setStyleSheet(stylesheet())
    return app


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv if argv is not None else sys.argv[1:])
    problem = platform_check.check_platform()
    if problem is not None:  # before Qt tries, and answers with a message that names the wrong package
        print(problem, file=sys.stderr)
        return 2
    app = make_app()
    from auditor.main_window import MainWindow  # after the QApplication exists

    window = MainWindow()
    window.show()
    if args.smoke:
        from auditor import smoke

        smoke.arm(app, window)
    if args.demo:
        QTimer.singleShot(0, window.open_demo)
    elif args.project:
        QTimer.singleShot(0, lambda: window.open_project(args.project))
    elif not args.start_page:
        last = settings.last_project()
        if last:
            from engine.store import is_project

            if is_project(last):
                QTimer.singleShot(0, lambda: window.open_project(last))
    return int(app.exec())


if __name__ == "__main__":
    sys.exit(main())
