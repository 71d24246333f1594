"""Retrain with the person's decisions applied: the robust-training method, its options, the trusted set, seeds."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from auditor.views.audit_dialog import MODELS, TrainOptions, option_spin_box
from engine.methods import METHODS, MethodInfo
from engine.store import Project

OptionEditor = QCheckBox | QSpinBox | QLineEdit


@dataclasses.dataclass(frozen=True)
class TrustedSummary:
    """The review's trusted set in words: how many samples a meta method uses, which classes it misses, and
    how many keeps and relabels it leaves out (made in bulk or by the engine: nobody looked at each)."""

    count: int
    missing: list[str]
    excluded: int = 0

    @property
    def usable(self) -> bool:
        return self.count > 0 and not self.missing

    def describe(self) -> str:
        left_out = f"; {self.excluded:,} left out" if self.excluded else ""
        if not self.count:
            return ("no trusted samples yet: keep or relabel some training samples in the review, one at a time "
                    f"(bulk decisions are not counted{left_out})")
        covered = "every class covered" if not self.missing else f"none of {', '.join(self.missing)}"
        return (f"{self.count:,} reviewed sample{'s' if self.count != 1 else ''}, {covered}: a meta method learns "
                f"from these {self.count:,}, kept or relabeled by a person one at a time "
                f"(bulk decisions are not counted{left_out})")


def review_trusted_summary(project: Project) -> TrustedSummary:
    """What ``engine.workflows.trusted.from_review`` will give a run (numpy only: no torch in the app)."""
    from engine.workflows.trusted import review_summary

    summary = review_summary(project)
    missing = [name for name, count in summary["per_class"].items() if count == 0]
    return TrustedSummary(summary["samples"], missing, summary["excluded"])


def option_fields(method: str) -> list[dataclasses.Field[Any]]:
    """The method's options; loads its module (and torch) on first use, only when the dialog asks."""
    from engine.methods import option_fields as registry_fields

    return registry_fields(method)


def _type_name(field: dataclasses.Field[Any]) -> str:
    return field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))


@dataclasses.dataclass
class RetrainOptions:
    train: TrainOptions
    method: str = "ce"
    options: dict[str, str] = dataclasses.field(default_factory=dict)  # only the ones changed from the defaults
    seeds: int = 3
    trusted_per_class: int | None = None

    def args(self) -> list[str]:
        args = [*self.train.train_args(), "--method", self.method, "--seeds", str(self.seeds)]
        for key, value in self.options.items():
            args += ["--option", f"{key}={value}"]
        if self.trusted_per_class:
            args += ["--trusted-per-class", str(self.trusted_per_class)]
        return args


