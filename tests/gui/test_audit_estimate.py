"""The audit dialog's preset (Thorough, Fast, Custom) and its estimated cost, from `engine estimate --json`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QObject, Signal
from pytestqt.qtbot import QtBot

import auditor.views.audit_dialog as audit_dialog
from auditor.views.audit_dialog import MEASURING, AuditDialog, TrainOptions
from engine.training.config import DEFAULT_MODEL
from engine.workflows.budget import PRESETS, dynamics_epochs_for


class FakeEstimate(QObject):
    """Stands for the engine process: records what it was asked, answers only when the test says."""

    answer = Signal(object)
    error = Signal(object)
    died = Signal(int, str)
    finished = Signal(str)
    started: list[tuple[str, Path, list[str]]] = []

    def start(self, command: str, project: Path, options: list[str]) -> None:
        FakeEstimate.started.append((command, Path(project), list(options)))

    def is_running(self) -> bool:
        return False

    def kill(self) -> None:
        pass


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Path, list[str]]]:
    FakeEstimate.started = []
    monkeypatch.setattr(audit_dialog, "EngineProcess", FakeEstimate)
    monkeypatch.setattr(audit_dialog, "ESTIMATE_DELAY_MS", 10)
    return FakeEstimate.started


def answer(n_train: int, rate: float = 1900.0) -> dict[str, Any]:
    return {"n_train": n_train, "model": DEFAULT_MODEL, "image_size": 32, "precision": "fp32",
            "rate": {"images_per_s": rate, "source": "measured", "run_id": None,
                     "words": "measured now: 2 s of training steps"},
            "describe": "about 1 image-steps"}


def test_the_presets_kfold_epochs_follow_the_detectors(qtbot: QtBot, tmp_path: Path, fake_engine: list[Any]) -> None:
    thorough = PRESETS["thorough"]
    dialog = AuditDialog(TrainOptions(preset="thorough"), project_root=tmp_path, n_train=10_000)
    qtbot.addWidget(dialog)
    assert dialog.epochs.value() == thorough.kfold_epochs  # cl alone: the K-fold models are the audit
    dialog.detector_boxes["aum"].setChecked(True)  # a dynamics run beside them: the K-fold models train less
    assert dialog.epochs.value() == thorough.kfold_epochs_beside_dynamics
    assert dialog.preset.currentText() == "Thorough" and "--preset" in dialog.options().audit_args()
    dialog.detector_boxes["aum"].setChecked(False)
    assert dialog.epochs.value() == thorough.kfold_epochs
    dialog.all_detectors.click()
    assert dialog.options().detectors == ["all"] and dialog.epochs.value() == thorough.kfold_epochs_beside_dynamics
    # Opened with all: the preset's number beside dynamics, and a run made so reads as Thorough again.
    again = AuditDialog(dialog.options(), project_root=tmp_path, n_train=10_000)
    qtbot.addWidget(again)
    assert again.epochs.value() == thorough.kfold_epochs_beside_dynamics
    assert audit_dialog.matching_preset(dataclasses.replace(dialog.options(), preset=None), 10_000) == "thorough"
    # Custom keeps the number set by hand whatever is ticked.
    again.epochs.setValue(9)
    again.detector_boxes["aum"].setChecked(False)
    assert again.preset.currentText() == "Custom" and again.epochs.value() == 9


def test_the_preset_sets_the_epochs_and_an_edit_makes_it_custom(qtbot: QtBot, tmp_path: Path,
                                                               fake_engine: list[Any]) -> None:
    dialog = AuditDialog(TrainOptions(preset="thorough"), project_root=tmp_path, n_train=10_000)
    qtbot.addWidget(dialog)
    thorough, fast = PRESETS["thorough"], PRESETS["fast"]
    assert dialog.preset.currentText() == "Thorough"
    assert dialog.epochs.value() == thorough.kfold_epochs
    assert dialog.dynamics_epochs.value() == dynamics_epochs_for(10_000, thorough)
    assert dialog.options().audit_args()[-4:] == ["--preset", "thorough", "--detectors", "cl"]
    dialog.preset.setCurrentIndex(dialog.preset.findData("fast"))
    assert dialog.epochs.value() == fast.kfold_epochs and dialog.image_size.value() == fast.image_size
    assert dialog.dynamics_epochs.value() == dynamics_epochs_for(10_000, fast)
    assert dialog.options().preset == "fast"
    dialog.epochs.setValue(fast.kfold_epochs + 1)  # by hand: no preset any more
    assert dialog.preset.currentText() == "Custom" and dialog.options().preset == "custom"
    assert "--preset" not in dialog.options().audit_args()
    assert dialog.epochs.value() == fast.kfold_epochs + 1  # Custom keeps what was set

    bigger = AuditDialog(TrainOptions(preset="thorough"), project_root=tmp_path, n_train=50_000)
    qtbot.addWidget(bigger)
    assert bigger.dynamics_epochs.value() == dynamics_epochs_for(50_000, thorough)
    assert bigger.dynamics_epochs.value() != dynamics_epochs_for(10_000, thorough)  # the budget follows the count
    # Options from before the presets: the preset they match, else Custom with their numbers.
    matching, old = AuditDialog(TrainOptions()), AuditDialog(TrainOptions(epochs=3, image_size=16))
    qtbot.addWidget(matching)
    qtbot.addWidget(old)
    assert matching.preset.currentText() == "Thorough"
    assert old.preset.currentText() == "Custom" and old.epochs.value() == 3


def test_the_estimate_line_measures_then_counts_each_change(qtbot: QtBot, tmp_path: Path,
                                                           fake_engine: list[Any]) -> None:
    dialog = AuditDialog(TrainOptions(preset="thorough"), project_root=tmp_path, n_train=1000)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: len(fake_engine) == 1)
    command, project, options = fake_engine[0]
    assert command == "estimate" and project == tmp_path
    assert options[options.index("--preset") + 1] == "thorough" and options[options.index("--epochs") + 1] == "12"
    assert dialog.estimate.text() == MEASURING  # never blocks: the engine answers later

    dialog.show_estimate(answer(1000))  # the engine's JSON, as the process's answer delivers it
    thorough = PRESETS["thorough"]
    steps = 3 * thorough.kfold_epochs * 1000 * 2 // 3 + 1000  # cl alone: the K-fold models
    assert dialog.estimate.text().startswith(f"Estimated cost: about {steps:,} image-steps: about ")
    assert "1,900 images/s (float32, measured on this computer)" in dialog.estimate.text()

    # Other epochs or detectors: counted here at the same rate, no new measurement.
    before = dialog.estimate.text()
    dialog.detector_boxes["aum"].setChecked(True)
    qtbot.waitUntil(lambda: dialog.estimate.text() != before)
    assert len(fake_engine) == 1
    beside = 3 * thorough.kfold_epochs_beside_dynamics * 1000 * 2 // 3 + 1000  # the K-fold models train less now
    total = beside + dynamics_epochs_for(1000, thorough) * 1000
    assert f"about {total:,} image-steps" in dialog.estimate.text()
    # Another model trains at another rate: the engine measures again.
    dialog.model.setCurrentText("small_cnn")
    qtbot.waitUntil(lambda: len(fake_engine) == 2)
    assert dialog.estimate.text() == MEASURING
    process = dialog._estimate_process
    assert process is not None
    dialog._estimate_failed(process, "no such project")
    assert dialog.estimate.text() == ("Estimated cost: unknown — the engine could not estimate it (no such project)")


def test_the_launcher_gives_the_dialog_the_project_and_its_count(qtbot: QtBot, window: Any, image_project: Path,
                                                                fake_engine: list[Any]) -> None:
    from engine.store import Project
    from engine.workflows.budget import fit_sample_count

    assert window.open_project(image_project)
    dialog = window.launcher.audit_dialog()
    qtbot.addWidget(dialog)
    with Project.open(image_project) as project:
        assert dialog.n_train == fit_sample_count(project) == 21  # 3 classes x 7 training images
    assert dialog.project_root == window.session.root and dialog.preset.currentText() == "Thorough"
    qtbot.waitUntil(lambda: len(fake_engine) == 1)
    dialog.reject()


def test_the_estimate_line_adds_the_embedding_the_audit_does_first(qtbot: QtBot, tmp_path: Path,
                                                                   fake_engine: list[Any]) -> None:
    dialog = AuditDialog(TrainOptions(preset="thorough", detectors=["cl", "knn"]), project_root=tmp_path,
                         n_train=1000)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: len(fake_engine) == 1)
    embedding = {"samples": 1000, "images_per_s": 200.0, "seconds": 5.0,
                 "words": "embedding 1,000 images first (efficientnet_lite0 at 128 px): about 5 s at 200 images/s"}
    dialog.show_estimate({**answer(1000), "embeddings_to_compute": embedding})
    assert dialog.estimate.text().endswith("; plus " + embedding["words"])
    dialog.detector_boxes["knn"].setChecked(False)  # nothing reads embeddings now: nothing to embed
    qtbot.waitUntil(lambda: "plus embedding" not in dialog.estimate.text())
    assert len(fake_engine) == 1  # cl alone: counted at the rate already known


def test_ticking_a_detector_on_embeddings_asks_the_engine_to_time_the_embedding(
        qtbot: QtBot, tmp_path: Path, fake_engine: list[Any]) -> None:
    dialog = AuditDialog(TrainOptions(preset="thorough", detectors=["cl"]), project_root=tmp_path, n_train=1000)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: len(fake_engine) == 1)
    dialog.show_estimate({**answer(1000), "detectors": ["cl"], "embeddings_to_compute": None})
    dialog.detector_boxes["knn"].setChecked(True)  # the answer for cl alone did not time the embedding
    qtbot.waitUntil(lambda: len(fake_engine) == 2)
    options = fake_engine[1][2]
    assert options[options.index("--detectors") + 1] == "cl,knn"
