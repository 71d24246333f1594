"""The retrain job: the same model trained on cleaned and on uncorrected labels, scored on held-out data.

The cleaned training set is the TRAIN split with the decisions applied
(removed samples dropped, relabels used). In *auto* mode the top-k suggestions
of an audit are applied on top, without review and without being written as
decisions (cleanlab-style prune-and-retrain); a sample the user already
decided about keeps the user's decision.

Both models use the same configuration and method (``ce`` unless ``--method`` names
another) and are trained once per seed (3 by default: ``seed``, ``seed+1``, ...), so the
difference in held-out accuracy is measured per seed, paired, and reported with its
95% interval; "no measurable change" where the interval holds zero, so seed noise is
never shown as the effect of the cleaning. The held-out (test) split is
scored against the truth where it is known, else against the labels its
samples were imported with: never against edited ones (decisions on held-out
samples, made from a model's suggestions, would let the model grade itself),
and on every held-out sample, so both models and every retrain are measured
on the same set. The first seed's cleaned model ``state_dict`` is saved as
``model.pt`` in the run folder (load it with ``torch.load(...,
weights_only=True)``), described by ``model.json`` (classes, image size, method
and options).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from engine.errors import UserError
from engine.events import EventSink
from engine.jobs import CancelToken, JobContext, run_job
from engine.stats import describe_spread, spread
from engine.store import UNKNOWN_TRUTH, Project, RunInfo, atomic_write_bytes

if TYPE_CHECKING:
    from engine.compare import ModelPlan
    from engine.training.config import TrainConfig
    from engine.training.fit import FitResult

RETRAIN_KIND = "retrain"
MODEL_FILE = "model.pt"
MODEL_INFO_FILE = "model.json"  # beside model.pt: the classes, the image size, the method and its options
BASELINE_METHOD = "ce"
DEFAULT_SEEDS = 3
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


def _save_model(folder: Path, fit: FitResult, config: TrainConfig, project: Project, plan: ModelPlan) -> None:
    """``model.pt`` (a state dict) and ``model.json`` (what it is and how it was trained), side by side."""
    _save_state_dict(folder / MODEL_FILE, fit.model)
    atomic_write_bytes(folder / MODEL_INFO_FILE,
                       json.dumps(model_record(config, project, plan.method, plan.options, plan.seed), indent=2).encode())


def model_record(config: TrainConfig, project: Project, method: str, options: dict[str, Any],
                 seed: int) -> dict[str, Any]:
    return {"file": MODEL_FILE, "name": config.model, "num_classes": project.num_classes,
            "class_names": project.class_names(), "image_size": config.image_size, "method": method,
            "options": options, "seed": seed, "trained_on": "cleaned labels"}


def retrain_body(ctx: JobContext, config: TrainConfig, spec: dict[str, Any]) -> dict[str, Any]:
    """The job body; ``spec`` is :func:`retrain_spec`'s (a spec of an older version lacks method and seeds)."""
    from engine.compare import (
        ModelPlan,
        arm_figures,
        difference_figures,
        paired_seeds,
        train_models,
        trusted_for_run,
    )
    from engine.crossval import save_array
    from engine.methods import parse_options

    project = ctx.project
    table = project.sample_table()
    method = str(spec.get("method", BASELINE_METHOD))
    options = parse_options(method, spec.get("options") or {})
    seeds = paired_seeds(config.seed, int(spec.get("seeds", 1)))  # an older spec trained one seed
    baseline = bool(spec.get("baseline", True))
    training = cleaned_training_set(
        project,
        auto_top_k=spec.get("auto_top_k"),
        auto_action=spec.get("auto_action", "remove"),
        audit_run=spec.get("audit_run"),
        detector=spec.get("detector", "cl"),
    )
    eval_ids, eval_labels, against = heldout_targets(project, training)
    from engine.training.distributed import is_main

    if is_main():  # under torchrun, rank 0 alone writes
        save_array(ctx.run.folder / "labels.npy", training.labels)
        save_array(ctx.run.folder / "keep.npy", training.keep)
    trusted = trusted_for_run(ctx, spec.get("trusted") or {}, [method], config.seed)
    ctx.events.log(
        f"cleaned training set: {len(training.train_ids)} samples ({training.n_removed} removed, "
        f"{training.n_relabeled} relabeled); method {method}; seeds {', '.join(map(str, seeds))}; "
        f"scoring {len(eval_ids)} held-out samples against {against}"
    )
    plans: list[ModelPlan] = []
    for seed in seeds:  # seed by seed: a stopped job has whole pairs behind it
        plans.append(ModelPlan("cleaned", method, options, seed, training.train_ids,
                               training.labels[training.train_ids]))
        if baseline:
            plans.append(ModelPlan("original", method, options, seed, table.train_ids, table.label[table.train_ids]))

    def keep_first_cleaned(plan: ModelPlan, fit: FitResult) -> None:
        if plan.arm == "cleaned" and plan.seed == seeds[0] and is_main():
            _save_model(ctx.run.folder, fit, config, project, plan)

    records = train_models(ctx, config, plans, eval_ids, eval_labels, stage="retrain", trusted=trusted,
                           on_model=keep_first_cleaned)
    cleaned = arm_figures(records, "cleaned", seeds)
    original = arm_figures(records, "original", seeds) if baseline else None
    difference = difference_figures(records, "cleaned", "original", seeds) if baseline else None
    summary: dict[str, Any] = {
        # The means over the seeds, under the names of a one-seed retrain (the app and older readers use them).
        "accuracy_cleaned": cleaned["accuracy_mean"],
        "accuracy_original": None if original is None else original["accuracy_mean"],
        "accuracy_cleaned_std": cleaned["accuracy_std"],
        "accuracy_original_std": None if original is None else original["accuracy_std"],
        "accuracy_cleaned_per_seed": cleaned["accuracy_per_seed"],
        "accuracy_original_per_seed": None if original is None else original["accuracy_per_seed"],
        "difference": difference,  # cleaned - original, paired by seed, with its 95% interval
        "verdict": None if difference is None else difference["verdict"],
        "seeds": seeds,
        "method": {"name": method, "options": options},
        "trusted": None if trusted is None else {"source": trusted.source, "count": int(len(trusted.ids)),
                                                 "ids_file": "trusted_ids.npy"},
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
        "model": model_record(config, project, method, options, seeds[0]),
    }
    ctx.events.result("retrain", {key: summary[key] for key in (
        "accuracy_cleaned", "accuracy_original", "accuracy_cleaned_std", "accuracy_original_std", "difference",
        "verdict", "seeds", "method", "evaluated_against", "n_train_cleaned", "n_removed", "n_relabeled")})
    after = describe_spread(spread(cleaned["accuracy_per_seed"]))
    before = "n/a" if original is None else describe_spread(spread(original["accuracy_per_seed"]))
    change = "" if difference is None else f"; cleaned - original: {difference['text']}"
    ctx.events.log(f"held-out accuracy ({against}, {len(seeds)} seed{'s' if len(seeds) != 1 else ''}): "
                   f"original {before}, cleaned {after}{change}")
    return summary


