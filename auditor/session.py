"""The open project as an evented model (napari's pattern): views take it and subscribe.

Decisions go straight to the store (one committed transaction each) and are
mirrored in memory so views never query per paint. The audit state (scores of
the latest audit run, the threshold, the class-pair filter) lives here too, so
the histogram, the noise matrix and the review queue all agree.

The CLI may change the project while it is open (inject noise, decide, audit):
:meth:`ProjectSession.reload_if_changed` notices that cheaply (SQLite's
``PRAGMA data_version`` moves only when another connection commits) and brings
labels, images, decisions and runs up to date. Undo and redo act only on
decisions made in this session, never on one made elsewhere.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from engine.detectors import review_detector
from engine.errors import DamagedProjectError, UserError, user_error_from_exception
from engine.store import Decision, Project, RunInfo
from engine.workflows.bulk import latest_scored_audit

AGREEMENT = "agreement"  # a review order: samples most detectors flag first
BY_PAIR = "class pair"  # a review order: grouped by (given, suggested) pair, the commonest pair first
WATCH_INTERVAL_MS = 1000  # how often an open project is checked for changes made elsewhere
STALE_SUGGESTIONS = "these suggestions were computed on labels that have since changed: run a new audit"
UNDO_ELSEWHERE = "the last decision was made elsewhere (CLI); undo it there"
REDO_ELSEWHERE = "the last undo was made elsewhere (CLI); redo it there"


@dataclass
class AuditScores:
    """The scores of one audit run, every array (N,) and indexed by sample id."""

    run: RunInfo
    detector: str  # the one that ranks the review queue
    score: np.ndarray
    suggested: np.ndarray  # -1 where no suggestion
    flagged: np.ndarray  # the engine's own flagged set
    rank: np.ndarray
    per_detector: dict[str, np.ndarray] = field(default_factory=dict)
    per_detector_flagged: dict[str, np.ndarray] = field(default_factory=dict)  # each detector's own flagged set
    noise_matrix: np.ndarray | None = None  # (K, K): estimated P(given i, true j) columns/rows as saved
    confident_joint: np.ndarray | None = None  # (K, K) counts
    audited: np.ndarray | None = None  # (N,) bool: the samples the detectors saw (held-out ones never are)

    @property
    def audited_count(self) -> int:
        return int(self.audited.sum()) if self.audited is not None else len(self.score)

    def agreement(self, sample_id: int) -> tuple[int, int]:
        """(k, n): k of the audit's n detectors flagged the sample ("why this sample")."""
        flags = [bool(flagged[sample_id]) for flagged in self.per_detector_flagged.values()]
        return sum(flags), len(flags)

    @property
    def engine_threshold(self) -> float:
        """Where the threshold line starts: as many samples score above it as the engine flagged.

        The engine's flagged set need not be a score cut (confident learning flags by class-pair
        counts), so the line is only a starting point; until it is moved the queue is that set.
        """
        count = int(self.flagged.sum())
        if count == 0:
            return float(self.score.max(initial=1.0))
        return float(np.sort(self.score)[::-1][count - 1])


def _load_array(folder: Path, name: str) -> np.ndarray | None:
    path = folder / name
    if not path.is_file():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None


def load_audit(project: Project, run: RunInfo) -> AuditScores | None:
    detectors = project.detectors(run.id)
    if not detectors:
        return None
    primary = review_detector(detectors)  # the export's and the bulk action's default too
    main = project.scores(run.id, primary)
    per_detector = {primary: main["score"]}
    per_detector_flagged = {primary: main["flagged"]}
    for name in detectors:
        if name != primary:
            scores = project.scores(run.id, name)
            per_detector[name] = scores["score"]
            per_detector_flagged[name] = scores["flagged"]
    return AuditScores(
        run=run, detector=primary, score=main["score"], suggested=main["suggested"], flagged=main["flagged"],
        rank=main["rank"], per_detector=per_detector, per_detector_flagged=per_detector_flagged,
        noise_matrix=_load_array(run.folder, "noise_matrix.npy"),
        confident_joint=_load_array(run.folder, "confident_joint.npy"),
        audited=_audited_mask(project, run, len(main["score"])),
    )


