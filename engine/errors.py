"""Errors a person can act on, and the translation of disk and database failures into them."""

from __future__ import annotations

import errno
import math
import os
import shutil
import sqlite3
from pathlib import Path

MB = 1024 * 1024


class UserError(Exception):
    """A problem with the user's input or request: what is wrong, and how to fix it.

    The CLI prints these without a traceback; the engine process sends them as
    an ``error`` event with the hint attached.
    """

    #: The CLI's exit code: 2 for a request to change, 1 for a problem of the machine or the files.
    exit_code = 2

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.hint}" if self.hint else self.message


class Cancelled(Exception):
    """The job was asked to stop (SIGINT/SIGTERM or the GUI's Cancel)."""


class DiskFullError(UserError):
    """The disk holding ``folder`` has no room; ``needed_mb`` says how much to free, when known."""

    exit_code = 1

    def __init__(self, folder: Path | str, needed_bytes: int | None = None) -> None:
        self.folder = Path(folder)
        self.needed_mb = None if needed_bytes is None else max(1, math.ceil(needed_bytes / MB))
        amount = "some space" if self.needed_mb is None else f"{self.needed_mb} MB"
        super().__init__(
            f"the disk is full: free {amount} in {self.folder}, then resume",
            "delete files you no longer need on that disk (or move the project to a larger one), then run the "
            "command again; a cancelled or failed run continues with --resume RUN_ID. Nothing saved before was lost",
        )


class ReadOnlyError(UserError):
    """A folder (a project, an export target) cannot be written."""

    exit_code = 1

    def __init__(self, folder: Path | str, *, is_project: bool = False, reason: str = "") -> None:
        self.folder = Path(folder)
        what = "this project is read-only" if is_project else "this folder is read-only"
        because = f" ({reason})" if reason else ""
        super().__init__(
            f"{what}: {self.folder}{because}",
            "copy it somewhere writable (cp -r) and use the copy; reading it (status, decisions, export) works as it is"
            if is_project else "choose a folder you may write to",
        )


class DamagedProjectError(UserError):
    """The project's files are not what Label Auditor wrote: say what is wrong and what to do."""

    exit_code = 1

    def __init__(self, what: str, hint: str = "") -> None:
        self.what = what
        super().__init__(
            f"this project is damaged: {what}",
            hint or "restore the project folder from a backup, or import the dataset again into a new project "
            "(`python -m engine init`)",
        )


def ensure_free_space(folder: Path, needed_bytes: int, *, reserve_bytes: int = MB) -> None:
    """Raise :class:`DiskFullError` unless the disk holding ``folder`` has ``needed_bytes`` (+ a little) free.

    ``folder`` may not exist yet: the nearest existing parent is measured.
    """
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return  # cannot tell (an odd file system): the write itself will report a full disk
    wanted = needed_bytes + reserve_bytes
    if free < wanted:
        raise DiskFullError(folder, wanted - free)


def _space_shortfall(folder: Path, wanted: int = MB) -> int:
    """How many bytes short of ``wanted`` the disk holding ``folder`` is (0 when it has room or cannot tell)."""
    try:
        return max(0, wanted - shutil.disk_usage(folder).free)
    except OSError:
        return 0


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def user_error_from_oserror(exc: OSError, path: Path | str) -> UserError | None:
    """The clear message for a disk or permission failure writing under ``path``; None for anything else.

    ``path`` is the folder the command was writing to; the failing file, when the error names one,
    is reported in its place.
    """
    where = Path(exc.filename) if isinstance(exc.filename, str) and exc.filename else Path(path)
    folder = where if where.is_dir() else where.parent
    if is_disk_full(exc):
        return DiskFullError(folder)
    if exc.errno == errno.EFBIG:
        return UserError(
            f"a file in {folder} grew past the largest file this process may write (the file-size limit)",
            "raise the limit (`ulimit -f unlimited`) or write to another disk, then run the command again",
        )
    if exc.errno == errno.EROFS or (exc.errno in (errno.EACCES, errno.EPERM) and not os.access(folder, os.W_OK)):
        return ReadOnlyError(folder, is_project=(folder / "project.db").exists(), reason=exc.strerror or "")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return UserError(f"permission denied: {where}", "give your user access to it (or use a copy), then try again")
    return None


# SQLite's primary result codes (the low byte of an extended code).
_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 8, 10, 11, 13, 14, 26
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


def user_error_from_database_error(exc: sqlite3.Error, root: Path | str, *,
                                   environment_only: bool = False) -> UserError | None:
    """What a failure of the project database means for the person using project ``root``.

    A full or read-only disk, a locked or unreadable file: a clear message. Any other database error
    means the file is not what Label Auditor wrote (damaged), except for misuse of the API
    (``ProgrammingError``, ``InterfaceError``), which is a bug: None. With ``environment_only``
    only the disk/lock/corruption cases are translated (a constraint failure inside a write is
    left alone: it is more likely a bug than damage).
    """
    root = Path(root)
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    text = str(exc)
    if code == _SQLITE_FULL or "disk is full" in text:
        return DiskFullError(root)
    if code == _SQLITE_READONLY or "readonly database" in text:
        return ReadOnlyError(root, is_project=True)
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED) or "database is locked" in text:
        return UserError(f"the project {root} is busy: another program holds a write lock on it for too long",
                         "wait for the other command (or the app) to finish, then try again")
    shortfall = _space_shortfall(root)
    if shortfall and code in (_SQLITE_IOERR, _SQLITE_CANTOPEN):
        return DiskFullError(root, shortfall)  # SQLite could not make its -wal/-shm files: no room left
    if code == _SQLITE_IOERR or "disk I/O error" in text:
        return UserError(f"could not read or write the project database in {root} ({text})",
                         "check that the disk has free space and is still attached, then try again; "
                         "nothing saved before was lost")
    if code == _SQLITE_CANTOPEN:
        return UserError(f"cannot open the project database in {root} ({text})",
                         "check that the folder exists and that you may read and write it")
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or "malformed" in text or "not a database" in text:
        return DamagedProjectError(f"{root / 'project.db'} cannot be read ({text})")
    if environment_only or isinstance(exc, (sqlite3.ProgrammingError, sqlite3.InterfaceError)):
        return None
    if isinstance(exc, sqlite3.DatabaseError):
        return DamagedProjectError(f"{root / 'project.db'} is not as Label Auditor wrote it ({text})")
    return None


def user_error_from_exception(exc: BaseException, path: Path | str) -> UserError | None:
    """A :class:`UserError` as it is, or the clear message for a disk/database failure under ``path``; else None."""
    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, sqlite3.Error):
        return user_error_from_database_error(exc, path)
    if isinstance(exc, OSError):
        return user_error_from_oserror(exc, path)
    return None
