"""Which samples the review offers, and in what order: the flagged set under a threshold, narrowed by a class
pair or by samples chosen on the data map, ranked by one detector, by agreement, or grouped by class pair.

Plain functions of an audit's scores and the given labels (arrays indexed by sample id); the session
holds the filters and caches the queue.
"""

from __future__ import annotations

import numpy as np

from auditor.audit_scores import AuditScores

AGREEMENT = "agreement"  # a review order: samples most detectors flag first
BY_PAIR = "class pair"  # a review order: grouped by (given, suggested) pair, the commonest pair first


def flagged_mask(audit: AuditScores | None, threshold: float | None, num_samples: int) -> np.ndarray:
    """(N,) bool: the engine's own flagged set, or (with a threshold) the audited samples that score at or over it."""
    if audit is None:
        return np.zeros(num_samples, dtype=bool)
    if threshold is None:
        return audit.flagged.copy()
    flagged = audit.score >= threshold
    return flagged & audit.audited if audit.audited is not None else flagged  # never a held-out one


def review_queue(audit: AuditScores, labels: np.ndarray, flagged: np.ndarray, *, class_count: int,
                 pair: tuple[int, int] | None, order: str | None, chosen: np.ndarray | None) -> np.ndarray:
    """Sample ids to review, most suspect first.

    ``flagged`` (N,) bool is the flagged set; ``pair`` (given, suggested) narrows it to one cell of the
    noise matrix, regardless of the threshold; ``chosen`` (sample ids from the data map) replaces it.
    ``order``: None ranks by the audit's ranking detector; a detector's name reviews that detector's own
    flagged set by its score; :data:`AGREEMENT` every sample any detector flagged, those most detectors
    flag first; :data:`BY_PAIR` groups by class pair.
    """
    if chosen is not None:
        return chosen[np.argsort(audit.rank[chosen], kind="stable")]
    mask = flagged
    if pair is not None:
        given, suggested = pair
        mask = (labels == given) & (audit.suggested == suggested)
    if order == AGREEMENT and audit.per_detector_flagged:
        flags = np.array(list(audit.per_detector_flagged.values()))
        if pair is None:
            mask = np.asarray(flags.any(axis=0))
        ids = np.flatnonzero(mask)
        agree = flags[:, ids].sum(axis=0)
        return ids[np.lexsort((audit.rank[ids], -agree))]  # most agreeing first, then by rank
    if order == BY_PAIR:
        return _grouped_by_pair(audit, labels, np.flatnonzero(mask), class_count)
    if order in audit.per_detector:
        scores = audit.per_detector[order]
        if pair is None and order in audit.per_detector_flagged:
            mask = audit.per_detector_flagged[order]
        ids = np.flatnonzero(mask)
        return ids[np.argsort(-scores[ids], kind="stable")]
    ids = np.flatnonzero(mask)
    return ids[np.argsort(audit.rank[ids], kind="stable")]


def _grouped_by_pair(audit: AuditScores, labels: np.ndarray, ids: np.ndarray, class_count: int) -> np.ndarray:
    """``ids`` grouped by (given, suggested) pair, the pair with most of them first, each pair by rank."""
    k = max(class_count, 1) + 1  # suggestions of -1 (none) become their own group, last
    keys = labels[ids] * k + (audit.suggested[ids] + 1)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    agrees = audit.suggested[ids] == labels[ids]  # no pair to review: after every real pair
    return ids[np.lexsort((audit.rank[ids], keys, -counts[inverse], agrees))]


def class_pairs(audit: AuditScores, labels: np.ndarray, class_count: int) -> list[tuple[int, int, int]]:
    """(given, suggested, count) of every pair the class-pair filter can show, the commonest first.

    Counted as the filter selects: samples whose given label is ``given`` and whose suggestion is
    another class ``suggested``, flagged or not (as a cell of the noise matrix).
    """
    k = max(class_count, 1)
    suggested = audit.suggested
    differs = (suggested >= 0) & (suggested != labels)
    keys, counts = np.unique(labels[differs] * k + suggested[differs], return_counts=True)
    order = np.lexsort((keys, -counts))
    return [(int(keys[i] // k), int(keys[i] % k), int(counts[i])) for i in order]
