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

from engine.options import spin_range
from engine.training.config import DEFAULT_MODEL
from engine.workflows.audit import DEFAULT_DYNAMICS_EPOCHS  # numpy-only: no torch in the app's process

RESNETS = ("resnet18", "resnet34", "resnet50")  # the models with ImageNet weights (engine.models.TORCHVISION_RESNETS)
MODELS = (DEFAULT_MODEL, "small_cnn", *RESNETS)


def option_spin_box(flag: str, *, minimum: int | None = None) -> QSpinBox:
    """A spin box holding the values the engine accepts for ``flag`` (engine.options, as the CLI checks them)."""
    low, high = spin_range(flag)
    box = QSpinBox()
    box.setRange(max(int(low), minimum if minimum is not None else int(low)), int(high))
    return box


def known_detectors() -> dict[str, str]:
    """Detector names and descriptions; the registry is numpy-only by design, so listing it is cheap."""
    try:
        from engine.detectors import DETECTORS

        return {name: info.title for name, info in DETECTORS.items()}
    except Exception:  # noqa: BLE001 - an engine mid-upgrade must not stop the dialog from opening
        return {"cl": "Confident learning (cleanlab, K-fold probabilities)"}


@dataclass(frozen=True)
class DetectorGroup:
    """Detectors that share one kind of evidence, and what that evidence costs to gather."""

    title: str
    cost: str
    names: list[str]


def detector_groups() -> list[DetectorGroup]:
    """The registry's detectors grouped by the evidence they need: the audit trains once per group, not per detector."""
    try:
        from engine.detectors import DETECTORS, OOF_PROBS
    except Exception:  # noqa: BLE001 - as known_detectors
        return [DetectorGroup("K-fold cross-validation", "K models", ["cl"])]
    kfold = [name for name, info in DETECTORS.items() if OOF_PROBS in info.requires]
    combining = [name for name, info in DETECTORS.items() if info.combines]
    one_run = [name for name in DETECTORS if name not in kfold and name not in combining]
    groups = [DetectorGroup("K-fold cross-validation", "trains K models (the Folds below)", kfold),
              DetectorGroup("One training run", "trains 1 model, shared by all of these", one_run),
              DetectorGroup("Ensemble", "no training of its own: combines the others chosen", combining)]
    return [group for group in groups if group.names]


WEIGHTS_STATE_WORDS = {
    "cached": "ImageNet weights are cached on this computer",
    "downloadable": "ImageNet weights will be downloaded on first use (needs the network)",
    "unavailable": "this model has no pretrained weights",
}


def pretrained_weights_state(model: str) -> str:
    """"cached", "downloadable" or "unavailable" (see engine.models.weights_state).

    The project's own CNNs never have pretrained weights, so asking about them needs no torch import;
    for a ResNet the engine's answer loads torch, once, when the person picks that model.
    """
    if model not in RESNETS:
        return "unavailable"
    try:
        from engine.models import weights_state

        return str(weights_state(model))
    except Exception:  # noqa: BLE001 - no torch here: a run would say so; the dialog must open
        return "unavailable"


@dataclass
class TrainOptions:
    model: str = DEFAULT_MODEL
    epochs: int = 12
    dynamics_epochs: int | None = None  # None: the engine's rule (--epochs, since the app always passes it)
    folds: int = 3
    image_size: int = 32
    device: str = "auto"
    seed: int = 0
    detectors: list[str] = field(default_factory=lambda: ["cl"])
    pretrained: bool = False

    def audit_args(self) -> list[str]:
        dynamics = ["--dynamics-epochs", str(self.dynamics_epochs)] if self.dynamics_epochs else []
        return [*self.train_args(), "--folds", str(self.folds), *dynamics, "--detectors", ",".join(self.detectors)]

    def train_args(self) -> list[str]:
        return ["--model", self.model, "--epochs", str(self.epochs), "--image-size", str(self.image_size),
                "--device", self.device, "--seed", str(self.seed), *(["--pretrained"] if self.pretrained else [])]


