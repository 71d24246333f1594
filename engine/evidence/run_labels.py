"""The labels a run trained and scored on, recorded in its folder, and what reads them.

An audit trains on the labels with the person's decisions applied (a relabel as its new
class, a removed sample left out of training but still scored). Everything that grades
or shows its scores must use those labels, not the ones the project holds later: a
sample is wrong *for that run* when the label the run used differs from the truth.

The run folder keeps (sample-id order, ``np.save``):

- ``labels_used.npy`` (N,) int64: each sample's label as the run used it;
- ``removed_by_decisions.npy`` (N,) bool: samples left out of training (still scored).

Their sha256 go into the run's summary under ``labels_used`` (see :func:`record_run_labels`),
so a file changed afterwards is noticed. A run made by an older version has neither file:
readers fall back to the project's observed labels and say so (:func:`labels_for_grading`).

Below the store: the store's staleness rule reads these files (:func:`checked_run_labels`), so this
module imports no part of it (its ``Project`` and ``RunInfo`` are for type checking only).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.arrays import save_array
from engine.errors import UserError

if TYPE_CHECKING:
    from engine.store import Project, RunInfo

AUDITED_IDS_FILE = "audited_ids.npy"  # the sample ids an audit's detectors scored (the train split)
LABELS_USED_FILE = "labels_used.npy"
REMOVED_FILE = "removed_by_decisions.npy"
SUMMARY_KEY = "labels_used"


@dataclass(frozen=True)
class RunLabels:
    """The labels a run used, every array (N,) indexed by sample id."""

    labels: np.ndarray  # int64
    removed: np.ndarray  # bool: left out of training by a "remove" decision (still scored)


@dataclass(frozen=True)
class GradingLabels:
    """The labels to grade a run's scores against, and a sentence saying which they are."""

    labels: np.ndarray  # (N,) int64
    recorded: bool  # True: the run's own; False: the project's observed labels (an older run)
    description: str


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def record_run_labels(folder: Path, labels: np.ndarray, keep: np.ndarray) -> dict[str, Any]:
    """Write the labels a run uses into its ``folder``; returns the summary entry (file names, sha256, counts).

    ``keep`` is False for samples a decision removed. A file already there (a resumed run) must
    hold the same labels: the run would otherwise continue on other ones.
    """
    labels = np.asarray(labels, dtype=np.int64)
    removed = ~np.asarray(keep, dtype=bool)
    earlier = read_run_labels(folder)
    if earlier is not None and not (np.array_equal(earlier.labels, labels)
                                    and np.array_equal(earlier.removed, removed)):
        changed = int(((earlier.labels != labels) | (earlier.removed != removed)).sum())
        raise UserError(f"the labels or decisions of {changed} samples differ from those run {folder.name} started "
                        "with: continuing it would mix both",
                        "start a new run instead of --resume")
    if earlier is None:
        for name, array in ((LABELS_USED_FILE, labels), (REMOVED_FILE, removed)):
            save_array(folder / name, array)
    return {"file": LABELS_USED_FILE, "sha256": _sha256(folder / LABELS_USED_FILE),
            "removed_file": REMOVED_FILE, "removed_sha256": _sha256(folder / REMOVED_FILE),
            "n_removed": int(removed.sum())}


def read_run_labels(folder: Path, summary: dict[str, Any] | None = None) -> RunLabels | None:
    """The labels recorded in a run ``folder``, None when it has none (an older version's run).

    With the run's ``summary``, each file is checked against the sha256 recorded there.

    Raises
    ------
    UserError
        When a file is missing, unreadable or no longer matches the summary.
    """
    entry = summary.get(SUMMARY_KEY) if isinstance(summary, dict) else None
    labels_path, removed_path = folder / LABELS_USED_FILE, folder / REMOVED_FILE
    if not labels_path.is_file() and not removed_path.is_file() and not isinstance(entry, dict):
        return None
    fix = "run a new audit (the run's scores can no longer be matched to the labels it saw)"
    for path, key in ((labels_path, "sha256"), (removed_path, "removed_sha256")):
        if not path.is_file():
            raise UserError(f"{path} is missing: run {folder.name} recorded the labels it used there", fix)
        if isinstance(entry, dict) and entry.get(key) and entry[key] != _sha256(path):
            raise UserError(f"{path} was changed after run {folder.name} finished (its sha256 differs from the "
                            "run's summary)", fix)
    try:
        labels = np.load(labels_path, allow_pickle=False)
        removed = np.load(removed_path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the labels run {folder.name} used: {exc}", fix) from None
    if labels.ndim != 1 or removed.shape != labels.shape:
        raise UserError(f"the labels recorded in run {folder.name} have shapes {labels.shape} and {removed.shape}",
                        fix)
    return RunLabels(labels.astype(np.int64), removed.astype(bool))


def run_labels(project: Project, run: RunInfo) -> RunLabels | None:
    """The labels ``run`` used, checked against its summary and the project's size; None for an older run."""
    return checked_run_labels(run, project.num_samples)


def checked_run_labels(run: RunInfo, num_samples: int) -> RunLabels | None:
    """The labels ``run`` used, checked against its summary and ``num_samples`` (the project's); None for an
    older run. The store's staleness rule (:mod:`engine.store.label_state`) reads them with this."""
    used = read_run_labels(run.folder, run.summary)
    if used is not None and len(used.labels) != num_samples:
        raise UserError(f"run {run.id} recorded labels for {len(used.labels)} samples; the project has "
                        f"{num_samples}", "run a new audit")
    return used


def labels_for_grading(project: Project, run: RunInfo, observed: np.ndarray | None = None) -> GradingLabels:
    """The labels to grade ``run``'s scores against: the ones it used, else (an older run) the observed ones.

    ``observed``: the project's observed labels when the caller has read them already.
    """
    used = run_labels(project, run)
    if used is not None:
        changed = int((used.labels != (observed if observed is not None else project.sample_table().label)).sum())
        return GradingLabels(used.labels, True,
                             f"the labels run {run.id} trained and scored on ({changed} relabeled and "
                             f"{int(used.removed.sum())} removed by decisions)")
    labels = observed if observed is not None else project.sample_table().label
    return GradingLabels(np.asarray(labels, dtype=np.int64), False,
                         f"the project's observed labels: run {run.id} recorded no labels (made by an older "
                         "version), so decisions it trained on are not known")


def audited_mask(project: Project, run: RunInfo) -> np.ndarray:
    """(N,) bool: the samples ``run``'s detectors scored; the others (held out) were never audited.

    From the run's ``audited_ids.npy``; a run without one (an older version) audited the train split.
    """
    audited = np.zeros(project.num_samples, dtype=bool)
    path = run.folder / AUDITED_IDS_FILE
    if path.is_file():
        try:
            ids = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {path}: {exc}", "run a new audit") from None
        audited[ids[(ids >= 0) & (ids < len(audited))]] = True
    else:
        audited[project.sample_table().train_ids] = True
    return audited
