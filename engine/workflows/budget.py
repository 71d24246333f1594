"""What an audit costs before it starts: its presets, the dynamics run's epochs, image-steps and seconds.

Numpy-only (no torch at module level): the app imports it to fill its audit dialog.

An audit's work is counted in *image-steps*: one image through one training step (forward and
backward). The K-fold models train ``folds * epochs`` epochs on ``(folds - 1) / folds`` of the
training samples each, then predict the samples they held out; the one dynamics run trains
``dynamics_epochs`` epochs on every training sample. Divided by a rate in images per second
(measured on this computer: :mod:`engine.training.speed`) they give seconds.

The dynamics run's budget is a number of image-steps, not of epochs: a small dataset needs many
epochs before its dynamics separate the mislabeled samples, a large one reaches the same number
of steps in fewer (:func:`dynamics_epochs_for`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from engine.errors import UserError

if TYPE_CHECKING:
    from engine.store import Project


@dataclass(frozen=True)
class Preset:
    """A named audit budget: the dynamics run's image-steps and epoch bounds, the K-fold epochs, the image size."""

    dynamics_image_steps: int  # the dynamics run's budget: epochs = this / training samples, clamped below
    min_dynamics_epochs: int
    max_dynamics_epochs: int
    kfold_epochs: int  # each K-fold model's epochs when the audit has no dynamics run (cl alone)
    kfold_epochs_beside_dynamics: int  # ... when a dynamics run shares the audit (--detectors all)
    image_size: int  # training resolution in pixels
    description: str

    def kfold_epochs_for(self, uses_dynamics: bool) -> int:
        """Each K-fold model's epochs in an audit that also trains a dynamics run (``uses_dynamics``) or not."""
        return self.kfold_epochs_beside_dynamics if uses_dynamics else self.kfold_epochs


# THE ONE TABLE of the presets' numbers, from bench/detect.py on CIFAR-10N (README, "On a CPU without
# bf16"), chosen on images 1,000-1,999 of each class, float32 on a 2-core CPU without AMX:
# - thorough: 400,000 image-steps, 40 epochs at 10,000 samples (45 gave aum 0.005 ROC-AUC more, 30
#   0.015 less; 24 or 16 px instead of 32 lost 0.025 and 0.05). At 50,000 samples the same image-steps
#   are 8 epochs, as good as at 10,000: the budget follows the steps, not the epochs. Below 8 epochs
#   nothing was measured. Beside a dynamics run (--detectors all) the K-fold models train 4 epochs, not
#   12: there they give cl's own verdict and the held-out accuracy, not the ensemble's ranking (cl
#   yields to the dynamics run there, engine/detectors/__init__.py), 160,000 image-steps less at 10,000.
# - fast: 120,000 image-steps, the plain aum script's 12 epochs at 10,000 samples (ROC-AUC 0.855 there,
#   level with the script) and 6-epoch K-fold models: a first look at a quarter of the cost. Beside
#   its dynamics run the K-fold models train 4 epochs as under thorough (never more than thorough's).
PRESETS: dict[str, Preset] = {
    "thorough": Preset(
        dynamics_image_steps=400_000, min_dynamics_epochs=8, max_dynamics_epochs=45, kfold_epochs=12,
        kfold_epochs_beside_dynamics=4, image_size=32,
        description="the detectors at their best: 400,000 image-steps of dynamics (40 epochs at 10,000 samples, "
        "8 at 50,000), 12-epoch K-fold models (4 beside a dynamics run)",
    ),
    "fast": Preset(
        dynamics_image_steps=120_000, min_dynamics_epochs=6, max_dynamics_epochs=12, kfold_epochs=6,
        kfold_epochs_beside_dynamics=4, image_size=32,
        description="a quick first look at a quarter of the cost: 120,000 image-steps of dynamics, "
        "6-epoch K-fold models (4 beside a dynamics run)",
    ),
}
DEFAULT_PRESET = "thorough"


def get_preset(name: str | None) -> Preset:
    """The preset ``name`` (None: the default), or a UserError naming the known ones."""
    chosen = DEFAULT_PRESET if name is None else name
    if chosen not in PRESETS:
        raise UserError(f"unknown preset {chosen!r}", f"use {' or '.join(PRESETS)}")
    return PRESETS[chosen]


def dynamics_epochs_for(n_train: int, preset: Preset) -> int:
    """The dynamics run's epochs for ``n_train`` training samples: the preset's image-steps / ``n_train``,
    rounded, within its [min, max] epochs (no samples: the max)."""
    if n_train <= 0:
        return preset.max_dynamics_epochs
    epochs = round(preset.dynamics_image_steps / n_train)
    return int(min(max(epochs, preset.min_dynamics_epochs), preset.max_dynamics_epochs))


