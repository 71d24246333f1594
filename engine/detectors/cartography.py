"""Dataset cartography (Swayamdipta et al. 2020, "Dataset Cartography: mapping and diagnosing datasets
with training dynamics").

Evidence: the training dynamics (``requires = ("dynamics",)``): per sample and
epoch, the probability of the given label and the assigned-logit margin.

- confidence: the mean over epochs of the probability of the given label;
- variability: its standard deviation over epochs;
- correctness: the share of epochs in which the model predicted the given
  label (margin > 0: the assigned logit beat every other);
- score: ``1 - confidence``. The paper's "hard-to-learn" region (low
  confidence, low variability) is where mislabeled samples gather; confidence
  alone orders samples along it, and variability separates only the
  "ambiguous" ones, which are not evidence of a wrong label.
- flagged: in each given class, as many of its lowest confidences as the
  early-learning estimate (engine/detectors/early_learning.py) says are
  mislabeled there. Its own line, kept
  in the summary (``n_own_rule``) and used for runs recorded without the
  early-learning probabilities: correctness < 0.5: in most epochs the model predicted another
  class than the given one, though it was trained towards the given one (a
  majority vote of the epochs' predictions against the label). On the digits
  demo (20% symmetric noise, 12 epochs) this flags 307 samples at F1 0.968,
  where confidence < 0.5 flags 454 at F1 0.776: early epochs, when nothing is
  learned yet, pull every sample's mean confidence down, but they vote for no
  class in particular (that rule's set is not a cut of the score).
- suggested label: the class with the highest probability averaged over the epochs; for a
  flagged sample the highest other than its given label.
- extras (for the app's map; rows in the order of the audited samples):
  ``cartography_confidence``, ``cartography_variability``,
  ``cartography_correctness``, each (n,) float32.
"""

from __future__ import annotations

import numpy as np

from engine.detectors import DetectorInputs, DetectorResult, suggest_classes
from engine.detectors.early_learning import flag_estimated_count


def cartography_measures(given_prob: np.ndarray, margin: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(confidence, variability, correctness), each (n,) float64, from (n, E) per-epoch values."""
    given_prob = np.asarray(given_prob, dtype=np.float64)
    margin = np.asarray(margin, dtype=np.float64)
    if given_prob.shape != margin.shape or given_prob.ndim != 2:
        raise ValueError(f"per-epoch probabilities {given_prob.shape} and margins {margin.shape} must be "
                         "the same (samples, epochs) shape")
    return given_prob.mean(axis=1), given_prob.std(axis=1), (margin > 0).mean(axis=1)


def detect(inputs: DetectorInputs) -> DetectorResult:
    """Cartography scores (1 - confidence), suggestions and the flagged set (the early-learning estimate)."""
    confidence, variability, correctness = cartography_measures(inputs.arrays["given_prob"], inputs.arrays["margin"])
    scores = np.clip(1.0 - confidence, 0.0, 1.0)
    flagged, estimate = flag_estimated_count(inputs.arrays, inputs.labels, scores, correctness < 0.5,
                                             "correctness < 0.5")
    suggested = suggest_classes(np.asarray(inputs.arrays["mean_probs"]), inputs.labels, flagged)
    return DetectorResult.from_flagged(
        scores, suggested, flagged, -scores,
        extras={
            "cartography_confidence": confidence.astype(np.float32),
            "cartography_variability": variability.astype(np.float32),
            "cartography_correctness": correctness.astype(np.float32),
        },
        summary={**estimate, "threshold": "the estimated count of the lowest confidences"},
    )
