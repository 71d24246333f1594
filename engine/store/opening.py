"""Opening a project's database file safely, before anything is known about what it holds.

The file is checked before SQLite touches it (missing, empty, not SQLite: each says so and is
left as it is); a connection writes nothing until the schema check
(:mod:`engine.store.schema`) knows the file is a project's; a read-only or full disk still
opens for reading where the database file alone is the whole project.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from engine.errors import DamagedProjectError, UserError, user_error_from_oserror
from engine.store.database import DB_NAME, database_error

_SQLITE_HEADER = b"SQLite format 3\x00"


def connect(db_path: Path, *, read_only: bool = False, immutable: bool = False) -> sqlite3.Connection:
    """A connection with nothing written yet: the journal mode is set by the schema check
    (:meth:`engine.store.schema.SchemaMigrations._migrate`), once the file is known to be a project
    (never before: that would write into a stranger's file).

    ``read_only`` opens with SQLite's ``mode=ro``; ``immutable`` (when even the ``-shm`` file cannot
    be made, on a read-only disk) also skips locking and the write-ahead log.
    """
    if read_only:
        flag = "immutable=1" if immutable else "mode=ro"
        conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?{flag}", uri=True, timeout=30.0,
                               isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA query_only=ON")
    else:
        conn = sqlite3.connect(db_path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def check_db_file(root: Path, db_path: Path) -> None:
    """Refuse, before SQLite touches it, a project.db that is missing, empty or not an SQLite file."""
    if not os.path.lexists(db_path):
        if (root / "runs").is_dir() or (root / "cache").is_dir():
            raise DamagedProjectError(f"{db_path} is missing (the project's runs/ or cache/ folder is still there)",
                                      f"restore {DB_NAME} from a backup, or import the dataset again into a new project")
        raise UserError(
            f"{root} is not a Label Auditor project (no {DB_NAME})",
            "make one with `python -m engine init` or `python -m engine demo`",
        )
    if db_path.is_symlink() and not db_path.exists():
        raise DamagedProjectError(f"{db_path} is a link to {os.readlink(db_path)}, which does not exist",
                                  "restore the file it points to, or replace the link with the database itself")
    if not db_path.is_file():
        raise DamagedProjectError(f"{db_path} is not a file", f"restore {DB_NAME} from a backup")
    try:
        with open(db_path, "rb") as handle:
            header = handle.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise user_error_from_oserror(exc, db_path) or exc from None
    if not header:
        raise DamagedProjectError(f"{db_path} is empty (0 bytes); it was left as it is",
                                  "restore it from a backup, or import the dataset again into a new project")
    if header != _SQLITE_HEADER:
        raise DamagedProjectError(f"{db_path} is not an SQLite database (its first bytes are not SQLite's)",
                                  "restore it from a backup, or import the dataset again into a new project")


def may_write(root: Path, db_path: Path) -> bool:
    """Whether this process may write the project: its folder, the database and any -wal/-shm beside it."""
    files = [db_path] + [db_path.with_name(db_path.name + tail) for tail in ("-wal", "-shm")]
    return os.access(root, os.W_OK) and all(os.access(f, os.W_OK) for f in files if f.exists())


def open_connection(root: Path, db_path: Path, read_only: bool) -> sqlite3.Connection:
    """A connection that has read the database header; read-only: ``mode=ro``, then ``immutable``."""
    attempts = [False, True] if read_only else [False]
    for immutable in attempts:
        conn = None
        try:
            conn = connect(db_path, read_only=read_only, immutable=immutable)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads the header now
            return conn
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            cannot_open = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF in (10, 14)  # IOERR, CANTOPEN
            wal = db_path.with_name(db_path.name + "-wal")
            wal_empty = not wal.exists() or wal.stat().st_size == 0
            if not (read_only and cannot_open and wal_empty and not immutable):
                raise database_error(exc, root) from exc
            # mode=ro needs a working -shm file; where it cannot be made (a read-only or full disk)
            # and no write-ahead log holds changes, the database file alone is the whole project.
    raise AssertionError("unreachable")  # pragma: no cover
