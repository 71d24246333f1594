"""Near-duplicate thresholds, calibrated on edited copies of real images; then the duplicate groups of a dataset.

    python bench/duplicates.py --calibrate IMAGE_FOLDER [--per-class 50 --image-size 128]
    python bench/duplicates.py --count CSV_OR_FOLDER [--image-root DIR] [--label-column L]

``--calibrate``: the first ``--per-class`` images of each class folder are the originals; each gets one copy
per edit kind: an exact copy (same bytes), a lossless re-save (PNG: same pixels), brightness x1.3, a
horizontal flip, a 1-px shift, a crop (2 px off each side, resized back), JPEG at quality 50, and a
resize (x2, bicubic). For each edit kind the set is the originals plus their copies; a method's recall
is the share of copies it links to their original, its precision the share of the pairs it links in
that set that are an original and its own copy (the originals are distinct images, so any other pair
is a false duplicate). Methods: file sha256, pixel sha256, perceptual hash within d bits, embedding
cosine at least c (EfficientNet-Lite0 at ``--image-size``), over a sweep of d and c.

Then the groups: every original, every copy and two copies of copies (a flip of the brightened copy, a
1-px shift of the flipped one) in one set, linked as ``find_duplicates`` links them at the defaults (file,
pixels, pHash confirmed by the cosine, each sample's 10 nearest by embedding) and grouped by
:func:`engine.embeddings.duplicates.group_links`, against connected components of the same links: the
copies in their original's group, groups that hold more than one original, the largest group.

``--count``: imports the dataset into a temporary project, embeds it with the default backbone and
runs :func:`engine.embeddings.duplicates.find_duplicates`: groups per method, label suspects,
time per stage.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.embeddings.duplicates import EMBEDDING_MIN_COSINE, PHASH_MAX_DISTANCE, image_phash  # noqa: E402

EDITS = ("copy", "png", "brightness", "flip", "shift1", "crop", "jpeg50", "resize2x")
COPIES_OF_COPIES = {"flip_of_brightness": ("brightness", "flip"), "shift1_of_flip": ("flip", "shift1")}


def edited(data: bytes, kind: str) -> bytes:
    """The file bytes of ``kind``'s copy of the image in ``data``."""
    if kind == "copy":
        return data
    image = Image.open(io.BytesIO(data)).convert("RGB")
    width, height = image.size
    if kind == "brightness":
        image = ImageEnhance.Brightness(image).enhance(1.3)
    elif kind == "flip":
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    elif kind == "shift1":
        array = np.asarray(image)
        image = Image.fromarray(np.concatenate([array[:, :1], array[:, :-1]], axis=1))  # right by one, edge repeated
    elif kind == "crop":
        image = image.crop((2, 2, width - 2, height - 2)).resize((width, height), Image.Resampling.BICUBIC)
    elif kind == "resize2x":
        image = image.resize((2 * width, 2 * height), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    if kind == "jpeg50":
        image.save(buffer, format="JPEG", quality=50)
    elif kind in ("png", "resize2x"):
        image.save(buffer, format="PNG")
    else:
        image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def describe(data: bytes) -> tuple[bytes, bytes, int, np.ndarray]:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    rgb = np.asarray(image, dtype=np.uint8)
    return (hashlib.sha256(data).digest(), hashlib.sha256(f"{rgb.shape}".encode() + rgb.tobytes()).digest(),
            image_phash(rgb), rgb)


def square(rgb: np.ndarray, size: int) -> np.ndarray:
    """As engine.data.images.load_square_rgb: shorter side to ``size`` (bilinear), centre crop."""
    image = Image.fromarray(rgb)
    width, height = image.size
    side = min(width, height)
    box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, box=box), dtype=np.uint8)


