"""The neighbour index of an embedding source: each sample's k nearest others by cosine similarity.

Built once per source and cached beside it (``<source>.neighbors-k<K>-<sha256[:16]>.npz``, keyed by
the source's sha256, so a changed array never meets an old index), and read by every detector
that works on embeddings (knn, near_duplicate, outlier) and by the duplicate finder. A cached
index with at least the k asked for serves any smaller k.

Exact where it fits: blocked matrix products (torch, float32), a block of queries against every
row at a time, so memory stays at block x N. The cost grows with N^2 x D; above
:data:`EXACT_WORK_LIMIT` an approximate index does it (faiss's HNSW, chosen by bench/neighbors.py:
the README's table of recall@10, time and memory on 50k against hnswlib, usearch and pynndescent),
and the rows it found farthest from their k-th neighbour are searched again exactly
(:func:`refine_farthest`): an approximate miss would otherwise make them outliers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.embeddings import EmbeddingInfo, embeddings_folder
from engine.errors import Cancelled, UserError

# N^2 x D multiply-adds that exact search may take: about a minute on two cores (50k x 50k x 1280 = 3.2e12).
EXACT_WORK_LIMIT = 4e12
HNSW_LINKS = 32  # M: links per node; 32 keeps recall@10 >= 0.97 on the bench's 50k and 1M
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH_MIN = 64  # efSearch is max(this, 2k)
EXACT_BLOCK_ROWS = 1024
NORMALISE_CHUNK_ROWS = 65536

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class NeighborGraph:
    """Each sample's k nearest others, most similar first.

    ``ids`` (N, k) int64: neighbour sample ids (never the sample itself; -1 where fewer than k
    exist); ``sims`` (N, k) float32: their cosine similarities (-inf where the id is -1).
    """

    ids: np.ndarray
    sims: np.ndarray
    method: str  # "exact" or "hnsw"
    source: str = ""
    sha256: str = ""
    seconds: float = 0.0

    @property
    def k(self) -> int:
        return int(self.ids.shape[1])

    def first(self, k: int) -> NeighborGraph:
        """The same graph cut to its first ``k`` neighbours."""
        if k > self.k:
            raise ValueError(f"the graph has {self.k} neighbours per sample, {k} asked for")
        return NeighborGraph(self.ids[:, :k], self.sims[:, :k], self.method, self.source, self.sha256, self.seconds)


def normalised(array: np.ndarray, first_row: int = 0) -> np.ndarray:
    """Rows scaled to unit length (float32, a new in-memory array, read from ``array`` in chunks); zero rows stay 0.

    ``first_row``: the sample id of ``array``'s first row (a chunk of a larger array), for the error message.
    """
    n = len(array)
    out = np.empty(array.shape, dtype=np.float32)
    for start in range(0, n, NORMALISE_CHUNK_ROWS):
        chunk = np.asarray(array[start:start + NORMALISE_CHUNK_ROWS], dtype=np.float32)
        if not np.isfinite(chunk).all():
            bad = first_row + start + int(np.flatnonzero(~np.isfinite(chunk).all(axis=1))[0])
            raise UserError(f"embedding row {bad} holds NaN or infinity", "make or import the embeddings again")
        norms = np.linalg.norm(chunk, axis=1, keepdims=True)
        out[start:start + len(chunk)] = chunk / np.maximum(norms, 1e-12)
    return out


def exact_neighbors(unit: np.ndarray, k: int, *, progress: ProgressFn | None = None,
                    should_stop: Callable[[], bool] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, sims), each (N, k): exact cosine neighbours of unit-length rows, self excluded."""
    import torch

    n = len(unit)
    k_eff = min(k, n - 1)
    ids = np.full((n, k), -1, dtype=np.int64)
    sims = np.full((n, k), -np.inf, dtype=np.float32)
    if k_eff < 1:
        return ids, sims
    base = torch.from_numpy(unit)
    for start in range(0, n, EXACT_BLOCK_ROWS):
        if should_stop is not None and should_stop():
            raise Cancelled("neighbour search cancelled")
        stop = min(start + EXACT_BLOCK_ROWS, n)
        scores = base[start:stop] @ base.T
        rows = torch.arange(stop - start)
        scores[rows, rows + start] = -float("inf")  # never one's own neighbour, even with exact copies around
        top = torch.topk(scores, k_eff, dim=1)
        ids[start:stop, :k_eff] = top.indices.numpy()
        sims[start:stop, :k_eff] = top.values.numpy()
        if progress is not None:
            progress(stop, n)
    return ids, sims


