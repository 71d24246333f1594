"""The scores of one audit run as the app holds them: every detector's score and flagged set, the suggestions,
the ranking, the noise matrix and which samples were audited, all indexed by sample id."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.detectors import review_detector
from engine.store import Project, RunInfo


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
    ids = _load_array(run.folder, "audited_ids.npy")  # engine.workflows.audit.AUDITED_IDS_FILE (that module is heavy)
    if ids is not None and ids.ndim == 1 and np.issubdtype(ids.dtype, np.integer) \
            and (len(ids) == 0 or (ids.min() >= 0 and ids.max() < count)):
        mask[ids] = True
        return mask
    rows = project.execute("SELECT id FROM samples WHERE split = 'train'")
    mask[[row[0] for row in rows if 0 <= row[0] < count]] = True
    return mask
