"""The retrain job: the same model trained on cleaned and on uncorrected labels, scored on held-out data.

The cleaned training set is the TRAIN split with the decisions applied
(removed samples dropped, relabels used). In *auto* mode the top-k suggestions
of an audit are applied on top, without review and without being written as
decisions (cleanlab-style prune-and-retrain); a sample the user already
decided about keeps the user's decision.

Both models use the same configuration and seed, so the difference in
held-out accuracy is the effect of the cleaning. The held-out (test) split is
scored against the truth where it is known, else against the labels its
samples were imported with: never against edited ones (decisions on held-out
samples, made from a model's suggestions, would let the model grade itself),
and on every held-out sample, so both models and every retrain are measured
on the same set. The cleaned model's ``state_dict`` is saved as
``model.pt`` in the run folder (load it with ``torch.load(...,
weights_only=True)``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from engine.errors import UserError
from engine.events import EventSink
from engine.jobs import CancelToken, JobContext, run_job
from engine.store import UNKNOWN_TRUTH, Project, RunInfo, atomic_write_bytes

if TYPE_CHECKING:
    from engine.training.config import TrainConfig

RETRAIN_KIND = "retrain"
MODEL_FILE = "model.pt"
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
        stale = project.stale_reason(run)
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


def heldout_targets(project: Project, training: TrainingSet) -> tuple[np.ndarray, np.ndarray, str]:
    """(eval ids (m,), their labels (m,), "truth" | "given_labels") on the test split.

    ``training`` is not consulted: no decision, relabel or removal, changes what the
    held-out split is measured against (see the module docstring).
    """
    table = project.sample_table()
    test_ids = table.test_ids
    if not len(test_ids):
        raise UserError("this project has no held-out (test) samples to measure accuracy on",
                        "re-import the dataset with a test split")
    truth = table.true_label[test_ids]
    if (truth != UNKNOWN_TRUTH).all():
        # Open-set samples (truth -1) have no right class: no model can be right on them.
        eval_ids = test_ids[truth >= 0]
        return eval_ids, table.true_label[eval_ids], "truth"
    return test_ids, table.given_label[test_ids], "given_labels"


def _save_state_dict(path: Any, model: Any) -> None:
    import torch

    buffer = io.BytesIO()
    # Tensors only (moved to CPU), so the file loads with weights_only=True anywhere.
    torch.save({key: value.detach().cpu() for key, value in model.state_dict().items()}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def retrain_body(ctx: JobContext, config: TrainConfig, spec: dict[str, Any]) -> dict[str, Any]:
    """The job body. ``spec`` may hold ``auto_top_k``, ``auto_action``, ``audit_run``, ``detector``, ``baseline``."""
    from engine.crossval import save_array
    from engine.training.fit import fit_and_evaluate

    project = ctx.project
    table = project.sample_table()
    training = cleaned_training_set(
        project,
        auto_top_k=spec.get("auto_top_k"),
        auto_action=spec.get("auto_action", "remove"),
        audit_run=spec.get("audit_run"),
        detector=spec.get("detector", "cl"),
    )
    eval_ids, eval_labels, against = heldout_targets(project, training)
    save_array(ctx.run.folder / "labels.npy", training.labels)
    save_array(ctx.run.folder / "keep.npy", training.keep)
    ctx.events.log(
        f"cleaned training set: {len(training.train_ids)} samples ({training.n_removed} removed, "
        f"{training.n_relabeled} relabeled); scoring {len(eval_ids)} held-out samples against {against}"
    )
    cleaned = fit_and_evaluate(
        ctx, config, training.train_ids, training.labels[training.train_ids], eval_ids, eval_labels,
        stage="cleaned", checkpoint_name="checkpoint-cleaned.pt",
    )
    _save_state_dict(ctx.run.folder / MODEL_FILE, cleaned.model)
    accuracy_original = None
    if spec.get("baseline", True):
        train_ids = table.train_ids
        original = fit_and_evaluate(
            ctx, config, train_ids, table.label[train_ids], eval_ids, eval_labels,
            stage="original", checkpoint_name="checkpoint-original.pt",
        )
        accuracy_original = original.accuracy
    for name in ("checkpoint-cleaned.pt", "checkpoint-original.pt"):
        (ctx.run.folder / name).unlink(missing_ok=True)
    summary: dict[str, Any] = {
        "accuracy_cleaned": cleaned.accuracy,
        "accuracy_original": accuracy_original,
        "accuracy_cleaned_measured_against": against,
        "accuracy_original_measured_against": against,
        "evaluated_against": against,  # the older name, kept for readers of earlier summaries
        "n_eval": int(len(eval_ids)),
        "n_train_cleaned": int(len(training.train_ids)),
        "n_train_original": int(len(table.train_ids)),
        "n_removed": training.n_removed,
        "n_relabeled": training.n_relabeled,
        "n_auto": int(len(training.auto_ids)),
        "auto": None if spec.get("auto_top_k") is None else {
            "top_k": spec["auto_top_k"], "action": spec.get("auto_action", "remove"),
            "audit_run": training.audit_run, "detector": spec.get("detector", "cl"),
        },
        "model": {"file": MODEL_FILE, "name": config.model, "num_classes": project.num_classes,
                  "class_names": project.class_names(), "image_size": config.image_size},
    }
    ctx.events.result("retrain", {key: summary[key] for key in (
        "accuracy_cleaned", "accuracy_original", "evaluated_against", "n_train_cleaned", "n_removed", "n_relabeled")})
    before = "n/a" if accuracy_original is None else f"{accuracy_original:.4f}"
    ctx.events.log(f"held-out accuracy ({against}): original {before}, cleaned {cleaned.accuracy:.4f}")
    return summary


def retrain_spec(
    *,
    auto_top_k: int | Literal["flagged"] | None = None,
    auto_action: AutoAction = "remove",
    audit_run: str | None = None,
    detector: str = "cl",
    baseline: bool = True,
) -> dict[str, Any]:
    """The run spec's retrain part (training settings go under ``train``)."""
    return {"auto_top_k": auto_top_k, "auto_action": auto_action, "audit_run": audit_run,
            "detector": detector, "baseline": baseline}


def run_retrain(
    project: Project,
    config: TrainConfig,
    *,
    events: EventSink | None = None,
    cancel: CancelToken | None = None,
    **options: Any,
) -> tuple[RunInfo, str]:
    """Retrain as a recorded run; ``options`` are those of :func:`retrain_spec`. Returns (run, status)."""
    spec = {"train": config.to_dict(), **retrain_spec(**options)}
    return run_job(project, RETRAIN_KIND, spec, lambda ctx: retrain_body(ctx, config, spec),
                   events or EventSink(), cancel=cancel)
