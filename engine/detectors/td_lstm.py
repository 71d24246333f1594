"""td_lstm: a pretrained LSTM reads each sample's training dynamics and says how likely it is mislabeled.

The seed's detector (seeds/training-dynamics-lstm-detector.md; the model is in
:mod:`engine.detectors.lstm_model`): a 2-layer LSTM, hidden 64, trained supervised on
the dynamics of data with *synthesized* noise (symmetric, asymmetric and
instance-dependent, several rates) and shipped in ``resources/td_lstm.pt`` with its
model card ``resources/td_lstm.md``; ``python -m engine train-detector`` remakes it.
It is applied without retraining: the model is independent of the number of classes
and of epochs.

Evidence: the training dynamics (``requires = ("dynamics",)``), its ``td`` array
(N, W, E): per epoch, the probability of the label trained on and of the strongest
other classes.

- score: the LSTM's probability that the sample is mislabeled, in [0, 1].
- flagged: the estimated count, not ``score > 0.5``. The scores are probabilities
  trained with plain cross-entropy, so their sum estimates how many samples are
  mislabeled; the that-many highest scores are flagged, and the estimated noise rate
  is the mean score. (A 0.5 line flags fewer than the estimate whenever the noisy
  samples are hard to tell apart, where a person reviewing wants the estimate.)
- suggested label: the strongest other class, the one with the highest probability
  averaged over the epochs apart from the given label.
- extras: ``td_lstm`` (n,) float32, the score itself, rows in the order of the audited samples.

Fine-tuning on a person's reviewed samples (relabeled or removed = mislabeled, kept =
correct): :func:`fine_tune_on_reviews`, used by ``python -m engine train-detector
--fine-tune PROJECT``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from engine.detectors import DetectorInputs, DetectorResult, ranking_flagged_first

WEIGHTS_FILE = "td_lstm.pt"
MODEL_CARD_FILE = "td_lstm.md"


def shipped_weights_path() -> Path:
    """Where the pretrained weights are: ``resources/td_lstm.pt`` (``engine/resources`` in a wheel)."""
    from engine import resources_dir

    return resources_dir() / WEIGHTS_FILE


def flag_estimated_count(scores: np.ndarray) -> np.ndarray:
    """(n,) bool: the round(sum of scores) highest scores (ties by id), the expected number mislabeled."""
    scores = np.asarray(scores, dtype=np.float64)
    count = int(round(float(scores.sum())))
    flagged = np.zeros(len(scores), dtype=bool)
    flagged[np.argsort(-scores, kind="stable")[:count]] = True
    return flagged


def strongest_other_class(mean_probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) int64: per sample, the class other than its label with the highest mean probability."""
    others = np.array(mean_probs, dtype=np.float64, copy=True)
    others[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)] = -np.inf
    return others.argmax(axis=1).astype(np.int64)


def score_td(td: np.ndarray, weights: Path | None = None) -> np.ndarray:
    """(n,) float64: the probability that each sample is mislabeled, from its td (n, W, E)."""
    from engine.detectors.lstm_model import load_weights, predict_mislabeled, prepare_sequences

    model = load_weights(weights or shipped_weights_path())
    return np.clip(predict_mislabeled(model, prepare_sequences(td)), 0.0, 1.0)


def detect(inputs: DetectorInputs) -> DetectorResult:
    """LSTM scores, the strongest other class as suggestion, the estimated count flagged."""
    td = np.asarray(inputs.arrays["td"])
    scores = score_td(td)
    flagged = flag_estimated_count(scores)
    flagged_ids = np.flatnonzero(flagged)
    flagged_ids = flagged_ids[np.argsort(-scores[flagged_ids], kind="stable")]
    n = len(scores)
    return DetectorResult(
        scores=scores,
        suggested=strongest_other_class(np.asarray(inputs.arrays["mean_probs"]), inputs.labels),
        flagged=flagged,
        ranking=ranking_flagged_first(flagged_ids, scores),
        extras={"td_lstm": scores.astype(np.float32)},
        summary={
            "n_flagged": int(flagged.sum()),
            "flagged_rate": float(flagged.mean()) if n else 0.0,
            "estimated_noise_rate": float(scores.mean()) if n else 0.0,
            "threshold": "the round(sum of scores) highest scores (the estimated count)",
            "epochs": int(td.shape[2]),
            "weights": str(shipped_weights_path().name),
        },
    )


def reviewed_targets(
    ids: np.ndarray, trained_labels: np.ndarray, observed: np.ndarray, decisions: Mapping[int, tuple[str, int | None]],
) -> tuple[np.ndarray, np.ndarray]:
    """Which recorded samples a person reviewed, and whether the label they were trained on was wrong.

    Parameters
    ----------
    ids, trained_labels : (n,) arrays
        The recorded samples and the labels their dynamics were recorded with.
    observed : (N,) array
        Every sample's observed label (the one a decision judges).
    decisions : mapping of sample id -> (action, new label or None)
        ``keep``: the observed label is right; ``relabel`` and ``remove``: it is wrong.

    Returns
    -------
    rows : (m,) int64, rows of ``ids`` with a decision that judges the label they were trained on
    targets : (m,) float32, 1 = mislabeled, 0 = correct
    """
    rows, targets = [], []
    for row, (sample, trained) in enumerate(zip(np.asarray(ids).tolist(), np.asarray(trained_labels).tolist())):
        decision = decisions.get(int(sample))
        if decision is None:
            continue
        action, new_label = decision
        if trained != int(observed[sample]):
            # Trained on an earlier relabel: the verdict on the observed label says nothing about it,
            # except that a relabel to exactly this label confirms it.
            if action == "relabel" and new_label == trained:
                rows.append(row)
                targets.append(0.0)
            continue
        if action == "keep":
            rows.append(row)
            targets.append(0.0)
        elif action in ("relabel", "remove"):
            rows.append(row)
            targets.append(1.0)
    return np.asarray(rows, dtype=np.int64), np.asarray(targets, dtype=np.float32)


def td_of_every_sample(recorded_ids: np.ndarray, recorded_td: np.ndarray, probs: np.ndarray,
                       labels: np.ndarray) -> np.ndarray:
    """(N, W, E) float16, indexed by sample id: the recorded td, and for the samples not trained on the
    final model's probabilities (``probs`` (N, K)) in td's column order, repeated over the epochs.

    The audit's evidence for a sample left out of training is the final model's prediction,
    repeated (as for its margin; see engine/audit.py).
    """
    from engine.training.recorders import td_class_order

    n, (width, epochs) = len(labels), recorded_td.shape[1:]
    td = np.empty((n, width, epochs), dtype=np.float16)
    td[recorded_ids] = recorded_td
    others = np.setdiff1d(np.arange(n), recorded_ids)
    if len(others):
        classes = td_class_order(probs[others], np.asarray(labels)[others], width)
        td[others] = np.take_along_axis(probs[others], classes, axis=1)[:, :, None].astype(np.float16)
    return td
