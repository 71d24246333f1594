"""The project's decisions as the app holds them, and the undo history it may act on.

Every decision goes straight to the store (one committed transaction) and is mirrored here, so
views count decided samples in numpy time on every key press. Undo and redo act only on history
steps this app wrote: a decision made elsewhere (the CLI) is taken back there, never here, since
undoing ours past it could bring back a state that it replaced.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from engine.store import BULK, Decision, Project

UNDO_ELSEWHERE = "the last decision was made elsewhere (CLI); undo it there"
REDO_ELSEWHERE = "the last undo was made elsewhere (CLI); redo it there"


class MadeElsewhere(Exception):
    """The step to undo or redo was made elsewhere (the CLI): it is taken back there. The message says so."""


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


class DecisionLedger:
    """Decisions by sample id, mirrored from the store, and the history rows this app wrote and undid.

    Writes raise the store's :class:`~engine.errors.UserError` when they cannot be saved; then
    nothing here changes.
    """

    def __init__(self, project: Project, num_samples: int) -> None:
        self._project = project
        self._decisions: dict[int, Decision] = project.decisions()
        # Mirrors that views count in O(1)/numpy time on every key press; ``decided`` is changed in place.
        self.decided = np.zeros(num_samples, dtype=bool)
        self._action_counts: Counter[str] = Counter()
        self._mirror_all()
        # History rows (decision_history ids) this app wrote, and those it undid.
        self._made_here: set[int] = set()
        self._undone_here: set[int] = set()

    # ------------------------------------------------------------------ reading
    def get(self, sample_id: int) -> Decision | None:
        return self._decisions.get(sample_id)

    def all(self) -> dict[int, Decision]:
        return dict(self._decisions)

    def __len__(self) -> int:
        return len(self._decisions)

    def action_counts(self) -> dict[str, int]:
        return {action: self._action_counts.get(action, 0) for action in ("relabel", "remove", "keep")}

    def reload(self) -> bool:
        """Read the decisions again (another program may have decided); True when they changed."""
        decisions = self._project.decisions()
        if decisions == self._decisions:
            return False
        self._decisions = decisions
        self._mirror_all()
        return True

    def _mirror_all(self) -> None:
        self.decided[:] = False
        self.decided[list(self._decisions)] = True
        self._action_counts = Counter(decision.action for decision in self._decisions.values())

    def _mirror(self, sample_id: int, state: Decision | None) -> None:
        previous = self._decisions.pop(sample_id, None)
        if previous is not None:
            self._action_counts[previous.action] -= 1
        if state is not None:
            self._decisions[sample_id] = state
            self._action_counts[state.action] += 1
        self.decided[sample_id] = state is not None

    def _mirror_states(self, states: list[Decision]) -> None:
        for state in states:
            self._mirror(state.sample_id, None if state.action == "unreviewed" else state)

    # ------------------------------------------------------------------ writing
    def decide(self, sample_id: int, action: str, new_label: int | None = None) -> Decision:
        """Commit one decision (the store returns only once it is durable)."""
        before = self._latest_history_id()
        decision = self._project.decide(int(sample_id), action, new_label)
        self._note_made_here(before)
        self._mirror(decision.sample_id, decision)
        return decision

    def decide_many(self, items: list[tuple[int, str, int | None]], provenance: str = BULK) -> list[Decision]:
        """Commit many decisions as one transaction and one undo step; ``provenance`` as the store's: a bulk
        action's by default, a person's where a person looked at every sample (a duplicate group)."""
        before = self._latest_history_id()
        decisions = self._project.decide_many(items, provenance=provenance)
        self._note_made_here(before)
        self._mirror_states(decisions)
        return decisions

    def undo(self) -> list[Decision]:
        """Undo this app's latest step (a bulk batch is one step); the states it left, [] if nothing to undo.

        Raises :class:`MadeElsewhere` when the project's latest decision was not made here.
        """
        latest = self._latest_active()
        if latest is None:
            return []
        if latest not in self._made_here:
            raise MadeElsewhere(_sentence(UNDO_ELSEWHERE))
        undone_before = self._undone_ids()
        states = self._project.undo_step()
        self._mirror_states(states)
        self._undone_here |= self._undone_ids() - undone_before
        return states

    def redo(self) -> list[Decision]:
        """Redo what this app undid (a bulk batch is one step); the states it left, [] if nothing to redo."""
        oldest = self._oldest_undone()
        if oldest is None:
            return []
        if oldest not in self._undone_here:
            raise MadeElsewhere(_sentence(REDO_ELSEWHERE))
        states = self._project.redo_step()
        self._mirror_states(states)
        self._undone_here &= self._undone_ids()
        return states

    def can_undo(self) -> bool:
        """Whether the latest step is one of this app's."""
        return self._latest_active() in self._made_here

    def can_redo(self) -> bool:
        return self._oldest_undone() in self._undone_here

    # ------------------------------------------------------------------ history
    def _latest_history_id(self) -> int:
        return int(self._project.execute("SELECT COALESCE(MAX(id), 0) FROM decision_history")[0][0])

    def _note_made_here(self, before: int) -> None:
        # The history rows just written are this app's: the store commits before returning, so
        # only a CLI writing in the same instant could slip a row in between.
        self._made_here.update(row[0] for row in self._project.execute(
            "SELECT id FROM decision_history WHERE id > ?", (before,)))
        self._undone_here.clear()  # a new decision drops the redo stack

    def _undone_ids(self) -> set[int]:
        return {row[0] for row in self._project.execute("SELECT id FROM decision_history WHERE state = 'undone'")}

    def _latest_active(self) -> int | None:
        value = self._project.execute("SELECT MAX(id) FROM decision_history WHERE state = 'active'")[0][0]
        return None if value is None else int(value)

    def _oldest_undone(self) -> int | None:
        value = self._project.execute("SELECT MIN(id) FROM decision_history WHERE state = 'undone'")[0][0]
        return None if value is None else int(value)