def calibrate(args: argparse.Namespace) -> dict[str, Any]:
    from engine.embeddings.backbones import DEFAULT_BACKBONE, load_backbone
    from engine.embeddings.job import embed_batch

    files = [path for folder in sorted(p for p in args.folder.iterdir() if p.is_dir())
             for path in sorted(folder.iterdir())[: args.per_class]]
    originals = [path.read_bytes() for path in files]
    sets = {"original": [describe(data) for data in originals]}
    for kind in EDITS:
        sets[kind] = [describe(edited(data, kind)) for data in originals]
    for kind, (first, second) in COPIES_OF_COPIES.items():
        sets[kind] = [describe(edited(edited(data, first), second)) for data in originals]
    backbone = load_backbone(DEFAULT_BACKBONE, args.image_size, project=None, log=None)  # type: ignore[arg-type]
    started = time.perf_counter()
    embeddings: dict[str, np.ndarray] = {}
    for kind, described in sets.items():
        rows = [embed_batch(backbone, np.stack([square(item[3], args.image_size) for item in described[i:i + 64]]))
                for i in range(0, len(described), 64)]
        unit = np.concatenate(rows)
        embeddings[kind] = unit / np.linalg.norm(unit, axis=1, keepdims=True)
    embed_seconds = time.perf_counter() - started
    m = len(originals)
    distances = list(range(0, 15, 2)) + [PHASH_MAX_DISTANCE]
    cosines = [0.70, 0.75, 0.80, 0.85, 0.88, 0.90, 0.92, 0.93, 0.94, 0.95, 0.97, EMBEDDING_MIN_COSINE]
    table: dict[str, Any] = {}
    for kind in EDITS:
        both = sets["original"] + sets[kind]
        is_true = np.zeros((2 * m, 2 * m), dtype=bool)
        is_true[np.arange(m), np.arange(m) + m] = True
        upper = np.triu(np.ones((2 * m, 2 * m), dtype=bool), k=1)
        rows: dict[str, Any] = {}

        def score(linked: np.ndarray, upper: np.ndarray = upper, is_true: np.ndarray = is_true) -> dict[str, float]:
            linked = linked & upper
            found = int((linked & is_true).sum())
            total = int(linked.sum())
            return {"recall": round(found / m, 4), "precision": round(found / total, 4) if total else 1.0}

        for index, name in ((0, "file"), (1, "pixels")):
            digests = [item[index] for item in both]
            rows[name] = score(np.array([[a == b for b in digests] for a in digests]))
        hashes = np.array([item[2] for item in both], dtype=np.uint64)
        hamming = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
        for d in sorted(set(distances)):
            rows[f"phash<={d}"] = score(hamming <= d)
        unit = np.concatenate([embeddings["original"], embeddings[kind]])
        cosine = unit @ unit.T
        for c in sorted(set(cosines)):
            rows[f"cosine>={c}"] = score(cosine >= c)
        table[kind] = rows
    return {"originals": m, "image_size": args.image_size, "embed_seconds": round(embed_seconds, 1), "table": table,
            "groups": grouping(sets, embeddings)}


