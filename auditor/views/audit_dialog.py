"""The settings of an audit (or retrain): model, budget, device, seed, detectors."""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

MODELS = ("small_cnn", "resnet18", "resnet34", "resnet50")


def known_detectors() -> dict[str, str]:
    """Detector names and descriptions; the registry is numpy-only by design, so listing it is cheap."""
    try:
        from engine.detectors import DETECTORS

        return {name: info.title for name, info in DETECTORS.items()}
    except Exception:  # noqa: BLE001 - an engine mid-upgrade must not stop the dialog from opening
        return {"cl": "Confident learning (cleanlab, K-fold probabilities)"}


@dataclass
class TrainOptions:
    model: str = "small_cnn"
    epochs: int = 12
    folds: int = 3
    image_size: int = 32
    device: str = "auto"
    seed: int = 0
    detectors: list[str] = field(default_factory=lambda: ["cl"])

    def audit_args(self) -> list[str]:
        return [*self.train_args(), "--folds", str(self.folds), "--detectors", ",".join(self.detectors)]

    def train_args(self) -> list[str]:
        return ["--model", self.model, "--epochs", str(self.epochs), "--image-size", str(self.image_size),
                "--device", self.device, "--seed", str(self.seed)]


class AuditDialog(QDialog):
    def __init__(self, options: TrainOptions | None = None, *, retrain: bool = False,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        options = options or TrainOptions()
        self.setWindowTitle("Retrain on the cleaned data" if retrain else "Audit the labels")
        self.model = QComboBox()
        self.model.addItems(MODELS)
        self.model.setCurrentText(options.model)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 500)
        self.epochs.setValue(options.epochs)
        self.folds = QSpinBox()
        self.folds.setRange(2, 10)
        self.folds.setValue(options.folds)
        self.image_size = QSpinBox()
        self.image_size.setRange(8, 1024)
        self.image_size.setSingleStep(8)
        self.image_size.setSuffix(" px")
        self.image_size.setValue(options.image_size)
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.device.setCurrentText(options.device)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(options.seed)
        self.detector_boxes: dict[str, QCheckBox] = {}

        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.setHorizontalSpacing(14)
        form.setVerticalSpacing(8)
        form.addRow("Model", self.model)
        form.addRow("Epochs", self.epochs)
        if not retrain:
            form.addRow("Folds", self.folds)
        form.addRow("Image size", self.image_size)
        form.addRow("Device", self.device)
        form.addRow("Seed", self.seed)
        if not retrain:
            for name, description in known_detectors().items():
                box = QCheckBox(f"{name} — {description}")
                box.setChecked(name in options.detectors)
                form.addRow("" if self.detector_boxes else "Detectors", box)
                self.detector_boxes[name] = box

        intro = QLabel(
            "Trains on every sample once it is held out of one fold, then scores every sample."
            if not retrain else "Trains on your data with every decision applied: removed samples are left out, "
            "relabelled ones use their new label. Accuracy is measured on the held-out split."
        )
        intro.setWordWrap(True)
        intro.setObjectName("muted")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Retrain" if retrain else "Start audit")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 16, 18, 14)
        layout.setSpacing(12)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.setMinimumWidth(420)

    def options(self) -> TrainOptions:
        detectors = [name for name, box in self.detector_boxes.items() if box.isChecked()] or ["cl"]
        return TrainOptions(self.model.currentText(), self.epochs.value(), self.folds.value(),
                            self.image_size.value(), self.device.currentText(), self.seed.value(), detectors)
