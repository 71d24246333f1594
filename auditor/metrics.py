"""Detector quality against the known truth, with numpy only (the app never imports scikit-learn).

The figures are those of ``python -m engine evaluate`` (:func:`engine.workflows.evaluate.evaluate_run`,
which uses scikit-learn): ROC-AUC and average precision of each detector's scores,
precision/recall/F1 of its flagged set, over the train samples whose truth is known.
A sample counts as mislabeled when the label the run used differs from the truth
(:func:`read_truth` with the run; engine.evidence.run_labels). The curves are computed on
every sample; :func:`decimate` picks the few thousand vertices a plot needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.evidence.run_labels import labels_for_grading
from engine.store import UNKNOWN_TRUTH, Project, RunInfo


@dataclass(frozen=True)
class Truth:
    """What the project knows about its labels, every array (N,) indexed by sample id."""

    label: np.ndarray  # int64, the label judged: the one a run used, or the observed (possibly noisy) one
    true_label: np.ndarray  # int64, UNKNOWN_TRUTH where unknown, -1 outside the label set
    train: np.ndarray  # bool, the train split (the only one an audit scores)
    label_source: str = "the project's observed labels"  # which labels ``label`` holds, in words

    @property
    def known(self) -> np.ndarray:
        return self.true_label != UNKNOWN_TRUTH

    @property
    def mislabeled(self) -> np.ndarray:
        """Known and wrong; an open-set sample (true label -1) is always wrong (as in engine.workflows.evaluate)."""
        return self.known & (self.true_label != self.label)

    @property
    def evaluated(self) -> np.ndarray:
        """The samples `evaluate` scores: train split with a known truth."""
        return self.known & self.train

    @property
    def any_known(self) -> bool:
        return bool(self.evaluated.any())


def read_truth(project: Project, run: RunInfo | None = None) -> Truth:
    """One query for labels, truth and split (cheaper than the full sample table at 100,000 samples).

    With ``run``, ``label`` is the label that run trained and scored on (what its scores are
    graded against); without, or for a run made by an older version that recorded none, the
    observed label (``label_source`` says which).
    """
    rows = project.execute("SELECT label, true_label, split FROM samples ORDER BY id")
    observed = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    label, source = observed, "the project's observed labels"
    if run is not None:
        graded = labels_for_grading(project, run, observed)
        label, source = graded.labels, graded.description
    return Truth(
        label=label,
        true_label=np.fromiter((UNKNOWN_TRUTH if row[1] is None else row[1] for row in rows), dtype=np.int64,
                               count=len(rows)),
        train=np.fromiter((row[2] == "train" for row in rows), dtype=bool, count=len(rows)),
        label_source=source,
    )


def _cumulative_counts(is_noisy: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positives, true positives, thresholds) at each distinct score, highest score first.

    The same points as scikit-learn's ``_binary_clf_curve``: tied scores are one point.
    """
    order = np.argsort(scores, kind="mergesort")[::-1]
    sorted_scores = np.asarray(scores, dtype=np.float64)[order]
    sorted_truth = np.asarray(is_noisy, dtype=bool)[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1]
    true_positives = np.cumsum(sorted_truth, dtype=np.int64)[last_of_tie]
    false_positives = 1 + last_of_tie - true_positives
    return false_positives, true_positives, sorted_scores[last_of_tie]


@dataclass(frozen=True)
class Curves:
    """A detector's ROC and precision-recall curves, one vertex per distinct score (from one sort).

    ``fpr``/``tpr`` run from (0, 0) to (1, 1): scikit-learn's ``roc_curve(..., drop_intermediate=False)``;
    empty when the truth has one class only. ``recall``/``precision`` start at the highest
    threshold: scikit-learn's ``precision_recall_curve`` reversed, without its final (0, 1);
    empty when no sample is noisy.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    recall: np.ndarray
    precision: np.ndarray

    @property
    def roc_auc(self) -> float | None:
        return float(np.trapezoid(self.tpr, self.fpr)) if len(self.fpr) else None

    @property
    def average_precision(self) -> float | None:
        """scikit-learn's: the sum of precision times the recall gained at each threshold (no interpolation)."""
        return float(np.sum(np.diff(np.r_[0.0, self.recall]) * self.precision)) if len(self.recall) else None


