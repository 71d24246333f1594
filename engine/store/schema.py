"""The tables of a project database, their migrations, and the check that a database is a project's.

Only a database whose tables are a Label Auditor schema is ever written to (see
:meth:`SchemaMigrations._migrate`); an older one is brought up to date, one migration per
transaction. ``SCHEMA_VERSION`` is SQLite's ``user_version`` of an up-to-date project.
"""

from __future__ import annotations

import sqlite3
from functools import cache

from engine.errors import DamagedProjectError, DiskFullError, ReadOnlyError, UserError
from engine.store.database import DB_NAME, Database

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


@cache
def schema_objects(version: int) -> dict[str, str]:
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


class SchemaMigrations(Database):
    """Checks an opened database against the known schemas and migrates it (its classes checked too)."""

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
            matching = [number for number in range(SCHEMA_VERSION, 0, -1) if schema_objects(number) == present]
            if not matching:
                raise DamagedProjectError(
                    f"{db_path} holds tables that are not a Label Auditor project's (and no schema version); "
                    "it was left as it is")
            version = matching[0]
            if not self.read_only:  # our own tables with the version stamp lost: restore the stamp
                self._conn.execute(f"PRAGMA user_version={version}")
        else:
            missing = sorted(set(schema_objects(version)) - set(present))
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
