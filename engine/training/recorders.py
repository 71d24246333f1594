"""Evidence recorders: callbacks that keep what training already computes, on disk, for the detectors.

:class:`DynamicsRecorder` keeps the training dynamics of every training sample
and epoch, taken from the logits of the forward pass training does anyway (no
extra pass; with augmentation they are the augmented views' logits). Its
folder (``dynamics/`` in the run folder) holds float16 ``.npy`` files written
through :func:`numpy.lib.format.open_memmap`, never whole in RAM, flushed at
every epoch end and every checkpoint:

- ``ids.npy`` (n,) int64: the sample id of each row (the training ids, sorted);
- ``margin.npy`` (n, E): the assigned-logit margin of AUM (Pleiss et al. 2020):
  the logit of the label trained on minus the largest other logit;
- ``probs.npy`` (n, K, E): softmax probabilities of every class, while training
  runs; replaced at the end by
- ``td.npy`` (n, W, E) and ``td_classes.npy`` (n, W) int32: the seed's ``td``
  array (training-dynamics-lstm-detector.md): column 0 is the probability of
  the given label, columns 1..W-1 those of the W-1 other classes with the
  highest probability averaged over all epochs, strongest first. W is
  ``min(K, TD_WIDTH)``; a reader that needs a fixed width pads with zeros
  (classes of probability 0) and class -1;
- ``mean_probs.npy`` (n, K) float32: every class's probability averaged over epochs.

Writes are by (row, epoch), so they are idempotent: a run resumed from a
checkpoint, at an epoch end or inside an epoch, rewrites exactly what an
uninterrupted run writes, and nothing else. Under torchrun every batch's ids,
labels and logits are gathered from all ranks (the batch one process trains
on) and rank 0 alone writes; the other ranks keep no files. Disk use while training is
n x K x E x 2 bytes (1,000,000 samples x 10 classes x 50 epochs: 1 GB).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.lib.format import open_memmap

from engine.errors import UserError, ensure_free_space
from engine.training import distributed
from engine.training.confident_classes import batch_confident_classes
from engine.training.hooks import Callback, StepOutput

if TYPE_CHECKING:
    from engine.training.data import Batch
    from engine.training.loop import TrainState

DYNAMICS_FOLDER = "dynamics"
TD_WIDTH = 10  # the given label + the 9 strongest other classes (all of them for 10 classes)
ROWS_PER_CHUNK = 4096  # rows read at once when the td array is built at the end


class EvidenceRecorder(Callback):
    """A callback that records evidence in the audit's one training run and hands it over for every sample.

    :meth:`evidence_arrays` turns what it recorded for the samples trained on into arrays indexed by sample
    id; a sample left out of training (removed by a decision, or held out) gets the final model's
    prediction as its evidence. A new kind of evidence is a new recorder: the audit merges what each returns.
    """

    ids: np.ndarray  # (n,) the sample ids trained on, sorted: the rows of what is recorded

    def evidence_arrays(self, final_probs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        """Evidence name -> (N, ...) array indexed by sample id, for all N samples.

        ``final_probs`` (N, K): the final model's probabilities of the samples not trained on (rows of the
        others are not read); ``labels`` (N,): the labels trained on (the given ones for the others).
        Rank 0 alone calls it under torchrun: it reads the files the recorder wrote.
        """
        raise NotImplementedError(f"{type(self).__name__} names no evidence arrays")

    def untrained_ids(self, num_samples: int) -> np.ndarray:
        """The sample ids of ``range(num_samples)`` that training never saw, sorted."""
        return np.setdiff1d(np.arange(num_samples), self.ids)


class DynamicsRecorder(EvidenceRecorder):
    """Records per-sample, per-epoch training dynamics into ``folder`` (see the module docstring).

    Parameters
    ----------
    folder : Path
        Where the ``.npy`` files go (created).
    train_ids : np.ndarray of shape (n,)
        The samples trained on; every one must be seen exactly once per epoch.
    train_labels : np.ndarray of shape (n,)
        The labels they are trained on, aligned with ``train_ids``.
    num_classes : int
        K, the model's outputs.
    epochs : int
        E, the epochs of the run.
    """

    name = "dynamics"

    def __init__(self, folder: Path, train_ids: np.ndarray, train_labels: np.ndarray, num_classes: int,
                 epochs: int, td_width: int = TD_WIDTH) -> None:
        self.folder = Path(folder)
        train_ids = np.asarray(train_ids, dtype=np.int64)
        order = np.argsort(train_ids, kind="stable")
        self.ids = train_ids[order]
        self.labels = np.asarray(train_labels, dtype=np.int64)[order]
        if len(np.unique(self.ids)) != len(self.ids):
            raise ValueError("the training ids of a dynamics recorder must be distinct")
        self.num_classes = num_classes
        self.epochs = epochs
        self.width = min(num_classes, td_width)
        self.visits = np.zeros(len(self.ids), dtype=np.int16)  # of the current epoch
        self._probs: np.memmap | None = None
        self._margin: np.memmap | None = None

    # ----------------------------------------------------------------- files
    @property
    def finished(self) -> bool:
        """The td array is built: training ran to its end (``td.npy`` appears last, by a rename)."""
        return (self.folder / "td.npy").is_file()

    def _open(self, epochs_done: int) -> None:
        n, k, e = len(self.ids), self.num_classes, self.epochs
        probs_path, margin_path = self.folder / "probs.npy", self.folder / "margin.npy"
        if probs_path.is_file() and margin_path.is_file():
            self._probs = open_memmap(probs_path, mode="r+")
            self._margin = open_memmap(margin_path, mode="r+")
            if self._probs.shape != (n, k, e) or self._margin.shape != (n, e):
                raise UserError(f"the recorded training dynamics in {self.folder} do not fit this run "
                                f"({self._probs.shape}, not {(n, k, e)})", "start a new run instead of resuming")
            return
        if epochs_done or self.visits.any():
            raise UserError(f"the training dynamics recorded so far are missing from {self.folder}",
                            "start a new run instead of resuming this one")
        self.folder.mkdir(parents=True, exist_ok=True)
        ensure_free_space(self.folder, 2 * n * e * (k + 1) + 8 * n)
        np.save(self.folder / "ids.npy", self.ids)
        np.save(self.folder / "labels.npy", self.labels)
        # NaN until written: a sample the loop never showed stays visibly unrecorded.
        self._probs = open_memmap(probs_path, mode="w+", dtype=np.float16, shape=(n, k, e))
        self._margin = open_memmap(margin_path, mode="w+", dtype=np.float16, shape=(n, e))
        for start in range(0, n, ROWS_PER_CHUNK):
            self._probs[start:start + ROWS_PER_CHUNK] = np.nan
            self._margin[start:start + ROWS_PER_CHUNK] = np.nan
        self._flush()

    def _flush(self) -> None:
        for array in (self._probs, self._margin):
            if array is not None:
                array.flush()

    # ----------------------------------------------------------------- hooks
    def on_fit_start(self, state: TrainState) -> None:
        if self.finished or not distributed.is_main():
            return
        self._open(state.epoch)

    def on_epoch_start(self, state: TrainState) -> None:
        self.visits[:] = 0

    def on_batch_end(self, state: TrainState, batch: Batch, output: StepOutput) -> None:
        ids, batch_labels, batch_logits = distributed.gather_batch(batch, output.logits)
        if not distributed.is_main():
            return
        assert self._probs is not None and self._margin is not None, "on_fit_start opens the files"
        rows = np.searchsorted(self.ids, ids)
        if (rows >= len(self.ids)).any() or (self.ids[np.minimum(rows, len(self.ids) - 1)] != ids).any():
            raise ValueError("a batch holds samples this dynamics recorder was not told about")
        with torch.no_grad():
            logits = batch_logits.detach().float()
            labels = batch_labels.to(logits.device).view(-1, 1)
            assigned = logits.gather(1, labels).squeeze(1)
            largest_other = logits.scatter(1, labels, float("-inf")).max(dim=1).values
            margin = (assigned - largest_other).cpu().numpy()
            probs = torch.softmax(logits, dim=1).cpu().numpy()
        epoch = state.epoch
        self._probs[rows, :, epoch] = probs.astype(np.float16)
        self._margin[rows, epoch] = margin.astype(np.float16)
        np.add.at(self.visits, rows, 1)

    def on_epoch_end(self, state: TrainState) -> None:
        if not distributed.is_main():
            return
        # state.epoch already counts the epoch that just ended.
        wrong = np.flatnonzero(self.visits != 1)
        if len(wrong):
            first = int(self.ids[wrong[0]])
            raise RuntimeError(f"the dynamics recorder saw {len(wrong)} training samples other than once in "
                               f"epoch {state.epoch} (sample {first}: {int(self.visits[wrong[0]])} times)")
        self._flush()

    def on_fit_end(self, state: TrainState) -> None:
        if self.finished or not distributed.is_main():
            return
        self._flush()
        self._build_td()

    def state_dict(self) -> dict[str, Any]:
        self._flush()  # a checkpoint never points past what is on disk
        return {"visits": self.visits, "shape": [len(self.ids), self.num_classes, self.epochs]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        shape = [int(value) for value in state["shape"]]
        if shape != [len(self.ids), self.num_classes, self.epochs]:
            raise UserError(f"the checkpoint's dynamics recorder had shape {shape}", "start a new run")
        self.visits = state["visits"].cpu().numpy().astype(np.int16)

    def evidence_arrays(self, final_probs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        """``margin`` and ``given_prob`` (N, E), ``mean_probs`` and ``early_probs`` (N, K) float32, ``td`` (N, W, E).

        A sample not trained on gets the final model's prediction repeated over the epochs (its margin is
        the final model's, from its probabilities).
        """
        from engine.detectors.early_learning import class_probs_from_td, early_learning_window

        recorded = load_dynamics(self.folder)
        n, num_classes, epochs = len(labels), self.num_classes, self.epochs
        others = self.untrained_ids(n)
        margin = np.empty((n, epochs), dtype=np.float32)
        given_prob = np.empty((n, epochs), dtype=np.float32)
        mean_probs = np.empty((n, num_classes), dtype=np.float32)
        early_probs = np.empty((n, num_classes), dtype=np.float32)  # how many are mislabeled: early_learning.py
        margin[recorded.ids] = recorded.margin
        given_prob[recorded.ids] = recorded.given_prob
        mean_probs[recorded.ids] = recorded.mean_probs
        early_probs[recorded.ids] = class_probs_from_td(recorded.td, recorded.td_classes, num_classes,
                                                        early_learning_window(epochs))
        if len(others):
            given, final_margin = given_prob_and_margin(final_probs[others], labels[others])
            margin[others] = final_margin[:, None]
            given_prob[others] = given[:, None]
            mean_probs[others] = final_probs[others]
            early_probs[others] = final_probs[others]
        td = td_of_every_sample(recorded.ids, np.asarray(recorded.td), final_probs, labels)  # for td_lstm
        return {"margin": margin, "given_prob": given_prob, "mean_probs": mean_probs, "early_probs": early_probs,
                "td": td}

    # ---------------------------------------------------------------- the end
    def _build_td(self) -> None:
        """td (n, W, E), td_classes (n, W) and mean_probs (n, K) from probs.npy, a chunk of rows at a time."""
        assert self._probs is not None
        n, k, e, w = len(self.ids), self.num_classes, self.epochs, self.width
        ensure_free_space(self.folder, 2 * n * w * e + 8 * n * w + 4 * n * k)
        pending = {name: self.folder / f".{name}.npy.tmp" for name in ("td", "td_classes", "mean_probs")}
        td = open_memmap(pending["td"], mode="w+", dtype=np.float16, shape=(n, w, e))
        td_classes = open_memmap(pending["td_classes"], mode="w+", dtype=np.int32, shape=(n, w))
        mean_probs = open_memmap(pending["mean_probs"], mode="w+", dtype=np.float32, shape=(n, k))
        labels = self.labels
        for start in range(0, n, ROWS_PER_CHUNK):
            stop = min(n, start + ROWS_PER_CHUNK)
            chunk = np.asarray(self._probs[start:stop], dtype=np.float32)  # (c, K, E)
            mean = chunk.mean(axis=2)
            mean_probs[start:stop] = mean
            classes = td_class_order(mean, labels[start:stop], w)
            td[start:stop] = np.take_along_axis(chunk, classes[:, :, None], axis=1).astype(np.float16)
            td_classes[start:stop] = classes
        for array in (td, td_classes, mean_probs):
            array.flush()
        del td, td_classes, mean_probs
        # td.npy last: its presence says the whole set is complete.
        os.replace(pending["td_classes"], self.folder / "td_classes.npy")
        os.replace(pending["mean_probs"], self.folder / "mean_probs.npy")
        os.replace(pending["td"], self.folder / "td.npy")
        self._probs = None
        with contextlib.suppress(OSError):
            (self.folder / "probs.npy").unlink()  # td holds what the detectors read


def td_class_order(mean_probs: np.ndarray, labels: np.ndarray, width: int) -> np.ndarray:
    """(n, width) classes: the given label, then the other classes by mean probability, strongest first.

    Ties keep the lower class first (a stable sort), so the order is deterministic.
    """
    others = mean_probs.copy()
    others[np.arange(len(labels)), labels] = -np.inf
    ranked = np.argsort(-others, axis=1, kind="stable")[:, : width - 1]
    return np.concatenate([labels[:, None], ranked], axis=1).astype(np.int64)


def td_of_every_sample(recorded_ids: np.ndarray, recorded_td: np.ndarray, probs: np.ndarray,
                       labels: np.ndarray) -> np.ndarray:
    """(N, W, E) float16, indexed by sample id: the recorded td, and for the samples not trained on the
    final model's probabilities (``probs`` (N, K)) in td's column order, repeated over the epochs.

    The audit's evidence for a sample left out of training is the final model's prediction,
    repeated (as for its margin).
    """
    n, (width, epochs) = len(labels), recorded_td.shape[1:]
    td = np.empty((n, width, epochs), dtype=np.float16)
    td[recorded_ids] = recorded_td
    others = np.setdiff1d(np.arange(n), recorded_ids)
    if len(others):
        classes = td_class_order(probs[others], np.asarray(labels)[others], width)
        td[others] = np.take_along_axis(probs[others], classes, axis=1)[:, :, None].astype(np.float16)
    return td


def given_prob_and_margin(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n,) float64 each: the probability of the label, and the margin of AUM from probabilities alone.

    Logits share the softmax normaliser: their difference is the log ratio of the probabilities.
    """
    probs = probs.astype(np.float64)
    rows = np.arange(len(labels))
    given = probs[rows, labels]
    rest = probs.copy()
    rest[rows, labels] = -np.inf
    tiny = np.finfo(np.float32).tiny  # log of a probability that underflowed to 0
    return given, np.log(np.maximum(given, tiny)) - np.log(np.maximum(rest.max(axis=1), tiny))


