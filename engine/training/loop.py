"""The one training loop. Methods and callbacks (see hooks.py) add behaviour without copying it.

Checkpoints (format 2) hold, besides the model and optimiser: the method's and
each callback's state under their names (validated plain state, numpy arrays
saved as tensors), the training samples (ids and labels) they were made on,
and the precision they trained in (fp32, bf16, fp16). Resuming with other
samples, another method, other callbacks or another precision raises
:class:`CheckpointMismatch` instead of continuing on something else (what a checkpoint holds, and
its checks: :mod:`engine.training.checkpoints`).

A loss that becomes NaN or infinite ends training with :class:`TrainingDiverged`
(a :class:`~engine.errors.UserError` whose hint is a lower learning rate); the
last finished epoch's checkpoint is left as it was.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.cancel import CancelToken
from engine.errors import Cancelled, UserError, ensure_free_space
from engine.events import EventSink
from engine.models import build_model, default_learning_rate
from engine.training import data_parallel, distributed
from engine.training.checkpoints import (
    CHECKPOINT_FORMAT,
    START_A_NEW_RUN,
    CheckpointMismatch,
    checkpoint_state,
    describe_sample_change,
    fsync_folder,
    remove_stale_temporaries,
    training_samples_fingerprint,
)
from engine.training.config import TrainConfig
from engine.training.data import Batch, ImageBatches, batch_chunks
from engine.training.device import amp_dtype, precision_mismatch, precision_name
from engine.training.hooks import Callback, Method, StepOutput

ProgressFn = Callable[[int, int], None]  # (batches done, batches in this fit)


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: the learning rate is too high (or the data holds NaNs)."""


@dataclass
class EpochPosition:
    """Where a stopped epoch stands: its sample order, the next batch, and its running sums."""

    order: torch.Tensor  # (n,) int64 sample ids in this epoch's order
    next_batch: int
    loss_sum: float
    correct: int
    seen: int

    def to_payload(self) -> dict[str, Any]:
        return {"order": self.order, "next_batch": self.next_batch, "loss_sum": self.loss_sum,
                "correct": self.correct, "seen": self.seen}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> EpochPosition:
        return cls(payload["order"].cpu(), int(payload["next_batch"]), float(payload["loss_sum"]),
                   int(payload["correct"]), int(payload["seen"]))


@dataclass
class EpochSums:
    """An epoch's running figures; the loss and correct counts stay on the device until they are read."""

    loss: torch.Tensor  # the sum of the batches' mean loss times their size
    correct: torch.Tensor
    seen: int


