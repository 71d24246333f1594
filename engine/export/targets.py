"""Where an export may not write: the project's store, the CSV it was imported from, or one of its images
(links resolved; :func:`check_target`)."""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import UserError
from engine.export.staging import PROJECT_STAGING
from engine.store import DB_NAME, Project

# Folders the project writes itself (beside project.db): an export inside them could destroy the project.
STORE_FOLDERS = ("runs", "cache", "openset", PROJECT_STAGING)


def _real(path: Path | str) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _same_file(a: Path, b: Path) -> bool:
    if _real(a) == _real(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links too
    except OSError:
        return False


def _project_image_at(project: Project, target: Path) -> str | None:
    """The sample (its path) whose image file ``target`` is, symlinks resolved or not; None when it is none."""
    candidates = {Path(os.path.abspath(target)), _real(target)}
    image_roots = {Path(os.path.abspath(project.image_root)), _real(project.image_root)}
    project_roots = {Path(os.path.abspath(project.root)), _real(project.root)}
    for path in candidates:
        for root in image_roots:
            if _inside(path, root) and path != root:
                relative = path.relative_to(root).as_posix()
                if project.execute("SELECT 1 FROM samples WHERE path = ? LIMIT 1", (relative,)):
                    return relative
        for root in project_roots:
            if _inside(path, root) and path != root:
                relative = path.relative_to(root).as_posix()
                rows = project.execute("SELECT path FROM samples WHERE image_override = ? LIMIT 1", (relative,))
                if rows:
                    return str(rows[0][0])
    return None


def check_target(project: Project, target: Path, option: str, files: tuple[str, ...] = ()) -> None:
    """Refuse an export target that would overwrite the project's store, its import source, or one of its images.

    ``target`` is the file (or, with ``files``, the folder receiving those files) that ``option`` names.
    Symlinks are resolved, so a link pointing into the project is refused too.
    """
    real, root = _real(target), _real(project.root)
    store_files = {root / name for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal")}
    if real in store_files or any(_inside(real, root / folder) for folder in STORE_FOLDERS):
        raise UserError(f"{option} {target} is inside the project's store ({root}): writing there would destroy "
                        "the project", f"choose a {option} outside {root}, e.g. next to the project folder")
    for path in [target, *(target / name for name in files)]:
        source_csv = project.source.get("csv")
        if source_csv and _same_file(path, Path(source_csv)):
            raise UserError(f"{option} {path} is the CSV this project was imported from: the export would overwrite it",
                            f"choose another {option}, e.g. {Path(source_csv).with_name('corrected.csv')}")
        image = _project_image_at(project, path)
        if image is not None:
            raise UserError(f"{option} {path} is the image of sample {image!r}: the export would overwrite it",
                            f"choose a {option} outside the image folder {project.image_root}")
