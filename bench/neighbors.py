"""Nearest neighbours at scale: which approximate index, and 1M embeddings end to end.

    python bench/neighbors.py --compare [--n 50000 --dims 256]     # faiss HNSW, hnswlib, usearch, pynndescent
    python bench/neighbors.py --n 1000000 [--dims 256 --k 10]      # the engine's path: neighbours, duplicates, outliers

Generated embeddings: ``--clusters`` Gaussian clusters in ``--dims`` dimensions, plus planted
near-duplicates (a copy of a random row with a little noise, cosine about 0.99) and planted
outliers (rows far from every cluster). ``--compare`` measures recall@10 of each library against
exact search (blocked matrix products) on a sample of queries, its build + query time and the
growth of peak RSS. The default run writes the embeddings to a memory-mapped .npy (as a project
keeps them), then runs the engine's own :func:`engine.embeddings.neighbors.neighbor_graph` (exact
or HNSW by size), the embedding duplicate links and groups, and the outlier ranking; it prints the
recall of the planted duplicates and outliers, each stage's time and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.embeddings.neighbors import exact_neighbors, normalised  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    """The resident memory now (VmRSS), to see what an index holds while it is alive."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def generate(path: Path, n: int, dims: int, clusters: int, duplicates: int, outliers: int,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Write (n, dims) float32 to ``path`` in chunks; returns (the memmap, planted pairs (D, 2), outlier ids)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dims)).astype(np.float32)
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dims))
    chunk = 100_000
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        members = rng.integers(0, clusters, stop - start)
        array[start:stop] = centres[members] + 0.5 * rng.normal(size=(stop - start, dims)).astype(np.float32)
    picked = rng.choice(n, 2 * duplicates + outliers, replace=False)
    originals, copies, far = picked[:duplicates], picked[duplicates:2 * duplicates], picked[2 * duplicates:]
    for original, copy in zip(originals, copies):  # a copy: the same direction, a little noise
        row = np.asarray(array[original])
        array[copy] = row + 0.1 * np.linalg.norm(row) / np.sqrt(dims) * rng.normal(size=dims).astype(np.float32)
    for index in far:  # an outlier: a direction of its own
        array[index] = 3.0 * rng.normal(size=dims).astype(np.float32)
    array.flush()
    return array, np.stack([originals, copies], axis=1), far


