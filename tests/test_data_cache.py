"""The decoded-image cache: shape, pixel values, reuse without decoding, safe rebuilds."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import IMAGE_FOLDER_PER_CLASS, RecordingSink
from PIL import Image

from engine.cancel import CancelToken
from engine.data import images
from engine.data.cache import cache_path, clear_cache, ensure_cache
from engine.data.importing import import_folder
from engine.errors import Cancelled, UserError
from engine.events import Progress
from engine.store import Project


@pytest.fixture
def project(image_folder: Path, tmp_path: Path) -> Iterator[Project]:
    opened = import_folder(tmp_path / "proj", image_folder)
    yield opened
    opened.close()


def test_cache_shape_values_and_read_only(project: Project) -> None:
    events = RecordingSink()
    array = ensure_cache(project, 8, events=events, workers=2)
    assert array.shape == (3 * IMAGE_FOLDER_PER_CLASS, 8, 8, 3) and array.dtype == np.uint8
    assert isinstance(array, np.memmap) and not array.flags.writeable
    assert cache_path(project, 8).is_file() and cache_path(project, 8).parent == project.cache_dir
    for sample_id in (0, 17, 35):  # sample-id order
        expected = images.load_square_rgb(project.sample_image_path(sample_id), 8)
        assert np.array_equal(array[sample_id], expected)
    progress = [e for e in events.events if isinstance(e, Progress) and e.stage == "cache"]
    assert progress[-1].done == progress[-1].total == project.num_samples


def test_resize_policy_is_shorter_side_then_centre_crop(tmp_path: Path) -> None:
    strip = np.zeros((10, 30, 3), dtype=np.uint8)
    strip[:, :10] = (255, 0, 0)
    strip[:, 10:20] = (0, 255, 0)
    strip[:, 20:] = (0, 0, 255)
    Image.fromarray(strip).save(tmp_path / "wide.png")
    square = images.load_square_rgb(tmp_path / "wide.png", 5)
    assert square.shape == (5, 5, 3)
    assert (square[:, 1:4] == (0, 255, 0)).all()  # the middle third survives the crop
    # A large JPEG goes through the decoder's draft downscaling and still comes out right.
    Image.new("RGB", (800, 600), (10, 120, 240)).save(tmp_path / "big.jpg", quality=95)
    pixels = images.load_square_rgb(tmp_path / "big.jpg", 16).astype(int)
    assert np.abs(pixels - (10, 120, 240)).max() <= 3


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    tall = np.zeros((20, 10, 3), dtype=np.uint8)
    tall[:10] = 255  # white top half
    image = Image.fromarray(tall)
    exif = image.getexif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    info = images.probe(tmp_path / "rotated.jpg")
    assert (info.width, info.height) == (20, 10)
    square = images.load_square_rgb(tmp_path / "rotated.jpg", 10).astype(int)
    assert square[:, 0].mean() < 60 and square[:, -1].mean() > 200  # white half now on the right


def test_second_call_reuses_the_cache_without_decoding(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    first = np.array(ensure_cache(project, 8))

    def no_decoding(path: Path, size: int) -> np.ndarray:
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(images, "load_square_rgb", no_decoding)
    again = ensure_cache(project, 8)
    assert np.array_equal(np.asarray(again), first)


def test_partial_or_damaged_cache_is_rebuilt(project: Project) -> None:
    target = cache_path(project, 8)
    target.parent.mkdir(parents=True)
    # A killed build leaves only a .partial file: never taken for the cache.
    abandoned = target.parent / (target.name + ".dead.partial")
    abandoned.write_bytes(b"\x93NUMPY half")
    os.utime(abandoned, (time.time() - 7200, time.time() - 7200))
    np.save(target, np.zeros((3, 8, 8, 3), dtype=np.uint8))  # wrong shape
    array = ensure_cache(project, 8)
    assert array.shape[0] == project.num_samples and array.max() > 0
    target.write_bytes(target.read_bytes()[:200])  # truncated file
    assert ensure_cache(project, 8).shape[0] == project.num_samples
    assert not abandoned.exists()  # an abandoned partial build is cleaned up


def test_failed_or_cancelled_build_leaves_no_cache(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    real = images.load_square_rgb
    calls = []

    def flaky(path: Path, size: int) -> np.ndarray:
        calls.append(path)
        if len(calls) == 5:
            raise images.BadImage("truncated or corrupt image data (simulated)")
        return real(path, size)

    monkeypatch.setattr(images, "load_square_rgb", flaky)
    with pytest.raises(UserError, match=r"can no longer be read: truncated") as info:
        ensure_cache(project, 8, workers=1)
    assert "import the dataset again" in info.value.hint
    assert not list(project.cache_dir.iterdir())  # neither a cache nor a partial file
    monkeypatch.setattr(images, "load_square_rgb", real)

    token = CancelToken()
    token.request("test cancel")
    with pytest.raises(Cancelled):
        ensure_cache(project, 8, cancel=token)
    assert not list(project.cache_dir.iterdir())


def test_deleted_image_is_named(project: Project) -> None:
    path = project.sample_image_path(3)
    path.unlink()
    with pytest.raises(UserError, match=r"sample 3 \('circle/circle_03.png'\) can no longer be read: file not found"):
        ensure_cache(project, 8)


def test_override_images_are_used_and_change_the_cache(project: Project) -> None:
    before = ensure_cache(project, 8)
    before_file = cache_path(project, 8)
    (project.root / "openset").mkdir()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(project.root / "openset" / "0.png")
    table = project.sample_table()
    project.set_labels(table.label, table.true_label, {0: "openset/0.png"})
    assert cache_path(project, 8) != before_file
    after = ensure_cache(project, 8)
    assert (after[0] == (1, 2, 3)).all()
    assert np.array_equal(after[1:], before[1:])
    removed = clear_cache(project, keep_clean=True)
    assert [p.name for p in removed] == [cache_path(project, 8).name]
    assert before_file.is_file()  # the dataset's own images: still valid, kept
