"""The person's decisions about samples (relabel, remove, keep), how each was made, and their undo/redo history.

Every decision is committed before the call returns. ``decision_history`` keeps each one with
the state it replaced, so undo and redo walk it; decisions made together (a bulk action) share
a batch number and undo as one step. ``provenance`` says how a decision was made: only a
person's look at one sample is evidence that its label is clean (engine.workflows.trusted).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import DamagedProjectError, UserError
from engine.store.database import DB_NAME
from engine.store.samples import Samples

ACTIONS: tuple[str, ...] = ("relabel", "remove", "keep")
# How a decision was made. Only a person's look at one sample is evidence that its label is clean
# (engine.workflows.trusted): a bulk action decides samples nobody looked at, and the engine's own are guesses.
PERSON, BULK, AUTOMATIC = "person", "bulk", "automatic"
PROVENANCES: tuple[str, ...] = (PERSON, BULK, AUTOMATIC)


@dataclass(frozen=True)
class Decision:
    sample_id: int
    action: str
    new_label: int | None
    provenance: str | None = None  # one of PROVENANCES; None for an "unreviewed" state after an undo


def _check_provenance(provenance: str) -> None:
    if provenance not in PROVENANCES:
        raise ValueError(f"unknown decision provenance {provenance!r}: one of {', '.join(PROVENANCES)}")


class Decisions(Samples):
    """Records decisions one at a time or in batches, reads them back checked, and undoes or redoes them."""

    def decide(self, sample_ref: str | int, action: str, new_label: str | int | None = None,
               provenance: str = PERSON) -> Decision:
        """Record one decision (by default a person's, about this one sample), committed before this returns.
        Clears the redo stack."""
        _check_provenance(provenance)
        sample_id, label = self._resolve_decision(sample_ref, action, new_label, in_batch=False)
        if action == "relabel":
            current = self._conn.execute("SELECT label FROM samples WHERE id = ?", (sample_id,)).fetchone()[0]
            if label == current:
                # "Relabel" to the label it already has (accepting a suggestion that agrees): that is a keep.
                action, label = "keep", None
        with self.transaction() as conn:
            conn.execute("UPDATE decision_history SET state = 'dropped' WHERE state = 'undone'")
            return self._record(conn, Decision(sample_id, action, label, provenance), time.time(), batch=None)

    def _resolve_decision(self, sample_ref: str | int, action: str, new_label: str | int | None, *,
                          in_batch: bool) -> tuple[int, int | None]:
        """The sample id and (a relabel's) class id of a decision as typed; refuses an unknown action or sample,
        and a relabel without a class (``in_batch``: the message names the sample among the others)."""
        sample_id = self.resolve_sample(sample_ref)
        if action not in ACTIONS:
            raise UserError(f"unknown action {action!r}", f"use one of: {', '.join(ACTIONS)}")
        if action != "relabel":
            return sample_id, None
        if new_label is None:
            if in_batch:
                raise UserError(f"relabelling sample {sample_id} needs a class", "name the new class")
            raise UserError("relabel needs a class", "name the new class, for example --relabel cat")
        return sample_id, self.resolve_class(new_label)

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
            sample_id, label = self._resolve_decision(sample_ref, action, new_label, in_batch=True)
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
