"""K-fold out-of-sample predicted probabilities for every sample.

Train samples get the probabilities of the one fold model that did not see
them; every other sample (the held-out test split, samples left out of
training) gets the mean of all fold models, which none of them saw either.
Each finished fold is saved at once, so a cancelled run resumes where it stopped.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from engine.arrays import save_array
from engine.errors import UserError
from engine.evidence.run_labels import record_run_labels
from engine.jobs import JobContext
from engine.store import SampleTable, atomic_write_bytes
from engine.training import distributed
from engine.training.config import TrainConfig
from engine.training.fit import StageProgress, fit_and_evaluate
from engine.training.loop import predict_probs, steps_per_epoch
from engine.workflows.sample_sets import heldout_targets

CROSSVAL_KIND = "crossval"
PRED_PROBS_FILE = "pred_probs.npy"
FOLDS_FILE = "folds.npy"


def check_folds(labels: np.ndarray, folds: int, class_names: list[str]) -> None:
    """Every class present needs at least ``folds`` samples; two classes at least."""
    if folds < 2:
        raise UserError(f"--folds {folds} is too few", "use 2 or more folds (3 is the default)")
    present, counts = np.unique(labels, return_counts=True)
    if len(present) < 2:
        raise UserError("the training data has only one class", "a classifier needs at least two classes of images")
    small = [(class_names[c], int(n)) for c, n in zip(present, counts) if n < folds]
    if small:
        listed = ", ".join(f"{name!r} ({count})" for name, count in small)
        raise UserError(f"too few training samples for {folds} folds in class {listed}",
                        f"add images to those classes, or use --folds {max(2, min(n for _, n in small))}")


def fold_assignment(ids: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Stratified, seeded fold of each id: (len(ids),) int in [0, folds)."""
    from sklearn.model_selection import StratifiedKFold

    fold_of = np.empty(len(ids), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(ids)), labels)):
        fold_of[held_out] = fold
    return fold_of


def crossval_pred_probs(
    ctx: JobContext,
    config: TrainConfig,
    folds: int,
    labels: np.ndarray | None = None,
    keep: np.ndarray | None = None,
) -> np.ndarray:
    """Out-of-sample probabilities, (N, K) float32, for every sample; saved as pred_probs.npy in the run.

    Parameters
    ----------
    labels : np.ndarray of shape (N,), optional — labels to train on (default: the observed labels).
    keep : np.ndarray of shape (N,) bool, optional — False drops a sample from training (it is still scored).
    """
    project = ctx.project
    table = project.sample_table()
    n, num_classes = project.num_samples, project.num_classes
    labels = table.label.copy() if labels is None else np.asarray(labels, dtype=np.int64)
    train_ids = table.train_ids
    if keep is not None:
        train_ids = train_ids[np.asarray(keep, dtype=bool)[train_ids]]
    check_folds(labels[train_ids], folds, project.class_names())
    fold_of = fold_assignment(train_ids, labels[train_ids], folds, config.seed)
    other_ids = np.setdiff1d(np.arange(n), train_ids)  # scored by every fold model
    heldout_ids, heldout_target, heldout_against = heldout_targets(table)

    fold_sizes = [int((fold_of != fold).sum()) for fold in range(folds)]
    units = [config.epochs * steps_per_epoch(size, config.batch_size) for size in fold_sizes]
    progress = StageProgress(ctx.events, "crossval", sum(units))
    probs = np.zeros((n, num_classes), dtype=np.float32)
    other_sum = np.zeros((len(other_ids), num_classes), dtype=np.float64)
    for fold in range(folds):
        fit_ids, held_out = train_ids[fold_of != fold], train_ids[fold_of == fold]
        fold_file = ctx.run.folder / f"fold{fold}.npz"
        if distributed.broadcast_object(fold_file.is_file()):  # finished before a cancel: keep it
            probs[held_out], other_probs = _load_fold(fold_file, fold, held_out, other_ids)
        else:
            ctx.events.log(f"fold {fold + 1}/{folds}: training on {len(fit_ids)} samples, scoring {len(held_out)}")
            result = fit_and_evaluate(
                ctx, config, fit_ids, labels[fit_ids], held_out, labels[held_out], stage="train",
                checkpoint_name=f"checkpoint-fold{fold}.pt", progress=progress, progress_offset=sum(units[:fold]),
                fold=fold,
            )
            model, data, amp = result.model, result.data, result.state.amp
            probs[held_out] = predict_probs(model, data, held_out, amp)
            other_probs = predict_probs(model, data, other_ids, amp) if len(other_ids) else np.zeros((0, num_classes))
            if distributed.is_main():  # under torchrun, rank 0 alone writes
                _save_fold(fold_file, probs[held_out], other_probs, held_out, other_ids)
                (ctx.run.folder / f"checkpoint-fold{fold}.pt").unlink(missing_ok=True)
            values = {"oof_acc": float((probs[held_out].argmax(1) == labels[held_out]).mean())}
            if len(heldout_ids):  # against the same labels as the summary's held-out accuracy
                rows = np.searchsorted(other_ids, heldout_ids)
                values["heldout_acc"] = float((other_probs[rows].argmax(1) == heldout_target).mean())
            ctx.events.metric("crossval", values, fold=fold)
            if len(heldout_ids):
                ctx.events.log(f"fold {fold + 1}/{folds}: held-out accuracy {values['heldout_acc']:.3f} "
                               f"(against {heldout_against})")
        other_sum += other_probs
        progress.update(sum(units[: fold + 1]), f"fold {fold + 1}/{folds} done")
    if len(other_ids):
        probs[other_ids] = (other_sum / folds).astype(np.float32)
    fold_of_sample = np.full(n, -1, dtype=np.int64)
    fold_of_sample[train_ids] = fold_of
    if distributed.is_main():
        save_array(ctx.run.folder / PRED_PROBS_FILE, probs)
        save_array(ctx.run.folder / FOLDS_FILE, fold_of_sample)
    return probs