def approximate_neighbors(array: np.ndarray, k: int, *, progress: ProgressFn | None = None,
                          should_stop: Callable[[], bool] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, sims), each (N, k): cosine neighbours from a faiss HNSW index, self excluded.

    ``array`` may be a memory map: it is read and normalised a chunk at a time, twice (to build,
    then to query), so the only whole copy in memory is the index's own.
    """
    import faiss

    n, dims = array.shape
    k_eff = min(k, n - 1)
    ids = np.full((n, k), -1, dtype=np.int64)
    sims = np.full((n, k), -np.inf, dtype=np.float32)
    if k_eff < 1:
        return ids, sims
    index = faiss.IndexHNSWFlat(dims, HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    chunk = NORMALISE_CHUNK_ROWS
    for start in range(0, n, chunk):  # added in chunks: progress and cancel between them
        if should_stop is not None and should_stop():
            raise Cancelled("neighbour search cancelled")
        index.add(normalised(array[start:start + chunk], start))
        if progress is not None:
            progress(min(start + chunk, n), 2 * n)
    index.hnsw.efSearch = max(HNSW_EF_SEARCH_MIN, 2 * (k_eff + 1))
    for start in range(0, n, chunk):
        if should_stop is not None and should_stop():
            raise Cancelled("neighbour search cancelled")
        stop = min(start + chunk, n)
        rows = np.arange(start, stop)
        ids[rows, :k_eff], sims[rows, :k_eff] = _search_without_self(index, normalised(array[start:stop], start),
                                                                     rows, k_eff)
        if progress is not None:
            progress(n + stop, 2 * n)
    _search_farthest_wider(index, array, ids, sims, k_eff, should_stop)
    return ids, sims


def _search_without_self(index: Any, queries: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The index's k nearest of ``queries`` (the rows ``rows``), each row's own id dropped."""
    found_sims, found_ids = index.search(queries, k + 1)
    own = found_ids == rows[:, None]
    # Drop each row's own id (or, when the search missed it, its last neighbour) to keep k.
    drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones_like(own)
    keep[np.arange(len(rows)), drop] = False
    return found_ids[keep].reshape(len(rows), k), found_sims[keep].reshape(len(rows), k)


WIDER_SHARE = 0.05  # of the rows, those with the farthest k-th neighbour, searched again with WIDER_EF_SEARCH
WIDER_MAX_ROWS = 50_000
WIDER_EF_SEARCH = 1024


def _search_farthest_wider(index: Any, array: np.ndarray, ids: np.ndarray, sims: np.ndarray, k: int,
                           should_stop: Callable[[], bool] | None) -> None:
    """Search the rows whose k-th neighbour came out farthest again, with a 16 times wider beam; in place.

    Where the data has many tight clusters with nothing between them (the bench's 1M generated rows:
    2,000 clusters), a greedy graph search can end in the wrong cluster: at 200,000 rows 470 rows got
    neighbours at cosine 0.1 to 0.3 where their own cluster's are at 0.77, at 1M 28,000. Those rows
    land in the farthest few percent, and a wide beam finds their cluster (bench/neighbors.py: every one
    at 200,000, for 15 s). A row keeps whichever of its two answers is nearer.
    """
    n = len(ids)
    count = min(WIDER_MAX_ROWS, n, max(1, int(np.ceil(n * WIDER_SHARE))))
    rows = np.sort(np.argsort(sims[:, k - 1], kind="stable")[:count])
    index.hnsw.efSearch = max(WIDER_EF_SEARCH, index.hnsw.efSearch)
    chunk = NORMALISE_CHUNK_ROWS
    for start in range(0, len(rows), chunk):
        if should_stop is not None and should_stop():
            raise Cancelled("neighbour search cancelled")
        part = rows[start:start + chunk]
        found_ids, found_sims = _search_without_self(index, normalised(np.asarray(array[part])), part, k)
        better = found_sims[:, k - 1] > sims[part, k - 1]
        ids[part[better], :k], sims[part[better], :k] = found_ids[better], found_sims[better]


REFINE_SHARE = 0.01  # of the rows, those with the farthest k-th neighbour, searched again exactly after HNSW
REFINE_MAX_ROWS = 20_000


REFINE_QUERY_ROWS = 1024  # exact_rows' blocks: 1,024 queries x 8,192 rows of scores (32 MB) at a time
REFINE_BASE_ROWS = 8192


def exact_rows(array: np.ndarray, rows: np.ndarray, k: int, *, should_stop: Callable[[], bool] | None = None,
               ) -> tuple[np.ndarray, np.ndarray]:
    """Exact neighbours (self excluded) of ``rows`` only, against every row of ``array`` read a block at a time:
    memory stays at one block of queries x one block of rows, whatever the size of ``array``."""
    import torch

    rows = np.asarray(rows, dtype=np.int64)
    best_sims = np.full((len(rows), k), -np.inf, dtype=np.float32)
    best_ids = np.full((len(rows), k), -1, dtype=np.int64)
    for query_start in range(0, len(rows), REFINE_QUERY_ROWS):
        block = rows[query_start:query_start + REFINE_QUERY_ROWS]
        queries = torch.from_numpy(normalised(np.asarray(array[block])))
        own = torch.from_numpy(block)[:, None]
        sims = torch.full((len(block), k), -float("inf"))
        ids = torch.full((len(block), k), -1, dtype=torch.int64)
        for start in range(0, len(array), REFINE_BASE_ROWS):
            if should_stop is not None and should_stop():
                raise Cancelled("neighbour search cancelled")
            base = torch.from_numpy(normalised(array[start:start + REFINE_BASE_ROWS], start))
            scores = queries @ base.T
            scores[own == torch.arange(start, start + len(base))[None, :]] = -float("inf")
            top = torch.topk(scores, min(k, len(base)), dim=1)
            merged_sims = torch.cat([sims, top.values], dim=1)
            merged_ids = torch.cat([ids, top.indices + start], dim=1)
            keep = torch.topk(merged_sims, k, dim=1)
            sims, ids = keep.values, torch.gather(merged_ids, 1, keep.indices)
        best_sims[query_start:query_start + len(block)] = sims.numpy()
        best_ids[query_start:query_start + len(block)] = ids.numpy()
    return best_ids, best_sims


