"""The one entry point to a project: :class:`Project`, opened with :meth:`Project.open` or made with
:meth:`Project.create`.

``Project`` is composed of one part per job, each in its own module of this package:
the database and its transactions (:mod:`~engine.store.database`), the schema and its migrations
(:mod:`~engine.store.schema`), samples and classes (:mod:`~engine.store.samples`), decisions and
their undo (:mod:`~engine.store.decisions`), label state and staleness (:mod:`~engine.store.label_state`),
runs (:mod:`~engine.store.runs`) and detector scores (:mod:`~engine.store.scores`). Opening checks the
file first (:mod:`~engine.store.opening`), then the schema, before anything is written.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.errors import DiskFullError, UserError
from engine.store.database import DB_NAME, database_error
from engine.store.opening import check_db_file, connect, may_write, open_connection
from engine.store.runs import Runs
from engine.store.schema import SchemaMigrations
from engine.store.scores import Scores


class Project(Runs, Scores, SchemaMigrations):
    """One project folder. Open it with :meth:`open`, make one with :meth:`create`.

    ``read_only`` is True when the project was opened for viewing (asked for, or its folder or
    files cannot be written): reads work, every write raises :class:`ReadOnlyError`.
    """

    @classmethod
    def create(cls, root: Path | str) -> Project:
        root = Path(root)
        if (root / DB_NAME).exists():
            raise UserError(f"{root} already holds a project", "choose another folder, or open it instead")
        if root.exists() and any(root.iterdir()):
            raise UserError(f"{root} is not empty", "choose a new or empty folder for the project")
        root.mkdir(parents=True, exist_ok=True)
        conn = connect(root / DB_NAME)
        project = cls(root, conn)
        with _closed_on_failure(conn, root):
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            project._apply_migrations(0)
            project.set_meta("created", time.time())
        return project

    @classmethod
    def open(cls, root: Path | str, read_only: bool = False) -> Project:
        """Open a project; refuses (never writes into) a project.db that is not a Label Auditor project's.

        A project on a read-only disk, or whose files this user may not write, opens read-only
        (``project.read_only``); ``read_only=True`` asks for that.
        """
        root = Path(root)
        db_path = root / DB_NAME
        check_db_file(root, db_path)
        if read_only or not may_write(root, db_path):
            return cls._open_checked(root, db_path, read_only=True)
        try:
            return cls._open_checked(root, db_path, read_only=False)
        except DiskFullError as full:
            # No room even for SQLite's -wal/-shm files: open it for reading; a write says the disk is full.
            return cls._open_checked(root, db_path, read_only=True, write_refusal=full)

    @classmethod
    def _open_checked(cls, root: Path, db_path: Path, *, read_only: bool,
                      write_refusal: UserError | None = None) -> Project:
        conn = open_connection(root, db_path, read_only)
        project = cls(root, conn, read_only=read_only)
        if write_refusal is not None:
            project.write_refusal = write_refusal
        with _closed_on_failure(conn, root):
            project._migrate()
        return project


@contextmanager
def _closed_on_failure(conn: sqlite3.Connection, root: Path) -> Iterator[None]:
    """Close ``conn`` when the block fails (a project half made or not one); a database error says what happened."""
    try:
        yield
    except sqlite3.Error as exc:
        conn.close()
        raise database_error(exc, root) from exc
    except BaseException:
        conn.close()
        raise


def is_project(path: Path | str) -> bool:
    return (Path(path) / DB_NAME).is_file()