@dataclass(frozen=True)
class Dynamics:
    """Recorded dynamics read back, rows in ``ids`` order (arrays memory-mapped, read-only)."""

    ids: np.ndarray  # (n,) sample ids
    labels: np.ndarray  # (n,) the labels trained on
    margin: np.ndarray  # (n, E) float16
    td: np.ndarray  # (n, W, E) float16
    td_classes: np.ndarray  # (n, W) int32
    mean_probs: np.ndarray  # (n, K) float32

    @property
    def given_prob(self) -> np.ndarray:
        """(n, E) float32: the probability of the label trained on, per epoch."""
        return np.asarray(self.td[:, 0, :], dtype=np.float32)


def load_dynamics(folder: Path) -> Dynamics:
    """The finished recording in ``folder``; a clear error when training did not reach its end."""
    folder = Path(folder)
    if not (folder / "td.npy").is_file():
        raise UserError(f"no finished training dynamics in {folder}", "run (or resume) the audit to its end")
    return Dynamics(
        ids=np.load(folder / "ids.npy"),
        labels=np.load(folder / "labels.npy"),
        margin=np.load(folder / "margin.npy", mmap_mode="r"),
        td=np.load(folder / "td.npy", mmap_mode="r"),
        td_classes=np.load(folder / "td_classes.npy", mmap_mode="r"),
        mean_probs=np.load(folder / "mean_probs.npy", mmap_mode="r"),
    )


