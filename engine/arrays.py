"""Writing a per-sample array into a run folder: ``np.save``, atomically. Light: numpy and the atomic writes only."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from engine.atomic_files import atomic_write_bytes


def save_array(path: Path, array: np.ndarray) -> None:
    """``np.save`` to ``path`` atomically (a reader sees the old file or the new one)."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())
