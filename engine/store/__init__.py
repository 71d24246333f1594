"""The project store: a folder with an SQLite database and run folders. Open one with ``Project.open``.

Layout of a project folder::

    project.db        samples, classes, noise, runs, scores, decisions + history
    cache/            decoded images at training resolution (memory-mapped .npy)
    runs/<run_id>/    spec.json, events.jsonl, arrays (.npy), checkpoints, model
    openset/          replacement images written by open-set noise synthesis

Sample ids are 0..N-1 and double as row numbers of every per-sample array.
Every write is one transaction in WAL mode with ``synchronous=FULL``: once a
call returns, the change survives a crash or a kill.

Where each job lives (``Project``, in project.py, is composed of the parts):

- database.py: the connection, transactions, JSON values, the meta table
- opening.py: checks of the database file and the connection, before anything is written
- schema.py: the tables, their migrations, the check that a database is a project's
- samples.py: classes, samples, where their images are, noise history
- decisions.py: decisions, how each was made (provenance), bulk batches, undo/redo
- label_state.py: fingerprints a run records, and whether a run is stale
- runs.py: run rows and folders, status, resuming, runs copied in from elsewhere
- processes.py: which process runs a run and whether it is still alive
- scores.py: detector scores per run
- atomic file writes live below the store, in :mod:`engine.atomic_files` (re-exported here)

Imports only the standard library and numpy (and engine modules that import no more), so the
GUI can use it directly.
"""

from engine.atomic_files import atomic_write_bytes, default_mode, fsync_folder, temp_name_prefix, write_temp_beside
from engine.store.database import DB_NAME
from engine.store.decisions import ACTIONS, AUTOMATIC, BULK, PERSON, PROVENANCES, Decision
from engine.store.label_state import DECISION_DEPENDENT_KINDS, evidence_source
from engine.store.processes import process_alive, this_process
from engine.store.project import Project, is_project
from engine.store.runs import RunInfo
from engine.store.samples import OUTSIDE_LABEL_SET, UNKNOWN_TRUTH, SampleTable
from engine.store.schema import SCHEMA_VERSION

__all__ = [
    "ACTIONS",
    "AUTOMATIC",
    "BULK",
    "DB_NAME",
    "DECISION_DEPENDENT_KINDS",
    "OUTSIDE_LABEL_SET",
    "PERSON",
    "PROVENANCES",
    "SCHEMA_VERSION",
    "UNKNOWN_TRUTH",
    "Decision",
    "Project",
    "RunInfo",
    "SampleTable",
    "atomic_write_bytes",
    "default_mode",
    "evidence_source",
    "fsync_folder",
    "is_project",
    "process_alive",
    "temp_name_prefix",
    "this_process",
    "write_temp_beside",
]
