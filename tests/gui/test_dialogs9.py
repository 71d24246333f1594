"""The audit dialog's detectors and pretrained option, the retrain dialog's method, options and trusted set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QCheckBox, QLineEdit, QTableWidget, QTableWidgetItem
from pytestqt.qtbot import QtBot

from auditor.views.audit_dialog import AuditDialog, TrainOptions
from auditor.views.retrain_dialog import RetrainDialog
from engine.store import Project


def test_audit_dialog_groups_detectors_by_evidence_and_offers_all(qtbot: QtBot) -> None:
    dialog = AuditDialog(TrainOptions())
    qtbot.addWidget(dialog)
    dialog.show()
    headings = [label.text() for label in dialog.findChildren(type(dialog.weights_state)) if "<b>" in label.text()]
    assert any("K-fold" in text and "K models" in text for text in headings)
    assert any("One training run" in text and "1 model" in text for text in headings)
    assert set(dialog.detector_boxes) >= {"cl", "aum", "cartography", "ocl", "td_lstm", "ensemble"}
    # A first audit: confident learning only, the small CNN without pretrained weights.
    assert dialog.options().detectors == ["cl"] and not dialog.all_detectors.isChecked()

    qtbot.mouseClick(dialog.all_detectors, Qt.MouseButton.LeftButton)
    assert all(box.isChecked() for box in dialog.detector_boxes.values())
    assert dialog.options().audit_args()[-2:] == ["--detectors", "all"]
    qtbot.mouseClick(dialog.detector_boxes["aum"], Qt.MouseButton.LeftButton)  # one off: no longer "all"
    assert not dialog.all_detectors.isChecked()
    assert "aum" not in dialog.options().detectors and "ocl" in dialog.options().detectors


def test_audit_dialog_shows_the_pretrained_weights_state(qtbot: QtBot, monkeypatch: object) -> None:
    import engine.models

    monkeypatch.setattr(engine.models, "weights_state", lambda model: "downloadable")  # type: ignore[attr-defined]
    dialog = AuditDialog(TrainOptions(pretrained=True))
    qtbot.addWidget(dialog)
    dialog.show()
    assert not dialog.pretrained.isEnabled() and "no pretrained weights" in dialog.weights_state.text()
    assert "--pretrained" not in dialog.options().train_args()
    dialog.model.setCurrentText("resnet18")
    assert dialog.pretrained.isEnabled() and "downloaded on first use" in dialog.weights_state.text()
    dialog.pretrained.click()
    assert "--pretrained" in dialog.options().train_args()


def _cell(table: QTableWidget, row: int, column: int) -> QTableWidgetItem:
    item = table.item(row, column)
    assert item is not None
    return item


def _keep_one_train_sample_of(project: Project, classes: list[int]) -> None:
    table = project.sample_table()
    for k in classes:
        sample_id = next(i for i in range(len(table.label)) if table.label[i] == k and table.split[i] == "train")
        project.decide(sample_id, "keep")


def test_retrain_dialog_says_why_a_meta_method_cannot_run(qtbot: QtBot, image_project: Path) -> None:
    project = Project.open(image_project)
    _keep_one_train_sample_of(project, [0, 1])  # the third class has no trusted sample
    dialog = RetrainDialog(project)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.start_button.isEnabled()  # plain cross-entropy needs no trusted set
    assert "2 reviewed samples, none of fox" in dialog.trusted_label.text()
    dialog.method.setCurrentIndex(dialog.method.findData("mlc"))
    assert not dialog.start_button.isEnabled() and "fox" in dialog.problem.text()
    # The truth is known here, so a per-class trusted set from it lets the method run.
    dialog.per_class.setValue(2)
    assert dialog.start_button.isEnabled() and "2 per class" in dialog.trusted_label.text()
    assert dialog.options().args()[-2:] == ["--trusted-per-class", "2"]

    _keep_one_train_sample_of(project, [2])
    every = RetrainDialog(project)
    qtbot.addWidget(every)
    every.method.setCurrentIndex(every.method.findData("mlc"))
    assert every.start_button.isEnabled() and "3 reviewed samples, every class covered" in every.trusted_label.text()
    project.close()


def test_retrain_dialog_edits_typed_options_and_seeds(qtbot: QtBot, image_project: Path) -> None:
    project = Project.open(image_project)
    dialog = RetrainDialog(project)
    qtbot.addWidget(dialog)
    dialog.method.setCurrentIndex(dialog.method.findData("sln"))
    sigma = dialog.editors["sigma"][1]
    assert isinstance(sigma, QLineEdit) and sigma.text() == "none"  # the method's own default rule
    assert dialog.options().options == {}  # nothing changed: the engine's defaults apply
    sigma.selectAll()
    qtbot.keyClicks(sigma, "0.5")
    dialog.seeds.setValue(2)
    args = dialog.options().args()
    assert args[args.index("--method") + 1] == "sln" and args[args.index("--seeds") + 1] == "2"
    assert args[args.index("--option") + 1] == "sigma=0.5"
    dialog.method.setCurrentIndex(dialog.method.findData("mlc"))
    assert isinstance(dialog.editors["mix_trusted"][1], QCheckBox) and "sigma" not in dialog.editors
    project.close()


def test_retrain_from_the_menu_starts_the_chosen_method(qtbot: QtBot, window: object, image_project: Path,
                                                        monkeypatch: object) -> None:
    from auditor.main_window import MainWindow

    assert isinstance(window, MainWindow)
    assert window.open_project(image_project)
    started: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(window.launcher, "start",  # type: ignore[attr-defined]
                        lambda command, options: started.append((command, options)))

    def choose_sln() -> None:
        dialog = next(w for w in QApplication.topLevelWidgets() if isinstance(w, RetrainDialog) and w.isVisible())
        dialog.method.setCurrentIndex(dialog.method.findData("sln"))
        qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)

    QTimer.singleShot(0, choose_sln)
    window.retrain_action.trigger()
    assert started and started[0][0] == "retrain"
    assert "--method" in started[0][1] and started[0][1][started[0][1].index("--method") + 1] == "sln"


def test_compare_table_never_colours_a_gain_green_and_greys_no_change(qtbot: QtBot) -> None:
    from auditor.views.compare_view import LOSS, NEUTRAL, CompareTable

    table = CompareTable()
    qtbot.addWidget(table)
    figures = {"accuracy_mean": 0.8, "accuracy_std": 0.01, "accuracy_per_seed": [0.79, 0.81]}
    table.show_result({
        "baseline": "ce",
        "methods": {"ce": figures, "sln": figures, "mixgen": figures, "ocl": figures},
        "differences": {
            "sln": {"mean": 0.03, "measurable": True, "verdict": "gain", "text": "+3.0 pts (95% interval ...)"},
            "mixgen": {"mean": 0.004, "measurable": False, "verdict": "no measurable change",
                       "text": "no measurable change (+0.4 pts, ...)"},
            "ocl": {"mean": -0.05, "measurable": True, "verdict": "loss", "text": "-5.0 pts (...)"},
        },
    })
    rows = {_cell(table, row, 0).text(): row for row in range(table.rowCount())}
    assert _cell(table, rows["ce"], 1).text() == "80.0% ± 1.0" and _cell(table, rows["ce"], 3).text() == "baseline"
    gain = _cell(table, rows["sln"], 3)
    assert gain.text().startswith("+3.0 pts") and gain.foreground().color().green() <= gain.foreground().color().red()
    unchanged = _cell(table, rows["mixgen"], 3)
    assert unchanged.foreground().color() == NEUTRAL and unchanged.font().italic()
    assert _cell(table, rows["ocl"], 3).foreground().color() == LOSS


def test_compare_two_methods_from_the_app_on_the_real_engine(qtbot: QtBot, window: object,
                                                             image_project: Path) -> None:
    from auditor.main_window import MainWindow
    from auditor.views.compare_view import CompareDialog

    assert isinstance(window, MainWindow)
    assert window.open_project(image_project)
    window.launcher.train_options = TrainOptions(epochs=1, image_size=16, device="cpu")
    assert window.page is not None and window.page.results.compare_table.isHidden()

    problems: list[str] = []

    def choose_sln() -> None:
        dialog = next(w for w in QApplication.topLevelWidgets() if isinstance(w, CompareDialog) and w.isVisible())
        try:
            check_and_start(dialog)
        except AssertionError as exc:  # close the modal dialog, or the test waits forever
            problems.append(repr(exc))
            dialog.reject()

    def check_and_start(dialog: CompareDialog) -> None:
        assert not dialog.method_boxes["mlc"].isEnabled()  # no trusted set: says why instead of failing later
        assert not dialog.start_button.isEnabled()  # the baseline alone compares nothing
        dialog.method_boxes["sln"].click()
        dialog.seeds.setValue(2)
        assert dialog.cost.text() == "4 models to train"
        qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)

    QTimer.singleShot(0, choose_sln)
    with qtbot.waitSignal(window.job_finished, timeout=240_000) as finished:
        window.page.results.compare_button.click()
        assert not problems, problems
    assert finished.args == ["compare", "ok"]
    table = window.page.results.compare_table
    assert not table.isHidden() and window.page.currentWidget() is window.page.results
    rows = {_cell(table, row, 0).text(): row for row in range(table.rowCount())}
    assert set(rows) == {"ce", "sln"} and _cell(table, rows["ce"], 3).text() == "baseline"
    assert "%" in _cell(table, rows["sln"], 1).text() and "pts" in _cell(table, rows["sln"], 3).text()
    plot = window.page.results.compare_plot
    assert not plot.isHidden() and [row[0] for row in plot.rows] == ["sln"]  # the plot shows the same result


def test_compare_plot_draws_each_difference_with_its_interval(qtbot: QtBot) -> None:
    from auditor.views.compare_view import GAIN, NEUTRAL, ComparePlot

    plot = ComparePlot()
    qtbot.addWidget(plot)
    figures = {"accuracy_mean": 0.8}
    plot.show_result({
        "baseline": "ce",
        "methods": {"ce": figures, "sln": figures, "mixgen": figures},
        "differences": {
            "sln": {"mean": 0.03, "low": 0.01, "high": 0.05, "measurable": True, "verdict": "gain"},
            "mixgen": {"mean": 0.004, "low": -0.02, "high": 0.028, "measurable": False},
        },
    })
    assert plot.rows == [("sln", 3.0, 1.0, 5.0, "gain"), ("mixgen", 0.4, -2.0, 2.8000000000000003, "no measurable change")]
    items = plot.plot.getPlotItem().listDataItems()
    bars = [item for item in items if type(item).__name__ == "PlotDataItem"]
    assert [list(bar.getData()[0]) for bar in bars] == [[1.0, 5.0], [-2.0, 2.8000000000000003]]
    assert bars[0].opts["pen"].color() == GAIN and bars[1].opts["pen"].color() == NEUTRAL
    dots = [item for item in items if type(item).__name__ == "ScatterPlotItem"]
    assert dots[1].points()[0].brush().color().getRgb()[:3] == (255, 255, 255)  # hollow: no measurable change


def test_review_says_each_detectors_verdict_and_how_many_agree(qtbot: QtBot, window: object, tmp_path: Path,
                                                               make_project: Any) -> None:
    import numpy as np

    from auditor.main_window import MainWindow

    assert isinstance(window, MainWindow)
    folder = make_project(tmp_path, scored=False)
    project = Project.open(folder)
    n = len(project.sample_table().label)
    score = np.linspace(0.9, 0.1, n)  # sample 0 is the most suspect for both
    run = project.new_run("audit", {"detectors": ["cl", "aum"], "epochs": 1})
    cl_flags = np.arange(n) < 4
    project.save_scores(run.id, "cl", score, np.full(n, -1), cl_flags)
    project.save_scores(run.id, "aum", score[::-1].copy(), np.full(n, -1), (np.arange(n) >= n - 4) | (np.arange(n) == 2))
    project.finish_run(run.id, "ok", {"flagged": 4})
    project.close()
    assert window.open_project(folder)
    assert window.page is not None
    review = window.page.review
    review.set_current_row(0)
    sample = review.current_sample()
    assert sample == 0
    labels = review.details.score_labels
    assert labels["cl"].text() == "0.900  ·  flagged"
    assert labels["aum"].text() == "0.100  ·  not flagged"
    assert labels["agreement"].text() == "1 of 2 detectors flag it"
    # The queue by one detector, or by agreement, from the combo box in the review header.
    box = review.queue.order_box
    assert box.isVisible() and box.count() == 4  # ranked, aum, agreement, by class pair
    box.setCurrentIndex(box.findData("aum"))
    box.activated.emit(box.currentIndex())
    assert list(review.model.ids()) == [n - 1, n - 2, n - 3, n - 4, 2]  # aum's flagged set, highest score first
    assert "flagged by aum" in review.queue.filter_label.text()
    box.setCurrentIndex(box.findData("agreement"))
    box.activated.emit(box.currentIndex())
    assert list(review.model.ids())[0] == 2  # the one both detectors flag
    assert sorted(review.model.ids()) == [0, 1, 2, 3, n - 4, n - 3, n - 2, n - 1]
    box.setCurrentIndex(0)
    box.activated.emit(0)
    assert list(review.model.ids()) == [0, 1, 2, 3]
