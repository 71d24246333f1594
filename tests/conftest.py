"""Shared fixtures: small generated datasets and a ready-made demo project.

- ``image_folder``: an ImageFolder dataset (3 classes x 12 PNGs of 16x16) whose classes
  differ in colour *and* shape, so that even a tiny model learns it in a few epochs.
- ``demo_project``: the digits demo (with its known 20% symmetric noise, seed 0), built
  once per session and copied into each test's tmp_path, so a test may change it freely
  (its image files are hard links: replace them, never write into them).
- ``recorded_events``: an EventSink that keeps every event, for asserting on progress/logs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine.events import Event, EventSink

IMAGE_FOLDER_CLASSES = ("circle", "cross", "stripes")
IMAGE_FOLDER_PER_CLASS = 12
IMAGE_FOLDER_SIZE = 16
_CLASS_COLOURS = {"circle": (220, 40, 40), "cross": (40, 200, 60), "stripes": (40, 60, 220)}


def draw_class_image(class_name: str, index: int, size: int = IMAGE_FOLDER_SIZE) -> Image.Image:
    """One image of ``class_name``: its own colour and shape, with a little per-index jitter."""
    rng = np.random.default_rng(index * 7919 + IMAGE_FOLDER_CLASSES.index(class_name))
    background = tuple(int(v) for v in rng.integers(0, 40, size=3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    colour = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in _CLASS_COLOURS[class_name])
    shift = int(rng.integers(-1, 2))
    if class_name == "circle":
        draw.ellipse((3 + shift, 3, size - 4 + shift, size - 4), fill=colour)
    elif class_name == "cross":
        draw.line((2, 2 + shift, size - 3, size - 3 + shift), fill=colour, width=3)
        draw.line((2, size - 3 + shift, size - 3, 2 + shift), fill=colour, width=3)
    else:
        for y in range(1 + (shift % 2), size, 4):
            draw.line((0, y, size - 1, y), fill=colour, width=2)
    return image


def make_image_folder(root: Path, classes: tuple[str, ...] = IMAGE_FOLDER_CLASSES,
                      per_class: int = IMAGE_FOLDER_PER_CLASS) -> Path:
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            draw_class_image(name, index).save(root / name / f"{name}_{index:02d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A small ImageFolder dataset at ``tmp_path/images``: circle/, cross/, stripes/ x 12 PNGs."""
    return make_image_folder(tmp_path / "images")


@pytest.fixture(scope="session")
def _demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine.data.demo import make_demo

    root = tmp_path_factory.mktemp("demo-template") / "demo"
    make_demo(root, seed=0, noise_rate=0.2).close()
    return root


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(source, target)


@pytest.fixture
def demo_project(_demo_template: Path, tmp_path: Path) -> Path:
    """A private copy of the demo project (folder path); its relative image root points into the copy.

    The database, cache and open-set files are real copies. The 1,797 dataset images are
    hard links (copying them costs seconds per test on a slow disk): delete or replace an
    image freely, but do not write into an image file in place.
    """
    root = tmp_path / "demo"
    shutil.copytree(_demo_template, root, ignore=shutil.ignore_patterns("images"))
    shutil.copytree(_demo_template / "images", root / "images", copy_function=_link_or_copy)
    return root


class RecordingSink(EventSink):
    """An EventSink that keeps every event it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []

    def emit(self, event: Event) -> Event:
        self.events.append(event)
        return event

    def messages(self) -> list[str]:
        return [getattr(event, "message", "") for event in self.events]


@pytest.fixture
def recorded_events() -> RecordingSink:
    return RecordingSink()