def _save_fold(path: Path, held_out: np.ndarray, other: np.ndarray, held_out_ids: np.ndarray,
               other_ids: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, held_out=held_out, other=other, held_out_ids=held_out_ids, other_ids=other_ids)
    atomic_write_bytes(path, buffer.getvalue())


def _load_fold(path: Path, fold: int, held_out_ids: np.ndarray, other_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A finished fold's (held-out, other) probabilities, refused unless they are of these very samples.

    A fold file from before the ids were saved is taken as it is (the resume check on the
    labels and decisions guards it).
    """
    with np.load(path) as saved:
        same = all(name not in saved.files or np.array_equal(saved[name], ids)
                   for name, ids in (("held_out_ids", held_out_ids), ("other_ids", other_ids)))
        if not same:
            raise UserError(f"{path.name} of run {path.parent.name} holds the probabilities of other samples than "
                            f"fold {fold} has now (the labels or decisions changed since the run stopped)",
                            "start a new audit instead of resuming this one")
        return saved["held_out"], saved["other"]


def heldout_accuracy(table: SampleTable, pred_probs: np.ndarray) -> tuple[float | None, str, int]:
    """Accuracy of ``pred_probs`` (N, K) on the test split: (accuracy or None, against what, samples counted);
    see :func:`heldout_targets`."""
    test_ids, target, against = heldout_targets(table)
    if not len(test_ids):
        return None, against, 0
    return float((pred_probs[test_ids].argmax(axis=1) == target).mean()), against, len(test_ids)


def crossval_body(ctx: JobContext, config: TrainConfig, spec: dict[str, Any]) -> dict[str, Any]:
    """The ``crossval`` job: out-of-sample probabilities of every sample, trained on the observed labels."""
    table = ctx.project.sample_table()
    # It trains on the observed labels, decisions left aside: recorded like an audit's (engine.evidence.run_labels).
    labels_used = record_run_labels(ctx.run.folder, table.label, np.ones(len(table.label), dtype=bool)) \
        if distributed.is_main() else {}
    probs = crossval_pred_probs(ctx, config, spec["folds"], labels=table.label)
    accuracy, against, _ = heldout_accuracy(table, probs)
    summary: dict[str, Any] = {"pred_probs": PRED_PROBS_FILE, "samples": int(len(probs)), "labels_used": labels_used,
                               "heldout_accuracy": accuracy, "heldout_accuracy_measured_against": against}
    ctx.events.result("pred_probs", {"path": str(ctx.run.folder / PRED_PROBS_FILE), "shape": list(probs.shape)})
    return summary
