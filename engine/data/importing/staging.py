"""Building a project in a hidden sibling folder that is renamed into place only when the import succeeded, so a
failed import leaves nothing behind and never touches a folder that already held something (:func:`build_project`)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from engine.data.importing.names import is_utf8, shown_name
from engine.errors import UserError
from engine.store import Project, is_project


def build_project(project_root: Path | str, fill: Callable[[Project, Path], None]) -> Project:
    """Make a project at ``project_root``: ``fill(project, staging_folder)`` writes it in a
    hidden sibling folder that is renamed into place when ``fill`` returns, and removed
    (with any parent folders made for it) when anything fails.
    """
    root = _usable_project_path(Path(project_root).absolute())
    try:
        if is_project(root):
            raise UserError(f"{root} already holds a project", "choose another folder, or open it instead")
        if root.exists() and not root.is_dir():
            raise UserError(f"{root} is a file, not a folder", "choose a new or empty folder for the project")
        if root.is_dir() and any(root.iterdir()):
            raise UserError(f"{root} is not empty", "choose a new or empty folder for the project")
        made_parents = [parent for parent in root.parents if not parent.exists()]  # deepest first
    except OSError as exc:
        raise UserError(f"cannot use {root} as the project folder: {exc.strerror or exc}",
                        "choose a new or empty folder you can write to") from None
    staging = root.parent / _staging_name(root.name)
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        project = Project.create(staging)
    except OSError as exc:
        raise UserError(f"cannot create the project folder {root}: {exc.strerror or exc}",
                        "choose a folder you can write to") from None
    removed_empty_root = False
    try:
        fill(project, staging)
        project.close()
        if root.is_dir():
            root.rmdir()  # it was empty (checked above); the rename needs the name free
            removed_empty_root = True
        try:
            staging.rename(root)
        except OSError as exc:
            raise UserError(f"cannot put the new project in place at {root}: {exc.strerror or exc}",
                            "choose a new or empty folder you can write to, and import again") from None
    except BaseException:
        project.close()
        shutil.rmtree(staging, ignore_errors=True)
        if removed_empty_root and not root.exists():
            root.mkdir()
        for parent in made_parents:
            try:
                parent.rmdir()
            except OSError:
                break
        raise
    return Project.open(root)


# The longest file or folder name most file systems allow, in bytes.
NAME_MAX_BYTES = 255


def _usable_project_path(root: Path) -> Path:
    """``root``, or where its link leads; a clear refusal for names too long or links to nothing."""
    for part in root.parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX_BYTES:
            raise UserError(f"the folder name {shown_name(part[:40])}... in the project path is {size} bytes long; "
                            f"file systems allow at most {NAME_MAX_BYTES}",
                            "choose a shorter name for the project folder")
    if root.is_symlink():
        target = Path(os.path.realpath(root))
        if not target.exists():
            raise UserError(f"the project path {root} is a link to {target}, which does not exist",
                            f"create {target} first, remove the link, or choose another project folder")
        return target
    return root


def _staging_name(project_name: str) -> str:
    """A hidden sibling name for building the project; the project's name is cut to keep it legal."""
    suffix = f".importing-{uuid.uuid4().hex[:8]}"
    room = NAME_MAX_BYTES - 1 - len(suffix)
    name = os.fsencode(project_name)[:room].decode("utf-8", "ignore") if is_utf8(project_name) else "project"
    return f".{name}{suffix}"
