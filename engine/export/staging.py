"""Staging an export's files as one set (:class:`ExportSet`): written in full first (in the project's
``staging/`` folder, or beside the target), then renamed into place together; leftovers of killed exports removed."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from engine.errors import ensure_free_space
from engine.store import default_mode, fsync_folder, temp_name_prefix, write_temp_beside

PROJECT_STAGING = "staging"  # in a project: where exports are staged (see ExportSet)
STALE_AFTER_S = 24 * 3600  # staging older than this is a leftover even if its pid was reused


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass  # best effort: a leftover is removed by the next export


def _writer_alive(rest: str, entry: Path) -> bool:
    """Whether the process that made staging ``entry`` (named ``...tmp-<pid>-<random>``) may still be writing it."""
    match = re.match(r"(\d+)-", rest)
    if match is None:
        return False  # no pid: an older version's staging, long finished
    try:
        if time.time() - entry.lstat().st_mtime > STALE_AFTER_S:
            return False
    except OSError:
        return True  # already gone
    pid = int(match.group(1))
    if pid == os.getpid():
        return True  # this process's own, e.g. a second export from the app while the first runs
    if os.name == "nt":
        return True  # os.kill would end the process there; the age above decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def clean_stale_staging(parent: Path, name: str) -> list[Path]:
    """Remove the ``.<name>.tmp-*`` files and folders in ``parent`` left by an export that was killed."""
    prefix = temp_name_prefix(name)
    try:
        entries = [entry for entry in parent.iterdir() if entry.name.startswith(prefix)]
    except OSError:
        return []
    stale = [entry for entry in entries if not _writer_alive(entry.name[len(prefix):], entry)]
    for entry in stale:
        _remove(entry)
    return stale


def clean_project_staging(project_root: Path) -> list[Path]:
    """Remove the ``staging/export-<pid>-*`` folders of exports that were killed."""
    base = project_root / PROJECT_STAGING
    try:
        entries = [entry for entry in base.iterdir() if entry.name.startswith("export-")]
    except OSError:
        return []
    stale = [entry for entry in entries if not _writer_alive(entry.name[len("export-"):], entry)]
    for entry in stale:
        _remove(entry)
    return stale


def _device(path: Path) -> int | None:
    try:
        return os.stat(path).st_dev
    except OSError:
        return None


class ExportSet:
    """The files of one export, staged and then moved into place together by :meth:`commit`.

    Use as a context manager: leaving it without a commit (an error, Ctrl-C)
    removes every staged file and folder, and the targets keep their old content.
    ``project_root``: stage in the project's ``staging/`` folder where a target shares its file system.
    """

    def __init__(self, project_root: Path | None = None) -> None:
        self._staged: list[Path] = []
        self._moves: list[Callable[[], None]] = []
        self._project_root = project_root
        self._private: Path | None = None
        if project_root is not None:
            clean_project_staging(project_root)

    def __enter__(self) -> ExportSet:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for path in self._staged:
            _remove(path)  # after a commit, only emptied staging folders remain
        if self._private is not None:
            _remove(self._private)

    def _private_area(self, target: Path) -> Path | None:
        """The project's staging folder for this export, when ``target`` can be renamed into from there."""
        if self._project_root is None:
            return None
        if _device(target.parent) is None or _device(target.parent) != _device(self._project_root):
            return None
        if self._private is None:
            base = self._project_root / PROJECT_STAGING
            base.mkdir(exist_ok=True)
            self._private = Path(tempfile.mkdtemp(prefix=f"export-{os.getpid()}-", dir=base))
        return self._private

    def stage_file(self, target: Path, data: bytes) -> None:
        """``data`` staged for ``target``, in a synced, uniquely named file (in the project, or beside it)."""
        clean_stale_staging(target.parent, target.name)
        private = self._private_area(target)
        ensure_free_space(private or target.parent, len(data), reserve_bytes=0)
        if private is None:
            temp = write_temp_beside(target, data)
        else:
            temp = write_temp_beside(Path(tempfile.mkdtemp(dir=private)) / target.name, data)
        self._staged.append(temp)

        def move() -> None:
            os.replace(temp, target)
            fsync_folder(target.parent)

        self._moves.append(move)

    def staging_folder(self, target: Path) -> Path:
        """A new folder to build ``target`` in (in the project, or beside it); the caller adds the move with
        :meth:`on_commit`."""
        clean_stale_staging(target.parent, target.name)
        private = self._private_area(target)
        folder = Path(tempfile.mkdtemp(prefix=f"{temp_name_prefix(target.name)}{os.getpid()}-",
                                       dir=private or target.parent))
        self._staged.append(folder)
        os.chmod(folder, default_mode(folder=True))  # mkdtemp makes it 0700; the export is the user's folder
        return folder

    def on_commit(self, move: Callable[[], None]) -> None:
        self._moves.append(move)

    def commit(self) -> None:
        """Move every staged piece into place, quickly one after the other (all the writing is done by now).

        The pieces move in the reverse order of staging, so the file staged first (the CSV) lands last.
        """
        for move in reversed(self._moves):
            move()
