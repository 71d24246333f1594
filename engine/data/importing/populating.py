"""Writing the probed candidates into a project: skipped images reported, classes numbered, the seeded stratified
test split chosen and every class's size checked against the folds (:func:`populate`)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from engine.data.classes import natural_sorted
from engine.data.images import BadImage, ImageInfo
from engine.data.importing.names import Candidate
from engine.data.importing.probing import probe_all
from engine.errors import UserError
from engine.events import EventSink
from engine.store import Project

DEFAULT_FOLDS = 3
_MAX_LOGGED_SKIPS = 20


def populate(
    project: Project,
    candidates: list[Candidate],
    source: dict[str, Any],
    *,
    test_fraction: float,
    seed: int,
    folds: int,
    events: EventSink | None,
    dataset: str,
) -> None:
    """Probe the candidates, split, validate class sizes, and write classes, samples and meta."""
    events = events or EventSink()
    check_options(test_fraction, folds, seed)
    real_root = os.path.realpath(source["image_root"]) if Path(source["image_root"]).is_absolute() else None
    infos = probe_all(candidates, events, real_root)
    good = [(c, info) for c, info in zip(candidates, infos) if isinstance(info, ImageInfo)]
    bad = [(c, info) for c, info in zip(candidates, infos) if isinstance(info, BadImage)]
    skipped = [
        {"path": c.path, "reason": info.reason, **({"row": c.source_row} if c.source_row is not None else {})}
        for c, info in bad
    ]
    for c, info in bad[:_MAX_LOGGED_SKIPS]:
        events.log(f"skipped {c.where()}: {info.reason}", "warning")
    if bad:
        events.log(f"skipped {len(bad)} of {len(candidates)} images (listed in the import summary)", "warning")

    missing = [c for c, info in bad if info.reason == "file not found"]
    if source["kind"] == "csv" and len(missing) * 2 > len(candidates):
        raise UserError(
            f"{len(missing)} of the {len(candidates)} images named in {dataset} are not under the image root "
            f"{source['image_root']} (first: {missing[0].where()})",
            "check --image-root: the CSV's paths are relative to it",
        )
    if not good:
        reasons = "; ".join(f"{c.where()}: {info.reason}" for c, info in bad[:3])
        raise UserError(f"none of the {len(candidates)} images in {dataset} could be read ({reasons})",
                        "check that the files are images (PNG, JPEG, ...) and not damaged")

    # Classes come from the files that could be images (not from refused folders or special files),
    # in natural order: classes named 0..N-1 get id == name.
    listed = [c for c in candidates if c.problem is None]
    class_names = natural_sorted(c.label for c in listed)
    if len(class_names) < 2:
        raise UserError(f"{dataset} has only one class ({class_names[0]!r})",
                        "a classifier needs at least two classes: add images of another class")
    class_id = {name: index for index, name in enumerate(class_names)}
    labels = np.array([class_id[c.label] for c, _ in good], dtype=np.int64)
    split = _choose_split([c for c, _ in good], labels, len(class_names), test_fraction, seed)
    _check_class_sizes(class_names, labels, split, listed, folds, test_fraction, dataset)

    rows = [
        {
            "path": c.path,
            "split": str(s),
            "label": int(label),
            "true_label": class_id[c.truth] if c.truth else None,
            "source_row": c.source_row,
            "width": info.width,
            "height": info.height,
            "extra": c.extra or None,
        }
        for (c, info), label, s in zip(good, labels, split)
    ]
    project.add_classes(class_names)
    project.add_samples(rows)
    fixed_split = all(c.split is not None for c, _ in good)  # train/ and test/ folders: no fraction applied
    project.set_meta("source", {**source, "test_fraction": None if fixed_split else test_fraction, "seed": seed,
                                "folds": folds})
    project.set_meta("skipped", skipped)
    events.log(f"imported {len(rows)} images of {len(class_names)} classes "
               f"({int((split == 'train').sum())} train, {int((split == 'test').sum())} test)")


def _choose_split(good: list[Candidate], labels: np.ndarray, num_classes: int, test_fraction: float,
                  seed: int) -> np.ndarray:
    if good and all(c.split is not None for c in good):
        return np.array([c.split for c in good], dtype=object)
    split = np.full(len(good), "train", dtype=object)
    if test_fraction == 0:
        return split
    counts = np.bincount(labels, minlength=num_classes)
    if counts.min() < 2:
        return split  # a class this small fails the size check below, with a better message
    from sklearn.model_selection import train_test_split  # heavy: only at import time

    # At least one test image per class, which a stratified split requires.
    n_test = max(num_classes, int(round(test_fraction * len(good))))
    try:
        _, test_index = train_test_split(np.arange(len(good)), test_size=n_test, stratify=labels,
                                         random_state=seed)
    except ValueError as exc:
        raise UserError(f"cannot hold out {test_fraction:.0%} of {len(good)} images for testing: {exc}",
                        "lower --test-fraction or add images") from None
    split[test_index] = "test"
    return split


def _check_class_sizes(class_names: list[str], labels: np.ndarray, split: np.ndarray, candidates: list[Candidate],
                       folds: int, test_fraction: float, dataset: str) -> None:
    named = Counter(c.label for c in candidates)
    usable = np.bincount(labels, minlength=len(class_names))
    train = np.bincount(labels[split == "train"], minlength=len(class_names))
    for index, name in enumerate(class_names):
        if train[index] >= folds:
            continue
        lost = named[name] - usable[index]
        skipped = f", {lost} of its {named[name]} images were skipped as unreadable" if lost else ""
        held_out = usable[index] - train[index]
        test = f" after {held_out} went to the test split" if held_out else ""
        raise UserError(
            f"class {name!r} of {dataset} has only {train[index]} training image(s){test}{skipped}; "
            f"{folds}-fold cross-validation needs at least {folds} per class",
            f"add images of class {name!r}, lower --folds, or lower --test-fraction (now {test_fraction:g})",
        )


MAX_SEED = 2**32 - 1  # what NumPy's and scikit-learn's seeded generators take


def check_options(test_fraction: float, folds: int, seed: int = 0) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed {seed} is outside 0..{MAX_SEED}", "use a seed such as --seed 0 (the default)")
    if not 0 <= test_fraction < 1:
        raise UserError(f"test fraction {test_fraction} is outside [0, 1)",
                        "use e.g. --test-fraction 0.2 to hold out 20% (0 for no test split)")
    if folds < 2:
        raise UserError(f"{folds} folds is too few for cross-validation", "use --folds 2 or more (default 3)")
