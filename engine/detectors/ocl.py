"""Online confident learning as a detector (seeds/ocl-mixgen-confident-learning.md).

Evidence: ``confident_class`` (N, E), recorded in the one dynamics run by
:class:`engine.training.recorders.ConfidentClassRecorder` from the forward pass
training already does: per epoch, each sample's confident class in its training
batch (the batch's per-class thresholds are the mean self-confidence of the
batch's samples of that class, cleanlab's rule), -1 where it reached no threshold.
The online confident-learning loss of the seed screens every batch with this
rule; a sample is *off the diagonal* of the batch's confident joint when its
confident class exists and differs from its given label.

- score: the weighted fraction of epochs in which the sample was off the
  diagonal, epoch e (1-based) of E weighing e. Early epochs weigh less because
  the network is still near chance: its probabilities barely pass the batch
  thresholds, so which class is confident is mostly noise; a wrong label shows
  when the network has learned the class, and a sample off the diagonal then is
  evidence. (Unlike a memorising long run, the audit's short schedule is over
  before the network fits the wrong labels, so late epochs are not discounted.)
  The linear weights also break most ties between samples with the same count
  of epochs, which a plain fraction (E + 1 values) leaves.
- estimated noise rate: the online confident joint's own estimate: per epoch,
  the share of each given class's confidently-classed samples that sat off the
  diagonal, weighted by that class's size (cleanlab's calibration of the joint:
  samples with no confident class are spread like those with one), averaged
  over the epochs with the same weights.
- flagged: that many samples, the highest scores first (ties: the fewer
  epochs on the diagonal first), so the flagged share is the estimate.
- suggested label: the confident class it had most often (weighted the same),
  -1 when it never had one; for a flagged sample the most frequent one other than
  its given label, -1 when it never had another.
- extras: ``ocl_offdiag_fraction`` (n,) float32, the score before ranking.
"""

from __future__ import annotations

import numpy as np

from engine.detectors import CONFIDENT_CLASS, DetectorInputs, DetectorResult, ranking_flagged_first, suggest_classes


def epoch_weights(epochs: int) -> np.ndarray:
    """(E,) float64 summing to 1: epoch e (1-based) weighs e (see the module docstring)."""
    weights = np.arange(1, epochs + 1, dtype=np.float64)
    return weights / weights.sum()


def off_diagonal_fraction(confident_class: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(n,) float64 in [0, 1]: the weighted share of epochs with a confident class other than the label."""
    confident_class = np.asarray(confident_class)
    off = (confident_class >= 0) & (confident_class != np.asarray(labels)[:, None])
    return np.clip(off.astype(np.float64) @ weights, 0.0, 1.0)


def estimated_noise_rate(confident_class: np.ndarray, labels: np.ndarray, num_classes: int,
                         weights: np.ndarray) -> float:
    """The calibrated off-diagonal share of the per-epoch confident joints, averaged with ``weights``."""
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0:
        return 0.0
    class_sizes = np.bincount(labels, minlength=num_classes).astype(np.float64)
    rates = np.zeros(len(weights))
    for epoch in range(len(weights)):
        column = np.asarray(confident_class[:, epoch])
        counted = column >= 0
        off = counted & (column != labels)
        counted_per_class = np.bincount(labels[counted], minlength=num_classes).astype(np.float64)
        off_per_class = np.bincount(labels[off], minlength=num_classes).astype(np.float64)
        share = np.divide(off_per_class, counted_per_class, out=np.zeros(num_classes), where=counted_per_class > 0)
        rates[epoch] = float((share * class_sizes).sum() / n)
    return float(np.clip(rates @ weights, 0.0, 1.0))


def confident_class_weights(confident_class: np.ndarray, num_classes: int, weights: np.ndarray) -> np.ndarray:
    """(n, K) float64: per sample and class, the summed weight of the epochs it was that sample's confident class."""
    n = len(confident_class)
    totals = np.zeros((n, num_classes), dtype=np.float64)
    rows = np.arange(n)
    for epoch, weight in enumerate(weights):
        column = np.asarray(confident_class[:, epoch]).astype(np.int64)
        has = column >= 0
        totals[rows[has], column[has]] += weight
    return totals


def detect(inputs: DetectorInputs) -> DetectorResult:
    """ocl scores, suggestions and the flagged set sized by the confident joint's noise estimate."""
    confident_class = np.asarray(inputs.arrays[CONFIDENT_CLASS])
    labels = np.asarray(inputs.labels, dtype=np.int64)
    if confident_class.ndim != 2 or len(confident_class) != len(labels):
        raise ValueError(f"confident classes must be (samples, epochs), not {confident_class.shape}")
    n, epochs = confident_class.shape
    weights = epoch_weights(epochs)
    scores = off_diagonal_fraction(confident_class, labels, weights)
    on_diagonal = (confident_class == labels[:, None]).astype(np.float64) @ weights
    estimate = estimated_noise_rate(confident_class, labels, inputs.num_classes, weights)
    n_flagged = int(round(estimate * n))
    order = np.lexsort((on_diagonal, -scores))  # the last key sorts first
    flagged_ids = order[:n_flagged]
    flagged = np.zeros(n, dtype=bool)
    flagged[flagged_ids] = True
    return DetectorResult(
        scores=scores,
        suggested=suggest_classes(confident_class_weights(confident_class, inputs.num_classes, weights), labels,
                                  flagged, needs_evidence=True),
        flagged=flagged,
        ranking=ranking_flagged_first(flagged_ids, scores),
        extras={"ocl_offdiag_fraction": scores.astype(np.float32)},
        summary={
            "n_flagged": n_flagged,
            "flagged_rate": n_flagged / n if n else 0.0,
            "estimated_noise_rate": estimate,
            "estimated_by": "calibrated off-diagonal share of the per-batch confident joints, epochs weighted",
            "epochs": int(epochs),
        },
    )
