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
correct): ``python -m engine finetune-detector PROJECT`` keeps the fine-tuned weights in
the project (``PROJECT/detectors/td_lstm.pt`` and its card ``td_lstm.json``), and every
later audit of that project reads them (:func:`weights_in_effect`) unless it is asked for
the shipped ones (``audit --td-weights shipped``). ``train-detector --fine-tune`` writes
weights to a file of your choice instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engine.detectors import DetectorInputs, DetectorResult
from engine.errors import UserError

WEIGHTS_FILE = "td_lstm.pt"
MODEL_CARD_FILE = "td_lstm.md"
PROJECT_WEIGHTS_FOLDER = "detectors"  # in the project folder: fine-tuned weights belong to the project
WEIGHTS_CHOICES = ("project", "shipped")  # project: its fine-tuned weights when it has them, else the shipped ones
SHIPPED_DESCRIPTION = f"shipped ({WEIGHTS_FILE}, trained on synthesized noise)"


def shipped_weights_path() -> Path:
    """Where the pretrained weights are: ``resources/td_lstm.pt`` (``engine/resources`` in a wheel)."""
    from engine import resources_dir

    return resources_dir() / WEIGHTS_FILE


def project_weights_path(project_root: Path) -> Path:
    """Where a project keeps its fine-tuned weights: ``PROJECT/detectors/td_lstm.pt`` (card: ``.json`` beside)."""
    return Path(project_root) / PROJECT_WEIGHTS_FOLDER / WEIGHTS_FILE


def project_weights_card(project_root: Path) -> dict[str, Any] | None:
    """The card of a project's fine-tuned weights (see finetune-detector), or None without weights."""
    weights = project_weights_path(project_root)
    if not weights.is_file():
        return None
    try:
        card = json.loads(weights.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        card = {}
    return card if isinstance(card, dict) else {}


def describe_project_weights(card: Mapping[str, Any]) -> str:
    """``fine-tuned on 24 reviewed samples (9 mislabeled) on 2026-11-25, from the shipped weights``."""
    reviewed, mislabeled = card.get("n_reviewed", "?"), card.get("n_mislabeled", "?")
    date = str(card.get("date", ""))[:10]
    return (f"fine-tuned on {reviewed} reviewed samples ({mislabeled} mislabeled)" + (f" on {date}" if date else "")
            + f", from the {card.get('base_weights', 'shipped')} weights")


def weights_in_effect(project_root: Path | None, choice: str = "project") -> tuple[Path, str]:
    """(weights file, description for people) an audit of the project reads.

    ``project``: the project's fine-tuned weights when it has them, else the shipped ones;
    ``shipped``: always the shipped ones.
    """
    if choice not in WEIGHTS_CHOICES:
        raise UserError(f"unknown td_lstm weights {choice!r}", f"use one of: {', '.join(WEIGHTS_CHOICES)}")
    if choice == "project" and project_root is not None:
        card = project_weights_card(project_root)
        if card is not None:
            return project_weights_path(project_root), describe_project_weights(card)
    return shipped_weights_path(), SHIPPED_DESCRIPTION


def detector_settings(project_root: Path | None, choice: str = "project") -> dict[str, str]:
    """The ``DetectorInputs.settings`` that name td_lstm's weights for an audit of the project."""
    weights, described = weights_in_effect(project_root, choice)
    return {"td_lstm_weights": str(weights), "td_lstm_weights_described": described}


def flag_expected_count(scores: np.ndarray) -> np.ndarray:
    """(n,) bool: the round(sum of scores) highest scores (ties by id), the expected number mislabeled."""
    from engine.detectors.early_learning import top_scores

    return top_scores(scores, int(round(float(np.sum(scores, dtype=np.float64)))))


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
    weights = inputs.settings.get("td_lstm_weights")
    scores = score_td(td, Path(weights) if weights else None)
    suggested = strongest_other_class(np.asarray(inputs.arrays["mean_probs"]), inputs.labels)
    described = str(inputs.settings.get("td_lstm_weights_described", SHIPPED_DESCRIPTION))
    return result_from_scores(scores, suggested, int(td.shape[2]), described,
                              Path(weights).name if weights else WEIGHTS_FILE)


def result_from_scores(scores: np.ndarray, suggested: np.ndarray, epochs: int, weights_described: str,
                       weights_file: str) -> DetectorResult:
    """The detector's result from its scores: the estimated count flagged, most suspect first."""
    flagged = flag_expected_count(scores)
    n = len(scores)
    return DetectorResult.from_flagged(
        scores, suggested, flagged, -scores,
        extras={"td_lstm": scores.astype(np.float32)},
        summary={
            "estimated_noise_rate": float(scores.mean()) if n else 0.0,
            "threshold": "the round(sum of scores) highest scores (the estimated count)",
            "epochs": epochs,
            "weights": weights_described,
            "weights_file": weights_file,
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