def _audited_mask(project: Project, run: RunInfo, count: int) -> np.ndarray:
    """(N,) bool: the ids the run recorded as audited, else (older runs) the training split."""
    mask = np.zeros(count, dtype=bool)
    ids = _load_array(run.folder, "audited_ids.npy")  # engine.workflows.audit.AUDITED_IDS_FILE (engine.workflows.audit is heavy)
    if ids is not None and ids.ndim == 1 and np.issubdtype(ids.dtype, np.integer) \
            and (len(ids) == 0 or (ids.min() >= 0 and ids.max() < count)):
        mask[ids] = True
        return mask
    rows = project.execute("SELECT id FROM samples WHERE split = 'train'")
    mask[[row[0] for row in rows if 0 <= row[0] < count]] = True
    return mask


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
        self._decisions: dict[int, Decision] = project.decisions()
        # Mirrors of the decisions that views can count in O(1)/numpy time on every key press.
        self.decided = np.zeros(self.num_samples, dtype=bool)
        self._action_counts: Counter[str] = Counter()
        self._mirror_all()
        # History rows (decision_history ids) this session wrote, and those it undid: undo and redo
        # touch only these, so the app never takes back a decision made by the CLI.
        self._made_here: set[int] = set()
        self._undone_here: set[int] = set()
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

    def _mirror_all(self) -> None:
        self.decided[:] = False
        self.decided[list(self._decisions)] = True
        self._action_counts = Counter(decision.action for decision in self._decisions.values())

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
        decisions = self.project.decisions()
        if decisions != self._decisions:
            self._decisions = decisions
            self._mirror_all()
            self._queue = None
            self.decisions_reset.emit()
            self.undo_state_changed.emit()
        if not self.refresh_runs():
            self._update_stale()
            self.review_filter_changed.emit()

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

    def run_note(self, run: RunInfo) -> str:
        """A line about a run for people: why it was interrupted and the command that resumes it."""
        from engine.commands.status import run_status  # the CLI's own wording of the resume command

        status = run_status(self.project, run)
        resume = status["resume"]
        reason = str(run.summary.get("reason") or run.summary.get("error") or "")
        reason = reason[:1].upper() + reason[1:]
        if resume:
            return f"{reason + ' — ' if reason else ''}resume it with: {resume}"
        if status.get("resume_refused"):  # as the CLI would answer a --resume
            return f"{reason + ' — ' if reason else ''}it cannot be resumed: {status['resume_refused']}"
        return reason

    def skipped_files(self) -> list[tuple[str, str]]:
        """(path, reason) of every file the import skipped (unreadable, not an image): not in the project."""
        entries = self.project.meta("skipped", []) or []
        return [(str(entry.get("path", "?")) + (f" (data row {entry['row']})" if "row" in entry else ""),
                 str(entry.get("reason", ""))) for entry in entries if isinstance(entry, dict)]

    @property
    def root(self) -> Path:
        return self.project.root

    @property
    def name(self) -> str:
        return self.project.root.name

    def close(self) -> None:
        self._watch.stop()
        self.project.close()

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

    def set_threshold(self, value: float | None) -> None:
        """A score cut for the flagged set; None goes back to the engine's own flagged set."""
        if value is None or self.threshold is None or abs(value - self.threshold) > 1e-12:
            self.threshold = None if value is None else float(value)
            self._queue = None
            self.review_filter_changed.emit()

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
            self._queue = None
            self.review_filter_changed.emit()

    def set_queue_order(self, order: str | None) -> None:
        """Review the samples one detector flagged, by its score; or, with AGREEMENT, every sample any
        detector flagged, those most detectors flag first."""
        if order != self.queue_order:
            self.queue_order = order
            self._queue = None
            self.review_filter_changed.emit()

    def flagged_mask(self) -> np.ndarray:
        """The flagged set under the current threshold: (N,) bool."""
        if self.audit is None:
            return np.zeros(self.num_samples, dtype=bool)
        if self.threshold is None:
            return self.audit.flagged.copy()
        flagged = self.audit.score >= self.threshold
        return flagged & self.audit.audited if self.audit.audited is not None else flagged  # never a held-out one

    def review_queue(self) -> np.ndarray:
        """Sample ids to review, most suspect first: flagged, then narrowed by the class-pair filter."""
        if self._queue is None:
            self._queue = self._make_queue()
        return self._queue

    def _make_queue(self) -> np.ndarray:
        if self.audit is None:
            return np.zeros(0, dtype=np.int64)
        if self.id_filter is not None:
            return self._chosen_queue(self.id_filter)
        mask = self.flagged_mask()
        if self.pair_filter is not None:
            given, suggested = self.pair_filter
            # A cell of the noise matrix names a pair regardless of the threshold.
            mask = (self.labels == given) & (self.audit.suggested == suggested)
        order = self.queue_order
        if order == AGREEMENT and self.audit.per_detector_flagged:
            flags = np.array(list(self.audit.per_detector_flagged.values()))
            if self.pair_filter is None:
                mask = np.asarray(flags.any(axis=0))
            ids = np.flatnonzero(mask)
            agree = flags[:, ids].sum(axis=0)
            return ids[np.lexsort((self.audit.rank[ids], -agree))]  # most agreeing first, then by rank
        if order == BY_PAIR:
            return self._queue_by_pair(np.flatnonzero(mask))
        if order in self.audit.per_detector:
            scores = self.audit.per_detector[order]
            if self.pair_filter is None and order in self.audit.per_detector_flagged:
                mask = self.audit.per_detector_flagged[order]
            ids = np.flatnonzero(mask)
            return ids[np.argsort(-scores[ids], kind="stable")]
        ids = np.flatnonzero(mask)
        return ids[np.argsort(self.audit.rank[ids], kind="stable")]

    # ------------------------------- chosen samples and class pairs (the data map, helper "datamap")
    def set_id_filter(self, ids: np.ndarray | list[int] | None) -> None:
        """Review exactly these samples (chosen on the data map), most suspect first; None: the flagged set.

        Choosing samples replaces a class-pair filter; a new audit, or "Show all flagged", clears it.
        """
        chosen = None if ids is None else np.unique(np.asarray(ids, dtype=np.int64))
        if chosen is not None and len(chosen) and (chosen[0] < 0 or chosen[-1] >= self.num_samples):
            raise ValueError(f"sample ids must be in 0..{self.num_samples - 1}")
        self.id_filter = chosen
        self.pair_filter = None
        self._queue = None
        self.review_filter_changed.emit()

    def _chosen_queue(self, ids: np.ndarray) -> np.ndarray:
        if self.audit is None:
            return ids.copy()
        return ids[np.argsort(self.audit.rank[ids], kind="stable")]

    def class_pairs(self) -> list[tuple[int, int, int]]:
        """(given, suggested, count) of every pair the class-pair filter can show, the commonest first.

        Counted as the filter selects: samples whose given label is ``given`` and whose suggestion
        is another class ``suggested``, flagged or not (as a cell of the noise matrix).
        """
        if self.audit is None:
            return []
        k = max(len(self.class_names), 1)
        suggested = self.audit.suggested
        differs = (suggested >= 0) & (suggested != self.labels)
        keys, counts = np.unique(self.labels[differs] * k + suggested[differs], return_counts=True)
        order = np.lexsort((keys, -counts))
        return [(int(keys[i] // k), int(keys[i] % k), int(counts[i])) for i in order]

    def _queue_by_pair(self, ids: np.ndarray) -> np.ndarray:
        """``ids`` grouped by (given, suggested) pair, the pair with most of them first, each pair by rank."""
        assert self.audit is not None
        k = max(len(self.class_names), 1) + 1  # suggestions of -1 (none) become their own group, last
        keys = self.labels[ids] * k + (self.audit.suggested[ids] + 1)
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        agrees = self.audit.suggested[ids] == self.labels[ids]  # no pair to review: after every real pair
        return ids[np.lexsort((self.audit.rank[ids], keys, -counts[inverse], agrees))]

    # -------------------------------------------------------------- decisions
    def decision(self, sample_id: int) -> Decision | None:
        return self._decisions.get(sample_id)

    def decisions(self) -> dict[int, Decision]:
        return dict(self._decisions)

    @property
    def reviewed_count(self) -> int:
        return len(self._decisions)

    def action_counts(self) -> dict[str, int]:
        return {action: self._action_counts.get(action, 0) for action in ("relabel", "remove", "keep")}

    def _mirror(self, sample_id: int, state: Decision | None) -> None:
        previous = self._decisions.pop(sample_id, None)
        if previous is not None:
            self._action_counts[previous.action] -= 1
        if state is not None:
            self._decisions[sample_id] = state
            self._action_counts[state.action] += 1
        self.decided[sample_id] = state is not None

    def _refused(self, exc: UserError) -> None:
        self.write_failed.emit(exc.message, exc.hint)

    def _latest_history_id(self) -> int:
        return int(self.project.execute("SELECT COALESCE(MAX(id), 0) FROM decision_history")[0][0])

    def decide(self, sample_id: int, action: str, new_label: int | None = None) -> Decision | None:
        """Commit one decision (the store returns only once it is durable), then tell the views.

        None when it could not be saved (a full or read-only disk, a damaged store): ``write_failed``
        carries the engine's message, nothing in memory changes and the caller must not move on.
        """
        self.reload_if_changed()  # decide on what the project holds now, not on a stale copy
        before = self._latest_history_id()
        try:
            decision = self.project.decide(int(sample_id), action, new_label)
        except UserError as exc:
            self._refused(exc)
            return None
        self._note_made_here(before)
        self._mirror(decision.sample_id, decision)
        self.decision_changed.emit(decision.sample_id)
        self.undo_state_changed.emit()
        return decision

    def undo(self) -> Decision | None:
        """Undo this session's latest step (a bulk batch is one step); the latest decision's state after.

        None when there is nothing of ours to undo. When the project's latest decision was made
        elsewhere (the CLI), nothing is undone and ``notice`` says to undo it there: undoing ours
        past it could bring back a state that the other decision replaced.
        """
        if not self._may_change_history():
            return None
        latest = self._latest_active()
        if latest is None:
            return None
        if latest not in self._made_here:
            self.history_refusal = UNDO_ELSEWHERE[0].upper() + UNDO_ELSEWHERE[1:] + "."
            self.notice.emit(self.history_refusal)
            return None
        undone_before = self._undone_ids()
        try:
            states = self._apply_history(self.project.undo_step())
        except UserError as exc:
            self._refused(exc)
            return None
        self._undone_here |= self._undone_ids() - undone_before
        return states[0] if states else None

    def redo(self) -> Decision | None:
        """Redo what this session undid (a bulk batch is one step); the latest decision's state after."""
        if not self._may_change_history():
            return None
        oldest = self._oldest_undone()
        if oldest is None:
            return None
        if oldest not in self._undone_here:
            self.history_refusal = REDO_ELSEWHERE[0].upper() + REDO_ELSEWHERE[1:] + "."
            self.notice.emit(self.history_refusal)
            return None
        try:
            states = self._apply_history(self.project.redo_step())
        except UserError as exc:
            self._refused(exc)
            return None
        self._undone_here &= self._undone_ids()
        return states[-1] if states else None

    def _may_change_history(self) -> bool:
        """Fresh from the store, and writable; a read-only project says why not."""
        self.reload_if_changed()
        self.history_refusal = ""
        if self.read_only:
            self.history_refusal = self.read_only_reason
            self.write_failed.emit(self.read_only_reason, "decisions cannot be changed in a project opened for viewing")
            return False
        return True

    def _apply_history(self, states: list[Decision]) -> list[Decision]:
        for state in states:
            self._mirror(state.sample_id, None if state.action == "unreviewed" else state)
        self._announce(states)
        return states

    # ------------------------------------------------------ bulk decisions (review helper)
    def decide_many(self, items: list[tuple[int, str, int | None]]) -> list[Decision]:
        """Commit many decisions as one transaction and one undo step, then tell the views once.

        [] when they could not be saved (see :meth:`decide`): then none of them was.
        """
        self.reload_if_changed()
        before = self._latest_history_id()
        try:
            decisions = self.project.decide_many(items)
        except UserError as exc:
            self._refused(exc)
            return []
        self._note_made_here(before)
        for decision in decisions:
            self._mirror(decision.sample_id, decision)
        self._announce(decisions)
        return decisions

    def _announce(self, states: list[Decision]) -> None:
        # Many changes at once repaint every view once rather than once per sample.
        if len(states) == 1:
            self.decision_changed.emit(states[0].sample_id)
        elif states:
            self.decisions_reset.emit()
        if states:
            self.undo_state_changed.emit()

    # --------------------------------------------- undo only what this app did
    def _note_made_here(self, before: int) -> None:
        # The history rows just written are this session's: the store commits before returning, so
        # only a CLI writing in the same instant could slip a row in between.
        self._made_here.update(row[0] for row in self.project.execute(
            "SELECT id FROM decision_history WHERE id > ?", (before,)))
        self._undone_here.clear()  # a new decision drops the redo stack

    def _undone_ids(self) -> set[int]:
        return {row[0] for row in self.project.execute("SELECT id FROM decision_history WHERE state = 'undone'")}

    def _latest_active(self) -> int | None:
        value = self.project.execute("SELECT MAX(id) FROM decision_history WHERE state = 'active'")[0][0]
        return None if value is None else int(value)

    def _oldest_undone(self) -> int | None:
        value = self.project.execute("SELECT MIN(id) FROM decision_history WHERE state = 'undone'")[0][0]
        return None if value is None else int(value)

    def can_undo(self) -> bool:
        """Whether Undo has a decision of this session's to take back."""
        return not self.read_only and self._latest_active() in self._made_here

    def can_redo(self) -> bool:
        return not self.read_only and self._oldest_undone() in self._undone_here

    def class_name(self, index: int | None) -> str:
        if index is None or index < 0:
            return "—"
        return self.class_names[index] if index < len(self.class_names) else str(index)

    def resolve_class(self, text: str) -> int:
        try:
            return self.project.resolve_class(text)
        except UserError:
            return -1
