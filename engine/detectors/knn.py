"""knn: label disagreement among the nearest neighbours in embedding space (SimiFeat, Zhu et al. 2022).

Evidence: ``embeddings`` (the source's neighbour index; engine/embeddings/evidence.py). A sample
whose neighbours in a good feature space mostly carry another label is probably mislabeled: the
features came from a model that never saw these labels, so the vote does not memorise them.

- vote probabilities: per sample, the share of its k = 50 nearest scored neighbours (cosine; fewer
  where the median class has under 100 samples: at most half of it)
  in each class (99%), blended with the cosine-weighted share (1%) so ties break toward closer
  neighbours;
- score: 1 - the vote probability of the given label;
- flagged: confident learning (cleanlab's ``find_label_issues``, prune by noise rate) on the vote
  probabilities: its estimate of how many labels in each class are wrong, the lowest votes first;
- suggested label: the class most of the neighbours carry (the vote's argmax).
"""

from __future__ import annotations

import numpy as np

from engine.detectors import DetectorInputs, DetectorResult
from engine.embeddings.evidence import KNN_NEIGHBORS, scored_neighbors


def neighbor_vote(labels: np.ndarray, ids: np.ndarray, sims: np.ndarray, num_classes: int,
                  weighted_share: float = 0.01) -> np.ndarray:
    """(n, K) float64 vote probabilities from each sample's neighbours (``ids`` (n, k), -1 = none)."""
    n = len(labels)
    valid = ids >= 0
    neighbor_labels = np.where(valid, labels[np.maximum(ids, 0)], 0)
    rows = np.repeat(np.arange(n), ids.shape[1]).reshape(ids.shape)
    counts = np.zeros((n, num_classes))
    np.add.at(counts, (rows[valid], neighbor_labels[valid]), 1.0)
    weights = np.zeros((n, num_classes))
    np.add.at(weights, (rows[valid], neighbor_labels[valid]), np.clip(sims[valid], 0.0, None).astype(np.float64))
    totals, weight_totals = counts.sum(axis=1, keepdims=True), weights.sum(axis=1, keepdims=True)
    uniform = np.full((n, num_classes), 1.0 / num_classes)
    plain = np.where(totals > 0, counts / np.maximum(totals, 1e-12), uniform)
    close = np.where(weight_totals > 0, weights / np.maximum(weight_totals, 1e-12), plain)
    return (1.0 - weighted_share) * plain + weighted_share * close


def detect(inputs: DetectorInputs, k: int = KNN_NEIGHBORS) -> DetectorResult:
    from engine.detectors.confident_learning import confident_learning

    labels = np.asarray(inputs.labels, dtype=np.int64)
    k = int(inputs.settings.get("knn_k", k))
    counts = np.bincount(labels, minlength=inputs.num_classes)
    # A vote over more neighbours than a typical class has would always be mixed: at most half of one.
    k = max(1, min(k, int(np.median(counts[counts > 0])) // 2 if counts.any() else k))
    ids, sims = scored_neighbors(inputs, k)
    probs = neighbor_vote(labels, ids, sims, inputs.num_classes)
    result = confident_learning(labels, probs)
    summary = {**result.summary, "k": int(ids.shape[1]), "ranked_by": "share of neighbours agreeing with the label",
               "estimated_by": "cleanlab's pruned count on the neighbour-vote probabilities"}
    return DetectorResult(result.scores, result.suggested, result.flagged, result.ranking, {}, summary)
