"""Training one model inside a job: the cache, the device, progress, checkpoints, evaluation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch import nn

from engine.errors import UserError
from engine.events import EtaEstimator, EventSink
from engine.training.config import TrainConfig
from engine.training.data import ImageBatches
from engine.training.device import amp_dtype, resolve_device
from engine.training.hooks import Callback, Method
from engine.training.loop import ProgressFn, Trainer, TrainState, predict_probs, steps_per_epoch

if TYPE_CHECKING:
    from engine.jobs import JobContext
    from engine.store import Project
    from engine.workflows.trusted import TrustedSet


class StageProgress:
    """Progress of a job stage in whole units (batches), with an ETA; sub-tasks report into a slice of it."""

    def __init__(self, events: EventSink, stage: str, total: int) -> None:
        self.events = events
        self.stage = stage
        self.total = total
        self.eta = EtaEstimator(total)
        self.done = 0

    def update(self, done: int, message: str = "") -> None:
        self.done = done
        self.events.progress(self.stage, done, self.total, self.eta.eta(done), message)

    def slice(self, offset: int, message: str = "") -> ProgressFn:
        """A sub-task's (done, total) mapped to this stage's units, starting at ``offset``."""
        return lambda done, _total: self.update(offset + done, message)


def resolve_augment(config: TrainConfig, project: Project) -> str:
    if config.augment != "auto":
        return config.augment
    # Handwritten digits and similar are not mirror-symmetric: translate them, do not flip them.
    return "crop" if project.source.get("kind") == "demo" else "flip-crop"


def open_training_data(ctx: JobContext, config: TrainConfig, labels: np.ndarray) -> ImageBatches:
    """The decoded-image cache (built on first use) behind a batch server on the chosen device."""
    from engine.data.cache import ensure_cache
    from engine.training import distributed

    device = distributed.device_for(resolve_device(config.device))
    # Under torchrun rank 0 builds the cache (a write); the other ranks then open it.
    images = distributed.main_first(
        lambda: ensure_cache(ctx.project, config.image_size, events=ctx.events, workers=config.workers,
                             cancel=ctx.cancel), "the image cache")
    amp = amp_dtype(device, config.precision)
    ctx.events.log(f"training on {device.type}" + (f" with {str(amp).removeprefix('torch.')} mixed precision" if amp else ""))
    return ImageBatches(images, labels, device, channels_last=True)


def image_kind(project: Project) -> str:
    """"digits" for the demo (some seeds give other defaults for such data), else "photo"."""
    return "digits" if project.source.get("kind") == "demo" else "photo"


def build_named_method(
    project: Project,
    name: str,
    options: Mapping[str, object],
    *,
    train_ids: np.ndarray,
    data: ImageBatches,
    seed: int,
    trusted: TrustedSet | None = None,
) -> Method:
    """The registered method ``name`` for one model, built from a run spec's name and options.

    The method sees the data through its own batch server whose labels are the trusted
    labels at the trusted ids (so a trusted batch carries the trusted labels) and the
    training targets elsewhere; the loop itself trains on the training targets.
    """
    from engine.methods import MethodContext, build_method, method_info
    from engine.store import UNKNOWN_TRUTH

    info = method_info(name)
    labels = data.labels.numpy().copy()
    method_data = data
    if trusted is not None and len(trusted.ids):
        trusted_labels = labels.copy()
        trusted_labels[trusted.ids] = trusted.labels
        method_data = ImageBatches(data.images, trusted_labels, data.device, channels_last=data.channels_last)
    true_labels = None
    if info.needs_truth:
        truth = project.sample_table().true_label
        true_labels = truth if (truth[train_ids] != UNKNOWN_TRUTH).all() else None
    evidence: dict[str, object] = {}
    if name == "prune":  # it ranks the samples by the latest audit's scores and may use its suggestions
        from engine.methods.prune import audit_evidence

        scores, suggested, _ = audit_evidence(project, str(options.get("detector", "cl")))
        evidence = {"suspect_scores": scores, "suggested": suggested}
    context = MethodContext(
        num_classes=project.num_classes, train_ids=np.asarray(train_ids, dtype=np.int64), labels=labels,
        data=method_data, seed=seed, trusted_ids=None if trusted is None else trusted.ids,
        trusted_labels=None if trusted is None else trusted.labels, true_labels=true_labels,
        image_kind=image_kind(project), **evidence,  # type: ignore[arg-type]
    )
    return build_method(name, dict(options), context)


@dataclass
class FitResult:
    model: nn.Module
    accuracy: float | None  # on eval ids against eval labels; None without eval ids
    history: list[dict[str, float]]
    state: TrainState
    data: ImageBatches


def fit_and_evaluate(
    ctx: JobContext,
    config: TrainConfig,
    train_ids: np.ndarray,
    train_labels: np.ndarray,
    eval_ids: np.ndarray | None,
    eval_labels: np.ndarray | None,
    *,
    stage: str,
    method: Method | None = None,
    method_name: str | None = None,
    method_options: Mapping[str, object] | None = None,
    trusted: TrustedSet | None = None,
    callbacks: Sequence[Callback] = (),
    checkpoint_name: str | None = None,
    progress: StageProgress | None = None,
    progress_offset: int = 0,
    fold: int | None = None,
) -> FitResult:
    """Train a fresh model on ``train_ids`` (labels aligned with them) and score it on ``eval_ids``.

    Parameters
    ----------
    train_ids, train_labels : np.ndarray of shape (n,) — ids and the labels to train them on.
    eval_ids, eval_labels : np.ndarray of shape (m,) — held-out ids and the labels to score against.
    checkpoint_name : file name in the run folder; a resumed run continues from it.
    method_name, method_options : a registered method (see engine.methods) built for this model,
        unless ``method`` is given; ``trusted`` is the trusted set a meta-learning method learns from.
    """
    train_ids = np.asarray(train_ids, dtype=np.int64)
    if len(train_ids) < 2:
        raise UserError(f"{stage}: only {len(train_ids)} training samples remain", "keep more samples to train on")
    n = ctx.project.num_samples
    labels = np.zeros(n, dtype=np.int64)
    labels[train_ids] = train_labels
    data = open_training_data(ctx, config, labels)
    if method is None and method_name is not None:
        method = build_named_method(ctx.project, method_name, method_options or {}, train_ids=train_ids, data=data,
                                    seed=config.seed, trusted=trusted)
    if progress is None:
        progress = StageProgress(ctx.events, stage, config.epochs * steps_per_epoch(len(train_ids), config.batch_size))
    checkpoint: Path | None = ctx.run.folder / checkpoint_name if checkpoint_name else None
    trainer = Trainer(
        config, data, train_ids, num_classes=ctx.project.num_classes, events=ctx.events, cancel=ctx.cancel,
        stage=stage, fold=fold, method=method, callbacks=callbacks, checkpoint_path=checkpoint,
        eval_ids=None if eval_ids is None else np.asarray(eval_ids, dtype=np.int64),
        eval_labels=None if eval_labels is None else np.asarray(eval_labels, dtype=np.int64),
        on_progress=progress.slice(progress_offset), augment=resolve_augment(config, ctx.project),
    )
    state = trainer.fit()
    accuracy = None
    if eval_ids is not None and eval_labels is not None and len(eval_ids):
        probs = predict_probs(state.model, data, np.asarray(eval_ids, dtype=np.int64), state.amp)
        accuracy = float((probs.argmax(1) == np.asarray(eval_labels)).mean())
    return FitResult(state.model, accuracy, state.history, state, data)
