"""Reading one image: a full-decode probe at import, and RGB decoding at training resolution.

Every odd mode a dataset can bring is turned into plain 8-bit RGB here, in one
place, so import, cache and thumbnails agree: greyscale and 1-bit are
replicated, palettes are expanded, alpha is composited on white, 16-bit and
32-bit greyscale are scaled into 0..255 (not clipped), CMYK and the other
colour spaces go through Pillow's converters.
"""

from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Our own decompression-bomb policy: accept big but sane images (a 150-megapixel
# scan is fine), refuse anything larger before a single pixel is decoded.
MAX_PIXELS = 200_000_000
# Pillow warns above its limit and refuses above twice it. Raise its limit to
# ours (never lower someone else's) so that images we accept never warn; the
# ones beyond are refused below with our message either way.
if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS

# The probe decodes every image in full: a header can promise 9000x9000 pixels over
# 16 bytes of data, and only decoding finds that out (``verify`` does not, for TIFF).
# Above this many pixels a decode holds hundreds of MB, so such images are decoded
# one at a time while the import's other threads go on with the small ones.
_BIG_DECODE_PIXELS = 50_000_000
_big_decode = threading.Lock()
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
# EXIF orientations that swap width and height.
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)


class BadImage(Exception):
    """A file that cannot serve as a training image; ``reason`` says why, for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ImageInfo:
    """What the probe learned about a readable image (width/height as displayed)."""

    width: int
    height: int
    format: str
    mode: str


def open_image(path: Path) -> Image.Image:
    """Open lazily (header only), refusing empty, unreadable, non-image and oversized files."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise BadImage("file not found") from None
    except OSError as exc:
        raise BadImage(f"cannot be read ({exc.strerror or exc})") from None
    if size == 0:
        raise BadImage("empty file (0 bytes)")
    try:
        image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow refused before we saw the size; its message carries the pixel count.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise BadImage(_too_large_reason(None, int(found.group(1)) if found else None)) from None
    except UnidentifiedImageError:
        raise BadImage(f"not an image (Pillow cannot identify a {_suffix(path)} file of {size} bytes)") from None
    except IsADirectoryError:
        raise BadImage("is a folder, not an image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImage(f"corrupt image header ({exc})") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        image.close()
        raise BadImage(_too_large_reason((width, height)))
    if width == 0 or height == 0:
        image.close()
        raise BadImage(f"image has no pixels ({width}x{height})")
    return image


def probe(path: Path) -> ImageInfo:
    """Prove that ``path`` decodes, as training will decode it: every pixel (JPEGs at 1/8 scale)."""
    image = open_image(path)
    with image:
        width, height = image.size
        fmt, mode = image.format or "?", image.mode
        orientation = 1
        try:
            if fmt == "JPEG":
                # The DCT decoder can skip detail: this still reads the whole stream.
                image.draft(image.mode, (64, 64))
            big = image.size[0] * image.size[1] > _BIG_DECODE_PIXELS
            with _big_decode if big else contextlib.nullcontext():
                image.load()
            orientation = _orientation(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise BadImage(_too_large_reason((width, height))) from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise BadImage(f"truncated or corrupt image data ({exc})") from None
    if orientation in _TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    return ImageInfo(width=width, height=height, format=fmt, mode=mode)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB; alpha on white, high bit depths scaled into 0..255."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        return _scaled_grey_to_rgb(image)
    if mode == "P":
        # A palette may carry alpha, as a tRNS entry or as an RGBA palette.
        has_alpha = "transparency" in image.info or (image.palette is not None and image.palette.mode == "RGBA")
        if not has_alpha:
            return image.convert("RGB")
        image = image.convert("RGBA")
    elif mode in ("L", "RGB", "1") and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA") if image.mode != "La" else image.convert("LA").convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise BadImage(f"colour mode {mode} cannot be converted to RGB ({exc})") from None


def _scaled_grey_to_rgb(image: Image.Image) -> Image.Image:
    values = np.asarray(image)
    if image.mode in _SIXTEEN_BIT_MODES:
        top = 65535.0
    else:
        # 'I' and 'F' carry no bit depth: infer the range from the data.
        peak = float(values.max()) if values.size else 0.0
        if image.mode == "F" and peak <= 1.0:
            top = 1.0
        elif peak <= 255:
            top = 255.0
        elif peak <= 65535:
            top = 65535.0
        else:
            top = peak
    grey = np.clip(np.rint(values.astype(np.float32) * np.float32(255.0 / top)), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def load_square_rgb(path: Path, size: int) -> np.ndarray:
    """Decode ``path`` to a (size, size, 3) uint8 array.

    Policy: apply the EXIF orientation, convert to RGB (see :func:`to_rgb`), scale the
    shorter side to ``size`` with an antialiased bilinear filter, and crop the centre.
    """
    image = open_image(path)
    with image:
        try:
            if image.format == "JPEG":
                # Let the JPEG decoder downscale by up to 8x for free; both sides stay >= size.
                image.draft(image.mode, (size, size))
            image.load()
            oriented = ImageOps.exif_transpose(image)
            rgb = to_rgb(oriented)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise BadImage(_too_large_reason(image.size)) from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise BadImage(f"truncated or corrupt image data ({exc})") from None
        width, height = rgb.size
        side = min(width, height)
        box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
        # reducing_gap: box-reduce big images first (fast), then the exact bilinear pass.
        square = rgb.resize((size, size), Image.Resampling.BILINEAR, box=box,
                            reducing_gap=2.0 if side > 2 * size else None)
        return np.asarray(square, dtype=np.uint8)


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block must not make a readable image unusable
        return 1


def _too_large_reason(size: tuple[int, int] | None, pixels: int | None = None) -> str:
    limit = f"the {MAX_PIXELS // 1_000_000}-megapixel limit"
    if size is None:
        count = f"{pixels / 1e6:.0f} megapixels, " if pixels else ""
        return f"too large: {count}over {limit} (refused before decoding); downscale it"
    width, height = size
    return f"too large: {width}x{height} = {width * height / 1e6:.0f} megapixels, over {limit}; downscale it"


def _suffix(path: Path) -> str:
    return path.suffix.lower() or "suffix-less"
