"""The main window around the views: opening datasets through `engine init`, settings, bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PySide6.QtCore import QByteArray
from pytestqt.qtbot import QtBot

from auditor import settings
from auditor.__main__ import parse_args
from auditor.main_window import MainWindow
from auditor.views.csv_dialog import CsvDialog


def test_open_image_folder_runs_engine_init(qtbot: QtBot, window: MainWindow, image_folder: Path) -> None:
    with qtbot.waitSignal(window.project_opened, timeout=60_000) as blocker:
        window.maker.create_project("shapes", ["--images", str(image_folder)])
    root = Path(blocker.args[0])
    assert root.parent == (settings.data_dir() / "projects").resolve()
    assert window.session is not None and window.session.class_names == ["circle", "cross", "stripes"]
    assert window.session.num_samples == 36
    assert window.page is not None and window.page.currentWidget() is window.page.browse
    assert window.page.browse.model.total() == 36


def test_open_csv_with_the_column_dialog(qtbot: QtBot, window: MainWindow, image_folder: Path,
                                         tmp_path: Path) -> None:
    table = tmp_path / "labels.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "annotator_label", "note"])
        for image in sorted(image_folder.rglob("*.png")):
            writer.writerow([image.relative_to(image_folder).as_posix(), image.parent.name, "x"])
    dialog = CsvDialog(table)
    qtbot.addWidget(dialog)
    assert dialog.path_column.currentText() == "file"
    assert dialog.label_column.currentText() == "annotator_label"
    dialog.image_root.setText(str(image_folder))
    args = dialog.init_args()
    assert args[args.index("--label-column") + 1] == "annotator_label" and "--truth-column" not in args
    with qtbot.waitSignal(window.project_opened, timeout=60_000):
        window.maker.create_project("labels", args)
    assert window.session is not None and window.session.num_samples == 36


def test_a_bad_dataset_is_reported_and_the_app_stays_up(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    process = window.maker.create_project("empty", ["--images", str(empty)])
    with qtbot.waitSignal(process.finished, timeout=60_000) as blocker:
        pass
    assert blocker.args == ["error"]
    assert window.last_message  # the engine's own message, shown in a box
    assert window.session is None and window.stack.currentWidget() is window.start_page


def test_not_a_project_is_reported(window: MainWindow, tmp_path: Path) -> None:
    assert not window.open_project(tmp_path)
    assert "not a Label Auditor project" in window.last_message


def test_layout_and_last_project_are_remembered(qtbot: QtBot, image_project: Path) -> None:
    first = MainWindow()
    qtbot.addWidget(first)
    first.show()
    assert first.open_project(image_project)
    first.resize(731, 611)  # within the offscreen screen, which restoreGeometry clamps to
    first.move(13, 17)
    geometry = first.geometry()
    splitter = first.page.review.splitter  # type: ignore[union-attr]
    splitter.setSizes([300, 700])
    sizes = splitter.sizes()
    first.close()
    store = settings.app_settings()
    assert isinstance(store.value("window/geometry"), QByteArray)
    assert settings.last_project() == str(image_project.resolve())
    assert settings.recent_projects()[0] == str(image_project.resolve())

    second = MainWindow()
    qtbot.addWidget(second)
    second.show()
    assert second.geometry().size() == geometry.size()  # the offscreen platform moves frames a little
    assert second.open_project(settings.last_project())  # type: ignore[arg-type]
    assert second.page.review.splitter.sizes() == sizes  # type: ignore[union-attr]
    assert second.start_page.recent.count() == 1
    second.close()


def test_command_line() -> None:
    assert parse_args(["--demo"]).demo
    assert parse_args(["/some/project"]).project == "/some/project"


def test_export_from_the_menu_and_the_button(qtbot: QtBot, window: MainWindow, image_project: Path,
                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd
    from PySide6.QtWidgets import QFileDialog

    assert window.open_project(image_project)
    assert window.session is not None and window.page is not None
    window.session.decide(0, "remove")
    window.session.decide(3, "relabel", 0)
    out = tmp_path / "corrected.csv"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "CSV (*.csv)"))
    with qtbot.waitSignal(window.job_finished, timeout=60_000) as blocker:
        window.export_csv_action.trigger()
    assert blocker.args == ["export", "ok"]
    table = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(table["action"][:4]) == ["removed", "unreviewed", "unreviewed", "relabeled"]
    assert table.loc[3, "final_label"] == "cat"

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path))
    with qtbot.waitSignal(window.job_finished, timeout=60_000) as blocker:
        window.page.results.export_folder_button.click()
    assert blocker.args == ["export", "ok"]
    cleaned = tmp_path / f"{window.session.name}-cleaned"
    assert sum(1 for _ in cleaned.rglob("*.png")) == 23  # one removed
    assert (tmp_path / f"{window.session.name}-cleaned.csv").is_file()
    assert str(cleaned) in window.page.results.export_status.text()


def test_the_edit_menu_offers_redo_right_after_an_undo(window: MainWindow, image_project: Path) -> None:
    # The session's own undo history is brought up to date before the menus are told (issue 20: it used to be
    # updated after, so Redo stayed greyed out after Undo, and Undo after Redo).
    assert window.open_project(image_project)
    assert window.page is not None and window.session is not None
    review = window.page.review
    review.open_sample(int(window.session.review_queue()[0]))
    review.keep_current()
    assert window.undo_action.isEnabled() and not window.redo_action.isEnabled()
    window.undo_action.trigger()
    assert window.redo_action.isEnabled() and not window.undo_action.isEnabled()
    window.redo_action.trigger()
    assert window.undo_action.isEnabled() and not window.redo_action.isEnabled()
