"""The ensemble: one ranking from the other detectors that ran in the same audit.

Evidence: the results of the detectors that ran before it (``DetectorInputs.earlier``);
it runs last (``combines``), over every other detector the audit was asked for.

- score: the mean over detectors of each sample's rank, scaled to [0, 1]
  (0 = least suspect, 1 = most; tied scores share their average rank). Ranks,
  not raw scores, because the detectors' scores live on unrelated scales (a
  probability, a sigmoid of a margin, a share of epochs) and an average of raw
  scores would let the one with the widest spread decide; a rank average asks
  each detector only for its order, the one thing all of them are judged by.
- estimated count, per given class: the median of the detectors' flagged counts
  in that class (each detector flags about as many as it estimates are wrong).
  The median rather than the mean because one detector's estimate is often far
  off (K-fold confident learning with a weak model takes the model's own errors
  for label errors and overestimates), and the median ignores one outlier of three.
- flagged: in each given class, that many of its samples, the highest ensemble
  scores first (ties: the more detectors flagging it first), as the dynamics
  detectors flag (engine/detectors/early_learning.py: a class's samples compete
  only with each other). The estimated noise rate is the flagged share.
- suggested label: the suggestion most of the detectors make (those without
  one left out; a tie goes to the detector that ran first); for a flagged sample
  the most made other than its given label, none when no detector suggests another.
- extras: ``ensemble_agreement`` (n,) int16, how many detectors flag each sample.
- summary: ``members``, the detectors combined, and the counts.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from engine.detectors import DetectorInputs, DetectorResult, ensemble_members, ranking_flagged_first, suggest_classes
from engine.detectors.early_learning import top_scores_per_class


def rank_average(scores: list[np.ndarray]) -> np.ndarray:
    """(n,) float64 in [0, 1]: the mean of each score array's ranks scaled to [0, 1], ties sharing their average."""
    from scipy.stats import rankdata

    n = len(scores[0])
    if n < 2:
        return np.zeros(n)
    scaled = [(rankdata(np.asarray(member, dtype=np.float64), method="average") - 1.0) / (n - 1) for member in scores]
    return np.clip(np.mean(scaled, axis=0), 0.0, 1.0)


def agreement(results: Mapping[str, DetectorResult]) -> np.ndarray:
    """(n,) int16: how many of ``results`` flag each sample."""
    return np.sum([result.flagged.astype(np.int16) for result in results.values()], axis=0).astype(np.int16)


def suggestion_votes(results: Mapping[str, DetectorResult], num_classes: int) -> np.ndarray:
    """(n, K) float64: per sample the detectors' votes for each class (ties favour the first detector)."""
    members = list(results.values())
    n = len(members[0].scores)
    votes = np.zeros((n, num_classes), dtype=np.float64)
    rows = np.arange(n)
    for index, result in enumerate(members):
        suggested = np.asarray(result.suggested, dtype=np.int64)
        has = (suggested >= 0) & (suggested < num_classes)
        # A vote weighs 1, plus a fraction too small to outvote anyone that favours earlier detectors in a tie.
        votes[rows[has], suggested[has]] += 1.0 + (len(members) - index) / (len(members) + 1) ** 2
    return votes


def median_flagged_per_class(results: Mapping[str, DetectorResult], labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(K,) int64: per given class, the median over ``results`` of how many samples of that class each flags."""
    counts = [np.bincount(labels[result.flagged], minlength=num_classes)[:num_classes] for result in results.values()]
    return np.rint(np.median(counts, axis=0)).astype(np.int64)


def detect(inputs: DetectorInputs) -> DetectorResult:
    """The rank average of the earlier detectors, flagged per class by the median of their flagged counts."""
    # Duplicates and outliers are other kinds of issue; knn joins only where it measurably helps (its DetectorInfo).
    members = {name: inputs.earlier[name] for name in ensemble_members(list(inputs.earlier))}
    if not members:
        raise ValueError("the ensemble needs the results of at least one other detector of the audit")
    n = len(inputs.labels)
    scores = rank_average([result.scores for result in members.values()])
    agree = agreement(members)
    estimates = [
        float(result.summary["estimated_noise_rate"]) if result.summary.get("estimated_noise_rate") is not None
        else float(result.flagged.mean()) if n else 0.0
        for result in members.values()
    ]
    labels = np.asarray(inputs.labels, dtype=np.int64)
    per_class = median_flagged_per_class(members, labels, inputs.num_classes)
    flagged = top_scores_per_class(scores, labels, per_class, tiebreak=agree)
    flagged_ids = np.flatnonzero(flagged)
    flagged_ids = flagged_ids[np.lexsort((-agree[flagged_ids], -scores[flagged_ids]))]
    n_flagged = len(flagged_ids)
    return DetectorResult(
        scores=scores,
        suggested=suggest_classes(suggestion_votes(members, inputs.num_classes), labels, flagged,
                                  needs_evidence=True),
        flagged=flagged,
        ranking=ranking_flagged_first(flagged_ids, scores),
        extras={"ensemble_agreement": agree},
        summary={
            "members": list(members),
            "member_estimates": dict(zip(members, estimates, strict=True)),
            "n_flagged": n_flagged,
            "flagged_rate": n_flagged / n if n else 0.0,
            "estimated_noise_rate": n_flagged / n if n else 0.0,
            "estimated_by": "per given class, the median of the members' flagged counts",
            "estimated_per_class": per_class.tolist(),
            "n_flagged_by_all": int((agree == len(members)).sum()),
            "n_flagged_by_any": int((agree > 0).sum()),
        },
    )
