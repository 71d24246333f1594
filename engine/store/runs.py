"""A project's runs: their rows and folders, their status, resuming one, and runs copied in from elsewhere.

A run is a row in the ``runs`` table (kind, status, spec, summary) and a folder ``runs/<run_id>/``
(spec.json, events.jsonl, arrays, checkpoints). Its spec records the label state it starts from
(:mod:`engine.store.label_state`) and the process running it (:mod:`engine.store.processes`), so a
run whose process has ended reads as "interrupted" and can be resumed; an interrupted import of predictions
(nothing of it can be resumed: the file is read again) is removed instead, so nothing of it is half-imported.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.atomic_files import atomic_write_bytes
from engine.errors import UserError
from engine.store.label_state import IMPORTED_SOURCE, LabelState, evidence_source
from engine.store.processes import process_alive, this_process


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


class Runs(LabelState):
    """Makes, finishes, claims and lists runs; marks a run whose process has ended as interrupted."""

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
        restarted) is reported, and recorded, as "interrupted": it can be resumed. An interrupted
        import of predictions cannot (the file is imported again): it is removed, folder and row.
        """
        self._register_foreign_runs()
        query = "SELECT id, kind, status, created, finished, spec, summary FROM runs"
        params: tuple[Any, ...] = ()
        if kind:
            query += " WHERE kind = ?"
            params = (kind,)
        rows = self._conn.execute(query + " ORDER BY created, id", params).fetchall()
        listed = [self._interrupted_if_dead(self._run_info(row), row[5]) for row in rows]
        return [run for run in listed if not self._discarded_import(run)]

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

    def _discarded_import(self, run: RunInfo) -> bool:
        """Remove ``run`` if it is an interrupted import of predictions (killed mid-way): True once it is gone.

        Its folder goes first, spec.json before the rest (a folder with a spec.json and no row would be adopted
        as a foreign run), then its row and scores. Left as it is in a read-only project, or when removing fails.
        """
        if run.status != "interrupted" or evidence_source(run).get("source") != IMPORTED_SOURCE or \
                getattr(self, "read_only", False):
            return False
        try:
            (run.folder / "spec.json").unlink(missing_ok=True)
            shutil.rmtree(run.folder, ignore_errors=True)
            with self.transaction() as conn:
                conn.execute("DELETE FROM scores WHERE run_id = ?", (run.id,))
                conn.execute("DELETE FROM runs WHERE id = ? AND status = 'interrupted'", (run.id,))
        except (OSError, sqlite3.OperationalError, UserError):
            return False  # a full, locked or read-only store: it stays, reported as interrupted
        return True

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
