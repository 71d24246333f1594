"""Near-duplicates: groups of samples that are the same picture, found four ways, strictest first.

- ``file``: the same file bytes (sha256 of the file);
- ``pixels``: the same decoded pixels in another file (sha256 of the RGB array and its shape: a PNG
  and a lossless copy, or the same JPEG with other metadata);
- ``phash``: a perceptual hash (64-bit DCT hash of a 32x32 greyscale copy) within
  :data:`PHASH_MAX_DISTANCE` bits: re-encoded (JPEG quality 50), resized, lightly edited copies;
  where the project has embeddings, confirmed by their cosine (:data:`PHASH_CONFIRM_COSINE`);
- ``embedding``: cosine similarity of the embeddings at least :data:`EMBEDDING_MIN_COSINE`
  (from the source's cached neighbour index): flipped, shifted, cropped, recoloured copies.

Both thresholds are calibrated by bench/duplicates.py on edited copies of real images (the README's
table of recall and precision per edit and method). Equal files and equal pixels join connected sets;
perceptual-hash and embedding links, which chain look-alikes, join those sets only as stars: each
member links to the group's centre, or to two of the centre's copies (:func:`group_links`). Each set of two or more
samples is a :class:`DuplicateGroup`, named by the loosest method among the links of its members (a
pair linked by two methods counts as the stricter), with the lowest similarity of those links. A group whose members carry
different labels is a label suspect (at most one of the labels is right); a group with members in
both splits is a held-out sample that training has seen, which inflates held-out accuracy.

The hashes of the images are computed once and cached in ``embeddings/image-hashes-<fp>.npz``
(keyed by the samples' paths). A group is decided as one undoable step: :func:`keep_one` (keep one,
remove the rest) or :func:`label_group` (give every member one label).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.embeddings import embeddings_folder, load_embeddings
from engine.errors import Cancelled, UserError
from engine.store import PERSON, Decision, Project

# Calibrated by bench/duplicates.py on 1,000 CIFAR-10 images and their edited copies (the README's table),
# then checked on CIFAR-10's 50,000 training images (groups looked at near each threshold).
PHASH_MAX_DISTANCE = 4  # bits of 64: JPEG-50 copies 0.99 found, brightness 0.86, resized 1.00
# A perceptual-hash match counts only if the embeddings agree this much too (where the project has them): on
# 32-px images with little detail (a bird on plain sky) different pictures share a hash within 4 bits, and their
# embeddings tell them apart (cosines 0.3-0.7); edited copies keep at least this (JPEG-50: 0.85 of them, brightness 0.98).
PHASH_CONFIRM_COSINE = 0.75
EMBEDDING_MIN_COSINE = 0.90  # EfficientNet-Lite0 at 128 px: flips and 1-px shifts 0.91 found; at 0.85 look-alike scenes join
DUPLICATE_NEIGHBORS = 10  # neighbours per sample searched for embedding duplicates
METHODS = ("file", "pixels", "phash", "embedding")  # strictest first
PHASH_SIZE = 32  # the greyscale copy the DCT is taken of; its top-left 8x8 frequencies give 64 bits

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class DuplicateGroup:
    """Samples that are copies of one another; ``similarity`` is 1.0 for exact copies, else the weakest link's."""

    members: list[int]  # sample ids, ascending
    method: str  # the loosest method among the links that join them (METHODS)
    similarity: float  # file/pixels 1.0; phash 1 - distance/64; embedding cosine
    labels: list[int]  # each member's label with the decisions applied (class ids)
    splits: list[str]  # each member's split

    @property
    def label_conflict(self) -> bool:
        """Members carry different labels: a label suspect."""
        return len(set(self.labels)) > 1

    @property
    def crosses_splits(self) -> bool:
        """Members in the training and the held-out split: the held-out copy's accuracy is not held out."""
        return len(set(self.splits)) > 1

    def to_dict(self) -> dict[str, Any]:
        return {"members": self.members, "method": self.method, "similarity": round(self.similarity, 4),
                "labels": self.labels, "splits": self.splits, "label_conflict": self.label_conflict,
                "crosses_splits": self.crosses_splits}


