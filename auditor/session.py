"""The open project as an evented model (napari's pattern): views take it and subscribe.

Decisions go straight to the store (one committed transaction each) and are
mirrored in memory so views never query per paint. The audit state (scores of
the latest audit run, the threshold, the class-pair filter) lives here too, so
the histogram, the noise matrix and the review queue all agree.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from engine.errors import UserError
from engine.store import Decision, Project, RunInfo

PRIMARY_DETECTORS = ("ensemble", "cl")  # preferred ranking detector, first found wins


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
    noise_matrix: np.ndarray | None = None  # (K, K): estimated P(given i, true j) columns/rows as saved
    confident_joint: np.ndarray | None = None  # (K, K) counts

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
    primary = next((name for name in PRIMARY_DETECTORS if name in detectors), detectors[0])
    main = project.scores(run.id, primary)
    per_detector = {primary: main["score"]}
    for name in detectors:
        if name != primary:
            per_detector[name] = project.scores(run.id, name)["score"]
    return AuditScores(
        run=run, detector=primary, score=main["score"], suggested=main["suggested"], flagged=main["flagged"],
        rank=main["rank"], per_detector=per_detector,
        noise_matrix=_load_array(run.folder, "noise_matrix.npy"),
        confident_joint=_load_array(run.folder, "confident_joint.npy"),
    )


class ProjectSession(QObject):
    """One open project: its store, its decisions, its latest audit and the review filter."""

    decision_changed = Signal(int)  # sample id
    decisions_reset = Signal()
    runs_changed = Signal()
    audit_changed = Signal()  # a new audit run became the current one
    review_filter_changed = Signal()  # threshold or class pair moved
    undo_state_changed = Signal()

    def __init__(self, project: Project, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.project = project
        self.class_names: list[str] = project.class_names()
        self.num_samples = project.num_samples
        # Observed labels (the "given" label a reviewer sees), one array for every view.
        self.labels = np.array([row[0] for row in project.execute("SELECT label FROM samples ORDER BY id")],
                               dtype=np.int64)
        self._decisions: dict[int, Decision] = project.decisions()
        # Mirrors of the decisions that views can count in O(1)/numpy time on every key press.
        self.decided = np.zeros(self.num_samples, dtype=bool)
        self.decided[list(self._decisions)] = True
        self._action_counts = Counter(decision.action for decision in self._decisions.values())
        self._queue: np.ndarray | None = None
        self.audit: AuditScores | None = None
        self.threshold: float | None = None
        self.pair_filter: tuple[int, int] | None = None
        self.reload_audit()

    @classmethod
    def open(cls, root: Path | str) -> ProjectSession:
        return cls(Project.open(root))

    @property
    def root(self) -> Path:
        return self.project.root

    @property
    def name(self) -> str:
        return self.project.root.name

    def close(self) -> None:
        self.project.close()

    # ------------------------------------------------------------- runs/audit
    def runs(self) -> list[RunInfo]:
        return self.project.runs()

    def latest_audit_run(self) -> RunInfo | None:
        audits = [run for run in self.project.runs("audit") if run.status == "ok"]
        for run in reversed(audits):
            if self.project.detectors(run.id):
                return run
        return None

    def reload_audit(self) -> None:
        """Take the latest finished audit (made here, by the CLI or copied in) as the current one."""
        run = self.latest_audit_run()
        self.audit = load_audit(self.project, run) if run is not None else None
        self.threshold = None  # None: the engine's own flagged set
        self.pair_filter = None
        self._queue = None
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
        if pair != self.pair_filter:
            self.pair_filter = pair
            self._queue = None
            self.review_filter_changed.emit()

    def flagged_mask(self) -> np.ndarray:
        """The flagged set under the current threshold: (N,) bool."""
        if self.audit is None:
            return np.zeros(self.num_samples, dtype=bool)
        if self.threshold is None:
            return self.audit.flagged.copy()
        return self.audit.score >= self.threshold

    def review_queue(self) -> np.ndarray:
        """Sample ids to review, most suspect first: flagged, then narrowed by the class-pair filter."""
        if self._queue is None:
            self._queue = self._make_queue()
        return self._queue

    def _make_queue(self) -> np.ndarray:
        if self.audit is None:
            return np.zeros(0, dtype=np.int64)
        mask = self.flagged_mask()
        if self.pair_filter is not None:
            given, suggested = self.pair_filter
            # A cell of the noise matrix names a pair regardless of the threshold.
            mask = (self.labels == given) & (self.audit.suggested == suggested)
        ids = np.flatnonzero(mask)
        return ids[np.argsort(self.audit.rank[ids], kind="stable")]

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

    def decide(self, sample_id: int, action: str, new_label: int | None = None) -> Decision:
        """Commit one decision (the store returns only once it is durable), then tell the views."""
        decision = self.project.decide(int(sample_id), action, new_label)
        self._mirror(decision.sample_id, decision)
        self.decision_changed.emit(decision.sample_id)
        self.undo_state_changed.emit()
        return decision

    def undo(self) -> Decision | None:
        """Undo one step (a bulk batch is one step); the latest decision's state after, None if nothing."""
        states = self._apply_history(self.project.undo_step())
        return states[0] if states else None

    def redo(self) -> Decision | None:
        """Redo one step (a bulk batch is one step); the latest decision's state after, None if nothing."""
        states = self._apply_history(self.project.redo_step())
        return states[-1] if states else None

    def _apply_history(self, states: list[Decision]) -> list[Decision]:
        for state in states:
            self._mirror(state.sample_id, None if state.action == "unreviewed" else state)
        self._announce(states)
        return states

    # ------------------------------------------------------ bulk decisions (review helper)
    def decide_many(self, items: list[tuple[int, str, int | None]]) -> list[Decision]:
        """Commit many decisions as one transaction and one undo step, then tell the views once."""
        decisions = self.project.decide_many(items)
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

    def can_undo(self) -> bool:
        return self.project.can_undo()

    def can_redo(self) -> bool:
        return self.project.can_redo()

    def class_name(self, index: int | None) -> str:
        if index is None or index < 0:
            return "—"
        return self.class_names[index] if index < len(self.class_names) else str(index)

    def resolve_class(self, text: str) -> int:
        try:
            return self.project.resolve_class(text)
        except UserError:
            return -1
