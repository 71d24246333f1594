"""Synthetic label noise with known truth, for evaluating detectors and robust methods.

Modes (all touch the training split only; the test split stays clean):

- ``symmetric``: exactly ``round(rate * n_train)`` samples get a uniformly drawn *other* class.
- ``asymmetric``: pair flips by a class map (default ``i -> (i + 1) % K``); in every mapped
  class, ``round(rate * n_class)`` samples take the mapped class.
- ``instance``: instance-dependent noise after the IDN generation of Xia et al. (2020):
  flip rates ``q ~ N(rate, 0.1)`` truncated to [0, 1) are drawn and handed out to the
  images in the order of a seeded projection of their features (so *whether* a sample
  flips depends on its pixels); a seeded random projection ``W[y]`` of the features gives
  the target, ``p = q * softmax(x W[y])`` off the true class and ``1 - q`` on it (so
  *where* it flips depends on its pixels too). The realised rate is ~ rate.
- ``openset``: ``round(rate * n_train)`` samples get an image from outside the label set
  (a synthesized mosaic of shuffled patches or a procedural texture) written to
  ``<project>/openset/<id>.png``; their observed label is unchanged and their true label
  becomes ``OUTSIDE_LABEL_SET``.

Every injection starts from the clean labels (the truth), never on top of earlier noise;
the same seed gives the same noise, and each injection is recorded with its parameters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from engine.data.cache import clear_cache, ensure_clean_cache
from engine.errors import UserError
from engine.events import EventSink
from engine.store import OUTSIDE_LABEL_SET, Project, SampleTable

MODES = ("symmetric", "asymmetric", "instance", "openset")
ClassRef = str | int  # a class by name or by id
ClassMap = Mapping[str, str] | Mapping[int, int] | Mapping[ClassRef, ClassRef]
OPENSET_DIR = "openset"
INSTANCE_RATE_STD = 0.1  # spread of the per-sample flip rate (Xia et al. use 0.1)
_FEATURE_GRID = 8  # instance features: the image mean-pooled to 8x8x3
_CLEAN_LABELS_META = "clean_labels"


def inject_noise(
    project: Project,
    mode: str,
    rate: float,
    seed: int,
    *,
    class_map: ClassMap | None = None,
    image_size: int = 32,
    events: EventSink | None = None,
) -> dict[str, Any]:
    """Replace the training labels by the clean labels plus fresh noise of ``mode``.

    ``class_map`` (asymmetric only) maps class names or ids to class names or ids.
    ``image_size`` is the resolution of the images that instance noise reads and of the
    open-set images written. Returns a summary: mode, rate, seed, params, changed,
    train_samples, realised_rate, transitions (``"a->b": count``, most common first).
    """
    _check_request(mode, rate, seed, class_map)
    events = events or EventSink()
    table = project.sample_table()
    clean = clean_labels(project, table)
    train = table.train_ids
    drawn = _draw(project, table, clean, mode, rate, np.random.default_rng(seed), class_map, image_size, events)
    old_overrides = {index: path for index, path in enumerate(table.image_override) if path}
    project.set_labels(drawn.labels, drawn.truth, drawn.overrides)
    if old_overrides or drawn.overrides:
        # Open-set images were replaced or removed: only the cache of the dataset's own images stays valid.
        for file in clear_cache(project, keep_clean=True):
            events.log(f"removed stale image cache {file.name}", "debug")
        _remove_stale_openset_files(project, drawn.overrides)

    noisy_train = (drawn.labels[train] != clean[train]) | (drawn.truth[train] == OUTSIDE_LABEL_SET)
    changed = int(noisy_train.sum())
    project.record_noise(mode, float(rate), int(seed), drawn.params, changed)
    names = project.class_names()
    transitions = Counter(
        f"{names[clean[i]]}->{names[drawn.labels[i]] if drawn.truth[i] != OUTSIDE_LABEL_SET else 'outside'}"
        for i in train[noisy_train]
    )
    summary = {
        "mode": mode,
        "rate": float(rate),
        "seed": int(seed),
        "params": drawn.params,
        "changed": changed,
        "train_samples": int(len(train)),
        "realised_rate": changed / len(train) if len(train) else 0.0,
        "transitions": dict(transitions.most_common()),
    }
    events.log(f"{mode} noise: {changed} of {len(train)} training labels noisy "
               f"({summary['realised_rate']:.1%}, asked {rate:.1%}, seed {seed})")
    return summary


def _check_request(mode: str, rate: float, seed: int, class_map: ClassMap | None) -> None:
    if mode not in MODES:
        raise UserError(f"unknown noise mode {mode!r}", f"use one of: {', '.join(MODES)}")
    if not 0 <= rate < 1:
        raise UserError(f"noise rate {rate} is outside [0, 1)", "use e.g. --rate 0.2 for 20% noisy training labels")
    if seed < 0:
        raise UserError(f"noise seed {seed} is negative", "use a seed of 0 or more")
    if class_map and mode != "asymmetric":
        raise UserError(f"a class map only applies to asymmetric noise, not {mode}",
                        "drop --class-map or use --mode asymmetric")


@dataclass
class _Drawn:
    """One draw of noise: every sample's label and truth (N,), open-set image paths by sample id, the mode's params."""

    labels: np.ndarray
    truth: np.ndarray
    overrides: dict[int, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


def _draw(project: Project, table: SampleTable, clean: np.ndarray, mode: str, rate: float,
          rng: np.random.Generator, class_map: ClassMap | None, image_size: int, events: EventSink) -> _Drawn:
    """The noisy labels of ``mode`` at ``rate`` over the train split, drawn from ``clean`` with ``rng``."""
    num_classes = project.num_classes
    train = table.train_ids
    drawn = _Drawn(clean.copy(), clean.copy())
    labels = drawn.labels
    if mode == "symmetric":
        chosen = rng.choice(train, size=int(round(rate * len(train))), replace=False)
        # An offset in 1..K-1 lands uniformly on one of the *other* classes.
        labels[chosen] = (clean[chosen] + rng.integers(1, num_classes, size=len(chosen))) % num_classes
    elif mode == "asymmetric":
        mapping = _resolve_map(project, class_map, num_classes)
        names = project.class_names()
        drawn.params["class_map"] = {names[src]: names[dst] for src, dst in mapping.items()}
        for src, dst in sorted(mapping.items()):
            members = train[clean[train] == src]
            chosen = rng.choice(members, size=int(round(rate * len(members))), replace=False)
            labels[chosen] = dst
    elif mode == "instance":
        features = _instance_features(ensure_clean_cache(project, image_size, events=events)[train])
        labels[train] = _instance_flip(features, clean[train], num_classes, rate, rng)
        drawn.params.update(flip_rate_std=INSTANCE_RATE_STD, features=f"{_FEATURE_GRID}x{_FEATURE_GRID}x3 "
                            f"mean-pooled {image_size}px images, standardised", image_size=image_size)
    else:  # openset
        chosen = np.sort(rng.choice(train, size=int(round(rate * len(train))), replace=False))
        source = ensure_clean_cache(project, image_size, events=events)
        # Files about to be overwritten may be in a cache under an unchanged name: drop it first.
        clear_cache(project, keep_clean=True)
        kinds = _write_openset_images(project, chosen, source, train, image_size, rng)
        drawn.overrides = {int(index): f"{OPENSET_DIR}/{index}.png" for index in chosen}
        drawn.truth[chosen] = OUTSIDE_LABEL_SET
        drawn.params.update(image_size=image_size, kinds=dict(Counter(kinds)))
    return drawn


def clean_labels(project: Project, table: SampleTable | None = None) -> np.ndarray:
    """(N,) int64: every sample's clean class, the base that noise is injected on.

    Recorded at the first injection: the true label where the dataset knew it, else the
    label as imported. Later injections start from this record, so noise never stacks and
    open-set samples (true label -1) get their class back.
    """
    table = table or project.sample_table()
    stored = project.meta(_CLEAN_LABELS_META)
    if stored is not None and len(stored) == len(table.paths):
        return np.asarray(stored, dtype=np.int64)
    clean = np.where(table.true_label >= 0, table.true_label, table.given_label).astype(np.int64)
    project.set_meta(_CLEAN_LABELS_META, clean.tolist())
    return clean


def parse_class_map(text: str) -> dict[str, str]:
    """``"cat:dog,3:5"`` as ``{"cat": "dog", "3": "5"}`` (names or ids, resolved later)."""
    mapping: dict[str, str] = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        source, sep, target = part.partition(":")
        if not sep or not source.strip() or not target.strip():
            raise UserError(f"class map entry {part!r} is not source:target",
                            "write the map as a:b,c:d with class names or ids")
        if source.strip() in mapping:
            raise UserError(f"class map names {source.strip()!r} twice", "give each source class one target")
        mapping[source.strip()] = target.strip()
    if not mapping:
        raise UserError(f"empty class map {text!r}", "write the map as a:b,c:d with class names or ids")
    return mapping


# ----------------------------------------------------------------- internals
def _resolve_map(project: Project, class_map: ClassMap | None, num_classes: int) -> dict[int, int]:
    if not class_map:
        return {index: (index + 1) % num_classes for index in range(num_classes)}
    mapping = {}
    for source, target in class_map.items():
        src, dst = project.resolve_class(source), project.resolve_class(target)
        if src == dst:
            raise UserError(f"class map sends class {source!r} to itself", "map each class to a different class")
        mapping[src] = dst
    return mapping


def _instance_features(images: np.ndarray) -> np.ndarray:
    """(n, 192) float64: each image mean-pooled to 8x8x3, standardised per dimension."""
    n, size = images.shape[0], images.shape[1]
    cell = max(1, size // _FEATURE_GRID)
    grid = min(_FEATURE_GRID, size)
    crop = np.asarray(images[:, : grid * cell, : grid * cell], dtype=np.float64)
    pooled = crop.reshape(n, grid, cell, grid, cell, 3).mean(axis=(2, 4)).reshape(n, -1)
    return (pooled - pooled.mean(axis=0)) / (pooled.std(axis=0) + 1e-6)


def _instance_flip(features: np.ndarray, clean: np.ndarray, num_classes: int, rate: float,
                   rng: np.random.Generator) -> np.ndarray:
    n, dim = features.shape
    flip_rate = _truncated_normal(rng, rate, INSTANCE_RATE_STD, n)
    projection = rng.standard_normal((num_classes, dim, num_classes))
    # Whether a sample flips depends on its image too: the largest drawn rates go to the
    # images that score highest along one seeded direction (same rates, image-ordered).
    direction = rng.standard_normal(dim)
    flip_rate[np.argsort(features @ direction, kind="stable")] = np.sort(flip_rate)
    logits = np.empty((n, num_classes))
    for cls in range(num_classes):
        members = clean == cls
        # Unscaled, as in Xia et al.: the logits spread widely, so the target class is
        # (nearly) a function of the image.
        logits[members] = features[members] @ projection[cls]
    logits[np.arange(n), clean] = -np.inf
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    probs *= flip_rate[:, None]
    probs[np.arange(n), clean] = 1.0 - flip_rate
    cumulative = probs.cumsum(axis=1)
    draws = rng.random((n, 1)) * cumulative[:, -1:]
    return np.minimum((draws > cumulative).sum(axis=1), num_classes - 1).astype(np.int64)


def _truncated_normal(rng: np.random.Generator, mean: float, std: float, size: int) -> np.ndarray:
    values = rng.normal(mean, std, size)
    outside = (values < 0) | (values >= 1)
    while outside.any():  # redraw the few outside [0, 1): cheap, and keeps the seeded stream fixed
        values[outside] = rng.normal(mean, std, int(outside.sum()))
        outside = (values < 0) | (values >= 1)
    return values


def _write_openset_images(project: Project, chosen: np.ndarray, source: np.ndarray, train: np.ndarray,
                          size: int, rng: np.random.Generator) -> list[str]:
    folder = project.root / OPENSET_DIR
    folder.mkdir(exist_ok=True)
    kinds = []
    for index in chosen:
        if rng.random() < 0.5:
            image, kind = _patch_mosaic(source, train, size, rng), "mosaic"
        else:
            image, kind = _procedural_texture(size, rng), "texture"
        Image.fromarray(image).save(folder / f"{index}.png")
        kinds.append(kind)
    return kinds


def _patch_mosaic(source: np.ndarray, train: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Patches of several training images, shuffled and colour-permuted: natural statistics, no object."""
    grid = 4 if size >= 8 else 1
    cell = size // grid
    out = np.zeros((size, size, 3), dtype=np.uint8)
    donors = rng.choice(train, size=grid * grid)
    for slot, donor in enumerate(donors):
        row, col = divmod(slot, grid)
        y, x = rng.integers(0, size - cell + 1, size=2)
        patch = np.asarray(source[donor, y: y + cell, x: x + cell])
        if rng.random() < 0.5:
            patch = patch[::-1]
        out[row * cell: (row + 1) * cell, col * cell: (col + 1) * cell] = np.rot90(patch, k=int(rng.integers(4)))
    return np.ascontiguousarray(out[..., rng.permutation(3)])


def _procedural_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """Random coloured gratings plus noise: an image of no class at all."""
    y, x = np.mgrid[0:size, 0:size] / max(size, 1)
    canvas = np.zeros((size, size, 3))
    for _ in range(3):
        angle = rng.uniform(0, np.pi)
        frequency = rng.uniform(1, 8)
        wave = np.sin(2 * np.pi * frequency * (x * np.cos(angle) + y * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
        canvas += wave[..., None] * rng.uniform(-1, 1, size=3)
    canvas += rng.normal(0, 0.3, canvas.shape)
    canvas = (canvas - canvas.min()) / (np.ptp(canvas) + 1e-9)
    return (canvas * 255).astype(np.uint8)


def _remove_stale_openset_files(project: Project, overrides: dict[int, str]) -> None:
    folder = project.root / OPENSET_DIR
    if not folder.is_dir():
        return
    keep = {project.root / path for path in overrides.values()}
    for file in folder.glob("*.png"):
        if file not in keep:
            file.unlink(missing_ok=True)