def refine_farthest(array: np.ndarray, ids: np.ndarray, sims: np.ndarray, *,
                    should_stop: Callable[[], bool] | None = None) -> int:
    """Search again, exactly, the rows whose k-th neighbour the approximate index found farthest; in place.

    An approximate search only ever misses neighbours, so its misses make a sample look farther from the
    others than it is: exactly the samples an outlier ranking puts first. Re-searching the farthest 1%
    (at most 20,000) exactly keeps missed neighbours out of the outliers. Returns how many rows changed.
    """
    n, k = ids.shape
    count = min(REFINE_MAX_ROWS, max(1, int(np.ceil(n * REFINE_SHARE))))
    rows = np.argsort(sims[:, -1], kind="stable")[:count]
    exact_ids, exact_sims = exact_rows(array, rows, k, should_stop=should_stop)
    changed = int((exact_sims[:, -1] > sims[rows, -1] + 1e-6).sum())
    ids[rows], sims[rows] = exact_ids, exact_sims
    return changed


def choose_method(n: int, dims: int) -> str:
    return "exact" if float(n) * n * dims <= EXACT_WORK_LIMIT else "hnsw"


def cache_file(project_root: Path, info: EmbeddingInfo, k: int) -> Path:
    return embeddings_folder(project_root) / f"{info.source}.neighbors-k{k}-{info.sha256[:16]}.npz"


def cached_graph(project_root: Path, info: EmbeddingInfo, k: int) -> NeighborGraph | None:
    """A cached graph of this source's content with at least ``k`` neighbours, cut to ``k``; None when there is none."""
    pattern = f"{info.source}.neighbors-k*-{info.sha256[:16]}.npz"
    candidates = []
    for path in embeddings_folder(project_root).glob(pattern):
        with contextlib.suppress(ValueError):
            candidates.append((int(path.name[len(info.source) + len(".neighbors-k"):].split("-")[0]), path))
    for cached_k, path in sorted(candidates):
        if cached_k < k:
            continue
        try:
            with np.load(path) as data:
                ids, sims, method = data["ids"], data["sims"], str(data["method"])
        except (OSError, ValueError, KeyError):
            continue  # unreadable: built again
        if ids.shape != (info.num_samples, cached_k) or sims.shape != ids.shape:
            continue
        return NeighborGraph(ids.astype(np.int64), sims, method, info.source, info.sha256).first(k)
    return None


def neighbor_graph(project_root: Path, info: EmbeddingInfo, array: np.ndarray, k: int, *,
                   progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None,
                   method: str | None = None) -> NeighborGraph:
    """The ``k`` nearest neighbours of every sample of the source ``info`` (``array``, its rows): from the
    cache when it has them, else built (exact or HNSW, :func:`choose_method`) and cached for every later reader."""
    if k < 1:
        raise UserError(f"k = {k} neighbours is too few", "use k of 1 or more")
    cached = cached_graph(project_root, info, k)
    if cached is not None and (method is None or cached.method == method):
        return cached
    started = time.perf_counter()
    chosen = method or choose_method(*array.shape)
    if chosen == "exact":
        ids, sims = exact_neighbors(normalised(array), k, progress=progress, should_stop=should_stop)
    else:
        ids, sims = approximate_neighbors(array, k, progress=progress, should_stop=should_stop)
        refine_farthest(array, ids, sims, should_stop=should_stop)
    seconds = time.perf_counter() - started
    _save_graph(cache_file(project_root, info, k), ids, sims, chosen)
    for older in embeddings_folder(project_root).glob(f"{info.source}.neighbors-k*.npz"):
        if older != cache_file(project_root, info, k) and not older.name.endswith(f"-{info.sha256[:16]}.npz"):
            older.unlink(missing_ok=True)  # an index of content this source no longer has
    return NeighborGraph(ids, sims, chosen, info.source, info.sha256, seconds)


def _save_graph(path: Path, ids: np.ndarray, sims: np.ndarray, method: str) -> None:
    """Written to a temporary name and renamed: a reader never sees half an index."""
    import os

    from engine.store import fsync_folder

    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial.npz")
    try:
        with open(temporary, "wb") as stream:
            np.savez(stream, ids=ids.astype(np.int32 if len(ids) < 2**31 else np.int64), sims=sims,
                     method=np.array(method))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