def resolve_audit_epochs(preset_name: str | None, epochs: int | None, dynamics_epochs: int | None,
                         n_train: int, *, uses_dynamics: bool) -> tuple[int, int]:
    """(K-fold epochs, dynamics epochs) of an audit on ``n_train`` training samples, as ``audit`` resolves them.

    ``--epochs`` given: the K-fold models' epochs, and the dynamics run's unless ``--dynamics-epochs``
    is given too; not given: the preset's K-fold epochs (:meth:`Preset.kfold_epochs_for`: fewer when
    the audit ``uses_dynamics``) and :func:`dynamics_epochs_for`.
    """
    preset = get_preset(preset_name)
    kfold = int(epochs) if epochs is not None else preset.kfold_epochs_for(uses_dynamics)
    if dynamics_epochs is not None:
        return kfold, int(dynamics_epochs)
    return kfold, int(epochs) if epochs is not None else dynamics_epochs_for(n_train, preset)


def audit_fit_ids(project: Project, labels_keep: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The samples an audit trains on: the train split less the samples decided removed."""
    _, keep = labels_keep if labels_keep is not None else project.labels_with_decisions()
    audited_ids = project.sample_table().train_ids
    return audited_ids[keep[audited_ids]]


def fit_sample_count(project: Project) -> int:
    """How many samples an audit of ``project`` trains on: the train split less the samples decided removed."""
    return len(audit_fit_ids(project))


PRECISION_WORDS = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True)
class AuditCost:
    """An audit's image-steps by stage and, with a rate, its seconds of training."""

    kfold_image_steps: int  # the K-fold models' training, and their one prediction of the samples they held out
    dynamics_image_steps: int  # the one dynamics run
    rate_images_per_s: float | None = None
    precision: str | None = None  # fp32 | bf16 | fp16: what the rate was measured in
    rate_source: str = ""  # in words: "measured on this computer", "from run 20260101-..."

    @property
    def total_image_steps(self) -> int:
        return self.kfold_image_steps + self.dynamics_image_steps

    def seconds(self, image_steps: int | None = None) -> float | None:
        """Seconds of training for ``image_steps`` (default: the total) at the rate; None without a rate."""
        steps = self.total_image_steps if image_steps is None else image_steps
        if not self.rate_images_per_s or self.rate_images_per_s <= 0 or not math.isfinite(self.rate_images_per_s):
            return None
        return steps / self.rate_images_per_s

    def describe(self) -> str:
        """One line: ``about 690,000 image-steps: about 6 min at 1,900 images/s (float32, measured on this computer)``."""
        if self.total_image_steps == 0:
            return "no training: the chosen detectors read embeddings"
        text = f"about {round_figure(self.total_image_steps):,} image-steps"
        seconds = self.seconds()
        if seconds is None or self.rate_images_per_s is None:
            return text
        where = ", ".join(part for part in (PRECISION_WORDS.get(self.precision or "", self.precision or ""),
                                            self.rate_source) if part)
        return (f"{text}: about {describe_seconds(seconds)} at {round_figure(self.rate_images_per_s):,} images/s"
                + (f" ({where})" if where else ""))


def kfold_image_steps(n_train: int, folds: int, epochs: int) -> int:
    """The K-fold models: ``folds`` models, ``epochs`` epochs on (folds-1)/folds of the samples each, plus one
    prediction of every sample by the model that held it out (counted as a step: forward-only is cheaper)."""
    return int(round(folds * epochs * n_train * (folds - 1) / folds)) + int(n_train)


def estimate_audit_cost(n_train: int, folds: int, kfold_epochs: int, dynamics_epochs: int, uses_kfold: bool,
                        uses_dynamics: bool, rate_images_per_s: float | None = None, *, precision: str | None = None,
                        rate_source: str = "") -> AuditCost:
    """The image-steps of an audit's K-fold models (when ``uses_kfold``) and dynamics run (``uses_dynamics``)."""
    return AuditCost(
        kfold_image_steps=kfold_image_steps(n_train, folds, kfold_epochs) if uses_kfold else 0,
        dynamics_image_steps=int(dynamics_epochs) * int(n_train) if uses_dynamics else 0,
        rate_images_per_s=rate_images_per_s, precision=precision, rate_source=rate_source,
    )


def round_figure(value: float) -> int:
    """``value`` to two significant figures (three from 100,000 on), as an estimate deserves: 1,873 -> 1,900."""
    if value <= 0 or not math.isfinite(value):
        return 0
    digits = 3 if value >= 100_000 else 2
    magnitude = 10 ** max(int(math.floor(math.log10(value))) - digits + 1, 0)
    return int(round(value / magnitude) * magnitude)


def describe_seconds(seconds: float) -> str:
    """``40 s``, ``6 min``, ``1 h 20 min``: an estimate, in the unit a person reads."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h" + (f" {rest} min" if rest else "")