def retrain_spec(
    *,
    auto_top_k: int | Literal["flagged"] | None = None,
    auto_action: AutoAction = "remove",
    audit_run: str | None = None,
    detector: str = "cl",
    baseline: bool = True,
    method: str = BASELINE_METHOD,
    options: dict[str, Any] | None = None,
    seeds: int = DEFAULT_SEEDS,
    trusted: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run spec's retrain part (training settings go under ``train``); ``options`` are the method's,
    validated here (strings from the command line, or typed values)."""
    from engine.compare import parse_seeds
    from engine.methods import parse_options

    return {"auto_top_k": auto_top_k, "auto_action": auto_action, "audit_run": audit_run,
            "detector": detector, "baseline": baseline, "method": method,
            "options": parse_options(method, options or {}), "seeds": parse_seeds(seeds),
            "trusted": trusted or {"per_class": None, "csv": None}}


def run_retrain(
    project: Project,
    config: TrainConfig,
    *,
    events: EventSink | None = None,
    cancel: CancelToken | None = None,
    **options: Any,
) -> tuple[RunInfo, str]:
    """Retrain as a recorded run; ``options`` are those of :func:`retrain_spec`. Returns (run, status)."""
    if options.get("options"):  # ``sigma="best"``: the latest finished tune's winner
        options["options"] = resolve_best_options(project, options.get("method", BASELINE_METHOD), options["options"])
    spec = {"train": config.to_dict(), **retrain_spec(**options)}
    return run_job(project, RETRAIN_KIND, spec, lambda ctx: retrain_body(ctx, config, spec),
                   events or EventSink(), cancel=cancel)


def resolve_best_options(project: Project | Path, method: str, options: dict[str, Any]) -> dict[str, Any]:
    """``--option sigma=best``: each ``best`` replaced by that option's winner in the project's latest finished
    tune of ``method`` (see engine.tune); UserError when there is none."""
    from engine.tune import BEST
    from engine.tune import resolve_best_options as from_tune

    if not any(isinstance(value, str) and value.strip().lower() == BEST for value in options.values()):
        return options
    if isinstance(project, Project):
        return from_tune(project, method, options)
    with Project.open(project) as opened:
        return from_tune(opened, method, options)
