"""Import predictions in the app: the dialog previews the matched columns and samples and lists every problem
(Import disabled), the import runs as an engine job, and the imported run is the review's audit like any."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pytestqt.qtbot import QtBot

from auditor.main_window import MainWindow
from auditor.views.audit_view import audit_summary
from auditor.views.import_dialog import ImportDialog, ImportOptions
from engine.store import Project

COLUMNS_IN_FILE_ORDER = ["fox", "cat", "dog"]  # class columns in any order


def predictions(project_root: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Predictions that favour each sample's true class (so the planted wrong labels are flagged), as a CSV
    frame in the file's column order; and the ids of the samples whose label is wrong."""
    with Project.open(project_root) as project:
        table = project.sample_table()
        names = project.class_names()
    probs = np.full((len(table.paths), len(names)), 0.05)
    probs[np.arange(len(table.paths)), table.true_label] = 0.9
    frame = pd.DataFrame(probs, columns=names)
    frame.insert(0, "path", table.paths)
    wrong = np.flatnonzero((table.label != table.true_label) & (table.split == "train"))
    return frame[["path", *COLUMNS_IN_FILE_ORDER]], wrong


def checked(qtbot: QtBot, dialog: ImportDialog, path: Path) -> None:
    with qtbot.waitSignal(dialog.checked, timeout=20_000):
        dialog.pred_probs.set_path(path)


def problem_texts(dialog: ImportDialog) -> list[str]:
    return [dialog.problems.item(row).text() for row in range(dialog.problems.count())]


def test_the_dialog_lists_each_problem_and_refuses_to_import(qtbot: QtBot, make_project: object,
                                                             tmp_path: Path) -> None:
    root = make_project(tmp_path, scored=False)  # type: ignore[operator]
    frame, _ = predictions(root)
    bad = frame.copy()
    bad.loc[2, "cat"] = -0.2  # data row 3
    bad.loc[5, "path"] = "cat/nowhere.png"  # data row 6
    bad.to_csv(tmp_path / "bad.csv", index=False)
    dialog = ImportDialog(root)
    qtbot.addWidget(dialog)
    assert not dialog.import_button.isEnabled()  # nothing chosen yet
    checked(qtbot, dialog, tmp_path / "bad.csv")
    texts = problem_texts(dialog)
    assert any("negative probabilities" in text and "data row 3" in text and "fix:" in text for text in texts)
    assert any("not samples of this project" in text and "cat/nowhere.png" in text for text in texts)
    assert dialog.problems.isVisible() or not dialog.isVisible()
    assert not dialog.import_button.isEnabled()
    assert "problem" in dialog.status.text()

    frame.to_csv(tmp_path / "good.csv", index=False)
    checked(qtbot, dialog, tmp_path / "good.csv")
    assert problem_texts(dialog) == []
    assert dialog.import_button.isEnabled()
    assert "Class columns: fox, cat, dog" in dialog.matched.text()
    assert "21 of 21 training" in dialog.matched.text()
    assert dialog.options().args() == ["--pred-probs", str(tmp_path / "good.csv")]

    # Any edit disables Import until the new choice is checked: logits would softmax these rows again.
    dialog.logits.setChecked(True)
    assert not dialog.import_button.isEnabled()


def test_a_check_of_an_older_choice_never_shows(qtbot: QtBot, make_project: object, tmp_path: Path) -> None:
    root = make_project(tmp_path, scored=False)  # type: ignore[operator]
    frame, _ = predictions(root)
    frame.to_csv(tmp_path / "good.csv", index=False)
    frame.drop(columns=["dog"]).to_csv(tmp_path / "short.csv", index=False)
    dialog = ImportDialog(root)
    qtbot.addWidget(dialog)
    dialog.pred_probs.set_path(tmp_path / "good.csv")
    dialog.check_now()  # its answer arrives after the next choice: dropped
    checked(qtbot, dialog, tmp_path / "short.csv")
    qtbot.wait(200)
    assert any("no column for the classes 'dog'" in text for text in problem_texts(dialog))
    assert not dialog.import_button.isEnabled()


def test_an_imported_run_is_the_reviews_audit(qtbot: QtBot, window: MainWindow, make_project: object,
                                              tmp_path: Path) -> None:
    root = make_project(tmp_path, scored=False)  # type: ignore[operator]
    frame, wrong = predictions(root)
    frame.to_csv(tmp_path / "mine.csv", index=False)
    assert window.open_project(root)
    assert window.import_action.isEnabled()
    with qtbot.waitSignal(window.job_finished, timeout=120_000) as finished:
        process = window.launcher.start_import(ImportOptions(pred_probs=tmp_path / "mine.csv", name="mine"))
        assert process is not None
    assert finished.args == ["import-predictions", "ok"]
    session, page = window.session, window.page
    assert session is not None and page is not None and session.audit is not None
    assert session.audit.run.spec["evidence"]["oof_probs"]["name"] == "mine"
    # The review offers the imported run's suggestions: the planted wrong labels, their true class suggested.
    queue = session.review_queue()
    assert set(wrong) <= set(queue.tolist())
    with Project.open(root) as project:
        truth = project.sample_table().true_label
    assert (session.audit.suggested[wrong] == truth[wrong]).all()
    assert page.currentWidget() is page.review
    assert page.review.current_sample() in set(queue.tolist())
    assert "imported predictions “mine” from mine.csv" in page.audit.summary.text()


def test_the_summary_names_an_imported_runs_source_not_a_model() -> None:
    spec = {"detectors": ["cl"], "name": "vit",
            "evidence": {"oof_probs": {"source": "imported", "file": "/data/vit_oof.csv", "logits": True,
                                       "name": "vit"}}}
    text = audit_summary(spec, {"heldout_accuracy": 0.93, "heldout_accuracy_measured_against": "given_labels"},
                         12, "cl", "run-7")
    assert "?" not in text
    assert "imported predictions “vit” from vit_oof.csv (logits, softmaxed)" in text
    assert "Held-out accuracy of the imported predictions: 93.0% against given labels." in text