def exact_sample(unit: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact neighbours (self excluded) of the ``queries`` rows only: (Q, k)."""
    import torch

    scores = torch.from_numpy(unit[queries]) @ torch.from_numpy(unit).T
    scores[torch.arange(len(queries)), torch.from_numpy(queries)] = -float("inf")
    return torch.topk(scores, k, dim=1).indices.numpy()


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(a[:k]) & set(b)) / k for a, b in zip(found, truth)]))


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """recall@10, seconds and RSS growth of each library's all-neighbours graph on ``--n`` rows."""
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        array, _, _ = generate(Path(tmp) / "e.npy", args.n, args.dims, args.clusters, args.n // 100, args.n // 1000)
        unit = normalised(array)
    queries = rng.choice(args.n, 2000, replace=False)
    truth = exact_sample(unit, queries, 10)
    k = 11  # self + 10
    results: dict[str, Any] = {}

    alive: dict[str, float] = {}

    def measure(name: str, build_and_query: Any) -> None:
        import gc

        gc.collect()
        before = current_rss_mb()
        alive.clear()
        started = time.perf_counter()
        try:
            ids = build_and_query()
        except ImportError as exc:
            results[name] = {"error": f"not installed ({exc})"}
            return
        seconds = time.perf_counter() - started
        rows = ids[queries]
        rows = np.array([[x for x in row if x != q][:10] for row, q in zip(rows, queries)])
        results[name] = {"recall@10": round(recall(rows, truth), 4), "seconds": round(seconds, 1),
                         "memory_mb": round(alive.get("rss", before) - before)}
        print(name, results[name], flush=True)

    def exact() -> np.ndarray:
        ids = exact_neighbors(unit, 10)[0]
        alive["rss"] = current_rss_mb()
        return ids

    def faiss_hnsw() -> np.ndarray:
        import faiss

        index = faiss.IndexHNSWFlat(args.dims, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.add(unit)
        index.hnsw.efSearch = 64
        alive["rss"] = current_rss_mb()  # the index and its copy of the vectors
        return index.search(unit, k)[1]

    def hnswlib_index() -> np.ndarray:
        import hnswlib

        index = hnswlib.Index(space="ip", dim=args.dims)
        index.init_index(max_elements=len(unit), M=32, ef_construction=80)
        index.add_items(unit)
        index.set_ef(64)
        alive["rss"] = current_rss_mb()
        return index.knn_query(unit, k=k)[0]

    def usearch_index() -> np.ndarray:
        from usearch.index import Index

        index = Index(ndim=args.dims, metric="ip", dtype="f32", connectivity=32, expansion_add=80, expansion_search=64)
        index.add(np.arange(len(unit)), unit)
        alive["rss"] = current_rss_mb()
        return np.asarray(index.search(unit, k).keys)

    def pynndescent_index() -> np.ndarray:
        from pynndescent import NNDescent

        index = NNDescent(unit, metric="dot", n_neighbors=30, random_state=0, low_memory=True)
        alive["rss"] = current_rss_mb()
        return index.neighbor_graph[0][:, :k]

    measure("exact (torch, blocked)", exact)
    for name, function in (("faiss-cpu HNSW", faiss_hnsw), ("hnswlib", hnswlib_index), ("usearch", usearch_index),
                           ("pynndescent", pynndescent_index)):
        measure(name, function)
    return {"n": args.n, "dims": args.dims, "results": results}


def end_to_end(args: argparse.Namespace) -> dict[str, Any]:
    """The engine's neighbour graph, duplicate groups and outlier ranking on ``--n`` generated embeddings."""
    from engine.embeddings import load_embeddings
    from engine.embeddings.duplicates import EMBEDDING_MIN_COSINE, embedding_links, group_links
    from engine.embeddings.neighbors import neighbor_graph
    from engine.embeddings.writer import PartialEmbeddings

    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        (root / "embeddings").mkdir()
        writer = PartialEmbeddings(root, "generated", args.n, args.dims, {"bench": True}, resume=False)
        del writer.array
        _, planted, far = generate(writer.partial, args.n, args.dims, args.clusters, args.duplicates, args.outliers)
        writer.array = np.load(writer.partial, mmap_mode="r+")
        writer.save_progress(args.n)
        writer.finish({"source": "generated", "created": time.time()})
        timings["generate"] = time.perf_counter() - started
        rss_before = peak_rss_mb()
        array, info = load_embeddings(root, "generated", args.n)
        started = time.perf_counter()
        graph = neighbor_graph(root, info, array, args.k)
        timings["neighbors"] = time.perf_counter() - started
        started = time.perf_counter()
        pairs, _ = embedding_links(graph.ids, graph.sims, EMBEDDING_MIN_COSINE)
        groups = group_links(args.n, [("embedding", pairs, np.ones(len(pairs)))])
        timings["duplicates"] = time.perf_counter() - started
        started = time.perf_counter()
        kth = graph.sims[:, args.k - 1]
        ranking = np.argsort(kth, kind="stable")  # farthest k-th neighbour first
        timings["outliers"] = time.perf_counter() - started
        found = {tuple(sorted(pair)) for pair in pairs.tolist()}
        planted_found = np.mean([tuple(sorted(pair)) in found for pair in planted.tolist()])
        outlier_recall = len(set(ranking[:len(far)].tolist()) & set(far.tolist())) / max(len(far), 1)
        started = time.perf_counter()
        cached = neighbor_graph(root, info, array, args.k)
        timings["neighbors_again_from_cache"] = time.perf_counter() - started
        assert cached.method == graph.method
    return {"n": args.n, "dims": args.dims, "k": args.k, "method": graph.method,
            "planted_duplicates": len(planted), "planted_duplicates_found": round(float(planted_found), 4),
            "duplicate_groups": len(groups), "planted_outliers": len(far),
            "outliers_in_top_ranks": round(outlier_recall, 4),
            "seconds": {name: round(value, 1) for name, value in timings.items()},
            "seconds_neighbors_duplicates_outliers": round(timings["neighbors"] + timings["duplicates"]
                                                           + timings["outliers"], 1),
            "peak_rss_mb": round(peak_rss_mb()), "peak_rss_mb_before_search": round(rss_before)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", action="store_true", help="compare the approximate-index libraries")
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--dims", type=int, default=256)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--clusters", type=int, default=None, help="default: one per 500 rows")
    parser.add_argument("--duplicates", type=int, default=1000, help="planted near-duplicate pairs")
    parser.add_argument("--outliers", type=int, default=100, help="planted outliers")
    parser.add_argument("--workdir", type=Path, default=None, help="where the generated embeddings go (default: /tmp)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    args.clusters = args.clusters or max(10, args.n // 500)
    result = compare(args) if args.compare else end_to_end(args)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
