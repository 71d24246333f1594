"""``sln``, ``sln_mo``, ``sln_mo_lc``: stochastic label noise, with a momentum model, with label correction.

From the seed seeds/stochastic-label-noise.md (Chen et al., "Noise against noise", ICLR 2021):

* **SLN**: every step trains on ``one_hot(y) + sigma * N(0, 1)`` (independent noise per sample and
  class) with the soft cross-entropy ``-sum(target * log_softmax(logits))``. The noise makes SGD
  noisier, which keeps the model from memorising wrong labels.
* **MO** (momentum model): an exponential moving average of the model's weights and buffers, updated
  after every step; it is the model the run ends with (the seed evaluates it).
* **LC** (label correction): after ``label_correction_epoch`` epochs, before every later epoch, each
  training target becomes ``w * one_hot(given) + (1 - w) * one_hot(momentum model's prediction)``,
  where ``w`` is the momentum model's cross-entropy on the given label, scaled to [0, 1] over the
  training set (min to max), exactly as the seed and the authors' code weigh it. From then on the
  noise is switched off (sigma 0), as in the seed's code.

Adaptations to this app's budgets, both stated in the options' help: the seed trains 300 epochs, so
its momentum 0.999 per step and correction after epoch 250 of 300 are read here as "0.999, warmed
up as ``min(0.999, (1 + t) / (10 + t))`` after t updates" (else a short run's average stays near the
random initial weights) and "after 5/6 of the epochs".
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import UserError
from engine.methods.losses import soft_cross_entropy
from engine.training.hooks import Callback, Method, StepOutput

if TYPE_CHECKING:
    from engine.methods import MethodContext
    from engine.training.data import Batch
    from engine.training.loop import TrainState

# The seed's sigma per kind of data (its README): 1.0 for CIFAR-10 with symmetric noise, 0.5 for
# Animal-10N's real-world noise, 0.2 for CIFAR-100's 100 classes.
SIGMA_SYNTHETIC_NOISE = 1.0
SIGMA_REAL_NOISE = 0.5
SIGMA_MANY_CLASSES = 0.2
MANY_CLASSES = 20
SEED_MOMENTUM = 0.999
SEED_CORRECTION_FRACTION = 250 / 300  # the seed corrects labels after epoch 250 of 300


def default_sigma(image_kind: str, num_classes: int) -> float:
    """The seed's sigma for this kind of data.

    The digits demo (10 classes, injected symmetric noise) is the seed's CIFAR-10 case: 1.0. A
    person's own photos carry real-world noise, the seed's Animal-10N case: 0.5; with more than
    20 classes, the seed's CIFAR-100 setting: 0.2 (the noise is per class, so many classes want less).
    """
    if num_classes > MANY_CLASSES:
        return SIGMA_MANY_CLASSES
    return SIGMA_SYNTHETIC_NOISE if image_kind == "digits" else SIGMA_REAL_NOISE


def _check_sigma(sigma: float | None) -> None:
    if sigma is not None and not (0 <= sigma <= 10):
        raise UserError(f"sigma={sigma} is out of range", "give a standard deviation from 0 to 10, e.g. "
                                                          "--option sigma=0.5, or leave it out for the seed's value")


@dataclass
class SLNOptions:
    sigma: float | None = field(default=None, metadata={
        "help": "standard deviation of the Gaussian noise added to the one-hot targets; default by kind of data "
                "as the seed gives it: 1.0 for the digits demo (the seed's CIFAR-10 with symmetric noise), 0.5 for "
                "photos (its Animal-10N, real-world noise), 0.2 with more than 20 classes (its CIFAR-100)"})

    def __post_init__(self) -> None:
        _check_sigma(self.sigma)


@dataclass
class SLNMomentumOptions(SLNOptions):
    momentum_decay: float = field(default=SEED_MOMENTUM, metadata={
        "help": "decay per step of the momentum model (the seed's 0.999), warmed up as min(momentum_decay, "
                "(1+t)/(10+t)) after t steps so that a short run does not average in its random start; the "
                "run ends with the momentum model"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.momentum_decay < 1:
            raise UserError(f"momentum_decay={self.momentum_decay} is out of range",
                            "give a decay from 0 (no averaging) to below 1, e.g. --option momentum_decay=0.999")


@dataclass
class SLNCorrectionOptions(SLNMomentumOptions):
    label_correction_epoch: int | None = field(default=None, metadata={
        "help": "after this many epochs, labels are corrected with the momentum model's predictions before every "
                "later epoch, and the label noise stops; default: 5/6 of the epochs (the seed's 250 of 300)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.label_correction_epoch is not None and self.label_correction_epoch < 1:
            raise UserError(f"label_correction_epoch={self.label_correction_epoch} is too small",
                            "the momentum model needs at least one epoch first: give 1 or more")


class StochasticLabelNoise(Method):
    """``sln``: cross-entropy against one-hot targets plus Gaussian noise of standard deviation ``sigma``."""

    name = "sln"

    def __init__(self, options: SLNOptions, context: MethodContext) -> None:
        self.context = context
        self.sigma = options.sigma if options.sigma is not None else default_sigma(context.image_kind,
                                                                                   context.num_classes)

    def clean_targets(self, state: TrainState, batch: Batch) -> torch.Tensor:
        """(B, K) float targets before the noise: the labels, one-hot."""
        return F.one_hot(batch.y, state.num_classes).float()

    def noise_scale(self, state: TrainState) -> float:
        return self.sigma

    def targets(self, state: TrainState, batch: Batch) -> torch.Tensor:
        """(B, K) noisy targets. The noise comes from the trainer's generator: a resume draws the same."""
        clean = self.clean_targets(state, batch)
        sigma = self.noise_scale(state)
        if sigma == 0:
            return clean
        noise = torch.randn(clean.shape, generator=state.generator)
        return clean + sigma * noise.to(clean.device)

    def step(self, state: TrainState, batch: Batch) -> StepOutput:
        logits = state.model(batch.x)
        return StepOutput(soft_cross_entropy(logits, self.targets(state, batch)), logits)


