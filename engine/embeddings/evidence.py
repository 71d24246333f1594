"""The ``embeddings`` evidence of an audit: the neighbour index of one embedding source, as detector arrays.

The audit names a source (``embedding_source`` in its spec) or takes the project's newest; a
project with none gets the default backbone's embeddings computed inside the audit run, as any
other evidence is gathered for the detectors that ask for it. The index over every sample is
built once per source and cached (engine/embeddings/neighbors.py); each detector then keeps the
neighbours among the samples it scores (:func:`scored_neighbors`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.detectors import DetectorInputs
from engine.embeddings import embedding_sources, load_embeddings
from engine.jobs import JobContext

KNN_NEIGHBORS = 50  # the knn vote: SimiFeat's idea with a plain 50-neighbour vote (the README's table)
OUTLIER_NEIGHBORS = 10  # outlier score: the distance to the 10th nearest neighbour
DUPLICATE_NEIGHBORS = 10


def gather_embedding_evidence(ctx: JobContext, spec: dict[str, Any], scored_ids: np.ndarray) -> dict[str, np.ndarray]:
    """``neighbor_ids``, ``neighbor_sims`` (N, k) and ``sample_id`` (N,) for every sample of the project.

    k leaves room for the neighbours outside ``scored_ids`` (held-out samples), which the
    detectors skip: enough that :data:`KNN_NEIGHBORS` scored ones remain on average.
    """
    from engine.embeddings.backbones import DEFAULT_BACKBONE
    from engine.embeddings.job import DEFAULT_IMAGE_SIZE, compute_embeddings
    from engine.embeddings.neighbors import neighbor_graph

    project, events = ctx.project, ctx.events
    n = project.num_samples
    source = spec.get("embedding_source")
    if source is None and not embedding_sources(project.root):
        events.log(f"the project has no embeddings yet: computing {DEFAULT_BACKBONE}'s (python -m engine embed)")
        info, _ = compute_embeddings(ctx, DEFAULT_BACKBONE, DEFAULT_IMAGE_SIZE)
        source = info.source
    array, info = load_embeddings(project.root, source, n)
    share = max(len(scored_ids) / n, 1e-9) if n else 1.0
    k = max(1, min(n - 1, math.ceil(max(KNN_NEIGHBORS, OUTLIER_NEIGHBORS, DUPLICATE_NEIGHBORS) / share * 1.1)))
    events.log(f"neighbours: {k} per sample among {n} embeddings {info.source!r} ({info.dims} dims)")
    graph = neighbor_graph(project.root, info, array, k, should_stop=lambda: ctx.cancel.requested,
                           progress=lambda done, total: events.progress("neighbors", done, total))
    events.log(f"neighbour index: {graph.method}" + (f", built in {graph.seconds:.1f} s" if graph.seconds else ", cached"))
    return {"neighbor_ids": graph.ids, "neighbor_sims": graph.sims, "sample_id": np.arange(n, dtype=np.int64)}


def scored_neighbors(inputs: DetectorInputs, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each scored sample's first ``k`` neighbours among the scored samples, as positions in ``inputs``:
    (ids (n, k) int64, -1 where fewer exist; sims (n, k) float32, -inf there)."""
    sample_id = np.asarray(inputs.arrays["sample_id"], dtype=np.int64)
    ids = np.asarray(inputs.arrays["neighbor_ids"], dtype=np.int64)
    sims = np.asarray(inputs.arrays["neighbor_sims"], dtype=np.float32)
    n = len(sample_id)
    size = int(max(sample_id.max(initial=-1), ids.max(initial=-1))) + 1
    position = np.full(max(size, 1), -1, dtype=np.int64)
    position[sample_id] = np.arange(n)
    local = np.where(ids >= 0, position[np.maximum(ids, 0)], -1)
    valid = local >= 0
    order = np.argsort(~valid, axis=1, kind="stable")[:, :k]  # the valid ones first, in their order
    local = np.take_along_axis(local, order, axis=1)
    picked_sims = np.take_along_axis(sims, order, axis=1)
    picked_sims = np.where(local >= 0, picked_sims, -np.inf).astype(np.float32)
    if local.shape[1] < k:
        pad = k - local.shape[1]
        local = np.pad(local, ((0, 0), (0, pad)), constant_values=-1)
        picked_sims = np.pad(picked_sims, ((0, 0), (0, pad)), constant_values=-np.inf)
    return local, picked_sims
