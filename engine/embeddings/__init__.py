"""Embeddings in a project: one memory-mapped float32 array per source, in sample-id order.

Layout, shared by every way an embedding arrives (``python -m engine embed`` computes one
with a backbone; ``import-predictions --embeddings`` brings one from a file)::

    <project>/embeddings/<source>.npy    (N, D) float32, row i = sample id i
    <project>/embeddings/<source>.json   {"source", "sha256", "dims", "num_samples", ...}
    <project>/embeddings/<source>.neighbors-k<K>-<sha256[:16]>.npz   the neighbour index (engine.embeddings.neighbors)

``sha256`` identifies the content (of the ``.npy`` for computed ones; an importer may record its
input file's): the neighbour index is keyed by it, so a changed array is never read with an old
index. A source is complete only when both files exist and agree on the shape; the ``.npy`` is
renamed into place finished and the ``.json`` is written after it.

This module imports only numpy (the app lists sources cheaply); computing embeddings is
:mod:`engine.embeddings.job`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import UserError

EMBEDDINGS_FOLDER = "embeddings"
DTYPE = np.float32
_SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


@dataclass(frozen=True)
class EmbeddingInfo:
    """A stored embedding source: its name, array file, shape and content hash, and what made it."""

    source: str
    path: Path
    num_samples: int
    dims: int
    sha256: str
    meta: dict[str, Any] = field(default_factory=dict)  # backbone, image size, created, ... as recorded

    @property
    def created(self) -> float:
        return float(self.meta.get("created", 0.0))


def embeddings_folder(project_root: Path) -> Path:
    return Path(project_root) / EMBEDDINGS_FOLDER


def check_source_name(source: str) -> str:
    """``source`` when it is usable as a file name (letters, digits, ``_.-``, up to 64); a UserError otherwise."""
    if not _SOURCE_NAME.match(source):
        raise UserError(f"{source!r} is not a usable embedding source name",
                        "use letters, digits, '_', '.' or '-' (up to 64, starting with a letter or digit)")
    return source


def array_path(project_root: Path, source: str) -> Path:
    return embeddings_folder(project_root) / f"{check_source_name(source)}.npy"


def meta_path(project_root: Path, source: str) -> Path:
    return embeddings_folder(project_root) / f"{check_source_name(source)}.json"


def read_info(project_root: Path, source: str) -> EmbeddingInfo | None:
    """The stored source ``source``, or None when it is absent or incomplete (no ``.json``, or no ``.npy``)."""
    meta_file, array_file = meta_path(project_root, source), array_path(project_root, source)
    if not meta_file.is_file() or not array_file.is_file():
        return None
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        return EmbeddingInfo(source, array_file, int(meta["num_samples"]), int(meta["dims"]), str(meta["sha256"]), meta)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{meta_file} is damaged ({exc})",
                        f"delete {meta_file} and {array_file} and make the embeddings again") from exc


def embedding_sources(project_root: Path) -> list[EmbeddingInfo]:
    """Every complete source of the project, oldest first (what the app lists)."""
    folder = embeddings_folder(project_root)
    if not folder.is_dir():
        return []
    infos = [read_info(project_root, path.stem) for path in sorted(folder.glob("*.json"))
             if _SOURCE_NAME.match(path.stem)]
    return sorted((info for info in infos if info is not None), key=lambda info: (info.created, info.source))


def embedding_info(project_root: Path, source: str | None = None, num_samples: int | None = None) -> EmbeddingInfo:
    """The source ``source`` (None: the newest one), checked to cover ``num_samples`` samples.

    A UserError that says how to make embeddings when the project has none (or not that one).
    """
    sources = embedding_sources(project_root)
    make = f"python -m engine embed {project_root}"
    if source is None:
        if not sources:
            raise UserError(f"the project {project_root} has no embeddings yet",
                            f"compute them first: {make} (or import yours: python -m engine import-predictions "
                            f"{project_root} --embeddings FILE)")
        info = sources[-1]
    else:
        found = read_info(project_root, source)
        if found is None:
            known = ", ".join(item.source for item in sources) or "none yet"
            raise UserError(f"the project has no embeddings named {source!r} (it has: {known})",
                            f"compute them: {make} --backbone {source}, or name one it has")
        info = found
    if num_samples is not None and info.num_samples != num_samples:
        raise UserError(f"the embeddings {info.source!r} have {info.num_samples} rows but the project has "
                        f"{num_samples} samples", f"make them again: {make} --backbone {info.source} --force")
    return info


def load_embeddings(project_root: Path, source: str | None = None,
                    num_samples: int | None = None) -> tuple[np.ndarray, EmbeddingInfo]:
    """The (N, D) float32 array, memory-mapped read-only (never read whole into memory), and its info."""
    info = embedding_info(project_root, source, num_samples)
    try:
        array = np.load(info.path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise UserError(f"{info.path} is not a readable .npy array ({exc})",
                        "delete it and its .json and make the embeddings again") from exc
    if array.shape != (info.num_samples, info.dims) or array.dtype != DTYPE:
        raise UserError(f"{info.path} holds {array.dtype} {array.shape}, its .json says float32 "
                        f"({info.num_samples}, {info.dims})", "delete both files and make the embeddings again")
    return array, info


def file_sha256(path: Path, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
