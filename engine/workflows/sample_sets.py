"""Which samples a model trains on (the cleaned training set of retrain, compare and tune) and which it is measured
on (the held-out set, for every job that reports a held-out accuracy).

The cleaned training set is the TRAIN split with the person's decisions applied (removed
samples dropped, relabels used); in *auto* mode the top-k suggestions of an audit are applied
on top, without review and without being written as decisions. The held-out (test) split is
measured against the truth where it is known, else the labels it was imported with, never
edited ones (:func:`heldout_targets`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from engine.errors import UserError
from engine.store import UNKNOWN_TRUTH, Project, SampleTable

AutoAction = Literal["remove", "relabel"]


@dataclass(frozen=True)
class TrainingSet:
    """What the cleaned model trains on.

    Attributes
    ----------
    labels : np.ndarray of shape (N,)
        Labels with decisions (and auto suggestions) applied.
    keep : np.ndarray of shape (N,) bool
        False for removed samples.
    train_ids : np.ndarray of shape (n,)
        Train-split ids that are kept, the cleaned model's training set.
    auto_ids : np.ndarray of shape (k,)
        Ids changed by auto mode (empty without it), most suspect first.
    """

    labels: np.ndarray
    keep: np.ndarray
    train_ids: np.ndarray
    auto_ids: np.ndarray
    n_removed: int  # train samples dropped
    n_relabeled: int  # kept train samples whose label differs from the observed one
    audit_run: str | None = None  # the audit whose suggestions auto mode applied


def parse_top_k(value: str) -> int | Literal["flagged"]:
    """``--auto-top-k``: a positive count, or ``flagged`` for the detector's whole flagged set."""
    if value == "flagged":
        return "flagged"
    try:
        k = int(value)
    except ValueError:
        raise UserError(f"--auto-top-k {value!r} is not a number", "pass a count like 100, or `flagged`") from None
    if k < 1:
        raise UserError(f"--auto-top-k {k} must be at least 1", "pass a count like 100, or `flagged`")
    return k


def cleaned_training_set(
    project: Project,
    *,
    auto_top_k: int | Literal["flagged"] | None = None,
    auto_action: AutoAction = "remove",
    audit_run: str | None = None,
    detector: str = "cl",
) -> TrainingSet:
    """The decisions applied to the train split, plus the top-k audit suggestions in auto mode.

    Auto mode takes the train-split samples the user has not decided about, in
    the audit's ranking order (``"flagged"``: all of those the detector flagged),
    and removes them or relabels them to the suggested label.
    """
    table = project.sample_table()
    labels, keep = project.labels_with_decisions()
    auto_ids = np.zeros(0, dtype=np.int64)
    run_id: str | None = None
    if auto_top_k is not None:
        if auto_action not in ("remove", "relabel"):
            raise UserError(f"unknown auto action {auto_action!r}", "use remove or relabel")
        run = project.run(audit_run, kind=None if audit_run else "audit")
        run_id = run.id
        stale = project.stale_reason(run, decided_since_ok=True)  # auto mode skips the samples decided since
        if stale:
            raise UserError(f"auto mode would apply the suggestions of audit {run.id}, but the {stale}",
                            "run a new audit first (`python -m engine audit PROJECT`), then retrain")
        scores = project.scores(run.id, detector)
        decided = np.zeros(len(labels), dtype=bool)
        decided[list(project.decisions())] = True
        candidates = np.argsort(scores["rank"], kind="stable")  # ids, most suspect first
        candidates = candidates[(table.split[candidates] == "train") & ~decided[candidates]]
        flagged_only = auto_top_k == "flagged"
        auto_ids = candidates[scores["flagged"][candidates]] if flagged_only else candidates[:auto_top_k]
        if auto_action == "remove":
            keep[auto_ids] = False
        else:
            suggested = scores["suggested"][auto_ids]
            has_suggestion = suggested >= 0
            labels[auto_ids[has_suggestion]] = suggested[has_suggestion]
    train = table.train_ids
    kept = train[keep[train]]
    return TrainingSet(
        labels=labels,
        keep=keep,
        train_ids=kept,
        auto_ids=auto_ids,
        n_removed=int(len(train) - len(kept)),
        n_relabeled=int((labels[kept] != table.label[kept]).sum()),
        audit_run=run_id,
    )


def heldout_to_measure(project: Project) -> tuple[np.ndarray, np.ndarray, str]:
    """(eval ids (m,), their labels (m,), "truth" | "given_labels") on the test split; refused when it is empty.

    No decision, relabel or removal changes what the held-out split is measured against (see
    :func:`heldout_targets`).
    """
    table = project.sample_table()
    if not len(table.test_ids):
        raise UserError("this project has no held-out (test) samples to measure accuracy on",
                        "re-import the dataset with a test split")
    return heldout_targets(table)


def training_set_of_spec(project: Project, spec: Mapping[str, Any]) -> TrainingSet:
    """The cleaned training set a run's spec names: its auto-mode keys (``auto_top_k``, ``auto_action``,
    ``audit_run``, ``detector``), as retrain and compare record them."""
    return cleaned_training_set(project, auto_top_k=spec.get("auto_top_k"),
                                auto_action=spec.get("auto_action", "remove"), audit_run=spec.get("audit_run"),
                                detector=spec.get("detector", "cl"))


def heldout_targets(table: SampleTable) -> tuple[np.ndarray, np.ndarray, str]:
    """(ids, target labels, against what) that held-out accuracy is measured on, per fold and overall.

    Against the truth where it is known (open-set samples, which have no right
    class, are left out: "truth"), else against the labels the held-out samples
    were imported with ("given_labels"), never edited ones: a held-out label
    changed after the model's own suggestion would grade the model by itself.
    """
    test_ids = table.test_ids
    truth = table.true_label[test_ids]
    if len(test_ids) and (truth != UNKNOWN_TRUTH).all():
        return test_ids[truth >= 0], truth[truth >= 0], "truth"
    return test_ids, table.given_label[test_ids], "given_labels"
