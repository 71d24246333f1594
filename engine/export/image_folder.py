"""The cleaned dataset as ``<folder>/<final_label>/<file>`` (symlinks or copies), with class and file names made
safe and unique for every file system (:func:`stage_image_folder`)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import UserError, ensure_free_space
from engine.export.staging import ExportSet
from engine.export.targets import check_target
from engine.store import Project, fsync_folder

MAX_NAME_BYTES = 255  # one file or folder name, on nearly every file system
CLASS_FOLDER_BYTES = 200  # a class folder name, leaving room for a "_N" suffix that keeps it unique


def fit_name(name: str, limit: int = MAX_NAME_BYTES, keep_suffix: bool = False) -> str:
    """``name`` if it fits in ``limit`` UTF-8 bytes, else cut and ended with ``~`` and 8 hex digits of its hash,
    so two long names that share a beginning stay apart (the suffix, e.g. ``.png``, is kept if asked)."""
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) <= limit:
        return name
    stem, suffix = os.path.splitext(name) if keep_suffix else (name, "")
    if len(suffix.encode("utf-8", "surrogateescape")) > 16:
        stem, suffix = name, ""
    digest = hashlib.sha256(encoded).hexdigest()[:8]
    room = limit - len(suffix.encode("utf-8", "surrogateescape")) - len(digest) - 1
    cut = stem.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")
    return f"{cut}~{digest}{suffix}"


def safe_folder_name(name: str) -> str:
    """A class name usable as one folder name on every OS: separators and reserved characters replaced, and
    shortened (see :func:`fit_name`) when longer than a file system allows."""
    cleaned = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", name).strip().rstrip(".")
    cleaned = cleaned if cleaned not in ("", ".", "..") else f"_{cleaned or 'class'}"
    return fit_name(cleaned, CLASS_FOLDER_BYTES)


def _unique_name(taken: set[str], name: str) -> str:
    # Case-insensitively unique, so the layout also survives a copy to macOS or Windows.
    stem, suffix = os.path.splitext(name)
    candidate, number = fit_name(name, keep_suffix=True), 1
    while candidate.lower() in taken:
        candidate = fit_name(f"{stem}_{number}{suffix}", keep_suffix=True)
        number += 1
    taken.add(candidate.lower())
    return candidate


def check_folder_target(project: Project, folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"{folder} already exists and is not an empty folder",
                        "choose a new folder for --folder (the export never overwrites files)")
    if not folder.parent.is_dir():
        raise UserError(f"folder {folder.parent} does not exist", "create it first, or choose another --folder")
    check_target(project, folder, "--folder")


def stage_image_folder(project: Project, staged: ExportSet, folder: Path, copy: bool) -> dict[str, Any]:
    labels, keep = project.labels_with_decisions()
    names = project.class_names()
    folder_names: dict[int, str] = {}
    taken_classes: set[str] = set()
    for index, name in enumerate(names):
        folder_names[index] = _unique_name(taken_classes, safe_folder_name(name))
    renamed = {names[index]: folder_names[index] for index in range(len(names)) if folder_names[index] != names[index]}
    kept = [int(sample_id) for sample_id in np.flatnonzero(keep)]
    sources = {sample_id: project.sample_image_path(sample_id) for sample_id in kept}
    for sample_id, source in sources.items():
        if not source.is_file():
            raise UserError(f"image of sample {sample_id} is missing: {source}",
                            "restore the image (or remove the sample) and export again")
    if copy:
        ensure_free_space(folder.parent, sum(source.stat().st_size for source in sources.values()), reserve_bytes=0)
    staging = staged.staging_folder(folder)
    taken: dict[int, set[str]] = {index: set() for index in range(len(names))}
    for index in range(len(names)):
        (staging / folder_names[index]).mkdir()
    for sample_id, source in sources.items():
        label = int(labels[sample_id])
        target = staging / folder_names[label] / _unique_name(taken[label], source.name)
        if copy:
            shutil.copy2(source, target)
        else:
            try:
                target.symlink_to(source.resolve())
            except OSError as exc:  # a file system (or OS policy) without symlinks
                raise UserError(f"cannot make a symlink in {folder.parent}: {exc.strerror}",
                                "export with --copy to copy the images instead") from None

    def move() -> None:
        if folder.exists():
            folder.rmdir()  # empty, checked before; fails (and so stops the commit) if it no longer is
        os.replace(staging, folder)
        fsync_folder(folder.parent)

    staged.on_commit(move)
    return {"folder": str(folder), "images": len(sources), "removed": int((~keep).sum()),
            "mode": "copy" if copy else "symlink", "renamed_classes": renamed}
