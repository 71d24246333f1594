"""The project store: a folder with an SQLite database and run folders.

Layout of a project folder::

    project.db        samples, classes, noise, runs, scores, decisions + history
    cache/            decoded images at training resolution (memory-mapped .npy)
    runs/<run_id>/    spec.json, events.jsonl, arrays (.npy), checkpoints, model
    openset/          replacement images written by open-set noise synthesis

Sample ids are 0..N-1 and double as row numbers of every per-sample array.
Every write is one transaction in WAL mode with ``synchronous=FULL``: once a
call returns, the change survives a crash or a kill.

Imports only the standard library and numpy, so the GUI can use it directly.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from engine.errors import (
    DamagedProjectError,
    DiskFullError,
    ReadOnlyError,
    UserError,
    user_error_from_database_error,
    user_error_from_oserror,
)

DB_NAME = "project.db"
Action = Literal["relabel", "remove", "keep"]
ACTIONS: tuple[str, ...] = ("relabel", "remove", "keep")
OUTSIDE_LABEL_SET = -1  # true_label of an open-set sample: its class is none of ours
# How a decision was made. Only a person's look at one sample is evidence that its label is clean
# (engine.workflows.trusted): a bulk action decides samples nobody looked at, and the engine's own are guesses.
PERSON, BULK, AUTOMATIC = "person", "bulk", "automatic"
PROVENANCES: tuple[str, ...] = (PERSON, BULK, AUTOMATIC)

_MIGRATIONS: list[str] = [
    # version 1
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE classes (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE samples (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        split TEXT NOT NULL CHECK (split IN ('train', 'test')),
        given_label INTEGER NOT NULL REFERENCES classes(id),
        label INTEGER NOT NULL REFERENCES classes(id),
        true_label INTEGER,
        source_row INTEGER,
        width INTEGER,
        height INTEGER,
        extra TEXT,
        image_override TEXT
    );
    CREATE INDEX samples_label ON samples(label);
    CREATE TABLE noise (
        id INTEGER PRIMARY KEY,
        mode TEXT NOT NULL,
        rate REAL NOT NULL,
        seed INTEGER NOT NULL,
        params TEXT NOT NULL,
        changed INTEGER NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        created REAL NOT NULL,
        finished REAL,
        spec TEXT NOT NULL,
        summary TEXT
    );
    CREATE TABLE scores (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        detector TEXT NOT NULL,
        sample_id INTEGER NOT NULL REFERENCES samples(id),
        score REAL NOT NULL,
        suggested_label INTEGER,
        flagged INTEGER NOT NULL,
        rank INTEGER NOT NULL,
        PRIMARY KEY (run_id, detector, sample_id)
    );
    CREATE INDEX scores_rank ON scores(run_id, detector, rank);
    CREATE TABLE decisions (
        sample_id INTEGER PRIMARY KEY REFERENCES samples(id),
        action TEXT NOT NULL CHECK (action IN ('relabel', 'remove', 'keep')),
        new_label INTEGER REFERENCES classes(id),
        history_id INTEGER NOT NULL
    );
    CREATE TABLE decision_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        sample_id INTEGER NOT NULL REFERENCES samples(id),
        action TEXT NOT NULL,
        new_label INTEGER,
        prev_action TEXT,
        prev_label INTEGER,
        created REAL NOT NULL,
        state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'undone', 'dropped'))
    );
    CREATE INDEX decision_history_state ON decision_history(state, id);
    """,
    # version 2: decisions made together (a bulk action) share a batch number and undo as one step
    """
    ALTER TABLE decision_history ADD COLUMN batch INTEGER
    """,
    # version 3: how each decision was made (see PROVENANCES), and the one an undo restores. Before,
    # only bulk actions had a batch number; every other decision was a person's, one sample at a time.
    """
    ALTER TABLE decision_history ADD COLUMN provenance TEXT NOT NULL DEFAULT 'person'
        CHECK (provenance IN ('person', 'bulk', 'automatic'));
    ALTER TABLE decision_history ADD COLUMN prev_provenance TEXT;
    ALTER TABLE decisions ADD COLUMN provenance TEXT NOT NULL DEFAULT 'person'
        CHECK (provenance IN ('person', 'bulk', 'automatic'));
    UPDATE decision_history SET provenance = 'bulk' WHERE batch IS NOT NULL;
    UPDATE decision_history SET prev_provenance = (
        SELECT earlier.provenance FROM decision_history AS earlier
        WHERE earlier.sample_id = decision_history.sample_id AND earlier.id < decision_history.id
            AND earlier.state != 'dropped' ORDER BY earlier.id DESC LIMIT 1)
        WHERE prev_action IS NOT NULL;
    UPDATE decisions SET provenance = COALESCE((
        SELECT CASE WHEN made.state = 'undone' THEN made.prev_provenance ELSE made.provenance END
        FROM decision_history AS made WHERE made.id = decisions.history_id), 'person')
    """,
]
SCHEMA_VERSION = len(_MIGRATIONS)


@dataclass(frozen=True)
class Decision:
    sample_id: int
    action: str
    new_label: int | None
    provenance: str | None = None  # one of PROVENANCES; None for an "unreviewed" state after an undo


@dataclass(frozen=True)
class RunInfo:
    id: str
    kind: str
    status: str
    created: float
    finished: float | None
    spec: dict[str, Any]
    summary: dict[str, Any]
    folder: Path


@dataclass(frozen=True)
class SampleTable:
    """Every sample as parallel arrays, indexed by sample id."""

    paths: list[str]
    split: np.ndarray  # (N,) str: 'train' | 'test'
    given_label: np.ndarray  # (N,) int64
    label: np.ndarray  # (N,) int64, the observed (possibly noisy) label
    true_label: np.ndarray  # (N,) int64, -2 where unknown, -1 outside the label set
    image_override: list[str | None]

    @property
    def train_ids(self) -> np.ndarray:
        return np.flatnonzero(self.split == "train")

    @property
    def test_ids(self) -> np.ndarray:
        return np.flatnonzero(self.split == "test")

    @property
    def truth_known(self) -> bool:
        return bool((self.true_label != UNKNOWN_TRUTH).all())


