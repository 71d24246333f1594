"""Whether a run's results still describe the project: the label state a run records, and what makes it stale.

A run records at its start the fingerprints of the observed labels and of the decisions
(:meth:`LabelState.fingerprint`). :meth:`LabelState.stale_reason` compares them with the project
now: a run is stale once the labels change, an imported run also once its file changes
(:func:`source_changed_reason`), and a run that trained on the decisions
(``DECISION_DEPENDENT_KINDS``) once they change the labels it trained on.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.evidence.imported_files import file_sha256
from engine.evidence.run_labels import checked_run_labels
from engine.store.decisions import Decisions

if TYPE_CHECKING:
    from engine.store.runs import RunInfo

# Run kinds whose results depend on the decisions too (not only on the labels): see LabelState.stale_reason.
# They train on the decisions: an audit on the labels with the relabels applied and the removed left out.
DECISION_DEPENDENT_KINDS = frozenset({"audit", "retrain", "compare", "tune"})
IMPORTED_SOURCE = "imported"  # spec["evidence"]["oof_probs"]["source"] of a run made by engine.evidence.imported


def evidence_source(run: RunInfo) -> dict[str, Any]:
    """Where a run's out-of-sample probabilities came from: ``{"source": "imported", "file", "sha256", ...}`` for an
    import, ``{"source": "trained"}`` for a run that trained its own models."""
    evidence = run.spec.get("evidence")
    record = evidence.get("oof_probs") if isinstance(evidence, dict) else None
    return dict(record) if isinstance(record, dict) else {"source": "trained"}


def source_changed_reason(run: RunInfo) -> str | None:
    """Why an imported run no longer describes its file (it changed since), or None (unchanged, not an import, or
    the file is gone: the run keeps its own copy). Re-hashes only when the size or modification time moved."""
    record = evidence_source(run)
    if record.get("source") != IMPORTED_SOURCE or not record.get("file") or not record.get("sha256"):
        return None
    path = Path(str(record["file"]))
    try:
        stat = path.stat()
    except OSError:
        return None
    if stat.st_size == record.get("size") and stat.st_mtime_ns == record.get("mtime_ns"):
        return None
    try:
        digest = _cached_sha256(str(path), stat.st_size, stat.st_mtime_ns)
    except OSError:
        return None
    if digest == record["sha256"]:
        return None
    return (f"{path} changed since it was imported into this run (its sha256 differs): the run's scores describe "
            "the predictions as they were; import the file again")


@lru_cache(maxsize=64)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(Path(path))  # keyed by size and time: a changed file is hashed again


class LabelState(Decisions):
    """Fingerprints of the labels and decisions, and the staleness of a run measured against them."""

    def labels_fingerprint(self) -> str:
        """sha256 over every sample's id, split, observed label and replacement image.

        Changes when noise is injected, labels are reset or an image is replaced: anything
        that changes what a model trained on this project's labels would see.
        """
        digest = hashlib.sha256()
        for row in self._conn.execute("SELECT id, split, label, image_override FROM samples ORDER BY id"):
            digest.update(json.dumps(list(row)).encode())
        return digest.hexdigest()

    def decisions_fingerprint(self) -> str:
        """sha256 over the current decisions (sample, action, new label)."""
        digest = hashlib.sha256()
        for row in self._conn.execute("SELECT sample_id, action, new_label FROM decisions ORDER BY sample_id"):
            digest.update(json.dumps(list(row)).encode())
        return digest.hexdigest()

    def fingerprint(self) -> dict[str, str]:
        """What a run records at its start: ``{"labels": ..., "decisions": ...}``."""
        return {"labels": self.labels_fingerprint(), "decisions": self.decisions_fingerprint()}

    def label_state_changes(self, run: RunInfo) -> list[str]:
        """Which of "labels", "decisions" differ from what ``run`` recorded at its start (none recorded: [])."""
        recorded = run.spec.get("fingerprint")
        if not isinstance(recorded, dict):
            return []
        now = self.fingerprint()
        return [part for part in ("labels", "decisions") if part in recorded and recorded[part] != now[part]]

    def stale_reason(self, run: RunInfo, *, decided_since_ok: bool = False) -> str | None:
        """None when ``run``'s results still describe this project's labels, else a sentence saying why not.

        Every run is stale once the observed labels change (its scores and suggestions are
        about labels that no longer exist). A run that trained on the decisions is stale too
        once they change: an audit when the effective labels (relabels applied, removals)
        differ from those it recorded (engine.evidence.run_labels), a retrain once the decisions change
        at all. ``decided_since_ok``: decisions made since do not count (an audit's own review:
        deciding its flagged samples one by one leaves its suggestions for the others as they
        were). A run that recorded no fingerprint (made by an older version) is "unknown", not stale: None.
        """
        changed = self.label_state_changes(run)
        if "labels" in changed:
            later = [noise for noise in self.noise_history() if noise["created"] > run.created]
            cause = "".join(f"; noise injected ({noise['mode']}, rate {noise['rate']}, seed {noise['seed']})"
                            for noise in later[-1:])
            return f"labels changed since this {run.kind} run{cause}: its results describe labels that no longer exist"
        changed_file = source_changed_reason(run)  # an imported run: its file changed since
        if changed_file:
            return changed_file
        if "decisions" in changed and run.kind in DECISION_DEPENDENT_KINDS and not decided_since_ok:
            return self.decisions_stale_reason(run)
        return None

    def decisions_stale_reason(self, run: RunInfo) -> str | None:
        """Why ``run`` no longer describes the labels after the decisions changed, or None when it still does.

        An audit that recorded its labels (engine.evidence.run_labels) is stale when they differ from the
        project's effective labels (observed labels with the decisions applied; removals included); a
        run that did not (an older version, or a run kind that records none) is stale whenever the
        decisions changed.
        """
        used = checked_run_labels(run, self.num_samples) if run.kind == "audit" else None
        if used is None:
            return (f"decisions changed since this {run.kind} run: its model was trained on the decisions made "
                    "before it")
        labels, keep = self.labels_with_decisions()
        changed = int(((used.labels != labels) | (used.removed != ~keep)).sum())
        if not changed:
            return None
        return (f"decisions changed since this {run.kind} run: {changed} samples are relabeled or removed "
                "differently from the labels it trained on, so its scores describe the labels before those decisions")