class MomentumModel(Callback):
    """A running average of the model's weights and buffers, updated after every optimiser step.

    After ``t`` updates the next one is ``average = d * average + (1 - d) * model`` with
    ``d = min(momentum, (1 + t) / (10 + t))``; integer buffers (BatchNorm's batch count) are copied.
    At the end of training the model takes the average's weights: the run ends with the momentum model.
    """

    name = "sln.momentum_model"

    def __init__(self, momentum: float) -> None:
        self.momentum = momentum
        self.model: nn.Module | None = None
        self.updates = 0
        self._loaded: dict[str, torch.Tensor] | None = None

    def decay(self) -> float:
        return min(self.momentum, (1 + self.updates) / (10 + self.updates))

    def on_fit_start(self, state: TrainState) -> None:
        self.model = copy.deepcopy(state.model)
        self.model.requires_grad_(False)
        if self._loaded is not None:
            self.model.load_state_dict(self._loaded)
            self._loaded = None

    @torch.no_grad()
    def on_batch_end(self, state: TrainState, batch: Batch, output: StepOutput) -> None:
        assert self.model is not None, "on_fit_start makes the momentum model"
        weight = 1 - self.decay()
        current = state.model.state_dict()
        averaged, latest = [], []
        for key, value in self.model.state_dict().items():
            if value.is_floating_point():
                averaged.append(value)
                latest.append(current[key].detach())
            else:
                value.copy_(current[key])
        torch._foreach_lerp_(averaged, latest, weight)
        self.updates += 1

    def on_fit_end(self, state: TrainState) -> None:
        assert self.model is not None
        state.model.load_state_dict(self.model.state_dict())

    @torch.no_grad()
    def predict_logits(self, state: TrainState, ids: np.ndarray, batch_size: int = 512) -> torch.Tensor:
        """(len(ids), K) float logits of the momentum model, in eval mode, without augmentation."""
        assert self.model is not None
        self.model.eval()
        chunks = []
        with state.autocast():
            for batch in state.data.batches(np.asarray(ids), batch_size):
                chunks.append(self.model(batch.x).float())
        return torch.cat(chunks)

    def state_dict(self) -> dict[str, Any]:
        weights = self.model.state_dict() if self.model is not None else self._loaded
        return {"updates": self.updates, "weights": dict(weights) if weights is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        self._loaded = state["weights"]
        if self.model is not None and self._loaded is not None:
            self.model.load_state_dict(self._loaded)
            self._loaded = None


class SLNMomentum(StochasticLabelNoise):
    """``sln_mo``: SLN, ending with the momentum model."""

    name = "sln_mo"

    def __init__(self, options: SLNMomentumOptions, context: MethodContext) -> None:
        super().__init__(options, context)
        self.momentum_model = MomentumModel(options.momentum_decay)

    def callbacks(self) -> list[Callback]:
        return [self.momentum_model]


class LabelCorrection(Callback):
    """Before every epoch after ``method.correction_epoch``: the method's targets from the momentum model."""

    name = "sln.label_correction"

    def __init__(self, method: SLNMomentumCorrection) -> None:
        self.method = method

    def on_epoch_start(self, state: TrainState) -> None:
        if state.epoch >= self.method.correction_epoch:
            self.method.correct_labels(state)


class SLNMomentumCorrection(SLNMomentum):
    """``sln_mo_lc``: SLN with the momentum model, whose predictions correct the labels late in training."""

    name = "sln_mo_lc"

    def __init__(self, options: SLNCorrectionOptions, context: MethodContext) -> None:
        super().__init__(options, context)
        self.requested_epoch = options.label_correction_epoch
        self.correction_epoch = 0
        self.corrected_targets: torch.Tensor | None = None  # (n, K), rows in the order of train_ids
        self.row_of_id: torch.Tensor | None = None
        self.correction = LabelCorrection(self)

    def callbacks(self) -> list[Callback]:
        return [self.momentum_model, self.correction]  # the average exists before the correction reads it

    def setup(self, state: TrainState) -> None:
        epochs = state.config.epochs
        if self.requested_epoch is None:
            # At least one epoch before (the momentum model needs it) and, where there is room, one after.
            self.correction_epoch = max(1, min(epochs - 1, round(epochs * SEED_CORRECTION_FRACTION)))
        elif self.requested_epoch >= epochs:
            raise UserError(f"sln_mo_lc: label_correction_epoch={self.requested_epoch} is not below --epochs "
                            f"{epochs}, so the labels would never be corrected",
                            f"give --option label_correction_epoch=N with N from 1 to {epochs - 1}, or leave it "
                            "out (5/6 of the epochs, as the seed)")
        else:
            self.correction_epoch = self.requested_epoch
        ids = torch.from_numpy(np.asarray(state.train_ids, dtype=np.int64))
        self.row_of_id = torch.full((int(ids.max()) + 1 if len(ids) else 0,), -1, dtype=torch.long)
        self.row_of_id[ids] = torch.arange(len(ids))
        if self.corrected_targets is not None:
            self.corrected_targets = self.corrected_targets.to(state.device)

    def given_targets(self, state: TrainState) -> torch.Tensor:
        """(n, K) one-hot of the training labels, rows in the order of train_ids."""
        labels = state.data.labels[torch.from_numpy(np.asarray(state.train_ids, dtype=np.int64))]
        return F.one_hot(labels, state.num_classes).float().to(state.device)

    @torch.no_grad()
    def correct_labels(self, state: TrainState) -> None:
        """The seed's correction: mix the given label and the momentum model's prediction by its loss."""
        logits = self.momentum_model.predict_logits(state, state.train_ids)
        given = self.given_targets(state)
        losses = -(given * F.log_softmax(logits, dim=1)).sum(dim=1)
        spread = losses.max() - losses.min()
        trust = (losses - losses.min()) / spread if spread > 0 else torch.zeros_like(losses)
        predicted = F.one_hot(logits.argmax(dim=1), state.num_classes).float()
        self.corrected_targets = trust[:, None] * given + (1 - trust[:, None]) * predicted

    def clean_targets(self, state: TrainState, batch: Batch) -> torch.Tensor:
        if self.corrected_targets is None:
            return super().clean_targets(state, batch)
        assert self.row_of_id is not None
        return self.corrected_targets[self.row_of_id[batch.ids].to(self.corrected_targets.device)]

    def noise_scale(self, state: TrainState) -> float:
        return 0.0 if self.corrected_targets is not None else self.sigma  # the seed stops the noise once corrected

    def state_dict(self) -> dict[str, Any]:
        return {"corrected_targets": self.corrected_targets}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.corrected_targets = state.get("corrected_targets")
