"""Two kinds of issue other than a wrong label, read off the embeddings' neighbour index.

``near_duplicate`` (issue "duplicate"): score = the cosine similarity to the nearest other
sample, scaled from [min cosine, 1] to [0, 1]; flagged at or above the calibrated threshold
(engine/embeddings/duplicates.py: EMBEDDING_MIN_COSINE); suggested: the nearest copy's label
where it differs from the sample's own (one of the two is wrong), else none. The groups with all
four methods (file and pixel hashes, perceptual hash, embeddings) come from
:func:`engine.embeddings.duplicates.find_duplicates`.

``outlier`` (issue "outlier"): score = the cosine distance to the k-th (10th) nearest neighbour,
halved into [0, 1]; flagged: the distances above the median plus 4 scaled median absolute
deviations (a robust z-score over 4: on a normal distribution about 3 in 100,000); no suggestion.
"""

from __future__ import annotations

import numpy as np

from engine.detectors import DetectorInputs, DetectorResult, ranking_flagged_first
from engine.embeddings.evidence import DUPLICATE_NEIGHBORS, OUTLIER_NEIGHBORS, scored_neighbors

OUTLIER_ROBUST_Z = 4.0
MAD_TO_SIGMA = 1.4826  # a normal distribution's standard deviation per median absolute deviation


def near_duplicates(inputs: DetectorInputs) -> DetectorResult:
    from engine.embeddings.duplicates import EMBEDDING_MIN_COSINE

    labels = np.asarray(inputs.labels, dtype=np.int64)
    min_cosine = float(inputs.settings.get("min_cosine", EMBEDDING_MIN_COSINE))
    ids, sims = scored_neighbors(inputs, DUPLICATE_NEIGHBORS)
    nearest, nearest_sim = ids[:, 0], np.where(ids[:, 0] >= 0, sims[:, 0], -1.0).astype(np.float64)
    scores = np.clip((nearest_sim - min_cosine) / (1.0 - min_cosine), 0.0, 1.0)
    flagged = (nearest >= 0) & (nearest_sim >= min_cosine)
    other_label = np.where(nearest >= 0, labels[np.maximum(nearest, 0)], -1)
    suggested = np.where(flagged & (other_label != labels), other_label, -1).astype(np.int64)
    flagged_ids = np.flatnonzero(flagged)
    flagged_ids = flagged_ids[np.argsort(-nearest_sim[flagged_ids], kind="stable")]
    return DetectorResult(scores, suggested, flagged, ranking_flagged_first(flagged_ids, nearest_sim),
                          summary={"n_flagged": int(flagged.sum()), "min_cosine": min_cosine,
                                   "n_with_other_label": int((suggested >= 0).sum()), "issue": "duplicate"})


def outliers(inputs: DetectorInputs) -> DetectorResult:
    ids, sims = scored_neighbors(inputs, OUTLIER_NEIGHBORS)
    kth = np.full(len(ids), -1.0)
    has = ids >= 0
    count = has.sum(axis=1)
    rows = np.flatnonzero(count > 0)
    kth[rows] = sims[rows, count[rows] - 1]  # the k-th neighbour, or the farthest there is
    distance = np.clip((1.0 - kth) / 2.0, 0.0, 1.0)
    median = float(np.median(distance)) if len(distance) else 0.0
    spread = float(np.median(np.abs(distance - median))) * MAD_TO_SIGMA if len(distance) else 0.0
    threshold = median + OUTLIER_ROBUST_Z * max(spread, 1e-9)
    flagged = distance > threshold
    flagged_ids = np.flatnonzero(flagged)
    flagged_ids = flagged_ids[np.argsort(-distance[flagged_ids], kind="stable")]
    return DetectorResult(distance, np.full(len(distance), -1, dtype=np.int64), flagged,
                          ranking_flagged_first(flagged_ids, distance),
                          summary={"n_flagged": int(flagged.sum()), "k": OUTLIER_NEIGHBORS,
                                   "threshold": threshold, "issue": "outlier"})
