"""The open project as an evented model (napari's pattern): views take it and subscribe.

The session composes the pieces that each keep one part of the project's state and tells the
views when any of them moves:
- :mod:`auditor.decision_ledger`: the decisions, mirrored in memory, and the undo history this app
  may act on (one committed transaction per decision);
- :mod:`auditor.audit_scores`: the latest audit run's scores;
- :mod:`auditor.review_order`: which samples the review offers and in what order, from the filters
  held here (threshold, class pair, chosen samples, order), so the histogram, the noise matrix
  and the review queue all agree.

The CLI may change the project while it is open (inject noise, decide, audit):
:meth:`ProjectSession.reload_if_changed` notices that cheaply (SQLite's
``PRAGMA data_version`` moves only when another connection commits) and brings
labels, images, decisions and runs up to date. Undo and redo act only on
decisions made in this session, never on one made elsewhere.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from auditor import review_order
from auditor.audit_scores import AuditScores, load_audit
from auditor.decision_ledger import DecisionLedger, MadeElsewhere
from engine.errors import DamagedProjectError, UserError, user_error_from_exception
from engine.store import BULK, Decision, Project, RunInfo
from engine.workflows.bulk import latest_scored_audit

WATCH_INTERVAL_MS = 1000  # how often an open project is checked for changes made elsewhere
STALE_SUGGESTIONS = "these suggestions were computed on labels that have since changed: run a new audit"


class ProjectSession(QObject):
    """One open project: its store, its decisions, its latest audit and the review filter."""

    decision_changed = Signal(int)  # sample id
    decisions_reset = Signal()
    runs_changed = Signal()
    audit_changed = Signal()  # a new audit run became the current one
    review_filter_changed = Signal()  # threshold or class pair moved
    undo_state_changed = Signal()
    samples_changed = Signal()  # labels or images changed elsewhere (the CLI): re-read paths, thumbnails
    stale_changed = Signal()  # the current audit became stale (or fresh again)
    write_failed = Signal(str, str)  # message, hint: a decision (or undo) could not be saved; nothing moved
    notice = Signal(str)  # something to tell the person (the status bar)

    def __init__(self, project: Project, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.project = project
        self.class_names: list[str] = project.class_names()
        self.num_samples = project.num_samples
        self._data_version = self._read_data_version()
        # Observed labels (the "given" label a reviewer sees), one array for every view.
        self.labels, self._overrides = self._read_samples()
        self.ledger = DecisionLedger(project, self.num_samples)
        self.decided = self.ledger.decided  # (N,) bool, kept up to date in place
        self.history_refusal = ""  # why the last undo/redo did nothing though the project has history
        self._queue: np.ndarray | None = None
        self.audit: AuditScores | None = None
        self.audit_stale: str | None = None  # why the current audit's suggestions are out of date, or None
        self.stale_accept_confirmed = False  # the person chose to accept suggestions of this stale audit
        self.threshold: float | None = None
        self.pair_filter: tuple[int, int] | None = None
        self.queue_order: str | None = None  # None: the ranking detector; a detector's name; AGREEMENT; BY_PAIR
        self.id_filter: np.ndarray | None = None  # samples chosen on the data map: the queue is exactly these
        self._watch = QTimer(self)
        self._watch.setInterval(WATCH_INTERVAL_MS)
        self._watch.timeout.connect(self.reload_if_changed)
        self.reload_audit()

    @classmethod
    def open(cls, root: Path | str) -> ProjectSession:
        """Open a project (read-only when it cannot be written); anything unreadable is a :class:`UserError`."""
        project = Project.open(root)
        try:
            return cls(project)
        except Exception as exc:
            project.close()
            error = user_error_from_exception(exc, Path(root))
            if error is None:  # not a disk or database failure we know: the data is not as we wrote it
                error = DamagedProjectError(f"{type(exc).__name__}: {exc}")
            raise error from exc

    @property
    def root(self) -> Path:
        return self.project.root

    @property
    def name(self) -> str:
        return self.project.root.name

    def close(self) -> None:
        self._watch.stop()
        self.project.close()

    def class_name(self, index: int | None) -> str:
        if index is None or index < 0:
            return "—"
        return self.class_names[index] if index < len(self.class_names) else str(index)

    def resolve_class(self, text: str) -> int:
        """The class a name (or a number) names, by the engine's one rule; -1 for none."""
        try:
            return self.project.resolve_class(text)
        except UserError:
            return -1

    # -------------------------------------------------------- read-only state
    @property
    def read_only(self) -> bool:
        """Opened for viewing only: a read-only disk or files, or no room for the database's journal."""
        return bool(getattr(self.project, "read_only", False))

    @property
    def read_only_reason(self) -> str:
        refusal = getattr(self.project, "write_refusal", None)
        return refusal.message if isinstance(refusal, UserError) else "this project cannot be written"

    # ------------------------------------------------- changes made elsewhere
    def start_watching(self, interval_ms: int = WATCH_INTERVAL_MS) -> None:
        """Check every ``interval_ms`` whether the CLI (or anything else) changed the project."""
        self._watch.setInterval(interval_ms)
        self._watch.start()

    def stop_watching(self) -> None:
        self._watch.stop()

    def _read_data_version(self) -> int:
        try:
            return int(self.project.execute("PRAGMA data_version")[0][0])
        except sqlite3.Error:  # a closed or vanished database: nothing to compare, treat as unchanged
            return -1

    def _read_samples(self) -> tuple[np.ndarray, list[str | None]]:
        rows = self.project.execute("SELECT label, image_override FROM samples ORDER BY id")
        return np.array([row[0] for row in rows], dtype=np.int64), [row[1] for row in rows]

    def reload_if_changed(self) -> bool:
        """Bring labels, images, decisions and runs up to date if another program wrote the project.

        Cheap when nothing changed (one PRAGMA). True when something was reloaded.
        """
        version = self._read_data_version()
        if version == self._data_version:
            return False
        self._data_version = version
        try:
            self._reload_from_store()
        except UserError as exc:
            self.write_failed.emit(exc.message, exc.hint)
        return True

    def _reload_from_store(self) -> None:
        labels, overrides = self._read_samples()
        if len(labels) == self.num_samples and (not np.array_equal(labels, self.labels)
                                                or overrides != self._overrides):
            self.labels, self._overrides = labels, overrides
            self._queue = None
            self.samples_changed.emit()
            self.notice.emit("The project's labels or images were changed by another program; shown as they are now.")
        if self.ledger.reload():
            self._queue = None
            self.decisions_reset.emit()
            self.undo_state_changed.emit()
        if not self.refresh_runs():
            self._update_stale()
            self.review_filter_changed.emit()

    # ------------------------------------------------------------- staleness
    def _update_stale(self) -> None:
        reason = self._review_stale_reason(self.audit.run) if self.audit is not None else None
        if reason != self.audit_stale:
            self.audit_stale = reason
            self.stale_accept_confirmed = False
            self.stale_changed.emit()

    def _review_stale_reason(self, run: RunInfo) -> str | None:
        # Decisions made since the audit are its review (the samples decided are no longer offered):
        # only labels changed under it make its suggestions out of date, as for `decide --accept`.
        return self.project.stale_reason(run, decided_since_ok=True)

    def stale_reason(self, run_id: str | None = None) -> str | None:
        """Why a run's results no longer describe this project's labels (None: they do, or unknown).

        Without ``run_id``: the current audit, whose suggestions the review offers (kept up to date
        by :meth:`reload_if_changed`, so asking costs nothing on a key press); decisions made since
        it ran are its review and do not count. For another run, any change counts.
        """
        if run_id is None or (self.audit is not None and run_id == self.audit.run.id):
            return self.audit_stale
        return self.project.stale_reason(self.project.run(run_id))

    # ------------------------------------------------------------- runs/audit
    def runs(self) -> list[RunInfo]:
        return self.project.runs()

    def latest_audit_run(self) -> RunInfo | None:
        return latest_scored_audit(self.project)  # the one `decide --all-flagged` acts on too

    def reload_audit(self) -> None:
        """Take the latest finished audit (made here, by the CLI or copied in) as the current one."""
        run = self.latest_audit_run()
        self.audit = load_audit(self.project, run) if run is not None else None
        self.threshold = None  # None: the engine's own flagged set
        self.pair_filter = None
        self.queue_order = None
        self.id_filter = None
        self._queue = None
        self.audit_stale = self._review_stale_reason(run) if run is not None else None
        self.stale_accept_confirmed = False
        self.stale_changed.emit()
        self.runs_changed.emit()
        self.audit_changed.emit()
        self.review_filter_changed.emit()

    def refresh_runs(self) -> bool:
        """Pick up runs made meanwhile by the CLI or copied in; True when a newer audit took over."""
        latest = self.latest_audit_run()
        current = self.audit.run.id if self.audit is not None else None
        if (latest.id if latest is not None else None) != current:
            self.reload_audit()
            return True
        self.runs_changed.emit()
        return False

    # ---------------------------------------------------------- review filter
    def _filter_moved(self) -> None:
        self._queue = None
        self.review_filter_changed.emit()

    def set_threshold(self, value: float | None) -> None:
        """A score cut for the flagged set; None goes back to the engine's own flagged set."""
        if value is None or self.threshold is None or abs(value - self.threshold) > 1e-12:
            self.threshold = None if value is None else float(value)
            self._filter_moved()

    @property
    def threshold_line(self) -> float | None:
        """Where the histogram draws the threshold."""
        if self.audit is None:
            return None
        return self.threshold if self.threshold is not None else self.audit.engine_threshold

    def set_pair_filter(self, pair: tuple[int, int] | None) -> None:
        if pair != self.pair_filter or self.id_filter is not None:
            self.pair_filter = pair
            self.id_filter = None  # a class pair replaces samples chosen on the data map
            self._filter_moved()

    def set_queue_order(self, order: str | None) -> None:
        """Review the samples one detector flagged, by its score; or, with AGREEMENT, every sample any
        detector flagged, those most detectors flag first."""
        if order != self.queue_order:
            self.queue_order = order
            self._filter_moved()

    def set_id_filter(self, ids: np.ndarray | list[int] | None) -> None:
        """Review exactly these samples (chosen on the data map), most suspect first; None: the flagged set.

        Choosing samples replaces a class-pair filter; a new audit, or "Show all flagged", clears it.
        """
        chosen = None if ids is None else np.unique(np.asarray(ids, dtype=np.int64))
        if chosen is not None and len(chosen) and (chosen[0] < 0 or chosen[-1] >= self.num_samples):
            raise ValueError(f"sample ids must be in 0..{self.num_samples - 1}")
        self.id_filter = chosen
        self.pair_filter = None
        self._filter_moved()

    def flagged_mask(self) -> np.ndarray:
        """The flagged set under the current threshold: (N,) bool."""
        return review_order.flagged_mask(self.audit, self.threshold, self.num_samples)

    def review_queue(self) -> np.ndarray:
        """Sample ids to review, most suspect first: flagged, then narrowed by the class-pair filter."""
        if self._queue is None:
            self._queue = np.zeros(0, dtype=np.int64) if self.audit is None else review_order.review_queue(
                self.audit, self.labels, self.flagged_mask(), class_count=len(self.class_names),
                pair=self.pair_filter, order=self.queue_order, chosen=self.id_filter)
        return self._queue

    def class_pairs(self) -> list[tuple[int, int, int]]:
        """(given, suggested, count) of every pair the class-pair filter can show, the commonest first."""
        return [] if self.audit is None else review_order.class_pairs(self.audit, self.labels, len(self.class_names))

    # -------------------------------------------------------------- decisions
    def decision(self, sample_id: int) -> Decision | None:
        return self.ledger.get(sample_id)

    def decisions(self) -> dict[int, Decision]:
        return self.ledger.all()

    @property
    def reviewed_count(self) -> int:
        return len(self.ledger)

    def action_counts(self) -> dict[str, int]:
        return self.ledger.action_counts()

    def _refused(self, exc: UserError) -> None:
        self.write_failed.emit(exc.message, exc.hint)

    def decide(self, sample_id: int, action: str, new_label: int | None = None) -> Decision | None:
        """Commit one decision (the store returns only once it is durable), then tell the views.

        None when it could not be saved (a full or read-only disk, a damaged store): ``write_failed``
        carries the engine's message, nothing in memory changes and the caller must not move on.
        """
        self.reload_if_changed()  # decide on what the project holds now, not on a stale copy
        try:
            decision = self.ledger.decide(sample_id, action, new_label)
        except UserError as exc:
            self._refused(exc)
            return None
        self.decision_changed.emit(decision.sample_id)
        self.undo_state_changed.emit()
        return decision

    def decide_many(self, items: list[tuple[int, str, int | None]], provenance: str = BULK) -> list[Decision]:
        """Commit many decisions as one transaction and one undo step, then tell the views once.

        ``provenance``: a bulk action's (nobody looked at each) unless a person looked at them all (PERSON).
        [] when they could not be saved (see :meth:`decide`): then none of them was.
        """
        self.reload_if_changed()
        try:
            decisions = self.ledger.decide_many(items, provenance)
        except UserError as exc:
            self._refused(exc)
            return []
        self._announce(decisions)
        return decisions

    def undo(self) -> Decision | None:
        """Undo this session's latest step (a bulk batch is one step); the latest decision's state after.

        None when there is nothing of ours to undo. When the project's latest decision was made
        elsewhere (the CLI), nothing is undone and ``notice`` says to undo it there: undoing ours
        past it could bring back a state that the other decision replaced.
        """
        states = self._change_history(self.ledger.undo)
        return states[0] if states else None

    def redo(self) -> Decision | None:
        """Redo what this session undid (a bulk batch is one step); the latest decision's state after."""
        states = self._change_history(self.ledger.redo)
        return states[-1] if states else None

    def _change_history(self, step: Callable[[], list[Decision]]) -> list[Decision]:
        """Undo or redo, fresh from the store; a read-only project, or a step made elsewhere, says why not."""
        self.reload_if_changed()
        self.history_refusal = ""
        if self.read_only:
            self.history_refusal = self.read_only_reason
            self.write_failed.emit(self.read_only_reason, "decisions cannot be changed in a project opened for viewing")
            return []
        try:
            states = step()
        except MadeElsewhere as refusal:
            self.history_refusal = str(refusal)
            self.notice.emit(self.history_refusal)
            return []
        except UserError as exc:
            self._refused(exc)
            return []
        self._announce(states)
        return states

    def _announce(self, states: list[Decision]) -> None:
        # Many changes at once repaint every view once rather than once per sample.
        if len(states) == 1:
            self.decision_changed.emit(states[0].sample_id)
        elif states:
            self.decisions_reset.emit()
        if states:
            self.undo_state_changed.emit()

    def can_undo(self) -> bool:
        """Whether Undo has a decision of this session's to take back."""
        return not self.read_only and self.ledger.can_undo()

    def can_redo(self) -> bool:
        return not self.read_only and self.ledger.can_redo()