def curves(is_noisy: np.ndarray, scores: np.ndarray) -> Curves:
    """Both curves of one detector's ``scores`` against the truth ``is_noisy``."""
    empty = np.zeros(0)
    if not len(is_noisy):
        return Curves(empty, empty, empty, empty)
    false_positives, true_positives, _ = _cumulative_counts(is_noisy, scores)
    fpr = tpr = recall = precision = empty
    if true_positives[-1] > 0:
        recall = true_positives / true_positives[-1]
        precision = true_positives / (true_positives + false_positives)
        if false_positives[-1] > 0:
            fpr = np.r_[0.0, false_positives / false_positives[-1]]
            tpr = np.r_[0.0, recall]
    return Curves(fpr, tpr, recall, precision)


def decimate(x: np.ndarray, y: np.ndarray, max_points: int = 2000) -> np.ndarray:
    """Indices of at most ``max_points`` vertices spread evenly along the curve's length.

    The first and last vertex are always kept. A curve of 100,000 vertices on a plot a
    few hundred pixels wide looks the same drawn through these; the figures (AUC) are
    computed on every vertex, never on these.
    """
    n = len(x)
    if n <= max_points:
        return np.arange(n)
    length = np.r_[0.0, np.cumsum(np.hypot(np.diff(x), np.diff(y)))]
    targets = np.linspace(0.0, length[-1], max_points)
    indices = np.unique(np.clip(np.searchsorted(length, targets), 0, n - 1))
    return np.unique(np.r_[0, indices, n - 1])


def detection_metrics(is_noisy: np.ndarray, scores: np.ndarray, flagged: np.ndarray,
                      detector_curves: Curves | None = None) -> dict[str, Any]:
    """The figures of :func:`engine.workflows.evaluate.detection_metrics` (same keys, same values), with numpy.

    ``detector_curves``: :func:`curves` of these scores, when already computed.
    """
    is_noisy = np.asarray(is_noisy, dtype=bool)
    flagged = np.asarray(flagged, dtype=bool)
    n_noisy, n_flagged = int(is_noisy.sum()), int(flagged.sum())
    hits = int((is_noisy & flagged).sum())
    precision = hits / n_flagged if n_flagged else 0.0
    recall = hits / n_noisy if n_noisy else 0.0
    f1 = 2 * hits / (n_flagged + n_noisy) if n_flagged + n_noisy else 0.0
    found = detector_curves if detector_curves is not None else curves(is_noisy, scores)
    return {
        "roc_auc": found.roc_auc, "average_precision": found.average_precision,
        "precision": precision, "recall": recall, "f1": f1,
        "n": int(len(is_noisy)), "n_noisy": n_noisy, "n_flagged": n_flagged, "n_true_positives": hits,
    }


def evaluation_report(truth: Truth, run: RunInfo, scores: dict[str, np.ndarray], flagged: dict[str, np.ndarray],
                      found: dict[str, Curves] | None = None) -> dict[str, Any]:
    """What ``evaluate --json`` reports per detector, from scores already in memory.

    Returns ``n_evaluated``, ``true_noise_rate`` and ``detectors``: name -> the figures of
    :func:`detection_metrics` plus ``estimated_noise_rate`` (as the run recorded it, or
    None), ``true_noise_rate`` and ``flagged_rate``. The truth must be known somewhere.
    Each detector's :class:`Curves` go into ``found`` when given (one sort per detector in all).
    """
    evaluated = truth.evaluated
    noisy = truth.mislabeled[evaluated]
    true_rate = float(noisy.mean())
    recorded = run.summary.get("detectors", {})
    detectors: dict[str, Any] = {}
    for name, score in scores.items():
        detector_curves = curves(noisy, score[evaluated])
        if found is not None:
            found[name] = detector_curves
        metrics = detection_metrics(noisy, score[evaluated], flagged[name][evaluated], detector_curves)
        entry = recorded.get(name, {}) if isinstance(recorded, dict) else {}
        metrics["estimated_noise_rate"] = entry.get("estimated_noise_rate") if isinstance(entry, dict) else None
        metrics["true_noise_rate"] = true_rate
        metrics["flagged_rate"] = float(flagged[name][evaluated].mean())
        detectors[name] = metrics
    return {"run_id": run.id, "n_evaluated": int(evaluated.sum()), "true_noise_rate": true_rate,
            "graded_against": truth.label_source, "detectors": detectors}