class AuditDialog(QDialog):
    def __init__(self, options: TrainOptions | None = None, *, retrain: bool = False,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        options = options or TrainOptions()
        self.setWindowTitle("Retrain on the cleaned data" if retrain else "Audit the labels")
        self._make_fields(options)
        form = self._training_form(retrain)
        self.detector_boxes: dict[str, QCheckBox] = {}
        self.all_detectors = QCheckBox("all — every detector below (one K-fold audit plus one training run)")
        if not retrain:
            self._add_detector_choices(form, options)
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
        self.setMinimumWidth(420 if retrain else 680)  # the detectors' titles read in full

    def _make_fields(self, options: TrainOptions) -> None:
        """The training fields, set from ``options``, with the ranges the CLI checks (engine.options)."""
        self.model = QComboBox()
        self.model.addItems(MODELS)
        self.model.setCurrentText(options.model)
        self.epochs = option_spin_box("--epochs")
        self.epochs.setValue(options.epochs)
        self.dynamics_epochs = option_spin_box("--dynamics-epochs")
        self.dynamics_epochs.setValue(options.dynamics_epochs or DEFAULT_DYNAMICS_EPOCHS)
        self.dynamics_epochs.setToolTip("The one model whose training dynamics aum, cartography, ocl and td_lstm read: "
                                        "a long run tells samples learned late from samples never learned")
        self.folds = option_spin_box("--folds")
        self.folds.setValue(options.folds)
        self.image_size = option_spin_box("--image-size")
        self.image_size.setSingleStep(8)
        self.image_size.setSuffix(" px")
        self.image_size.setValue(options.image_size)
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.device.setCurrentText(options.device)
        self.seed = option_spin_box("--seed")
        self.seed.setValue(options.seed)
        self.pretrained = QCheckBox("Start from pretrained (ImageNet) weights")
        self.pretrained.setChecked(options.pretrained)
        self.weights_state = QLabel()
        self.weights_state.setObjectName("muted")
        self.weights_state.setWordWrap(True)
        self.model.currentTextChanged.connect(self._show_weights_state)
        self._show_weights_state(self.model.currentText())

    def _training_form(self, retrain: bool) -> QFormLayout:
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.setHorizontalSpacing(14)
        form.setVerticalSpacing(8)
        form.addRow("Model", self.model)
        form.addRow("", self.pretrained)
        form.addRow("", self.weights_state)
        if retrain:
            form.addRow("Epochs", self.epochs)
        else:
            form.addRow("Epochs (K-fold)", self.epochs)
            form.addRow("Folds", self.folds)
            form.addRow("Epochs (dynamics)", self.dynamics_epochs)
        form.addRow("Image size", self.image_size)
        form.addRow("Device", self.device)
        form.addRow("Seed", self.seed)
        return form

    def _add_detector_choices(self, form: QFormLayout, options: TrainOptions) -> None:
        """One box per registered detector, grouped by the evidence it needs, and "all"."""
        titles = known_detectors()
        form.addRow("Detectors", self.all_detectors)
        for group in detector_groups():
            heading = QLabel(f"<b>{group.title}</b> — {group.cost}")
            form.addRow("", heading)
            for name in group.names:
                box = QCheckBox(f"{name} — {titles.get(name, name)}")
                box.setChecked(name in options.detectors or "all" in options.detectors)
                box.toggled.connect(self._sync_all)
                form.addRow("", box)
                self.detector_boxes[name] = box
        self.all_detectors.setChecked(bool(self.detector_boxes)
                                      and all(box.isChecked() for box in self.detector_boxes.values()))
        self.all_detectors.clicked.connect(self._choose_all)

    def _show_weights_state(self, model: str) -> None:
        state = pretrained_weights_state(model)
        self.weights_state.setText(f"{model}: {WEIGHTS_STATE_WORDS.get(state, state)}")
        self.pretrained.setEnabled(state != "unavailable")
        if state == "unavailable":
            self.pretrained.setChecked(False)

    def _choose_all(self, checked: bool) -> None:
        for box in self.detector_boxes.values():
            box.blockSignals(True)
            box.setChecked(checked)
            box.blockSignals(False)

    def _sync_all(self) -> None:
        self.all_detectors.setChecked(all(box.isChecked() for box in self.detector_boxes.values()))

    def options(self) -> TrainOptions:
        chosen = [name for name, box in self.detector_boxes.items() if box.isChecked()]
        detectors = ["all"] if self.detector_boxes and len(chosen) == len(self.detector_boxes) else chosen or ["cl"]
        return TrainOptions(self.model.currentText(), self.epochs.value(), self.dynamics_epochs.value(),
                            self.folds.value(), self.image_size.value(), self.device.currentText(), self.seed.value(),
                            detectors, self.pretrained.isChecked() and self.pretrained.isEnabled())