def grouping(sets: dict[str, list[tuple[bytes, bytes, int, np.ndarray]]], embeddings: dict[str, np.ndarray]) -> dict[str, Any]:
    """Every original and copy in one set, linked at the defaults; groups by the engine's rule and by connected
    components of the same links (see the module docstring)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from engine.embeddings.duplicates import (
        DUPLICATE_NEIGHBORS,
        PHASH_CONFIRM_COSINE,
        embedding_links,
        equal_rows_links,
        group_links,
        hamming_links,
    )
    from engine.embeddings.neighbors import exact_neighbors

    kinds = list(sets)
    m = len(sets["original"])
    items = [item for kind in kinds for item in sets[kind]]
    n = len(items)
    family = np.tile(np.arange(m), len(kinds))  # the original each sample is a copy of
    unit = np.concatenate([embeddings[kind] for kind in kinds]).astype(np.float32)
    links = []
    for index, method in ((0, "file"), (1, "pixels")):
        digests = np.array([np.frombuffer(item[index], dtype=np.uint8) for item in items])
        pairs = equal_rows_links(digests)
        links.append((method, pairs, np.ones(len(pairs))))
    pairs, distance = hamming_links(np.array([item[2] for item in items], dtype=np.uint64), PHASH_MAX_DISTANCE)
    confirmed = (unit[pairs[:, 0]] * unit[pairs[:, 1]]).sum(axis=1) >= PHASH_CONFIRM_COSINE
    links.append(("phash", pairs[confirmed], 1.0 - distance[confirmed] / 64.0))
    ids, sims = exact_neighbors(unit, DUPLICATE_NEIGHBORS)
    links.append(("embedding", *embedding_links(ids, sims, EMBEDDING_MIN_COSINE)))
    every = np.concatenate([pairs for _, pairs, _ in links])
    direct = {(int(a), int(b)) for a, b in np.sort(every, axis=1).tolist()}
    _, component = connected_components(coo_matrix((np.ones(len(every)), every.T), shape=(n, n)), directed=False)
    rules = {"star (the engine)": [members for members, _, _ in group_links(n, links)],
             "connected components": [np.flatnonzero(component == c).tolist() for c in np.unique(component)
                                      if (component == c).sum() >= 2]}
    result: dict[str, Any] = {}
    for rule, groups in rules.items():
        group_of = np.full(n, -1)
        for index, members in enumerate(groups):
            group_of[members] = index
        per_kind = {}
        for k, kind in enumerate(kinds[1:], 1):
            copies = np.arange(k * m, (k + 1) * m)
            together = (group_of[copies] >= 0) & (group_of[copies] == group_of[:m])
            linked = np.array([(original, copy) in direct for original, copy in zip(range(m), copies)])
            per_kind[kind] = {"with_original": round(float(together.mean()), 4),
                              "linked_to_original": round(float(linked.mean()), 4),
                              "linked_and_with_original": round(float(together[linked].mean()), 4) if linked.any() else 1.0}
        sizes = [len(members) for members in groups]
        result[rule] = {"groups": len(groups), "samples_in_groups": int(sum(sizes)), "largest": max(sizes, default=0),
                        "groups_with_several_originals": sum(len(set(family[members].tolist())) > 1 for members in groups),
                        "copies": per_kind}
    return result


def print_calibration(result: dict[str, Any]) -> None:
    kinds = list(result["table"])
    methods = list(result["table"][kinds[0]])
    print(f"{result['originals']} distinct originals; recall / precision per edit kind")
    print(f"{'method':<16}" + "".join(f"{kind:>14}" for kind in kinds))
    for method in methods:
        cells = [result["table"][kind][method] for kind in kinds]
        print(f"{method:<16}" + "".join(f"{cell['recall']:>7.2f}/{cell['precision']:<6.2f}" for cell in cells))
    groups = result.get("groups") or {}
    if groups:
        kinds = list(next(iter(groups.values()))["copies"])
        print(f"\nall {result['originals']} originals and {len(kinds)} copies of each in one set, grouped at the defaults; "
              "share of each kind's copies in their original's group")
        print(f"{'rule':<22}{'groups':>8}{'largest':>8}{'mixed':>7}" + "".join(f"{kind[:13]:>14}" for kind in kinds))
        for rule, row in groups.items():
            print(f"{rule:<22}{row['groups']:>8}{row['largest']:>8}{row['groups_with_several_originals']:>7}"
                  + "".join(f"{row['copies'][kind]['with_original']:>14.2f}" for kind in kinds))


def count(args: argparse.Namespace) -> dict[str, Any]:
    from engine.data.importing import import_csv, import_folder
    from engine.embeddings.duplicates import find_duplicates
    from engine.embeddings.job import run_embed
    from engine.events import ConsoleRenderer, EventSink

    events = EventSink(console=ConsoleRenderer(sys.stderr, quiet=True))
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-duplicates-") as tmp:
        started = time.perf_counter()
        if args.dataset.is_dir():
            project = import_folder(Path(tmp) / "p", args.dataset, test_fraction=args.test_fraction, events=events)
        else:
            project = import_csv(Path(tmp) / "p", args.dataset, args.image_root or args.dataset.parent,
                                 path_column="path", label_column=args.label_column, test_fraction=args.test_fraction,
                                 events=events)
        timings["import"] = time.perf_counter() - started
        with project:
            started = time.perf_counter()
            _, status = run_embed(project, events=events)
            assert status == "ok", status
            timings["embed"] = time.perf_counter() - started
            report = find_duplicates(project)
            timings["find_duplicates"] = report.seconds
            summary = report.summary()
            paths = project.sample_table().paths
            examples = [{**group.to_dict(), "paths": [paths[m] for m in group.members]} for group in report.groups[:10]]
    return {**summary, "timings_s": {
        **{name: round(value, 1) for name, value in timings.items()}, **summary["timings_s"]}, "examples": examples}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calibrate", type=Path, default=None, metavar="IMAGE_FOLDER", dest="folder")
    parser.add_argument("--count", type=Path, default=None, metavar="DATASET", dest="dataset")
    parser.add_argument("--image-root", type=Path, default=None)
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--test-fraction", type=float, default=0.0, help="--count: held out at import (default 0)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.folder is not None:
        result = calibrate(args)
        if not args.json:
            print_calibration(result)
    elif args.dataset is not None:
        result = count(args)
    else:
        parser.error("pass --calibrate IMAGE_FOLDER or --count DATASET")
    if args.json or args.dataset is not None:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
