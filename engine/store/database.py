"""An open project database: its SQLite connection, transactions, JSON values and the meta table.

Every part of :class:`engine.store.Project` builds on :class:`Database`. Every write is one
transaction in WAL mode with ``synchronous=FULL``: once a call returns, the change survives a
crash or a kill; a full or read-only disk becomes a :class:`UserError` saying so.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Self

from engine.errors import DamagedProjectError, ReadOnlyError, UserError, user_error_from_database_error

DB_NAME = "project.db"


def database_error(exc: sqlite3.Error, root: Path, *, environment_only: bool = False) -> BaseException:
    """The person-facing error for a database failure, or ``exc`` itself when it looks like a bug."""
    return user_error_from_database_error(exc, root, environment_only=environment_only) or exc


class Database:
    """One project folder's database connection: transactions, JSON values, the meta table, the folders.

    ``read_only`` is True when the project was opened for viewing (asked for, or its folder or
    files cannot be written): reads work, every write raises :attr:`write_refusal`.
    """

    def __init__(self, root: Path, conn: sqlite3.Connection, read_only: bool = False) -> None:
        self.root = root
        self._conn = conn
        self.read_only = read_only
        # Why a write is refused when ``read_only``: the folder cannot be written, or the disk is full.
        self.write_refusal: UserError = ReadOnlyError(root, is_project=True)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic, durable write: committed on leaving, rolled back on an exception.

        A full or read-only disk (or a damaged file) becomes a :class:`UserError` saying so;
        what was committed before is untouched.
        """
        if self.read_only:
            raise self.write_refusal
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise database_error(exc, self.root, environment_only=True) from exc
        try:
            yield self._conn
        except BaseException as exc:
            self._rollback()
            if isinstance(exc, sqlite3.Error):
                raise database_error(exc, self.root, environment_only=True) from exc
            raise
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise database_error(exc, self.root, environment_only=True) from exc

    def _rollback(self) -> None:
        # SQLite may have rolled back already (a full disk does that): then there is nothing to undo.
        if self._conn.in_transaction:
            with suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Read-only queries for views (the GUI's models page through samples with SQL)."""
        return self._conn.execute(sql, params).fetchall()

    # ------------------------------------------------------------- folders
    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    # ---------------------------------------------------------------- meta
    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return self.load_json(row[0], f"the setting {key!r} in its meta table") if row else default

    def load_json(self, text: str, what: str) -> Any:
        """``text`` read from the database as JSON; a value that is not JSON means the project is damaged."""
        try:
            return json.loads(text)
        except (json.JSONDecodeError, TypeError) as exc:
            raise DamagedProjectError(f"{what} ({self.root / DB_NAME}) is not valid JSON ({exc})") from None
