"""``prune``: data debugging by a detector's ranking (seeds/training-dynamics-lstm-detector.md).

The seed ranks the training samples by how suspect a noise detector finds them, takes the
``remove_ratio`` most suspect, and either trains a new model without them or replaces their
labels with a model's prediction ("data debugging"). Here the ranking and the prediction come
from an audit of the project: ``detector``'s scores (higher = more likely mislabeled) and its
suggested classes (the audit model's out-of-sample prediction). The job that builds the method
reads them with :func:`audit_evidence` into ``MethodContext.suspect_scores`` / ``suggested``.

* ``action=remove``: the suspects are left out of the training set (``select_train_ids``), so the
  learning-rate schedule and a checkpoint's sample record are those of the pruned set.
* ``action=relabel``: the suspects train with the suggested class instead of their label; a
  suspect without a suggestion is left out. The relabeling is part of the checkpoint: a resume
  with other suggestions stops instead of mixing two sets of labels.

Exactly ``round(remove_ratio * n)`` of the ``n`` training samples are suspects; ties in score go
to the lower sample id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from engine.errors import UserError
from engine.training.hooks import Method, StepOutput

if TYPE_CHECKING:
    from engine.methods import MethodContext
    from engine.store import Project
    from engine.training.data import Batch
    from engine.training.loop import TrainState

ACTIONS = ("remove", "relabel")


@dataclass
class PruneOptions:
    detector: str = field(default="cl", metadata={
        "help": "the audit detector whose scores rank the samples (from the project's latest finished audit)"})
    remove_ratio: float = field(default=0.2, metadata={
        "help": "share of the training samples, most suspect first, to remove or relabel (the seed: 0.15 to 0.25 "
                "at 20 percent noise)"})
    action: str = field(default="remove", metadata={
        "help": "remove: train without the suspects; relabel: train them with the audit's suggested class"})

    def __post_init__(self) -> None:
        if not 0 <= self.remove_ratio < 1 or math.isnan(self.remove_ratio):
            raise UserError(f"method prune: remove_ratio must be at least 0 and below 1 (got {self.remove_ratio})",
                            "e.g. --option remove_ratio=0.2 for the most suspect fifth")
        if self.action not in ACTIONS:
            raise UserError(f"method prune: unknown action {self.action!r}", "use --option action=remove or action=relabel")


def most_suspect(train_ids: np.ndarray, scores: np.ndarray, ratio: float) -> np.ndarray:
    """The ``round(ratio * n)`` ids of ``train_ids`` with the highest scores, most suspect first.

    Ties go to the lower id; a NaN score counts as the least suspect.
    """
    ids = np.sort(np.asarray(train_ids, dtype=np.int64))
    values = np.nan_to_num(np.asarray(scores, dtype=np.float64)[ids], nan=-np.inf)
    count = math.floor(ratio * len(ids) + 0.5)
    return ids[np.argsort(-values, kind="stable")[:count]]


def audit_evidence(project: Project, detector: str = "cl",
                   audit_run: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(scores (N,), suggested (N,), audit run id) of ``detector`` from an audit (the latest finished one).

    An audit made on labels that have changed since is refused: its ranking is of other labels.
    """
    run = project.run(audit_run, kind=None if audit_run else "audit")
    stale = project.stale_reason(run, decided_since_ok=True)  # decisions since: its review; those samples are decided
    if stale:
        raise UserError(f"method prune would rank the samples by audit {run.id}, but the {stale}",
                        "run a new audit first (`python -m engine audit PROJECT`), then retrain")
    evidence = project.scores(run.id, detector)
    return evidence["score"], evidence["suggested"], run.id


class Prune(Method):
    name = "prune"

    def __init__(self, options: PruneOptions, context: MethodContext) -> None:
        self.options = options
        if context.suspect_scores is None:
            raise UserError("method prune ranks the samples by an audit's scores, and none were given",
                            "run `python -m engine audit PROJECT` first, then retrain with --method prune")
        scores = np.asarray(context.suspect_scores)
        if len(scores) != len(context.labels):
            raise UserError(f"method prune got {len(scores)} audit scores for {len(context.labels)} samples",
                            "run a new audit of this project (`python -m engine audit PROJECT`)")
        self.suspects = most_suspect(context.train_ids, scores, options.remove_ratio)
        # The class each relabeled sample trains with, -1 elsewhere (those train with their batch label).
        self.relabel_to = torch.full((len(context.labels),), -1, dtype=torch.int64)
        dropped = self.suspects
        relabeled = np.zeros(0, dtype=np.int64)
        if options.action == "relabel":
            if context.suggested is None or len(context.suggested) != len(context.labels):
                raise UserError("method prune with action=relabel needs the audit's suggested classes",
                                "run `python -m engine audit PROJECT` first, or use --option action=remove")
            suggested = np.asarray(context.suggested, dtype=np.int64)[self.suspects]
            has_suggestion = (suggested >= 0) & (suggested < context.num_classes)
            relabeled = self.suspects[has_suggestion]
            self.relabel_to[torch.from_numpy(relabeled)] = torch.from_numpy(suggested[has_suggestion])
            dropped = self.suspects[~has_suggestion]
        self.dropped = np.sort(dropped)
        self.relabeled = np.sort(relabeled)

    def select_train_ids(self, train_ids: np.ndarray) -> np.ndarray:
        return train_ids[~np.isin(train_ids, self.dropped)]

    def step(self, state: TrainState, batch: Batch) -> StepOutput:
        logits = state.model(batch.x)
        targets = batch.y
        if len(self.relabeled):
            relabeled = self.relabel_to[batch.ids].to(batch.y.device)
            targets = torch.where(relabeled >= 0, relabeled, batch.y)
        return StepOutput(F.cross_entropy(logits.float(), targets), logits)

    def state_dict(self) -> dict[str, Any]:
        return {"dropped": torch.from_numpy(self.dropped), "relabeled": torch.from_numpy(self.relabeled),
                "relabeled_to": self.relabel_to[torch.from_numpy(self.relabeled)]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from engine.training.checkpoints import START_A_NEW_RUN, CheckpointMismatch

        mine = self.state_dict()
        if any(not torch.equal(state[key].cpu(), mine[key]) for key in mine):
            raise CheckpointMismatch("method prune: the audit's ranking or suggestions changed since this run was "
                                     "cancelled; its checkpoint was trained on other samples or labels",
                                     START_A_NEW_RUN)