@dataclass
class DuplicateReport:
    groups: list[DuplicateGroup]  # label conflicts first, then cross-split, then by size, similarity
    thresholds: dict[str, float | None]
    methods: list[str]  # the methods that ran (embedding only when the project has embeddings)
    source: str | None  # the embedding source read, if any
    seconds: float
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def label_suspects(self) -> list[DuplicateGroup]:
        return [group for group in self.groups if group.label_conflict]

    @property
    def cross_split(self) -> list[DuplicateGroup]:
        return [group for group in self.groups if group.crosses_splits]

    def heldout_inflation(self) -> dict[str, int]:
        """How many held-out samples have a copy in the training split (they measure memory, not generalisation)."""
        test_with_copy = sum(sum(split == "test" for split in group.splits) for group in self.cross_split)
        return {"heldout_samples_with_a_training_copy": test_with_copy, "groups": len(self.cross_split)}

    def summary(self) -> dict[str, Any]:
        by_method = {method: sum(group.method == method for group in self.groups) for method in self.methods}
        return {"n_groups": len(self.groups), "n_samples_in_groups": sum(len(group.members) for group in self.groups),
                "by_method": by_method, "n_label_suspects": len(self.label_suspects),
                "heldout_inflation": self.heldout_inflation(), "thresholds": self.thresholds,
                "methods": self.methods, "source": self.source, "seconds": round(self.seconds, 3),
                "timings_s": self.timings_s}


# ------------------------------------------------------------------ hashes
def phash_bits(grey: np.ndarray) -> np.ndarray:
    """(B,) uint64 perceptual hashes of (B, 32, 32) greyscale images: DCT, top-left 8x8, above its median."""
    from scipy.fft import dctn

    frequencies = dctn(np.asarray(grey, dtype=np.float64), axes=(1, 2), norm="ortho")[:, :8, :8].reshape(len(grey), 64)
    bits = frequencies > np.median(frequencies, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").astype(np.uint64).ravel()


def image_phash(rgb: np.ndarray) -> int:
    """The perceptual hash of one (H, W, 3) uint8 image."""
    from PIL import Image

    grey = Image.fromarray(rgb).convert("L").resize((PHASH_SIZE, PHASH_SIZE), Image.Resampling.LANCZOS)
    return int(phash_bits(np.asarray(grey)[None])[0])


def hash_image_file(path: Path) -> tuple[bytes, bytes, int]:
    """(sha256 of the file, sha256 of its decoded RGB pixels and shape, perceptual hash)."""
    from engine.data import images

    data = path.read_bytes()
    image = images.open_image(path)
    with image:
        try:
            image.load()
            rgb = np.asarray(images.to_rgb(image), dtype=np.uint8)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise images.BadImage(f"truncated or corrupt image data ({exc})") from None
    pixels = hashlib.sha256(f"{rgb.shape}".encode() + rgb.tobytes()).digest()
    return hashlib.sha256(data).digest(), pixels, image_phash(rgb)


def image_hashes(project: Project, *, progress: ProgressFn | None = None,
                 should_stop: Callable[[], bool] | None = None) -> dict[str, np.ndarray]:
    """``file`` and ``pixels`` (N, 32) uint8 digests and ``phash`` (N,) uint64 of every sample; cached."""
    from engine.data import images
    from engine.embeddings.job import samples_fingerprint

    folder = embeddings_folder(project.root)
    cache = folder / f"image-hashes-{samples_fingerprint(project)}.npz"
    with contextlib.suppress(OSError, ValueError, KeyError), np.load(cache) as data:
        return {"file": data["file_sha256"], "pixels": data["pixels_sha256"], "phash": data["phash"]}
    table = project.sample_table()
    n = len(table.paths)
    sources = [project.root / override if override else project.image_root / path
               for path, override in zip(table.paths, table.image_override)]
    file_digests = np.zeros((n, 32), dtype=np.uint8)
    pixel_digests = np.zeros((n, 32), dtype=np.uint8)
    phashes = np.zeros(n, dtype=np.uint64)

    def one(index: int) -> None:
        try:
            file_digest, pixel_digest, phash = hash_image_file(sources[index])
        except (images.BadImage, FileNotFoundError) as exc:
            reason = exc.reason if isinstance(exc, images.BadImage) else "file not found"
            raise UserError(f"sample {index} ({table.paths[index]!r}) can no longer be read: {reason}",
                            f"restore {sources[index]} (it was readable at import), or import the dataset again") from None
        file_digests[index] = np.frombuffer(file_digest, dtype=np.uint8)
        pixel_digests[index] = np.frombuffer(pixel_digest, dtype=np.uint8)
        phashes[index] = phash

    chunk = 2048
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        for start in range(0, n, chunk):
            if should_stop is not None and should_stop():
                raise Cancelled("duplicate search cancelled")
            list(pool.map(one, range(start, min(start + chunk, n))))
            if progress is not None:
                progress(min(start + chunk, n), n)
    folder.mkdir(parents=True, exist_ok=True)
    temporary = cache.with_name(f".{cache.name}.{os.getpid()}.partial.npz")
    np.savez(temporary, file_sha256=file_digests, pixels_sha256=pixel_digests, phash=phashes)
    os.replace(temporary, cache)
    return {"file": file_digests, "pixels": pixel_digests, "phash": phashes}


# ------------------------------------------------------------------ links
def equal_rows_links(digests: np.ndarray) -> np.ndarray:
    """(L, 2) pairs of rows with identical ``digests`` rows: each row linked to the first of its kind."""
    rows = np.ascontiguousarray(digests).view(np.dtype((np.void, digests.dtype.itemsize * digests.shape[1]))).ravel()
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    owner = first[inverse.ravel()]
    linked = np.flatnonzero(owner != np.arange(len(rows)))
    return np.stack([owner[linked], linked], axis=1).astype(np.int64)


def hamming_links(hashes: np.ndarray, max_distance: int, max_bucket: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(pairs (L, 2), distances (L,)): every pair of 64-bit ``hashes`` within ``max_distance`` bits.

    Multi-index hashing: split the 64 bits into ``max_distance + 1`` blocks; two hashes that
    differ in at most that many bits agree on at least one whole block, so only hashes sharing
    a block value are compared. Buckets larger than ``max_bucket`` (thousands of blank images
    with one hash) compare only identical hashes, which :func:`equal_rows_links` already links.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    blocks = max_distance + 1
    edges = np.linspace(0, 64, blocks + 1).astype(int)
    found: set[tuple[int, int]] = set()
    pairs: list[tuple[int, int, int]] = []
    for low, high in zip(edges[:-1], edges[1:]):
        keys = (hashes >> np.uint64(low)) & np.uint64((1 << (high - low)) - 1)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], n]
        for start, end in zip(starts, ends):
            size = end - start
            if size < 2 or size > max_bucket:
                continue
            members = np.sort(order[start:end])
            xor = hashes[members][:, None] ^ hashes[members][None, :]
            distance = np.bitwise_count(xor)
            first, second = np.nonzero(np.triu(distance <= max_distance, k=1))
            for a, b in zip(first, second):
                key = (int(members[a]), int(members[b]))
                if key not in found:
                    found.add(key)
                    pairs.append((*key, int(distance[a, b])))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64)
    array = np.array(pairs, dtype=np.int64)
    return array[:, :2], array[:, 2]


