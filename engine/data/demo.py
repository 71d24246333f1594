"""The built-in demo: scikit-learn's bundled digits as an image dataset with known noise.

Works offline and takes a few seconds: 1,797 8x8 digits are written as 32x32 PNG files
(dark ink on white) under ``<project>/images/<class>/<index>.png``, imported as a folder
dataset (source kind "demo"), and given symmetric noise at a known rate and seed, so
every detector can be scored against the truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from engine.data.importing import build_project, populate, scan_folder
from engine.errors import UserError
from engine.events import EventSink
from engine.noise import inject_noise
from engine.store import Project

DEMO_IMAGE_SIZE = 32


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
        _write_pngs(images_dir, digits.images, digits.target)
        candidates, layout = scan_folder(images_dir, events)
        # A relative image root: the images live inside the project, which can then be moved or copied.
        source = {"kind": "demo", "image_root": "images", "layout": layout, "dataset": "sklearn digits"}
        populate(project, candidates, source, test_fraction=0.2, seed=seed, folds=3, events=events,
                 dataset="the digits demo")
        project.set_meta("demo", {"seed": seed, "noise_rate": noise_rate})
        if noise_rate > 0:
            inject_noise(project, "symmetric", noise_rate, seed, events=events)

    return build_project(project_root, fill)


def _write_pngs(images_dir: Path, images: np.ndarray, targets: np.ndarray) -> None:
    # Digits hold ink levels 0..16; draw them as dark ink on white paper.
    grey = (255 - np.rint(images * (255.0 / 16.0))).clip(0, 255).astype(np.uint8)
    for label in np.unique(targets):
        (images_dir / str(label)).mkdir(parents=True, exist_ok=True)
    for index, (pixels, label) in enumerate(zip(grey, targets)):
        image = Image.fromarray(pixels).resize((DEMO_IMAGE_SIZE, DEMO_IMAGE_SIZE), Image.Resampling.BILINEAR)
        image.save(images_dir / str(label) / f"{index:04d}.png", compress_level=1)