UNKNOWN_TRUTH = -2
# Run kinds whose results depend on the decisions too (not only on the labels): see Project.stale_reason.
# They train on the decisions: an audit on the labels with the relabels applied and the removed left out.
DECISION_DEPENDENT_KINDS = frozenset({"audit", "retrain", "compare", "tune"})


def this_process() -> dict[str, Any]:
    """Who runs a run: pid, host and a start marker that tells this process from a later one with the same pid."""
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "started": _process_start_marker(pid)}


def _process_start_marker(pid: int) -> str | None:
    """Linux: the process's start time in clock ticks since boot (field 22 of /proc/PID/stat); else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: the other fields follow the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def process_alive(process: Any) -> bool | None:
    """Whether the process a run recorded (see :func:`this_process`) still runs.

    None when this machine cannot tell: no record (an older run), or another host.
    """
    if not isinstance(process, dict) or process.get("host") != socket.gethostname():
        return None
    pid = process.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return None
    if Path("/proc/self/stat").is_file():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        if stat[stat.rindex(")") + 2:].startswith("Z"):
            return False  # a zombie: dead, only not yet reaped by its parent
        recorded = process.get("started")
        return recorded is None or recorded == _process_start_marker(pid)  # else the pid was reused
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return kernel32.GetLastError() == 5  # access denied: it exists
        try:
            code = ctypes.c_ulong()
            kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_SQLITE_HEADER = b"SQLite format 3\x00"


def _connect(db_path: Path, *, read_only: bool = False, immutable: bool = False) -> sqlite3.Connection:
    """A connection with nothing written yet: the journal mode is set by :meth:`Project._migrate`,
    once the file is known to be a project (never before: that would write into a stranger's file).

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


def _database_error(exc: sqlite3.Error, root: Path, *, environment_only: bool = False) -> BaseException:
    """The person-facing error for a database failure, or ``exc`` itself when it looks like a bug."""
    return user_error_from_database_error(exc, root, environment_only=environment_only) or exc


def _check_db_file(root: Path, db_path: Path) -> None:
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


def _may_write(root: Path, db_path: Path) -> bool:
    """Whether this process may write the project: its folder, the database and any -wal/-shm beside it."""
    files = [db_path] + [db_path.with_name(db_path.name + tail) for tail in ("-wal", "-shm")]
    return os.access(root, os.W_OK) and all(os.access(f, os.W_OK) for f in files if f.exists())


@cache
def _schema_objects(version: int) -> dict[str, str]:
    """name -> CREATE statement of every table and index of schema ``version``, as SQLite records them."""
    conn = sqlite3.connect(":memory:")
    try:
        for number in range(version):
            for statement in _MIGRATIONS[number].split(";"):  # exactly as _apply_migrations runs them
                if statement.strip():
                    conn.execute(statement)
        return {name: sql for name, sql in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' AND sql IS NOT NULL")}
    finally:
        conn.close()


class Project:
    """One project folder. Open it with :meth:`open`, make one with :meth:`create`.

    ``read_only`` is True when the project was opened for viewing (asked for, or its folder or
    files cannot be written): reads work, every write raises :class:`ReadOnlyError`.
    """

    def __init__(self, root: Path, conn: sqlite3.Connection, read_only: bool = False) -> None:
        self.root = root
        self._conn = conn
        self.read_only = read_only
        # Why a write is refused when ``read_only``: the folder cannot be written, or the disk is full.
        self.write_refusal: UserError = ReadOnlyError(root, is_project=True)

    # ----------------------------------------------------------- open/create
    @classmethod
    def create(cls, root: Path | str) -> Project:
        root = Path(root)
        if (root / DB_NAME).exists():
            raise UserError(f"{root} already holds a project", "choose another folder, or open it instead")
        if root.exists() and any(root.iterdir()):
            raise UserError(f"{root} is not empty", "choose a new or empty folder for the project")
        root.mkdir(parents=True, exist_ok=True)
        conn = _connect(root / DB_NAME)
        project = cls(root, conn)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            project._apply_migrations(0)
            project.set_meta("created", time.time())
        except sqlite3.Error as exc:
            conn.close()
            raise _database_error(exc, root) from exc
        except BaseException:
            conn.close()
            raise
        return project

    @classmethod
    def open(cls, root: Path | str, read_only: bool = False) -> Project:
        """Open a project; refuses (never writes into) a project.db that is not a Label Auditor project's.

        A project on a read-only disk, or whose files this user may not write, opens read-only
        (``project.read_only``); ``read_only=True`` asks for that.
        """
        root = Path(root)
        db_path = root / DB_NAME
        _check_db_file(root, db_path)
        if read_only or not _may_write(root, db_path):
            return cls._open_checked(root, db_path, read_only=True)
        try:
            return cls._open_checked(root, db_path, read_only=False)
        except DiskFullError as full:
            # No room even for SQLite's -wal/-shm files: open it for reading; a write says the disk is full.
            return cls._open_checked(root, db_path, read_only=True, write_refusal=full)

    @classmethod
    def _open_checked(cls, root: Path, db_path: Path, *, read_only: bool,
                      write_refusal: UserError | None = None) -> Project:
        conn = cls._open_connection(root, db_path, read_only)
        project = cls(root, conn, read_only=read_only)
        if write_refusal is not None:
            project.write_refusal = write_refusal
        try:
            project._migrate()
        except sqlite3.Error as exc:
            conn.close()
            raise _database_error(exc, root) from exc
        except BaseException:
            conn.close()
            raise
        return project

    @staticmethod
    def _open_connection(root: Path, db_path: Path, read_only: bool) -> sqlite3.Connection:
        attempts = [False, True] if read_only else [False]  # read-only: mode=ro, then immutable
        for immutable in attempts:
            conn = None
            try:
                conn = _connect(db_path, read_only=read_only, immutable=immutable)
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads the header now
                return conn
            except sqlite3.Error as exc:
                if conn is not None:
                    conn.close()
                cannot_open = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF in (10, 14)  # IOERR, CANTOPEN
                wal = db_path.with_name(db_path.name + "-wal")
                wal_empty = not wal.exists() or wal.stat().st_size == 0
                if not (read_only and cannot_open and wal_empty and not immutable):
                    raise _database_error(exc, root) from exc
                # mode=ro needs a working -shm file; where it cannot be made (a read-only or full disk)
                # and no write-ahead log holds changes, the database file alone is the whole project.
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        """Check that the database is a project's, then bring its schema up to date.

        Only a database whose tables are a Label Auditor schema is ever written to: one stamped
        with a schema version whose tables are all there, or (``user_version`` lost) one whose
        tables match a known schema exactly, whose stamp is then restored.
        """
        db_path = self.root / DB_NAME
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise UserError(
                f"{self.root} was written by a newer Label Auditor (schema {version}, this build knows {SCHEMA_VERSION})",
                "update Label Auditor to open it",
            )
        present = {name: sql for name, sql in self._conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' AND sql IS NOT NULL")}
        if version == 0:
            if not present:
                raise DamagedProjectError(f"{db_path} is an empty database, not a Label Auditor project's; "
                                          "it was left as it is")
            matching = [number for number in range(SCHEMA_VERSION, 0, -1) if _schema_objects(number) == present]
            if not matching:
                raise DamagedProjectError(
                    f"{db_path} holds tables that are not a Label Auditor project's (and no schema version); "
                    "it was left as it is")
            version = matching[0]
            if not self.read_only:  # our own tables with the version stamp lost: restore the stamp
                self._conn.execute(f"PRAGMA user_version={version}")
        else:
            missing = sorted(set(_schema_objects(version)) - set(present))
            if missing:
                raise DamagedProjectError(f"{db_path} lacks its {', '.join(missing)} table(s) or index(es)")
        if version < SCHEMA_VERSION and self.read_only:
            if isinstance(self.write_refusal, DiskFullError):
                raise self.write_refusal
            raise ReadOnlyError(self.root, is_project=True,
                                reason=f"it was made by an older Label Auditor and needs an upgrade (schema {version})")
        if not self.read_only:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
        self._apply_migrations(version)
        self._check_classes()

    def _check_classes(self) -> None:
        # Class ids index every per-class array and name list: they must be 0..C-1, and every
        # sample's label one of them. Two aggregate queries, cheap even for large projects.
        count, low, high = self._conn.execute("SELECT COUNT(*), MIN(id), MAX(id) FROM classes").fetchone()
        if count and (low != 0 or high != count - 1):
            raise DamagedProjectError(f"the class ids in {self.root / DB_NAME} are not 0 to {count - 1}")
        low, high = self._conn.execute(
            "SELECT MIN(MIN(label, given_label)), MAX(MAX(label, given_label)) FROM samples").fetchone()
        if high is not None and (low < 0 or high >= count):
            raise DamagedProjectError(
                f"its samples are labelled with classes the project does not have (class ids up to {high}, "
                f"but {self.root / DB_NAME} lists {count} classes)")

    def _apply_migrations(self, version: int) -> None:
        for number in range(version, SCHEMA_VERSION):
            with self.transaction() as conn:
                for statement in _MIGRATIONS[number].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={number + 1}")

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
            raise _database_error(exc, self.root, environment_only=True) from exc
        try:
            yield self._conn
        except BaseException as exc:
            self._rollback()
            if isinstance(exc, sqlite3.Error):
                raise _database_error(exc, self.root, environment_only=True) from exc
            raise
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise _database_error(exc, self.root, environment_only=True) from exc

    def _rollback(self) -> None:
        # SQLite may have rolled back already (a full disk does that): then there is nothing to undo.
        if self._conn.in_transaction:
            with suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

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

    @property
    def source(self) -> dict[str, Any]:
        """How the dataset was imported: kind, image_root, csv path and column names."""
        source = self.meta("source", {})
        if not isinstance(source, dict):
            raise DamagedProjectError(f"the record of the imported dataset (meta 'source' in {self.root / DB_NAME}) "
                                      "is not a mapping")
        return dict(source)

    @property
    def image_root(self) -> Path:
        """Where sample paths are relative to; a relative root lies inside the project (the demo), so it moves with it."""
        image_root = self.source.get("image_root")
        if not isinstance(image_root, str):
            raise DamagedProjectError(
                f"{self.root / DB_NAME} does not record where the project's images are (meta 'source' has no image_root)",
                "import the dataset again into a new project (`python -m engine init`)")
        root = Path(image_root)
        return root if root.is_absolute() else self.root / root

    # ------------------------------------------------------ classes/samples
    def add_classes(self, names: Sequence[str]) -> None:
        with self.transaction() as conn:
            conn.executemany("INSERT INTO classes(id, name) VALUES (?, ?)", list(enumerate(names)))

    def class_names(self) -> list[str]:
        return [row[0] for row in self._conn.execute("SELECT name FROM classes ORDER BY id")]

    @property
    def num_classes(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM classes").fetchone()[0])

    def add_samples(self, rows: Iterable[dict[str, Any]]) -> None:
        """Rows carry path, split, label, and optionally true_label, source_row, width, height, extra."""
        records = [
            (
                index,
                row["path"],
                row["split"],
                row["label"],
                row["label"],
                row.get("true_label"),
                row.get("source_row"),
                row.get("width"),
                row.get("height"),
                json.dumps(row["extra"], ensure_ascii=False) if row.get("extra") else None,
            )
            for index, row in enumerate(rows)
        ]
        with self.transaction() as conn:
            conn.executemany(
                "INSERT INTO samples(id, path, split, given_label, label, true_label, source_row, width, height, extra)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                records,
            )

    @property
    def num_samples(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0])

    def sample_table(self) -> SampleTable:
        rows = self._conn.execute(
            "SELECT path, split, given_label, label, true_label, image_override FROM samples ORDER BY id"
        ).fetchall()
        return SampleTable(
            paths=[row[0] for row in rows],
            split=np.array([row[1] for row in rows], dtype=object),
            given_label=np.array([row[2] for row in rows], dtype=np.int64),
            label=np.array([row[3] for row in rows], dtype=np.int64),
            true_label=np.array([UNKNOWN_TRUTH if row[4] is None else row[4] for row in rows], dtype=np.int64),
            image_override=[row[5] for row in rows],
        )

    def sample_extras(self) -> list[dict[str, Any]]:
        return [json.loads(row[0]) if row[0] else {} for row in self._conn.execute("SELECT extra FROM samples ORDER BY id")]

    def sample_image_path(self, sample_id: int) -> Path:
        row = self._conn.execute("SELECT path, image_override FROM samples WHERE id = ?", (sample_id,)).fetchone()
        if row is None:
            raise UserError(f"no sample with id {sample_id}", f"ids run from 0 to {self.num_samples - 1}")
        return self.root / row[1] if row[1] else self.image_root / row[0]

    def resolve_sample(self, ref: str | int) -> int:
        """A sample named by its integer id or by its path as written in the dataset."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            sample_id = int(ref)
            if 0 <= sample_id < self.num_samples:
                return sample_id
            if isinstance(ref, int):
                raise UserError(f"no sample with id {sample_id}", f"ids run from 0 to {self.num_samples - 1}")
        path = str(ref).replace("\\", "/")
        row = self._conn.execute("SELECT id FROM samples WHERE path = ?", (path,)).fetchone()
        if row is None:
            raise UserError(
                f"no sample {ref!r} in this project",
                f"name a sample by its id (0 to {self.num_samples - 1}) or its path relative to the image root, "
                "as `python -m engine export` writes it",
            )
        return int(row[0])

    def resolve_class(self, ref: str | int) -> int:
        """THE resolver of a class a person typed (CLI ``--relabel``, the app's digit keys and picker).

        A string equal to a class name is that class; otherwise a bare integer (ASCII digits)
        is the class index. Classes are numbered in natural order at import, so classes named
        ``0``..``N-1`` have id == name and both readings agree. An ``int`` is an index.
        """
        from engine.data.classes import bare_index

        names = self.class_names()
        if isinstance(ref, str):
            for text in (ref, ref.strip()):
                if text in names:
                    return names.index(text)
            index = bare_index(ref.strip())
        else:
            index = int(ref)
        if index is not None and 0 <= index < len(names):
            return index
        shown = ", ".join(names[:30]) + (f" and {len(names) - 30} more" if len(names) > 30 else "")
        why = f"no class is named {ref!r}" + (f" and there is no class number {index}" if index is not None else "")
        raise UserError(f"unknown class {ref!r}: {why}",
                        f"use one of: {shown} (or its number 0-{len(names) - 1})")

    def set_labels(self, labels: np.ndarray, true_labels: np.ndarray, overrides: dict[int, str] | None = None) -> None:
        """Replace the observed and true labels of every sample (used by noise synthesis)."""
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE samples SET label = ?, true_label = ? WHERE id = ?",
                [(int(lab), None if truth == UNKNOWN_TRUTH else int(truth), index)
                 for index, (lab, truth) in enumerate(zip(labels, true_labels))],
            )
            if overrides is not None:
                conn.execute("UPDATE samples SET image_override = NULL")
                conn.executemany("UPDATE samples SET image_override = ? WHERE id = ?",
                                 [(path, index) for index, path in overrides.items()])

    # --------------------------------------------------------------- noise
    def record_noise(self, mode: str, rate: float, seed: int, params: dict[str, Any], changed: int) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO noise(mode, rate, seed, params, changed, created) VALUES (?, ?, ?, ?, ?, ?)",
                (mode, rate, seed, json.dumps(params), changed, time.time()),
            )

    def noise_history(self) -> list[dict[str, Any]]:
        rows = self._conn.execute("SELECT mode, rate, seed, params, changed, created FROM noise ORDER BY id").fetchall()
        return [
            {"mode": m, "rate": r, "seed": s, "params": json.loads(p), "changed": c, "created": t}
            for m, r, s, p, c, t in rows
        ]

    # ---------------------------------------------------------------- runs
    def new_run(self, kind: str, spec: dict[str, Any]) -> RunInfo:
        """Make a run: its row first (so no reader adopts a half-made folder as a foreign run), then its folder.

        The recorded spec gains ``fingerprint`` (the labels and decisions the run sees at
        its start, see :meth:`stale_reason`) and ``process`` (who runs it, see :meth:`runs`).
        """
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + kind + "-" + uuid.uuid4().hex[:6]
        folder = self.runs_dir / run_id
        recorded = {**spec, "fingerprint": self.fingerprint(), "process": this_process()}
        created = time.time()
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO runs(id, kind, status, created, spec) VALUES (?, ?, 'running', ?, ?)",
                (run_id, kind, created, json.dumps(recorded)),
            )
        try:
            folder.mkdir(parents=True)
            atomic_write_bytes(folder / "spec.json", json.dumps({"kind": kind, **recorded}, indent=2).encode())
        except BaseException:
            # No folder, no run: a row without its folder would be a run nobody can open or resume.
            shutil.rmtree(folder, ignore_errors=True)
            with self.transaction() as conn:
                conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            raise
        return RunInfo(run_id, kind, "running", created, None, recorded, {}, folder)

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any] | None = None) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE runs SET status = ?, finished = ?, summary = ? WHERE id = ?",
                (status, time.time(), json.dumps(summary or {}), run_id),
            )

    def set_run_status(self, run_id: str, status: str) -> None:
        """Set a run's status; "running" also records this process as the one running it."""
        with self.transaction() as conn:
            if status == "running":
                row = conn.execute("SELECT spec FROM runs WHERE id = ?", (run_id,)).fetchone()
                spec = {**(json.loads(row[0]) if row else {}), "process": this_process()}
                conn.execute("UPDATE runs SET status = ?, finished = NULL, spec = ? WHERE id = ?",
                             (status, json.dumps(spec), run_id))
            else:
                conn.execute("UPDATE runs SET status = ?, finished = NULL WHERE id = ?", (status, run_id))

    def claim_run_for_resume(self, run_id: str) -> RunInfo:
        """Mark a run "running" in this process, refusing one that is finished or still running elsewhere.

        The check and the claim are one transaction, so two engines resuming the same run
        at once cannot both win.
        """
        with self.transaction() as conn:
            row = conn.execute("SELECT id, kind, status, created, finished, spec, summary FROM runs WHERE id = ?",
                               (run_id,)).fetchone()
            if row is None:
                raise UserError(f"no run {run_id!r} in this project", "see `python -m engine status PROJECT`")
            run = self._run_info(row)
            if run.status == "ok":
                raise UserError(f"run {run.id} already finished", "start a new run instead of --resume")
            process = run.spec.get("process")
            if run.status == "running" and process_alive(process) is True:
                assert isinstance(process, dict)
                raise UserError(
                    f"run {run.id} is still running (process {process.get('pid')} on {process.get('host')})",
                    "wait for it to finish, or stop it first (Cancel in the app, Ctrl+C or `kill` its process), "
                    "then resume",
                )
            spec = {**run.spec, "process": this_process()}
            conn.execute("UPDATE runs SET status = 'running', finished = NULL, spec = ? WHERE id = ?",
                         (json.dumps(spec), run.id))
        return RunInfo(run.id, run.kind, "running", run.created, None, spec, run.summary, run.folder)

    def runs(self, kind: str | None = None) -> list[RunInfo]:
        """Every run, oldest first. Runs copied in from elsewhere are registered on sight.

        A run still marked "running" whose process has ended (killed, crashed, the machine
        restarted) is reported, and recorded, as "interrupted": it can be resumed.
        """
        self._register_foreign_runs()
        query = "SELECT id, kind, status, created, finished, spec, summary FROM runs"
        params: tuple[Any, ...] = ()
        if kind:
            query += " WHERE kind = ?"
            params = (kind,)
        rows = self._conn.execute(query + " ORDER BY created, id", params).fetchall()
        return [self._interrupted_if_dead(self._run_info(row), row[5]) for row in rows]

    def run(self, run_id: str | None = None, kind: str | None = None) -> RunInfo:
        """One run by id, or the latest finished run (of a kind) when no id is given."""
        runs = self.runs(kind)
        if run_id is None:
            finished = [run for run in runs if run.status == "ok"]
            if not finished:
                what = f"{kind} run" if kind else "run"
                raise UserError(f"this project has no finished {what}", "run `python -m engine audit PROJECT` first")
            return finished[-1]
        for run in runs:
            if run.id == run_id:
                return run
        raise UserError(f"no run {run_id!r} in this project",
                        f"known runs: {', '.join(run.id for run in runs) or 'none'}")

    def _run_info(self, row: Sequence[Any]) -> RunInfo:
        run_id, kind, status, created, finished, spec, summary = row
        return RunInfo(run_id, kind, status, created, finished, self.load_json(spec, f"the spec of run {run_id}"),
                       self.load_json(summary, f"the summary of run {run_id}") if summary else {},
                       self.runs_dir / run_id)

    def _interrupted_if_dead(self, run: RunInfo, spec_text: str) -> RunInfo:
        if run.status != "running":
            return run
        process = run.spec.get("process")
        if process_alive(process) is not False:
            return run  # alive, or on another machine (or an older run): we cannot tell, so we do not guess
        assert isinstance(process, dict)
        summary = {"reason": f"the engine process {process.get('pid')} on {process.get('host')} ended "
                             "before the run finished (killed, crashed or shut down)"}
        if not getattr(self, "read_only", False):
            try:
                with self.transaction() as conn:
                    # Only the row as read: a resume that claimed it meanwhile keeps it.
                    conn.execute("UPDATE runs SET status = 'interrupted', summary = ? WHERE id = ? "
                                 "AND status = 'running' AND spec = ?", (json.dumps(summary), run.id, spec_text))
            except (sqlite3.OperationalError, UserError):
                pass  # a read-only, full or locked store: report it as interrupted all the same
        return RunInfo(run.id, run.kind, "interrupted", run.created, run.finished, run.spec, summary, run.folder)

    def _register_foreign_runs(self) -> None:
        # A run folder made on another machine and copied in has spec.json and
        # events.jsonl but no row: adopt it so it can be opened like any other.
        if not self.runs_dir.is_dir() or getattr(self, "read_only", False):
            return
        known = {row[0] for row in self._conn.execute("SELECT id FROM runs")}
        for folder in sorted(self.runs_dir.iterdir()):
            if folder.name in known or not (folder / "spec.json").is_file():
                continue
            try:
                spec = json.loads((folder / "spec.json").read_text())
                summary_path = folder / "summary.json"
                summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
            except (OSError, json.JSONDecodeError):
                continue
            if not isinstance(spec, dict):
                continue
            spec.pop("process", None)  # that process ran on another machine; it says nothing here
            status = "ok" if summary is not None else "unknown"
            with self.transaction() as conn:
                conn.execute(
                    "INSERT OR IGNORE INTO runs(id, kind, status, created, finished, spec, summary) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (folder.name, spec.get("kind", "unknown"), status, folder.stat().st_mtime, None,
                     json.dumps(spec), json.dumps(summary) if summary is not None else None),
                )

    # -------------------------------------------------- label state (fingerprints)
    def labels_fingerprint(self) -> str:
        """sha256 over every sample's id, split, observed label and replacement image.

        Changes when noise is injected, labels are reset or an image is replaced: anything
        that changes what a model trained on this project's labels would see.
        """
        digest = hashlib.sha256()
        for row in self._conn.execute("SELECT id, split, label, image_override FROM samples ORDER BY id"):
            digest.update(json.dumps(list(row)).encode())
        return digest.hexdigest()

    def decisions_fingerprint(self) -> str:
        """sha256 over the current decisions (sample, action, new label)."""
        digest = hashlib.sha256()
        for row in self._conn.execute("SELECT sample_id, action, new_label FROM decisions ORDER BY sample_id"):
            digest.update(json.dumps(list(row)).encode())
        return digest.hexdigest()

    def fingerprint(self) -> dict[str, str]:
        """What a run records at its start: ``{"labels": ..., "decisions": ...}``."""
        return {"labels": self.labels_fingerprint(), "decisions": self.decisions_fingerprint()}

    def label_state_changes(self, run: RunInfo) -> list[str]:
        """Which of "labels", "decisions" differ from what ``run`` recorded at its start (none recorded: [])."""
        recorded = run.spec.get("fingerprint")
        if not isinstance(recorded, dict):
            return []
        now = self.fingerprint()
        return [part for part in ("labels", "decisions") if part in recorded and recorded[part] != now[part]]

    def stale_reason(self, run: RunInfo, *, decided_since_ok: bool = False) -> str | None:
        """None when ``run``'s results still describe this project's labels, else a sentence saying why not.

        Every run is stale once the observed labels change (its scores and suggestions are
        about labels that no longer exist). A run that trained on the decisions is stale too
        once they change: an audit when the effective labels (relabels applied, removals)
        differ from those it recorded (engine.evidence.run_labels), a retrain once the decisions change
        at all. ``decided_since_ok``: decisions made since do not count (an audit's own review:
        deciding its flagged samples one by one leaves its suggestions for the others as they
        were). A run that recorded no fingerprint (made by an older version) is "unknown", not stale: None.
        """
        changed = self.label_state_changes(run)
        if "labels" in changed:
            later = [noise for noise in self.noise_history() if noise["created"] > run.created]
            cause = "".join(f"; noise injected ({noise['mode']}, rate {noise['rate']}, seed {noise['seed']})"
                            for noise in later[-1:])
            return f"labels changed since this {run.kind} run{cause}: its results describe labels that no longer exist"
        from engine.evidence.imported import source_changed_reason  # an imported run: its file changed since

        changed_file = source_changed_reason(run)
        if changed_file:
            return changed_file
        if "decisions" in changed and run.kind in DECISION_DEPENDENT_KINDS and not decided_since_ok:
            from engine.evidence.run_labels import decisions_stale_reason

            return decisions_stale_reason(self, run)
        return None

    # -------------------------------------------------------------- scores
    def save_scores(
        self,
        run_id: str,
        detector: str,
        scores: np.ndarray,
        suggested: np.ndarray | None,
        flagged: np.ndarray,
        ranking: np.ndarray | None = None,
    ) -> None:
        """Per-sample scores of one detector in one run. Arrays are (N,), indexed by sample id.

        ``ranking`` lists sample ids most-suspect first (all of them); by default, score descending.
        """
        n = len(scores)
        if ranking is None:
            ranking = np.argsort(-scores, kind="stable")
        rank = np.empty(n, dtype=np.int64)
        rank[ranking] = np.arange(n)
        rows = [
            (run_id, detector, index, float(scores[index]),
             None if suggested is None or suggested[index] < 0 else int(suggested[index]),
             int(bool(flagged[index])), int(rank[index]))
            for index in range(n)
        ]
        with self.transaction() as conn:
            conn.execute("DELETE FROM scores WHERE run_id = ? AND detector = ?", (run_id, detector))
            conn.executemany("INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def detectors(self, run_id: str) -> list[str]:
        return [row[0] for row in self._conn.execute(
            "SELECT DISTINCT detector FROM scores WHERE run_id = ? ORDER BY detector", (run_id,))]

    def scores(self, run_id: str, detector: str) -> dict[str, np.ndarray]:
        """score (N,) float, suggested (N,) int (-1 none), flagged (N,) bool, rank (N,) int."""
        rows = self._conn.execute(
            "SELECT sample_id, score, suggested_label, flagged, rank FROM scores"
            " WHERE run_id = ? AND detector = ? ORDER BY sample_id",
            (run_id, detector),
        ).fetchall()
        if not rows:
            raise UserError(f"run {run_id} has no scores from detector {detector!r}",
                            f"detectors in that run: {', '.join(self.detectors(run_id)) or 'none'}")
        return {
            "score": np.array([row[1] for row in rows], dtype=np.float64),
            "suggested": np.array([-1 if row[2] is None else row[2] for row in rows], dtype=np.int64),
            "flagged": np.array([bool(row[3]) for row in rows]),
            "rank": np.array([row[4] for row in rows], dtype=np.int64),
        }

    # ----------------------------------------------------------- decisions
    def decide(self, sample_ref: str | int, action: str, new_label: str | int | None = None,
               provenance: str = PERSON) -> Decision:
        """Record one decision (by default a person's, about this one sample), committed before this returns.
        Clears the redo stack."""
        _check_provenance(provenance)
        sample_id = self.resolve_sample(sample_ref)
        if action not in ACTIONS:
            raise UserError(f"unknown action {action!r}", f"use one of: {', '.join(ACTIONS)}")
        label: int | None = None
        if action == "relabel":
            if new_label is None:
                raise UserError("relabel needs a class", "name the new class, for example --relabel cat")
            label = self.resolve_class(new_label)
            current = self._conn.execute("SELECT label FROM samples WHERE id = ?", (sample_id,)).fetchone()[0]
            if label == current:
                # "Relabel" to the label it already has (accepting a suggestion that agrees): that is a keep.
                action, label = "keep", None
        with self.transaction() as conn:
            conn.execute("UPDATE decision_history SET state = 'dropped' WHERE state = 'undone'")
            return self._record(conn, Decision(sample_id, action, label, provenance), time.time(), batch=None)

    def _record(self, conn: sqlite3.Connection, decision: Decision, now: float, batch: int | None) -> Decision:
        """One decision into the history (with the state it replaces, for undo) and the current decisions."""
        previous = conn.execute("SELECT action, new_label, provenance FROM decisions WHERE sample_id = ?",
                                (decision.sample_id,)).fetchone()
        cursor = conn.execute(
            "INSERT INTO decision_history(sample_id, action, new_label, provenance, prev_action, prev_label,"
            " prev_provenance, created, batch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (decision.sample_id, decision.action, decision.new_label, decision.provenance,
             *(previous or (None, None, None)), now, batch))
        assert cursor.lastrowid is not None
        self._set_current(conn, decision, cursor.lastrowid)
        return decision

    def undo(self) -> Decision | None:
        """Take back the latest decision (a whole bulk batch at once, see :meth:`undo_step`); returns the
        latest decision's sample state after the undo, None if nothing to undo."""
        states = self.undo_step()
        return states[0] if states else None

    def redo(self) -> Decision | None:
        """Re-apply the latest undone decision (or bulk batch); None if there is nothing to redo."""
        states = self.redo_step()
        return states[-1] if states else None

    @staticmethod
    def _set_current(conn: sqlite3.Connection, state: Decision, history_id: int) -> None:
        if state.action == "unreviewed":
            conn.execute("DELETE FROM decisions WHERE sample_id = ?", (state.sample_id,))
        else:
            conn.execute(
                "INSERT OR REPLACE INTO decisions(sample_id, action, new_label, provenance, history_id)"
                " VALUES (?, ?, ?, ?, ?)", (state.sample_id, state.action, state.new_label, state.provenance, history_id))

    def decisions(self) -> dict[int, Decision]:
        """The current decision of every decided sample, with how it was made (``provenance``)."""
        rows = self._conn.execute("SELECT sample_id, action, new_label, provenance FROM decisions").fetchall()
        decisions = {row[0]: Decision(*row) for row in rows}
        self._check_decisions(decisions.values())
        return decisions

    def _check_decisions(self, decisions: Iterable[Decision]) -> None:
        # Every per-sample array is indexed by sample id: a decision about a sample or class the
        # project does not have would index past them (or silently mean nothing), so say so.
        num_samples, num_classes = self.num_samples, self.num_classes
        for decision in decisions:
            problem = None
            if not 0 <= decision.sample_id < num_samples:
                problem = f"a decision about sample {decision.sample_id}, which is not in the project " \
                          f"(ids run from 0 to {num_samples - 1})"
            elif decision.action not in ACTIONS:
                problem = f"the decision about sample {decision.sample_id} has an unknown action {decision.action!r}"
            elif decision.action == "relabel" and not (
                    decision.new_label is not None and 0 <= decision.new_label < num_classes):
                problem = f"the decision about sample {decision.sample_id} relabels it to class " \
                          f"{decision.new_label}, which is not one of the project's {num_classes} classes"
            if problem:
                raise DamagedProjectError(
                    f"{problem} (in {self.root / DB_NAME})",
                    f"remove that decision: sqlite3 {self.root / DB_NAME} "
                    f"\"DELETE FROM decisions WHERE sample_id = {decision.sample_id}\" (or restore the project "
                    "from a backup); the other decisions are kept")

    def decision_history(self) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT id, sample_id, action, new_label, provenance, prev_action, prev_label, prev_provenance, created,"
            " state, batch FROM decision_history ORDER BY id"
        ).fetchall()
        keys = ("id", "sample_id", "action", "new_label", "provenance", "prev_action", "prev_label",
                "prev_provenance", "created", "state", "batch")
        return [dict(zip(keys, row)) for row in rows]

    def can_undo(self) -> bool:
        return self._conn.execute("SELECT 1 FROM decision_history WHERE state = 'active' LIMIT 1").fetchone() is not None

    def can_redo(self) -> bool:
        return self._conn.execute("SELECT 1 FROM decision_history WHERE state = 'undone' LIMIT 1").fetchone() is not None

    def labels_with_decisions(self) -> tuple[np.ndarray, np.ndarray]:
        """(labels (N,), keep mask (N,)): observed labels with relabels applied, removed samples masked out."""
        labels = self.sample_table().label.copy()
        keep = np.ones(len(labels), dtype=bool)
        for decision in self.decisions().values():
            if decision.action == "relabel" and decision.new_label is not None:
                labels[decision.sample_id] = decision.new_label
            elif decision.action == "remove":
                keep[decision.sample_id] = False
        return labels, keep

    # ------------------------------------------------- bulk decisions (batches)
    def decide_many(self, items: Iterable[tuple[int, str, int | str | None]],
                    provenance: str = BULK) -> list[Decision]:
        """Record many decisions ``(sample_id, action, new_label)`` in one transaction, as one undo step.

        Every entry gets the same batch number, so :meth:`undo` takes the whole batch back and
        :meth:`redo` re-applies it. A relabel to the label a sample already has is a keep (as in
        :meth:`decide`); a sample named twice keeps its last decision. Clears the redo stack.
        ``provenance``: a bulk action (no person looked at each sample) unless the engine made them.
        """
        _check_provenance(provenance)
        chosen: dict[int, tuple[str, int | None]] = {}
        for sample_ref, action, new_label in items:
            sample_id = self.resolve_sample(sample_ref)
            if action not in ACTIONS:
                raise UserError(f"unknown action {action!r}", f"use one of: {', '.join(ACTIONS)}")
            label: int | None = None
            if action == "relabel":
                if new_label is None:
                    raise UserError(f"relabelling sample {sample_id} needs a class", "name the new class")
                label = self.resolve_class(new_label)
            chosen[sample_id] = (action, label)
        if not chosen:
            return []
        current = dict(self._conn.execute("SELECT id, label FROM samples").fetchall())
        made: list[Decision] = []
        with self.transaction() as conn:
            batch = int(conn.execute("SELECT COALESCE(MAX(batch), 0) + 1 FROM decision_history").fetchone()[0])
            conn.execute("UPDATE decision_history SET state = 'dropped' WHERE state = 'undone'")
            now = time.time()
            for sample_id, (action, label) in chosen.items():
                if action == "relabel" and label == current[sample_id]:
                    action, label = "keep", None
                made.append(self._record(conn, Decision(sample_id, action, label, provenance), now, batch))
        return made

    def undo_step(self) -> list[Decision]:
        """Take back the latest decision, or every decision of its batch; the states after, latest first."""
        return self._history_step(undo=True)

    def redo_step(self) -> list[Decision]:
        """Re-apply the oldest undone decision, or every decision of its batch; the states after, in order."""
        return self._history_step(undo=False)

    def _history_step(self, *, undo: bool) -> list[Decision]:
        # Undo walks active entries newest first back to their previous state; redo walks undone ones
        # oldest first forward to their own, with how that state was made. A bulk batch moves as one step.
        source, target, order = ("active", "undone", "DESC") if undo else ("undone", "active", "ASC")
        state_columns = "prev_action, prev_label, prev_provenance" if undo else "action, new_label, provenance"
        states: list[Decision] = []
        with self.transaction() as conn:
            first = conn.execute(
                f"SELECT id, batch FROM decision_history WHERE state = ? ORDER BY id {order} LIMIT 1",
                (source,)).fetchone()
            if first is None:
                return []
            history_id, batch = first
            rows = conn.execute(
                f"SELECT id, sample_id, {state_columns} FROM decision_history"
                f" WHERE state = ? AND (id = ? OR (batch IS NOT NULL AND batch = ?)) ORDER BY id {order}",
                (source, history_id, batch)).fetchall()
            for row_id, sample_id, action, label, provenance in rows:
                conn.execute("UPDATE decision_history SET state = ? WHERE id = ?", (target, row_id))
                # A state from before provenance was recorded, that the migration could not trace: a person's.
                state = Decision(sample_id, action, label, provenance or PERSON) if action else \
                    Decision(sample_id, "unreviewed", None)
                self._set_current(conn, state, row_id)
                states.append(state)
        return states

    # ---------------------------------------------------------------- query
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Read-only queries for views (the GUI's models page through samples with SQL)."""
        return self._conn.execute(sql, params).fetchall()


def _check_provenance(provenance: str) -> None:
    if provenance not in PROVENANCES:
        raise ValueError(f"unknown decision provenance {provenance!r}: one of {', '.join(PROVENANCES)}")


def is_project(path: Path | str) -> bool:
    return (Path(path) / DB_NAME).is_file()


# ------------------------------------------------------- atomic writes
# Temporary names are `.<name>.tmp-<pid>-<random>`: unique, made with O_EXCL (so a
# symlink planted at a predictable name is never followed), and the pid tells a later
# run whether the writer is still alive or the file is a leftover of a killed one.
TEMP_MARK = ".tmp-"
_NAME_BYTES_IN_TEMP = 100  # leaves room for the mark, pid and random part under 255 bytes


def temp_name_prefix(name: str) -> str:
    """``.<name>.tmp-``, the name cut to 100 bytes: how every temporary file or folder made for ``name`` starts."""
    short = name.encode("utf-8", "surrogateescape")[:_NAME_BYTES_IN_TEMP].decode("utf-8", "ignore")
    return f".{short}{TEMP_MARK}"


def _own_temp_prefix(name: str) -> str:
    return f"{temp_name_prefix(name)}{os.getpid()}-"


def _umask() -> int:
    try:  # Linux: read it without changing it (changing it races with other threads)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(folder: bool = False) -> int:
    """The permissions ``open``/``mkdir`` would give a new file (or folder) under the current umask."""
    return (0o777 if folder else 0o666) & ~_umask()


def fsync_folder(folder: Path) -> None:
    """Make a rename or new file in ``folder`` survive a power cut (a no-op where folders cannot be synced)."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # file systems that do not sync folders
            raise
    finally:
        os.close(fd)


def write_temp_beside(path: Path, data: bytes) -> Path:
    """``data`` in a new, uniquely named, synced file in ``path``'s folder, with ``path``'s permissions (if it
    exists) or the default ones; the caller renames it into place or removes it. Removed again on failure."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=_own_temp_prefix(path.name), dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            try:
                mode = os.stat(path).st_mode & 0o7777
            except OSError:
                mode = default_mode()
            os.chmod(tmp, mode)  # mkstemp makes it 0600
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that a reader sees the old or the new content, never half of it.

    The data goes to a unique temporary file in the same folder (see
    :func:`write_temp_beside`), is synced, renamed over ``path``, and the folder
    is synced so the rename is durable. On any failure the temporary file is removed.
    """
    path = Path(path)
    tmp = write_temp_beside(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
