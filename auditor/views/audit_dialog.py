"""The settings of an audit (or retrain): model, budget, device, seed, detectors, and what the audit will cost.

The audit dialog starts with a preset (engine.workflows.budget.PRESETS: Thorough, Fast), which sets the epochs
and the image size; editing one of them makes it Custom. Under the form, "Estimated cost" says what the audit
will train, in image-steps and seconds at this computer's rate: `python -m engine estimate ... --json` runs in
the background (the first time it measures a couple of seconds of training steps, unless a run of the project
already gives the rate), again when the model, image size or device change; the rest is counted here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer
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

from auditor.engine_process import EngineProcess
from engine.options import spin_range
from engine.training.config import DEFAULT_MODEL
from engine.workflows.audit import DEFAULT_DYNAMICS_EPOCHS  # numpy-only: no torch in the app's process
from engine.workflows.budget import PRESETS, Preset, dynamics_epochs_for, estimate_audit_cost

CUSTOM = "custom"  # the preset combo's choice once the person sets the epochs or image size by hand
ESTIMATE_DELAY_MS = 400  # the estimate waits for the options to settle (debounce)
MEASURING = "Estimated cost: measuring this computer's speed…"
RESNETS = ("resnet18", "resnet34", "resnet50")  # the models with ImageNet weights (engine.models.TORCHVISION_RESNETS)
MODELS = (DEFAULT_MODEL, *(name for name in ("cnn7p", "cnn7", "small_cnn") if name != DEFAULT_MODEL), *RESNETS)


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
    # A name of engine.workflows.budget.PRESETS: the dialog sets the epochs and image size from it (the
    # dynamics epochs for the project's count of samples); "custom": the numbers above as they are;
    # None: the preset the numbers above match, else custom.
    preset: str | None = None

    def audit_args(self) -> list[str]:
        dynamics = ["--dynamics-epochs", str(self.dynamics_epochs)] if self.dynamics_epochs else []
        preset = ["--preset", self.preset] if self.preset in PRESETS else []  # recorded in the run's spec
        return [*self.train_args(), "--folds", str(self.folds), *dynamics, *preset,
                "--detectors", ",".join(self.detectors)]

    def train_args(self) -> list[str]:
        return ["--model", self.model, "--epochs", str(self.epochs), "--image-size", str(self.image_size),
                "--device", self.device, "--seed", str(self.seed), *(["--pretrained"] if self.pretrained else [])]


def preset_dynamics_epochs(preset: Preset, n_train: int | None) -> int:
    """The dynamics epochs ``preset`` gives ``n_train`` training samples; not known: its most."""
    return dynamics_epochs_for(n_train if n_train is not None else 0, preset)


def detector_needs(detectors: list[str]) -> tuple[bool, bool, bool] | None:
    """(K-fold models, dynamics run, embeddings) that ``detectors`` need; None when the engine cannot say."""
    try:
        from engine.detectors import EMBEDDINGS, parse_detectors, required_evidence, training_runs

        chosen = parse_detectors(detectors)
    except Exception:  # noqa: BLE001 - as known_detectors: an unknown name is the engine's to report
        return None
    kfold, dynamics = training_runs(chosen)
    return kfold, dynamics, EMBEDDINGS in required_evidence(chosen)


def detectors_use_dynamics(detectors: list[str]) -> bool:
    """Whether ``detectors`` train a dynamics run beside the K-fold models (the presets' K-fold epochs depend on it)."""
    needs = detector_needs(detectors)
    return needs[1] if needs is not None else any(name != "cl" for name in detectors)


def matching_preset(options: TrainOptions, n_train: int | None) -> str:
    """The preset whose numbers ``options`` holds (K-fold epochs, image size, dynamics epochs if set), else custom."""
    beside_dynamics = detectors_use_dynamics(options.detectors)
    for name, preset in PRESETS.items():
        if (options.epochs == preset.kfold_epochs_for(beside_dynamics) and options.image_size == preset.image_size
                and options.dynamics_epochs in (None, preset_dynamics_epochs(preset, n_train))):
            return name
    return CUSTOM


class AuditDialog(QDialog):
    """The audit's (or, with ``retrain``, a plain retrain's) options.

    ``project_root`` and ``n_train`` (the samples the audit trains on: the train split less the removed
    ones) give the presets' dynamics epochs and the estimated cost; without them there is no estimate.
    """

    def __init__(self, options: TrainOptions | None = None, *, retrain: bool = False,
                 parent: QWidget | None = None, project_root: Path | str | None = None,
                 n_train: int | None = None) -> None:
        super().__init__(parent)
        options = options or TrainOptions()
        self.retrain = retrain
        self._opened_detectors = list(options.detectors)  # what the presets read before the boxes exist
        self.project_root = Path(project_root) if project_root is not None else None
        self.n_train = n_train
        self.setWindowTitle("Retrain on the cleaned data" if retrain else "Audit the labels")
        self._make_fields(options)
        self._make_preset(options)
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
        if not retrain:
            layout.addWidget(self.estimate)
        layout.addWidget(buttons)
        self.setMinimumWidth(420 if retrain else 680)  # the detectors' titles read in full
        if not retrain:
            self._watch_for_estimate()

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

    def _make_preset(self, options: TrainOptions) -> None:
        """The preset combo (Thorough, Fast, Custom) and the estimate line; the fields set from the preset."""
        self.preset = QComboBox()
        for name, preset in PRESETS.items():
            self.preset.addItem(name.capitalize(), name)
            self.preset.setItemData(self.preset.count() - 1, preset.description, Qt.ItemDataRole.ToolTipRole)
        self.preset.addItem("Custom", CUSTOM)
        self.preset.setItemData(self.preset.count() - 1, "the epochs and image size as you set them",
                                Qt.ItemDataRole.ToolTipRole)
        self.estimate = QLabel("")
        self.estimate.setObjectName("muted")
        self.estimate.setWordWrap(True)
        self.estimate.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._estimate_timer = QTimer(self)
        self._estimate_timer.setSingleShot(True)
        self._estimate_timer.setInterval(ESTIMATE_DELAY_MS)
        self._estimate_timer.timeout.connect(self._start_estimate)
        self._estimate_process: EngineProcess | None = None
        self._estimate_key: tuple[Any, ...] | None = None  # the rate the running estimate measures
        self._rates: dict[tuple[Any, ...], dict[str, Any]] = {}  # the engine's answers, by what the rate depends on
        if self.retrain:
            return
        chosen = options.preset if options.preset in (*PRESETS, CUSTOM) else matching_preset(options, self.n_train)
        self.preset.setCurrentIndex(self.preset.findData(chosen))
        self._apply_preset()
        self.preset.currentIndexChanged.connect(self._apply_preset)
        for box in (self.epochs, self.dynamics_epochs, self.image_size):
            box.valueChanged.connect(self._edited_by_hand)

    def preset_name(self) -> str:
        return str(self.preset.currentData())

    def _apply_preset(self) -> None:
        """Set the epochs and image size from the chosen preset (Custom leaves them as they are)."""
        preset = PRESETS.get(self.preset_name())
        if preset is None:
            return
        for box, value in ((self.epochs, preset.kfold_epochs_for(detectors_use_dynamics(self._chosen_detectors()))),
                           (self.dynamics_epochs, preset_dynamics_epochs(preset, self.n_train)),
                           (self.image_size, preset.image_size)):
            box.blockSignals(True)  # the preset's own values are not edits by hand
            box.setValue(value)
            box.blockSignals(False)
        self._options_changed()

    def _chosen_detectors(self) -> list[str]:
        """The detectors ticked now (while the form is being made: the ones the dialog was opened with)."""
        if not getattr(self, "detector_boxes", None):
            return list(self._opened_detectors)
        return self.options().detectors

    def _detectors_changed(self) -> None:
        """A preset's K-fold epochs depend on the detectors (fewer beside a dynamics run): follow them."""
        if self.preset_name() in PRESETS:
            self._apply_preset()
        self._options_changed()

    def _edited_by_hand(self) -> None:
        if self.preset_name() != CUSTOM:
            self.preset.blockSignals(True)
            self.preset.setCurrentIndex(self.preset.findData(CUSTOM))
            self.preset.blockSignals(False)
        self._options_changed()

    # ------------------------------------------------------------ the estimate
    def _watch_for_estimate(self) -> None:
        """Every option that changes the cost re-estimates it, once the changes settle."""
        self.model.currentTextChanged.connect(self._options_changed)
        self.device.currentTextChanged.connect(self._options_changed)
        self.folds.valueChanged.connect(self._options_changed)
        self.all_detectors.clicked.connect(self._detectors_changed)
        for box in self.detector_boxes.values():
            box.toggled.connect(self._detectors_changed)
        self._options_changed()

    def _options_changed(self) -> None:
        if self.retrain or self.project_root is None or not hasattr(self, "detector_boxes"):
            return  # no project: nothing to count (the dialog's own tests); called while the form is being made
        self._estimate_timer.start()  # restarts: one estimate after the last change

    def _rate_key(self) -> tuple[Any, ...]:
        """What the engine's answer depends on, of the dialog's options: the training rate's model, image size and
        device (the batch size and precision: the engine's), and whether it must time the embedding too."""
        return self._answer_key(self.model.currentText(), self.image_size.value(), self.options().detectors)

    def _known_answer(self, key: tuple[Any, ...]) -> dict[str, Any] | None:
        """The engine's answer for ``key``; without embeddings to time, one that also timed them serves."""
        known = self._rates.get(key)
        if known is None and not key[-1]:  # an answer that also timed the embedding has the same training rate
            known = self._rates.get((*key[:-1], True))
        return known

    def _answer_key(self, model: str, image_size: int, detectors: list[str]) -> tuple[Any, ...]:
        needs = detector_needs(detectors)
        return (model, image_size, self.device.currentText(), bool(needs and needs[2]))

    def estimate_args(self) -> list[str]:
        """The options of `python -m engine estimate` for what the dialog holds now."""
        options = self.options()
        return ["--preset", options.preset if options.preset in PRESETS else next(iter(PRESETS)),
                "--detectors", ",".join(options.detectors), "--folds", str(options.folds),
                "--epochs", str(options.epochs), "--dynamics-epochs", str(self.dynamics_epochs.value()),
                "--image-size", str(options.image_size), "--model", options.model, "--device", options.device]

    def _start_estimate(self) -> None:
        """Count here when the rate for these options is known; else ask the engine (it measures)."""
        if self.project_root is None:
            return
        key = self._rate_key()
        known = self._known_answer(key)
        if known is not None:
            self._show_counted(known)
            return
        if self._estimate_process is not None and self._estimate_key == key:
            return  # it is measuring this very rate; its answer is counted for the options of then
        self._stop_estimate()
        self.estimate.setText(MEASURING)
        process = EngineProcess(self)
        self._estimate_process, self._estimate_key = process, key
        process.answer.connect(lambda document, run=process: self._estimate_answered(run, document))
        process.error.connect(lambda event, run=process: self._estimate_failed(run, getattr(event, "message", "")))
        process.died.connect(lambda _code, message, run=process: self._estimate_failed(run, message))
        process.finished.connect(lambda _status, run=process: self._estimate_ended(run))
        process.start("estimate", self.project_root, self.estimate_args())

    def _estimate_answered(self, process: EngineProcess, document: object) -> None:
        if process is self._estimate_process and isinstance(document, dict):
            self.show_estimate(document)

    def _estimate_failed(self, process: EngineProcess, message: str) -> None:
        if process is self._estimate_process:
            self.estimate.setText("Estimated cost: unknown — the engine could not estimate it"
                                  + (f" ({message})" if message else ""))

    def _estimate_ended(self, process: EngineProcess) -> None:
        if process is self._estimate_process:
            self._estimate_process, self._estimate_key = None, None
            if self._estimate_timer.isActive():
                return
            if self._known_answer(self._rate_key()) is not None:
                self._start_estimate()  # the options moved on while it measured: count them now

    def _stop_estimate(self) -> None:
        process, self._estimate_process, self._estimate_key = self._estimate_process, None, None
        if process is not None and process.is_running():
            process.kill()  # it only reads the project: nothing to lose

    def show_estimate(self, document: dict[str, Any]) -> None:
        """The engine's answer (`estimate --json`): kept by what its rate depends on, and shown for the options now."""
        rate = document.get("rate") if isinstance(document.get("rate"), dict) else {}
        asked = document.get("detectors")
        key = self._answer_key(document.get("model", self.model.currentText()),
                               document.get("image_size", self.image_size.value()),
                               asked if isinstance(asked, list) else self.options().detectors)
        self._rates[key] = document
        if isinstance(document.get("n_train"), int):
            self.n_train = int(document["n_train"])
        if key == self._rate_key():
            self._show_counted(document)
        else:
            describe = document.get("describe")
            self.estimate.setText(f"Estimated cost: {describe}" if describe else MEASURING)
        self.estimate.setToolTip(str((rate or {}).get("words", "")))

    def _show_counted(self, answer: dict[str, Any]) -> None:
        """The estimate for the options now, at the rate of ``answer`` (same model, image size and device)."""
        rate = answer.get("rate") if isinstance(answer.get("rate"), dict) else {}
        options = self.options()
        needs = detector_needs(options.detectors)
        if needs is None:  # an engine mid-upgrade: show the engine's own words
            self.estimate.setText(f"Estimated cost: {answer.get('describe', '?')}")
            return
        kfold, dynamics, embeddings = needs
        n_train = int(answer.get("n_train", self.n_train or 0))
        source = str((rate or {}).get("words", ""))
        cost = estimate_audit_cost(
            n_train, options.folds, options.epochs, self.dynamics_epochs.value(), kfold, dynamics,
            (rate or {}).get("images_per_s"), precision=answer.get("precision"),
            rate_source="measured on this computer" if (rate or {}).get("source") == "measured" else source)
        embedding = answer.get("embeddings_to_compute") if isinstance(answer.get("embeddings_to_compute"), dict) else None
        plus = f"; plus {embedding['words']}" if embedding and embeddings else ""
        self.estimate.setText(f"Estimated cost: {cost.describe()}{plus}")

    def done(self, result: int) -> None:
        """Closed either way: stop a running estimate."""
        self._estimate_timer.stop()
        self._stop_estimate()
        super().done(result)

    def _training_form(self, retrain: bool) -> QFormLayout:
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.setHorizontalSpacing(14)
        form.setVerticalSpacing(8)
        if not retrain:
            form.addRow("Preset", self.preset)
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
                            detectors, self.pretrained.isChecked() and self.pretrained.isEnabled(),
                            None if self.retrain else self.preset_name())
