"""Area under the margin (Pleiss et al. 2020, "Identifying mislabeled data using the area under the margin").

Evidence: the training dynamics (``requires = ("dynamics",)``): for every sample
and epoch, the margin of the assigned logit, ``z_label - max_{j != label} z_j``,
taken from the forward pass of training (see engine/training/recorders.py).

- AUM: the margin averaged over the epochs. A correctly labeled sample is
  pulled towards its label by the others of its class, so its margin grows; a
  mislabeled one is fought by them, so its margin stays small or negative.
- score: ``sigmoid(-AUM)``, in (0, 1), higher = more suspect, 0.5 at AUM 0.
- flagged: in each given class, as many of its lowest AUMs as the early-learning
  estimate (engine/detectors/early_learning.py) says are mislabeled there. AUM < 0, this
  detector's own line, stays in the summary (``n_own_rule``): it flags far
  too many when training is short or the noise is low (5,091 and 2,358 where
  4,105 and 910 are wrong on CIFAR-10N worse/aggre). The paper sets its threshold from *threshold samples*
  (a 1/(K+1) share of samples given a fake extra class, the 99th percentile of
  their AUM). That needs a second training run with K+1 outputs, or sacrificing
  those samples' labels in the one run every detector shares, so it is not
  done here. AUM < 0 is the parameter-free line the margin itself draws: the
  assigned logit lost, averaged over training, to another class, so the model
  spent most of training predicting another class for this sample despite
  being trained towards its label. Threshold samples, mislabeled by
  construction, sit on that side of it too. Runs recorded without the
  early-learning probabilities are flagged by AUM < 0.
- suggested label: the class with the highest probability averaged over the
  epochs; for a flagged sample the highest other than its given label (a low
  margin does not always mean another class led on average).
- extras: ``aum`` (n,) float32, the area itself, rows in the order of the audited samples.
"""

from __future__ import annotations

import numpy as np

from engine.detectors import DetectorInputs, DetectorResult, suggest_classes
from engine.detectors.early_learning import flag_estimated_count


def area_under_margin(margin: np.ndarray) -> np.ndarray:
    """(n,) float64: the margins (n, E) averaged over epochs (NaN epochs, never recorded, left out)."""
    margin = np.asarray(margin, dtype=np.float64)
    if margin.ndim != 2:
        raise ValueError(f"margins must be (samples, epochs), not {margin.shape}")
    recorded = np.isfinite(margin)
    counts = recorded.sum(axis=1)
    if (counts == 0).any():
        raise ValueError(f"{int((counts == 0).sum())} samples have no recorded margin")
    return np.where(recorded, margin, 0.0).sum(axis=1) / counts


def suspicion_from_aum(aum: np.ndarray) -> np.ndarray:
    """sigmoid(-aum) in [0, 1], computed without overflow."""
    return 0.5 * (1.0 - np.tanh(np.asarray(aum, dtype=np.float64) / 2.0))


def detect(inputs: DetectorInputs) -> DetectorResult:
    """AUM scores, suggestions and the flagged set (the early-learning estimate's count) of the audited samples."""
    aum = area_under_margin(inputs.arrays["margin"])
    scores = np.clip(suspicion_from_aum(aum), 0.0, 1.0)
    flagged, estimate = flag_estimated_count(inputs.arrays, inputs.labels, scores, aum < 0, "AUM < 0")
    suggested = suggest_classes(np.asarray(inputs.arrays["mean_probs"]), inputs.labels, flagged)
    return DetectorResult.from_flagged(
        scores, suggested, flagged, aum,  # the most negative AUM first
        extras={"aum": aum.astype(np.float32)},
        summary={**estimate, "threshold": "the estimated count of the lowest AUMs",
                 "epochs": int(np.asarray(inputs.arrays["margin"]).shape[1])},
    )