@dataclass
class TrainState:
    """Everything a method or callback may look at or change while training."""

    config: TrainConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    device: torch.device
    generator: torch.Generator
    num_classes: int
    train_ids: np.ndarray
    data: ImageBatches
    fold: int | None = None
    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps taken
    history: list[dict[str, float]] = field(default_factory=list)
    amp: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimiser steps in an epoch of ``n`` samples: the batches of :func:`batch_chunks`, under torchrun too.

    A trailing batch of one sample joins the batch before it (BatchNorm cannot train on one): no extra step.
    """
    return sum(1 for _ in batch_chunks(np.arange(n), batch_size, merge_single=True))


class Trainer:
    """Trains one model on ``train_ids`` of the cache, with checkpoints, cancel and metrics.

    Parameters
    ----------
    data : ImageBatches over the whole cache; its labels are the training targets.
    train_ids : np.ndarray of shape (n,) — sample ids to train on.
    eval_ids, eval_labels : optional held-out ids and their reference labels, scored every epoch
        (at most ``config.eval_limit`` of them) for the ``val_acc`` curve.
    """

    def __init__(
        self,
        config: TrainConfig,
        data: ImageBatches,
        train_ids: np.ndarray,
        *,
        num_classes: int,
        events: EventSink,
        cancel: CancelToken | None = None,
        stage: str = "train",
        fold: int | None = None,
        method: Method | None = None,
        callbacks: Sequence[Callback] = (),
        checkpoint_path: Path | None = None,
        eval_ids: np.ndarray | None = None,
        eval_labels: np.ndarray | None = None,
        on_progress: ProgressFn | None = None,
        augment: str = "flip-crop",
    ) -> None:
        self.config = config
        self.events = events
        self.cancel = cancel or CancelToken()
        self.stage = stage
        self.method = method or Method()
        # Before the schedule's length and the checkpoint's sample record depend on them (``prune``).
        train_ids = self.method.select_train_ids(np.asarray(train_ids))
        self.callbacks = list(callbacks) + self.method.callbacks()
        names = [callback.name for callback in self.callbacks]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"more than one callback is named {', '.join(map(repr, repeated))}: a checkpoint "
                             "keeps state by name; give each instance its own name")
        self.checkpoint_path = checkpoint_path
        self.on_progress = on_progress
        self.augment = augment
        self._resume_at: EpochPosition | None = None
        self.eval_ids, self.eval_labels = self._eval_subset(eval_ids, eval_labels, config)
        data_parallel.check_trainable(self.method, config.batch_size)
        device = data.device
        # Seed before building: initial weights are part of a repeatable run.
        torch.manual_seed(config.seed * 1000 + (fold or 0))
        model = build_model(config.model, num_classes, config.image_size, config.pretrained,
                            weights=config.starting_weights(), log=events.log).to(device)
        # Channels-last is faster for convolutions on CUDA and, measured here, on the CPU too.
        model = model.to(memory_format=torch.channels_last)
        lr = config.lr or default_learning_rate(config.model, config.fine_tunes)
        self.lr = lr
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=config.momentum, nesterov=True,
                                    weight_decay=config.weight_decay)
        # One spare step: the scheduler is stepped after the last optimiser step too. OneCycleLR
        # divides by the length of its warm-up phase, which is empty below 5 steps in all.
        total_steps = max(config.epochs * steps_per_epoch(len(train_ids), config.batch_size) + 1, 5)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps,
                                                        pct_start=0.25, anneal_strategy="linear")
        generator = torch.Generator().manual_seed(config.seed * 1000 + (fold or 0))
        # Under torchrun: every step averages the gradients of all ranks' parts of the batch.
        self._averager = data_parallel.GradientAverager(optimizer) if distributed.active() else None
        amp = amp_dtype(device, config.precision)
        self.state = TrainState(
            config=config, model=model, optimizer=optimizer, scheduler=scheduler, device=device,
            generator=generator, num_classes=num_classes, train_ids=np.asarray(train_ids), data=data,
            fold=fold, amp=amp,
            scaler=data_parallel.grad_scaler(device.type, self._averager) if amp == torch.float16 else None,
        )

    @staticmethod
    def _eval_subset(ids: np.ndarray | None, labels: np.ndarray | None,
                     config: TrainConfig) -> tuple[np.ndarray | None, np.ndarray | None]:
        if ids is None or labels is None or len(ids) == 0:
            return None, None
        if len(ids) > config.eval_limit:
            pick = np.random.default_rng(config.seed).choice(len(ids), config.eval_limit, replace=False)
            return ids[pick], labels[pick]
        return ids, labels

    # ------------------------------------------------------------- checkpoints
    def samples_fingerprint(self) -> str:
        """The training samples' fingerprint a checkpoint of this trainer records."""
        ids = self.state.train_ids
        return training_samples_fingerprint(ids, self.state.data.labels[torch.from_numpy(ids)].numpy())

    def save_checkpoint(self, position: EpochPosition | None = None) -> None:
        """Everything needed to continue exactly; ``position`` marks a stop inside an epoch.

        Written to a unique temporary file in the same folder, then renamed over the old
        checkpoint, and the folder synced: a kill leaves either checkpoint whole.
        """
        if self.checkpoint_path is None or not distributed.is_main():
            return
        state = self.state
        ids = torch.from_numpy(np.ascontiguousarray(state.train_ids, dtype=np.int64))
        payload = {
            "format": CHECKPOINT_FORMAT,
            "samples": {"ids": ids, "labels": state.data.labels[ids].clone(),
                        "fingerprint": self.samples_fingerprint()},
            "position": None if position is None else position.to_payload(),
            "epoch": state.epoch,
            "step": state.step,
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(),
            "generator": state.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": state.history,
            "method": {"name": self.method.name,
                       "state": checkpoint_state(self.method.state_dict(), f"method {self.method.name!r}")},
            "callbacks": {callback.name: checkpoint_state(callback.state_dict(), f"callback {callback.name!r}")
                          for callback in self.callbacks},
            "scaler": state.scaler.state_dict() if state.scaler else None,
            "precision": precision_name(state.amp),
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        folder = self.checkpoint_path.parent
        # A full disk is a clear message naming the folder, before a half-written file exists.
        ensure_free_space(folder, buffer.getbuffer().nbytes)
        handle, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{self.checkpoint_path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(buffer.getvalue())
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(tmp_name, self.checkpoint_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
        fsync_folder(folder)

    def load_checkpoint(self) -> bool:
        """Resume from the checkpoint if there is one; True when it was loaded.

        Raises CheckpointMismatch when the checkpoint was made on other training samples,
        or with another method or other callbacks than this trainer has.
        """
        if self.checkpoint_path is None:
            return False
        if distributed.is_main():
            remove_stale_temporaries(self.checkpoint_path)
        # Under torchrun rank 0's checkpoint decides, and every rank must read that same file.
        if not distributed.broadcast_object(self.checkpoint_path.is_file()):
            return False
        if not self.checkpoint_path.is_file():
            raise UserError(f"torchrun rank {distributed.rank()} cannot see the checkpoint {self.checkpoint_path} "
                            "that rank 0 resumes from",
                            "put the project folder on storage every node shares, at the same path")
        payload = torch.load(self.checkpoint_path, map_location=self.state.device, weights_only=True)
        saved_precision = payload.get("precision")  # absent in checkpoints made before it was recorded
        if saved_precision is not None and saved_precision != precision_name(self.state.amp):
            refused = precision_mismatch(f"the checkpoint {self.checkpoint_path} was", str(saved_precision),
                                         precision_name(self.state.amp), self.config.precision)
            raise CheckpointMismatch(refused.message, refused.hint)
        if payload.get("format") == CHECKPOINT_FORMAT:
            self._check_samples(payload["samples"])
            method_state, callback_states = self._named_states(payload)
        else:
            method_state, callback_states = self._legacy_states(payload)
        state = self.state
        state.model.load_state_dict(payload["model"])
        state.optimizer.load_state_dict(payload["optimizer"])
        state.scheduler.load_state_dict(payload["scheduler"])
        state.generator.set_state(payload["generator"].cpu())
        torch.set_rng_state(payload["torch_rng"].cpu())
        state.epoch = int(payload["epoch"])
        state.step = int(payload["step"])
        state.history = list(payload["history"])
        self.method.load_state_dict(method_state)
        for callback in self.callbacks:
            callback.load_state_dict(callback_states[callback.name])
        if state.scaler and payload.get("scaler"):
            state.scaler.load_state_dict(payload["scaler"])
        self._resume_at = EpochPosition.from_payload(payload["position"]) if payload.get("position") else None
        return True

    def _check_samples(self, saved: dict[str, Any]) -> None:
        if saved["fingerprint"] == self.samples_fingerprint():
            return
        ids = self.state.train_ids
        change = describe_sample_change(saved["ids"].cpu().numpy(), saved["labels"].cpu().numpy(),
                                         ids, self.state.data.labels[torch.from_numpy(ids)].numpy())
        where = self.stage if self.state.fold is None else f"{self.stage} fold {self.state.fold + 1}"
        raise CheckpointMismatch(
            f"the training samples changed since this run was cancelled ({change}; {where}): "
            f"its checkpoint {self.checkpoint_path} cannot continue on them", START_A_NEW_RUN)

    def _named_states(self, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        saved_method = payload["method"]
        if saved_method["name"] != self.method.name:
            raise CheckpointMismatch(
                f"the checkpoint {self.checkpoint_path} was trained with method {saved_method['name']!r}, "
                f"not {self.method.name!r}", START_A_NEW_RUN)
        saved: dict[str, Any] = payload["callbacks"]
        current = {callback.name for callback in self.callbacks}
        missing, extra = sorted(saved.keys() - current), sorted(current - saved.keys())
        if missing or extra:
            parts = ([f"it holds state of {', '.join(map(repr, missing))}, not given now"] if missing else []) + \
                    ([f"it has none for {', '.join(map(repr, extra))}"] if extra else [])
            raise CheckpointMismatch(
                f"the checkpoint {self.checkpoint_path} was made with other callbacks: {'; '.join(parts)}",
                START_A_NEW_RUN)
        return saved_method["state"], saved

    def _legacy_states(self, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """A format-1 checkpoint: states by position and no sample record; usable only when stateless."""
        saved = list(payload.get("callbacks", []))
        if any(saved) or payload.get("method") or len(saved) != len(self.callbacks):
            raise CheckpointMismatch(
                f"the checkpoint {self.checkpoint_path} was written by an older version whose method and "
                "callback state cannot be matched by name", START_A_NEW_RUN)
        return {}, {callback.name: {} for callback in self.callbacks}

    # -------------------------------------------------------------- training
    def fit(self) -> TrainState:
        state = self.state
        if self.load_checkpoint():
            within = f", batch {self._resume_at.next_batch + 1}" if self._resume_at else ""
            self.events.log(f"{self.stage}: resumed at epoch {state.epoch + 1} of {self.config.epochs}{within}")
        data_parallel.broadcast_model(state.model)
        self.method.setup(state)
        for callback in self.callbacks:
            callback.on_fit_start(state)
        per_epoch = steps_per_epoch(len(state.train_ids), self.config.batch_size)
        total = per_epoch * self.config.epochs
        while state.epoch < self.config.epochs:
            self._train_one_epoch(per_epoch, total)
        for callback in self.callbacks:
            callback.on_fit_end(state)
        return state

    def _train_one_epoch(self, per_epoch: int, total: int) -> None:
        """One epoch, or the rest of a stopped one: its batches, then its figures, checks and checkpoint."""
        position = self._epoch_position()
        self.state.model.train()
        sums = EpochSums(torch.full((), position.loss_sum, device=self.state.device),
                         torch.full((), position.correct, device=self.state.device, dtype=torch.long), position.seen)
        started = time.perf_counter()
        self._train_batches(position, sums, per_epoch, total)
        values = self._epoch_figures(sums, started)
        self._end_epoch(values)

    def _epoch_position(self) -> EpochPosition:
        """Where the epoch starts: a resumed epoch's position, or a new epoch's shuffled order (callbacks told)."""
        state = self.state
        # Asked to stop between epochs: the last epoch's checkpoint is on disk already.
        if self._stop_requested():
            raise Cancelled(self.cancel.reason or "stopped on another rank")
        position, self._resume_at = self._resume_at, None
        if position is None:
            for callback in self.callbacks:
                callback.on_epoch_start(state)
            order = torch.from_numpy(state.train_ids)[torch.randperm(len(state.train_ids), generator=state.generator)]
            return EpochPosition(distributed.broadcast_tensor(order), 0, 0.0, 0, 0)
        if not distributed.is_main():
            return EpochPosition(position.order, position.next_batch, 0.0, 0, 0)  # rank 0 holds the sums so far
        return position

    def _epoch_batches(self, position: EpochPosition) -> Iterator[Batch]:
        """The batches of the epoch from ``position`` on (under torchrun, this rank's part of each)."""
        state = self.state
        remaining = position.order[position.next_batch * self.config.batch_size:].numpy()
        if self._averager is not None:
            return data_parallel.sharded_batches(state.data, remaining, self.config.batch_size, augment=self.augment,
                                               generator=state.generator, averager=self._averager)
        return state.data.batches(remaining, self.config.batch_size, augment=self.augment,
                                  generator=state.generator, drop_last=True)

    def _train_batches(self, position: EpochPosition, sums: EpochSums, per_epoch: int, total: int) -> None:
        """A step per batch, adding to ``sums``; ends early when the loss diverged, raises Cancelled when asked."""
        state = self.state
        last_report = 0.0
        for index, batch in enumerate(self._epoch_batches(position), start=position.next_batch):
            output = self._optimise(batch)
            sums.loss += output.loss.detach() * len(batch.y)
            sums.correct += (output.logits.detach().argmax(1) == batch.y).sum()
            sums.seen += len(batch.y)
            for callback in self.callbacks:
                callback.on_batch_end(state, batch, output)
            now = time.perf_counter()
            if now - last_report > 0.25 or index + 1 == per_epoch:
                last_report = now
                # Reading the sum waits for the device: only as often as progress is reported. Ranks
                # (whose sums differ) stop alike: they learn of a divergence at the epoch end.
                if not distributed.active() and not math.isfinite(float(sums.loss)):
                    return  # diverged: reported at the epoch end, with this epoch's metrics
                if self.on_progress:
                    self.on_progress(state.epoch * per_epoch + index + 1, total)
            if index + 1 < per_epoch and self._stop_requested():
                self._stop_within_epoch(position, index + 1, sums)
                return  # the sums diverged: never checkpoint a diverged model

    def _stop_within_epoch(self, position: EpochPosition, next_batch: int, sums: EpochSums) -> None:
        """Checkpoint the point to continue from and raise Cancelled; returns only when the loss diverged."""
        total_loss, total_correct, total_seen = distributed.sum_over_ranks(float(sums.loss), int(sums.correct),
                                                                           sums.seen)
        if not math.isfinite(total_loss):
            return
        # Checked after a batch, before the next one draws its random augmentation: the
        # checkpoint then holds the exact point to continue from, and no work is lost.
        data_parallel.average_buffers(self.state.model)
        self.save_checkpoint(EpochPosition(position.order, next_batch, total_loss, int(total_correct),
                                           int(total_seen)))
        raise Cancelled(self.cancel.reason or "stopped on another rank")

    def _epoch_figures(self, sums: EpochSums, started: float) -> dict[str, float]:
        """The epoch's loss, accuracy, learning rate and speed (over every rank's part, the same model on each)."""
        state = self.state
        loss_sum, correct, seen = sums.loss, sums.correct, sums.seen
        if distributed.active():
            loss_total, correct_total, seen_total = distributed.sum_over_ranks(float(loss_sum), int(correct), seen)
            loss_sum, correct = torch.tensor(loss_total), torch.tensor(int(correct_total))
            seen = int(seen_total)
            data_parallel.average_buffers(state.model)
        elapsed = time.perf_counter() - started
        return {
            "loss": float(loss_sum) / max(seen, 1),
            "acc": float(correct) / max(seen, 1),
            "lr": float(state.optimizer.param_groups[0]["lr"]),
            "images_per_s": seen / elapsed if elapsed > 0 else math.nan,
        }

    def _end_epoch(self, values: dict[str, float]) -> None:
        """Refuse a diverged epoch, score the held-out samples, report, tell the callbacks, checkpoint."""
        state = self.state
        # The loss is computed before each step: the last step may have blown up the weights unseen.
        broken = values["loss"] if not math.isfinite(values["loss"]) else self._non_finite_weight()
        if broken is not None:
            # The curve shows the epoch that diverged; its checkpoint is not written over the last good one.
            self.events.metric(self.stage, values, fold=state.fold, epoch=state.epoch)
            self._raise_diverged("loss" if not math.isfinite(values["loss"]) else "model weights", broken)
        if self.eval_ids is not None and self.eval_labels is not None:
            probs = predict_probs(state.model, state.data, self.eval_ids, state.amp)
            values["val_acc"] = float((probs.argmax(1) == self.eval_labels).mean())
        state.epoch += 1
        state.history.append({"epoch": state.epoch, **values})
        self.events.metric(self.stage, values, fold=state.fold, epoch=state.epoch - 1)
        for callback in self.callbacks:
            callback.on_epoch_end(state)
        self.save_checkpoint()

    def _stop_requested(self) -> bool:
        """A cancel was asked for (on any rank: all ranks stop at the same batch)."""
        return distributed.any_rank(self.cancel.requested)

    def _non_finite_weight(self) -> float | None:
        """NaN or inf when some model weight is so (NaN first), else None; one device sync."""
        weights = [parameter.detach() for parameter in self.state.model.parameters() if parameter.is_floating_point()]
        if not weights or bool(torch.stack([weight.isfinite().all() for weight in weights]).all()):
            return None
        return math.nan if any(bool(weight.isnan().any()) for weight in weights) else math.inf

    def _raise_diverged(self, what: str, value: float) -> None:
        where = f"epoch {self.state.epoch + 1}" + (f" (fold {self.state.fold + 1})" if self.state.fold is not None else "")
        raise TrainingDiverged(f"training diverged: the {what} became {'nan' if math.isnan(value) else 'inf'} at {where}",
                               f"lower the learning rate, e.g. --lr {self.lr / 10:g}")

    def _optimise(self, batch: Any) -> StepOutput:
        state = self.state
        # Under torchrun a rank may hold no part of a small last batch: it takes the step all the same.
        output = self.method.optimise(state, batch) if len(batch.y) else data_parallel.idle_step(state)
        state.scheduler.step()
        state.step += 1
        return output


@torch.no_grad()
def predict_probs(model: nn.Module, data: ImageBatches, ids: np.ndarray, amp: torch.dtype | None = None,
                  batch_size: int = 512) -> np.ndarray:
    """Softmax probabilities, (len(ids), K) float32, in the order of ``ids``; no augmentation.

    Under torchrun every rank must call it with the same ids: each scores its shard, all get the whole.
    """
    if distributed.active():
        return distributed.gather_rows(_predict_probs(model, data, distributed.shard(np.asarray(ids)), amp,
                                                      batch_size)).astype(np.float32)
    return _predict_probs(model, data, ids, amp, batch_size)


def _predict_probs(model: nn.Module, data: ImageBatches, ids: np.ndarray, amp: torch.dtype | None,
                   batch_size: int) -> np.ndarray:
    was_training = model.training
    model.eval()
    chunks = []
    autocast = (torch.autocast(device_type=data.device.type, dtype=amp) if amp is not None
                else contextlib.nullcontext())
    with autocast:
        for batch in data.batches(np.asarray(ids), batch_size):
            chunks.append(torch.softmax(model(batch.x).float(), dim=1).cpu())
    model.train(was_training)
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(chunks).numpy().astype(np.float32)