def embedding_links(ids: np.ndarray, sims: np.ndarray, min_cosine: float) -> tuple[np.ndarray, np.ndarray]:
    """(pairs (L, 2), cosines (L,)) from a neighbour graph: each pair above ``min_cosine`` once."""
    rows, columns = np.nonzero((sims >= min_cosine) & (ids >= 0))
    first, second = rows.astype(np.int64), ids[rows, columns].astype(np.int64)
    low, high = np.minimum(first, second), np.maximum(first, second)
    pairs, unique = np.unique(np.stack([low, high], axis=1), axis=0, return_index=True)
    return pairs.reshape(-1, 2), sims[rows, columns][unique].astype(np.float64)


def pair_cosines(array: np.ndarray, pairs: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """(L,) cosine similarity of the rows of each pair (``array`` may be a memory map: read a chunk of pairs at a time)."""
    out = np.empty(len(pairs), dtype=np.float64)
    for start in range(0, len(pairs), chunk):
        part = pairs[start:start + chunk]
        first = np.asarray(array[part[:, 0]], dtype=np.float64)
        second = np.asarray(array[part[:, 1]], dtype=np.float64)
        norms = np.linalg.norm(first, axis=1) * np.linalg.norm(second, axis=1)
        out[start:start + len(part)] = (first * second).sum(axis=1) / np.maximum(norms, 1e-12)
    return out


def group_links(n: int, links: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> list[tuple[list[int], str, float]]:
    """Groups of two or more samples joined by ``links`` ((method, pairs, similarities) per method), each with
    the loosest method and the lowest similarity of the links among its members.

    Equal file bytes and equal pixels are transitive: they join their connected sets into *units*. A
    similarity is not: look-alikes (handwritten 6s, birds on sky) chain a~b~c~... by embedding cosine, and on
    low-detail images by perceptual hash too, into groups of hundreds whose ends have nothing in common, which
    no person can act on (the digits demo made one group of 981). So perceptual-hash and embedding links join
    units only as *stars*: the units with the most links become centres first, each taking every unit it links
    to that no group holds yet; a unit left over (each of its links went to a group) joins the group where it
    links to two or more of the centre's copies. Every member is then a copy of the centre, or of two of its
    copies, not merely of a neighbour of a neighbour: a chain a~b~c~d is not one group. Why stars, with the
    best-linked unit as centre: an original links to each of its edited copies, even where two copies differ
    too much to link to each other (a brightened and a flipped one: cosine 0.88), so it has the most links and
    they all join it. Complete linkage (every pair linked) and a centre-and-majority rule split such copies
    from their original; merging the most similar pairs first split them too, when a copy of a copy resembles
    its parent copy more than the original does (bench/duplicates.py --calibrate measures the groups).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    all_pairs = [pairs for _, pairs, _ in links if len(pairs)]
    if not all_pairs:
        return []
    pairs = np.sort(np.concatenate(all_pairs), axis=1).astype(np.int64)
    method_rank = np.concatenate([np.full(len(p), METHODS.index(m)) for m, p, _ in links if len(p)])
    similarity = np.concatenate([np.asarray(s, dtype=np.float64) for _, p, s in links if len(p)])
    # A pair two methods link counts as the strictest of them (an exact copy is also a perceptual match).
    order = np.lexsort((method_rank, pairs[:, 1], pairs[:, 0]))
    pairs, method_rank, similarity = pairs[order], method_rank[order], similarity[order]
    first = np.r_[True, (pairs[1:] != pairs[:-1]).any(axis=1)]
    pairs, method_rank, similarity = pairs[first], method_rank[first], similarity[first]
    exact = method_rank < METHODS.index("phash")
    graph = coo_matrix((np.ones(int(exact.sum())), (pairs[exact, 0], pairs[exact, 1])), shape=(n, n))
    _, unit = connected_components(graph, directed=False)
    component = star_groups(unit, unit[pairs[~exact]], similarity[~exact])
    sizes = np.bincount(component, minlength=n)
    inside = component[pairs[:, 0]] == component[pairs[:, 1]]
    edge_component = component[pairs[inside, 0]]
    loosest = np.zeros(n, dtype=np.int64)
    np.maximum.at(loosest, edge_component, method_rank[inside])
    weakest = np.full(n, np.inf)
    np.minimum.at(weakest, edge_component, similarity[inside])
    in_group = np.flatnonzero(sizes[component] >= 2)
    order = in_group[np.argsort(component[in_group], kind="stable")]
    groups: list[tuple[list[int], str, float]] = []
    boundaries = np.flatnonzero(np.r_[True, component[order][1:] != component[order][:-1], True])
    for start, end in zip(boundaries[:-1], boundaries[1:]):
        members = order[start:end]
        label = component[members[0]]
        groups.append((sorted(int(m) for m in members), METHODS[int(loosest[label])], float(weakest[label])))
    return groups


def star_groups(unit: np.ndarray, unit_pairs: np.ndarray, similarity: np.ndarray) -> np.ndarray:
    """(N,) group label of each sample: its unit (``unit``, a label per sample) joined to others by the links
    ``unit_pairs`` (L, 2) between units, as stars (see :func:`group_links`)."""
    keep = unit_pairs[:, 0] != unit_pairs[:, 1]
    linked: dict[int, set[int]] = {}
    weight: dict[int, float] = {}
    for (a, b), value in zip(np.sort(unit_pairs[keep], axis=1).tolist(), similarity[keep].tolist()):
        for one, other in ((a, b), (b, a)):
            if other not in linked.setdefault(one, set()):
                linked[one].add(other)
                weight[one] = weight.get(one, 0.0) + value
    # Centres first by how many units they link to (an original links to each of its copies; a copy to the
    # original and only some other copies), then by how similar; ties by id.
    order = sorted(linked, key=lambda u: (-len(linked[u]), -weight[u], u))
    owner: dict[int, int] = {}  # unit -> its group's centre
    copies: dict[int, int] = {}  # unit -> the centre it links to
    for centre in order:
        if centre in owner:
            continue
        satellites = {u: centre for u in linked[centre] if u not in owner}
        if satellites:
            owner[centre] = centre
            owner.update(satellites)
            copies.update(satellites)
    for u in order:  # left over: each of its links went to a group; it joins one where it links to two copies
        if u in owner:
            continue
        votes: dict[int, int] = {}
        for v in linked[u]:
            if v in copies:
                votes[copies[v]] = votes.get(copies[v], 0) + 1
        best = min(votes, key=lambda centre: (-votes[centre], centre), default=None)
        if best is not None and votes[best] >= 2:
            owner[u] = best
    lookup = np.arange(int(unit.max()) + 1 if len(unit) else 0)
    for u, centre in owner.items():
        lookup[u] = centre
    return lookup[unit]


# ------------------------------------------------------------------ the API
def find_duplicates(
    project: Project,
    source: str | None = None,
    *,
    methods: Sequence[str] = METHODS,
    phash_max_distance: int = PHASH_MAX_DISTANCE,
    min_cosine: float = EMBEDDING_MIN_COSINE,
    progress: Callable[[str, int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> DuplicateReport:
    """Every duplicate group of the project (see the module docstring).

    ``source``: the embedding source for the ``embedding`` method (None: the newest; when the
    project has none, that method is left out and the report says so in ``methods``).
    ``progress(stage, done, total)`` hears "hash" and "neighbors".
    """
    from engine.embeddings.neighbors import neighbor_graph

    unknown = [method for method in methods if method not in METHODS]
    if unknown:
        raise UserError(f"unknown duplicate method {unknown[0]!r}", f"use some of: {', '.join(METHODS)}")
    if not 0 <= phash_max_distance <= 16:
        raise UserError(f"a perceptual-hash distance of {phash_max_distance} bits is out of range",
                        f"use 0 to 16 (default {PHASH_MAX_DISTANCE})")
    if not 0.5 <= min_cosine <= 1.0:
        raise UserError(f"a minimum cosine similarity of {min_cosine} is out of range",
                        f"use 0.5 to 1.0 (default {EMBEDDING_MIN_COSINE})")
    started = time.perf_counter()
    timings: dict[str, float] = {}
    n = project.num_samples
    links: list[tuple[str, np.ndarray, np.ndarray]] = []
    ran: list[str] = []
    if any(method in methods for method in ("file", "pixels", "phash")):
        step = time.perf_counter()
        hashes = image_hashes(project, progress=None if progress is None else lambda d, t: progress("hash", d, t),
                              should_stop=should_stop)
        for method in ("file", "pixels"):
            if method in methods:
                pairs = equal_rows_links(hashes[method])
                links.append((method, pairs, np.ones(len(pairs))))
                ran.append(method)
        timings["hashes"] = round(time.perf_counter() - step, 3)
    from engine.embeddings import embedding_sources

    has_embeddings = source is not None or bool(embedding_sources(project.root))
    array, info = load_embeddings(project.root, source, n) if has_embeddings else (None, None)
    if "phash" in methods:
        pairs, distance = hamming_links(hashes["phash"], phash_max_distance)
        if array is not None and len(pairs):
            confirmed = pair_cosines(array, pairs) >= PHASH_CONFIRM_COSINE
            pairs, distance = pairs[confirmed], distance[confirmed]
        links.append(("phash", pairs, 1.0 - distance / 64.0))
        ran.append("phash")
    used_source: str | None = None
    if "embedding" in methods and array is not None and info is not None:
        step = time.perf_counter()
        graph = neighbor_graph(project.root, info, array, DUPLICATE_NEIGHBORS, should_stop=should_stop,
                               progress=None if progress is None else lambda d, t: progress("neighbors", d, t))
        pairs, cosines = embedding_links(graph.ids, graph.sims, min_cosine)
        links.append(("embedding", pairs, cosines))
        ran.append("embedding")
        used_source = info.source
        timings["embedding"] = round(time.perf_counter() - step, 3)
    labels, _ = project.labels_with_decisions()
    split = project.sample_table().split
    groups = [DuplicateGroup(members, method, similarity, [int(labels[m]) for m in members],
                             [str(split[m]) for m in members])
              for members, method, similarity in group_links(n, links)]
    groups.sort(key=lambda g: (not g.label_conflict, not g.crosses_splits, -len(g.members), -g.similarity, g.members))
    thresholds = {"phash_max_distance": float(phash_max_distance), "min_cosine": float(min_cosine),
                  "phash_confirm_cosine": PHASH_CONFIRM_COSINE if array is not None else None}
    return DuplicateReport(groups, thresholds, ran, used_source, time.perf_counter() - started, timings)


def keep_one(project: Project, members: Sequence[int], keep: int) -> list[Decision]:
    """Keep ``keep`` and remove the other members of a duplicate group: one undoable step (a person's decision)."""
    members = [int(member) for member in members]
    if int(keep) not in members:
        raise UserError(f"sample {keep} is not in the group {members}", "choose one of the group's members to keep")
    return project.decide_many([(member, "keep" if member == int(keep) else "remove", None) for member in members],
                               provenance=PERSON)


def label_group(project: Project, members: Sequence[int], label: str | int) -> list[Decision]:
    """Give every member of a duplicate group the class ``label``: one undoable step (a person's decision)."""
    return project.decide_many([(int(member), "relabel", label) for member in members], provenance=PERSON)
