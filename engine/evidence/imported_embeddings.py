"""Embeddings a user brings (``import-predictions --embeddings FILE``), stored in the project.

Layout, one array per source (``NAME``: ``--name``, else the file's stem), the one every reader of
embeddings takes (:mod:`engine.embeddings`: the neighbour index, knn, duplicates, outliers)::

    <project>/embeddings/<NAME>.npy    (N, D) float32, row i = sample id i; np.load(..., mmap_mode="r")
    <project>/embeddings/<NAME>.json   {"source": "imported", "num_samples", "dims", "sha256" (the array's),
                                        "file", "file_sha256", ...}

Every sample needs a row, held-out ones too: the neighbour index spans both splits (a copy across
them inflates held-out accuracy). The array is written by streaming the input in chunks into a
memory-mapped temporary file beside the target, never whole in RAM, then renamed into place (the
JSON after it, naming the array's own sha256), so a reader sees the old pair or the new one.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.atomic_files import TEMP_MARK
from engine.errors import ensure_free_space
from engine.evidence.imported_files import Problems, RowMatcher, file_record, file_sha256, open_rows
from engine.store import atomic_write_bytes, fsync_folder, temp_name_prefix

EMBEDDINGS_FOLDER = "embeddings"
IMPORTED_SOURCE = "imported"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def embeddings_files(project_root: Path, name: str) -> tuple[Path, Path]:
    """(array, record) of the embeddings source ``name`` in a project."""
    folder = Path(project_root) / EMBEDDINGS_FOLDER
    return folder / f"{name}.npy", folder / f"{name}.json"


@dataclass
class StagedEmbeddings:
    """Embeddings written to a temporary file, waiting to be renamed into place (or discarded)."""

    temp: Path
    target: Path
    record_path: Path
    record: dict[str, Any]

    def commit(self) -> None:
        """Move the array into place, then its record: two renames (everything was written and hashed before).

        An older record goes first (as :meth:`engine.embeddings.writer.PartialEmbeddings.finish` does): never, not
        even after a kill between the two, does a record describe another array (its sha256 keys the neighbour
        index); an array without its record is no source to its readers, and the next import replaces it."""
        self.record_path.unlink(missing_ok=True)
        os.replace(self.temp, self.target)
        atomic_write_bytes(self.record_path, json.dumps(self.record, indent=2).encode())
        fsync_folder(self.target.parent)

    def discard(self) -> None:
        self.temp.unlink(missing_ok=True)


def check_embeddings(file: Path, paths_file: Path | None, sample_paths: list[str], problems: Problems, *,
                     name: str, stage_in: Path | None = None) -> tuple[dict[str, Any], StagedEmbeddings | None]:
    """Validate an embeddings file row by row, streaming; with ``stage_in`` (a project folder) also write it there
    to a temporary file. Returns what it found (file, format, dims, rows, matched) and the staged array (None when
    not asked, or when ``problems`` holds any: the temporary file is removed then)."""
    before = len(problems.list())
    rows = open_rows(file, paths_file, problems, option="--embeddings", dtype=np.float32)
    info: dict[str, Any] = {"file": str(file), "format": file.suffix.lower().lstrip("."), "name": name}
    if rows is None:
        return info, None
    info.update(dims=rows.width, columns=rows.columns[:20])
    matcher = RowMatcher(sample_paths, problems, file, rows.row_word, rows.paths_file)
    n = len(sample_paths)
    staged: StagedEmbeddings | None = None
    out: np.memmap | None = None
    if stage_in is not None:
        target, record_path = embeddings_files(stage_in, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        ensure_free_space(target.parent, n * rows.width * 4 + 4096)
        handle, temp_name = tempfile.mkstemp(prefix=f"{temp_name_prefix(target.name)}{os.getpid()}-",
                                             dir=target.parent)
        os.close(handle)
        staged = StagedEmbeddings(Path(temp_name), target, record_path, {})
        out = np.lib.format.open_memmap(staged.temp, mode="w+", dtype=np.float32, shape=(n, rows.width))
    try:
        for chunk in rows.chunks:
            ids = matcher.match(chunk)
            bad = ~np.isfinite(chunk.values).all(axis=1)
            if chunk.unread is not None:
                bad &= ~chunk.unread
            problems.rows(file, "has NaN or infinite values (or values beyond float32's range)",
                          "give finite numbers in every column", np.flatnonzero(bad) + chunk.first,
                          row_word=rows.row_word)
            if out is not None and len(problems.list()) == before:
                good = ids >= 0
                out[ids[good]] = chunk.values[good]
        if not rows.stopped:  # else the rows it could not read are not missing: the file is fixed first
            matcher.check_all_covered(file)
            if matcher.rows == 0:
                problems.whole(file, "has no rows", "add one row per sample")
        info.update(rows=matcher.rows, matched=int(len(matcher.matched_ids)), matched_ids=matcher.matched_ids)
        if out is None or len(problems.list()) != before or matcher.rows == 0:
            if staged is not None:
                staged.discard()
            return info, None
        out.flush()
        del out
        with open(staged.temp, "rb+") as synced:  # type: ignore[union-attr]
            os.fsync(synced.fileno())
    except BaseException:
        if staged is not None:
            staged.discard()
        raise
    assert staged is not None
    source = file_record(file)
    # engine.embeddings reads this record: ``sha256`` is the stored array's (its neighbour index is keyed by it),
    # hashed here, before anything is recorded, so that the commit is only renames; ``file_sha256`` the file's.
    source["file_sha256"] = source.pop("sha256")
    staged.record = {
        "source": IMPORTED_SOURCE, "name": name, **source, "sha256": file_sha256(staged.temp),
        "paths_file": None if paths_file is None or rows.paths_file is None else str(paths_file),
        "paths_sha256": None if rows.paths_file is None else file_sha256(rows.paths_file),
        "dims": rows.width, "num_samples": n, "dtype": "float32", "order": "sample id", "created": time.time(),
    }
    return info, staged


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files (``.<name>.tmp-<pid>-*``) in ``folder`` that a process killed mid-way left: an
    import's staged array, a record half-written. One whose writer still runs is left alone."""
    from engine.export.staging import clean_stale_staging

    try:
        names = {entry.name[1:entry.name.index(TEMP_MARK)] for entry in folder.iterdir()
                 if entry.name.startswith(".") and TEMP_MARK in entry.name}
    except OSError:
        return []
    return [removed for stem in sorted(names) for removed in clean_stale_staging(folder, stem)]


def valid_name(name: str) -> bool:
    return bool(NAME_PATTERN.fullmatch(name))
