"""Detector scores: per run and detector, every sample's score, suggested label, flag and rank.

Arrays are (N,), indexed by sample id; the rank orders samples most-suspect first, as the
review shows them.
"""

from __future__ import annotations

import numpy as np

from engine.errors import UserError
from engine.store.database import Database


class Scores(Database):
    """Saves and reads the scores each detector of a run gave the samples."""

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
