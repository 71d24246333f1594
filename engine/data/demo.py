"""The built-in demo: scikit-learn's bundled digits as an image dataset with known noise.

Works offline and takes a few seconds: 1,797 8x8 digits are written as 32x32 PNG files
(dark ink on white) in one flat folder, ``<project>/images/<index>.png``, and given
symmetric noise at a known rate and seed, so every detector can be scored against the truth.
The split is drawn with ``seed``, the noise with ``seed + 100`` (:data:`NOISE_SEED_OFFSET`): a
draw the shipped td_lstm weights were never trained on.

It looks like a real dataset with unknown errors: a file's name and folder say nothing
of its class, the labels it comes with (``given_label``, and the ``label`` column of
``<project>/labels.csv``) are the noisy ones, and the truth sits in its own column
(``true_label``), as a CSV import with a truth column would have it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from engine.data.importing import Candidate, build_project, populate
from engine.errors import UserError
from engine.events import EventSink
from engine.noise import inject_noise
from engine.store import Project

DEMO_IMAGE_SIZE = 32
DEMO_CSV = "labels.csv"  # in the project folder: path (relative to images/), label (noisy), true_label
DEMO_COLUMNS = ["path", "label", "true_label"]
# The noise is drawn with seed + NOISE_SEED_OFFSET: the shipped td_lstm weights were trained on this
# split's symmetric 0.2 noise drawn with seeds 0 and 1 (resources/td_lstm.md), and a demo scored on
# one of those draws would measure the detector on its own training data.
NOISE_SEED_OFFSET = 100


def make_demo(
    project_root: Path | str,
    *,
    seed: int = 0,
    noise_rate: float = 0.2,
    events: EventSink | None = None,
) -> Project:
    """Make the demo project at ``project_root`` (new or empty folder); returns it open."""
    if not 0 <= noise_rate < 1:
        raise UserError(f"noise rate {noise_rate} is outside [0, 1)", "use e.g. --noise-rate 0.2 (0 for clean labels)")
    events = events or EventSink()

    def fill(project: Project, staging: Path) -> None:
        from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

        digits = load_digits()
        images_dir = staging / "images"
        events.log(f"writing {len(digits.images)} digit images")
        names = _write_pngs(images_dir, digits.images, events)
        classes = [str(int(target)) for target in digits.target]
        # Rows in class order, as the class-folder layout of earlier versions listed them: the same seed
        # then gives the same split and noise as before (file names still say nothing of the class).
        order = sorted(range(len(names)), key=lambda index: (int(classes[index]), index))
        candidates = [Candidate(path=names[index], file=images_dir / names[index], label=classes[index],
                                truth=classes[index], source_row=row, csv_name=DEMO_CSV)
                      for row, index in enumerate(order, start=1)]
        # A relative image root: the images live inside the project, which can then be moved or copied.
        # Described as the CSV it comes with, so exports write its columns back.
        source = {"kind": "demo", "image_root": "images", "layout": "csv", "csv": DEMO_CSV,
                  "columns": DEMO_COLUMNS, "path_column": "path", "label_column": "label",
                  "truth_column": "true_label", "dataset": "sklearn digits"}
        populate(project, candidates, source, test_fraction=0.2, seed=seed, folds=3, events=events,
                 dataset="the digits demo")
        noise_seed = seed + NOISE_SEED_OFFSET
        project.set_meta("demo", {"seed": seed, "noise_rate": noise_rate, "noise_seed": noise_seed})
        if noise_rate > 0:
            inject_noise(project, "symmetric", noise_rate, noise_seed, events=events)
        # The labels the dataset comes with are the noisy ones, as in a real dataset with unknown errors.
        with project.transaction() as conn:
            conn.execute("UPDATE samples SET given_label = label")
        _write_csv(staging / DEMO_CSV, project)

    return build_project(project_root, fill)


def _write_pngs(images_dir: Path, images: np.ndarray, events: EventSink) -> list[str]:
    """One flat folder of PNGs named by index only (no class in the path); returns the file names."""
    # Digits hold ink levels 0..16; draw them as dark ink on white paper.
    grey = (255 - np.rint(images * (255.0 / 16.0))).clip(0, 255).astype(np.uint8)
    images_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for index, pixels in enumerate(grey):
        image = Image.fromarray(pixels).resize((DEMO_IMAGE_SIZE, DEMO_IMAGE_SIZE), Image.Resampling.BILINEAR)
        name = f"{index:04d}.png"
        image.save(images_dir / name, compress_level=1)
        names.append(name)
        if len(names) % 100 == 0 or len(names) == len(grey):
            events.progress("images", len(names), len(grey), message="writing the digit images")
    return names


def _write_csv(path: Path, project: Project) -> None:
    """The dataset's CSV: each image's path, its given (noisy) label, and its true label."""
    table = project.sample_table()
    names = project.class_names()
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(DEMO_COLUMNS)
        for image, given, truth in zip(table.paths, table.given_label, table.true_label):
            writer.writerow([image, names[given], names[truth] if truth >= 0 else ""])