class RetrainDialog(QDialog):
    def __init__(self, project: Project, options: TrainOptions | None = None, *,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Retrain on the cleaned data")
        self.train = options or TrainOptions()
        self.trusted = review_trusted_summary(project)
        self.truth_known = project.sample_table().truth_known
        self.method = QComboBox()
        for name, info in METHODS.items():
            self.method.addItem(name, name)
            self.method.setItemData(self.method.count() - 1, info.summary, Qt.ItemDataRole.ToolTipRole)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setObjectName("muted")
        self.options_box = QGroupBox("Method options (defaults from the method's paper)")
        self.options_form = QFormLayout(self.options_box)
        self.editors: dict[str, tuple[dataclasses.Field[Any], OptionEditor]] = {}
        self.model = QComboBox()
        self.model.addItems(MODELS)
        self.model.setCurrentText(self.train.model)
        self.epochs = option_spin_box("--epochs")
        self.epochs.setValue(self.train.epochs)
        self.seeds = option_spin_box("--seeds")
        self.seeds.setValue(3)
        self.seeds.setToolTip("each model trains once per seed; differences to plain cross-entropy are paired "
                              "by seed and given with a 95% interval")
        self.trusted_label = QLabel()
        self.trusted_label.setWordWrap(True)
        self.per_class = option_spin_box("--trusted-per-class")
        self.per_class.setMinimum(0)  # below the engine's range: the special value "off", the default
        self.per_class.setValue(0)
        self.per_class.setSpecialValueText("off: use the review")
        self.per_class.setToolTip("draw N samples per class labelled with the truth (benchmarks only)")
        self.per_class.setEnabled(self.truth_known)
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        self.problem.setObjectName("problem")
        self.problem.setStyleSheet("QLabel#problem { color: #9a3412; }")

        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.addRow("Method", self.method)
        form.addRow("", self.summary)
        form.addRow("Model", self.model)
        form.addRow("Epochs", self.epochs)
        form.addRow("Seeds", self.seeds)
        form.addRow("Trusted set", self.trusted_label)
        if self.truth_known:
            form.addRow("Trusted per class", self.per_class)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.start_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.start_button.setText("Start retraining")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        intro = QLabel("Trains with every decision applied: removed samples are left out, relabelled ones use "
                       "their new label. Accuracy is measured on the held-out split, beside plain cross-entropy.")
        intro.setWordWrap(True)
        intro.setObjectName("muted")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 16, 18, 14)
        layout.setSpacing(10)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.options_box)
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(520)
        self.method.currentIndexChanged.connect(self._method_changed)
        self.per_class.valueChanged.connect(self._update_start)
        self._method_changed()

    @property
    def info(self) -> MethodInfo:
        return METHODS[self.method.currentData()]

    def _method_changed(self) -> None:
        info = self.info
        self.summary.setText(info.summary)
        while self.options_form.rowCount():
            self.options_form.removeRow(0)
        self.editors.clear()
        for field in option_fields(info.name):
            editor = self._editor(field)
            self.options_form.addRow(field.name, editor)
            self.editors[field.name] = (field, editor)
        self.options_box.setVisible(bool(self.editors))
        self._update_start()

    @staticmethod
    def _editor(field: dataclasses.Field[Any]) -> OptionEditor:
        kind = _type_name(field)
        default: Any = field.default
        editor: OptionEditor
        if kind == "bool":
            editor = QCheckBox()
            editor.setChecked(bool(default))
        elif kind == "int":
            editor = QSpinBox()
            editor.setRange(0, 1_000_000)
            editor.setValue(int(default))
        else:  # floats (3e-05 reads best as typed), optional numbers ("none": the method's own rule), words
            editor = QLineEdit("none" if default is None else str(default))
        editor.setToolTip(str(field.metadata.get("help", "")))
        return editor

    def _update_start(self) -> None:
        info = self.info
        per_class = self.per_class.value() if self.truth_known else 0
        self.trusted_label.setText(
            f"{per_class} per class, labelled with the truth" if per_class else self.trusted.describe())
        problem = ""
        if info.needs_trusted and not per_class and not self.trusted.usable:
            problem = (f"{info.name} learns from a trusted set of every class, and the review gives "
                       f"{self.trusted.describe()}. Keep or relabel samples of the missing classes first.")
        elif info.needs_truth and not self.truth_known:
            problem = f"{info.name} trains on the true labels, and this project does not know them."
        self.problem.setText(problem)
        self.problem.setVisible(bool(problem))
        self.start_button.setEnabled(not problem)

    def changed_options(self) -> dict[str, str]:
        """The options whose value differs from the method's default, as ``--option`` text."""
        changed: dict[str, str] = {}
        for name, (field, editor) in self.editors.items():
            default: Any = field.default
            if isinstance(editor, QCheckBox):
                value: Any = editor.isChecked()
                text = "true" if value else "false"
            elif isinstance(editor, QSpinBox):
                value = editor.value()
                text = str(value)
            else:
                text = editor.text().strip()
                value = None if text.lower() in ("", "none") else text
                if value is not None and default is not None:
                    try:
                        value = type(default)(text)
                    except ValueError:
                        value = text  # the engine names the option and the type it wants
            if value != default and not (isinstance(value, float) and np.isclose(value, default)):
                changed[name] = text
        return changed

    def options(self) -> RetrainOptions:
        train = dataclasses.replace(self.train, model=self.model.currentText(), epochs=self.epochs.value())
        per_class = self.per_class.value() if self.truth_known and self.per_class.value() else None
        return RetrainOptions(train, self.info.name, self.changed_options(), self.seeds.value(), per_class)
