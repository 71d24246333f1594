"""Outliers: samples far from every other, ranked by the cosine distance to their k-th nearest neighbour.

Read off the embeddings' cached neighbour index (engine/embeddings/neighbors.py). An outlier is often
an image that belongs to no class of the dataset (a blank, a chart, another subject), a corrupt or
odd file, or a rare, valuable sample: the Outliers view shows them ranked, with the same review keys
as the review (keep, relabel, remove). The ``outlier`` detector (engine/detectors/embedding_issues.py)
flags those beyond a robust z-score of 4; :func:`outlier_ranking` ranks every sample for a view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.embeddings import load_embeddings
from engine.store import Project

OUTLIER_NEIGHBORS = 10


@dataclass(frozen=True)
class OutlierRanking:
    """``ids``: sample ids, farthest first; ``distance`` (N,) by sample id: 1 - cosine to the k-th neighbour, in [0, 2];
    ``flagged`` (N,) by sample id: beyond the robust threshold (median + 4 scaled MADs of the ranked split)."""

    ids: np.ndarray
    distance: np.ndarray
    flagged: np.ndarray
    threshold: float
    k: int
    source: str
    method: str

    def top(self, count: int) -> list[dict[str, Any]]:
        """The ``count`` farthest samples: id, distance and whether flagged (what a view lists first)."""
        return [{"sample_id": int(i), "distance": round(float(self.distance[i]), 4), "flagged": bool(self.flagged[i])}
                for i in self.ids[:count]]


def outlier_ranking(project: Project, source: str | None = None, *, k: int = OUTLIER_NEIGHBORS,
                    split: str | None = "train") -> OutlierRanking:
    """Every sample of ``split`` (None: all) ranked by its distance to its k-th nearest neighbour among all samples."""
    from engine.detectors.embedding_issues import MAD_TO_SIGMA, OUTLIER_ROBUST_Z
    from engine.embeddings.neighbors import neighbor_graph

    n = project.num_samples
    array, info = load_embeddings(project.root, source, n)
    graph = neighbor_graph(project.root, info, array, min(k, max(n - 1, 1)))
    kth = graph.sims[:, -1].astype(np.float64)
    distance = np.where(np.isfinite(kth), 1.0 - kth, 2.0)
    table = project.sample_table()
    candidates = np.arange(n) if split is None else np.flatnonzero(table.split == split)
    values = distance[candidates]
    median = float(np.median(values)) if len(values) else 0.0
    spread = float(np.median(np.abs(values - median))) * MAD_TO_SIGMA if len(values) else 0.0
    threshold = median + OUTLIER_ROBUST_Z * max(spread, 1e-9)
    flagged = np.zeros(n, dtype=bool)
    flagged[candidates] = values > threshold
    ids = candidates[np.argsort(-values, kind="stable")]
    return OutlierRanking(ids, distance, flagged, threshold, graph.k, info.source, graph.method)