# ------------------------------------------------------------------ per-batch confident classes (ocl)
CONFIDENT_CLASS_FILE = "confident_class.npy"
UNRECORDED = -2  # the loop has not shown the sample in that epoch (yet)


class ConfidentClassRecorder(EvidenceRecorder):
    """Records, per training sample and epoch, its confident class in its batch (evidence ``confident_class``).

    ``confident_class.npy`` (n, E) int16 in ``folder`` (the same ``dynamics/`` folder as
    :class:`DynamicsRecorder`, rows in sorted-id order, written through a memmap by (row, epoch), so
    a resumed run writes what an uninterrupted one does): the class from :func:`batch_confident_classes`
    for the batch the sample was trained in, -1 where it reached no threshold, -2 where never recorded.
    It uses the logits of the forward pass training already does; n x E x 2 bytes on disk.
    """

    name = "confident_class"
    evidence = "confident_class"  # the DetectorInputs.arrays name it fills

    def __init__(self, folder: Path, train_ids: np.ndarray, train_labels: np.ndarray, num_classes: int,
                 epochs: int) -> None:
        self.folder = Path(folder)
        self.ids = np.sort(np.asarray(train_ids, dtype=np.int64))
        self.epochs = epochs
        if num_classes > np.iinfo(np.int16).max:
            raise ValueError(f"{num_classes} classes do not fit the int16 confident-class record")
        self._classes: np.memmap | None = None

    @property
    def path(self) -> Path:
        return self.folder / CONFIDENT_CLASS_FILE

    def on_fit_start(self, state: TrainState) -> None:
        if not distributed.is_main():
            return
        shape = (len(self.ids), self.epochs)
        if self.path.is_file():
            self._classes = open_memmap(self.path, mode="r+")
            if self._classes.shape != shape:
                raise UserError(f"the recorded confident classes in {self.folder} do not fit this run "
                                f"({self._classes.shape}, not {shape})", "start a new run instead of resuming")
            return
        if state.epoch:
            raise UserError(f"the confident classes recorded so far are missing from {self.folder}",
                            "start a new run instead of resuming this one")
        self.folder.mkdir(parents=True, exist_ok=True)
        ensure_free_space(self.folder, 2 * shape[0] * shape[1])
        self._classes = open_memmap(self.path, mode="w+", dtype=np.int16, shape=shape)
        self._classes[:] = UNRECORDED
        self._classes.flush()

    def on_batch_end(self, state: TrainState, batch: Batch, output: StepOutput) -> None:
        # The thresholds are those of the whole batch: every rank's part of it, gathered.
        ids, batch_labels, batch_logits = distributed.gather_batch(batch, output.logits)
        if not distributed.is_main():
            return
        assert self._classes is not None, "on_fit_start opens the file"
        rows = np.searchsorted(self.ids, ids)
        if (rows >= len(self.ids)).any() or (self.ids[np.minimum(rows, len(self.ids) - 1)] != ids).any():
            raise ValueError("a batch holds samples this confident-class recorder was not told about")
        with torch.no_grad():
            logits = batch_logits.detach().float()
            probs = torch.softmax(logits, dim=1)
            classes = batch_confident_classes(probs, batch_labels.to(logits.device)).cpu().numpy()
        self._classes[rows, state.epoch] = classes.astype(np.int16)

    def on_epoch_end(self, state: TrainState) -> None:
        if not distributed.is_main():
            return
        assert self._classes is not None
        missed = int((self._classes[:, state.epoch - 1] == UNRECORDED).sum())  # state.epoch counts the one ended
        if missed:
            raise RuntimeError(f"the confident-class recorder saw no batch for {missed} training samples "
                               f"in epoch {state.epoch}")
        self._classes.flush()

    def on_fit_end(self, state: TrainState) -> None:
        if self._classes is not None:
            self._classes.flush()

    def state_dict(self) -> dict[str, Any]:
        if self._classes is not None:
            self._classes.flush()  # a checkpoint never points past what is on disk
        return {"shape": [len(self.ids), self.epochs]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        shape = [int(value) for value in state["shape"]]
        if shape != [len(self.ids), self.epochs]:
            raise UserError(f"the checkpoint's confident-class recorder had shape {shape}", "start a new run")

    def read(self) -> np.ndarray:
        """(n, E) int16, rows in sorted-id order (``self.ids``): the finished record."""
        return np.load(self.path, mmap_mode="r")

    def evidence_arrays(self, final_probs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        """``confident_class`` (N, E) int16: the record, and for a sample not trained on the final model's most
        probable class, repeated over epochs.

        Such a sample was in no batch, so no batch threshold applies; the most probable class is the one
        cleanlab makes confident whenever any class is (the label plays no part).
        """
        classes = np.empty((len(labels), self.epochs), dtype=np.int16)
        classes[self.ids] = self.read()
        others = self.untrained_ids(len(labels))
        if len(others):
            final_class = np.asarray(final_probs[others]).argmax(axis=1).astype(np.int16)
            classes[others] = np.repeat(final_class[:, None], self.epochs, axis=1)
        return {self.evidence: classes}


# Evidence recorded alongside the dynamics, in the same single training run, by the recorder that
# makes it: requirement name (engine.detectors.EVIDENCE) -> recorder class.
EVIDENCE_RECORDERS: dict[str, Callable[[Path, np.ndarray, np.ndarray, int, int], EvidenceRecorder]] = {
    ConfidentClassRecorder.evidence: ConfidentClassRecorder,
}
