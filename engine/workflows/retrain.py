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

from engine.cancel import CancelToken
from engine.events import EventSink
from engine.jobs import JobContext, run_job
from engine.stats import describe_spread, spread
from engine.store import Project, RunInfo, SampleTable, atomic_write_bytes
from engine.workflows import paired_models
from engine.workflows.paired_models import BASELINE_METHOD, DEFAULT_SEEDS, ModelPlan
from engine.workflows.sample_sets import AutoAction, TrainingSet, heldout_to_measure, training_set_of_spec
from engine.workflows.trusted import trusted_for_run

if TYPE_CHECKING:
    from engine.training.config import TrainConfig
    from engine.training.fit import FitResult
    from engine.workflows.trusted import TrustedSet

RETRAIN_KIND = "retrain"
MODEL_FILE = "model.pt"
MODEL_INFO_FILE = "model.json"  # beside model.pt: the classes, the image size, the method and its options


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


@dataclass(frozen=True)
class RetrainSettings:
    """What a retrain's spec asks: the method and its options, the seeds, and whether to train the baseline."""

    method: str
    options: dict[str, Any]
    seeds: list[int]
    baseline: bool  # also train on the uncorrected labels (the "original" arm)

    @classmethod
    def from_spec(cls, spec: dict[str, Any], first_seed: int) -> RetrainSettings:
        from engine.methods import parse_options

        method = str(spec.get("method", BASELINE_METHOD))
        return cls(method, parse_options(method, spec.get("options") or {}),
                   paired_models.paired_seeds(first_seed, int(spec.get("seeds", 1))),  # an older spec trained one seed
                   bool(spec.get("baseline", True)))

    def plans(self, table: SampleTable, training: TrainingSet) -> list[ModelPlan]:
        """Seed by seed, the cleaned model and (with the baseline) the original one: a stopped job has whole
        pairs behind it."""
        plans: list[ModelPlan] = []
        for seed in self.seeds:
            plans.append(ModelPlan("cleaned", self.method, self.options, seed, training.train_ids,
                                   training.labels[training.train_ids]))
            if self.baseline:
                plans.append(ModelPlan("original", self.method, self.options, seed, table.train_ids,
                                       table.label[table.train_ids]))
        return plans


def retrain_body(ctx: JobContext, config: TrainConfig, spec: dict[str, Any]) -> dict[str, Any]:
    """The job body; ``spec`` is :func:`retrain_spec`'s (a spec of an older version lacks method and seeds)."""
    from engine.arrays import save_array
    from engine.training.distributed import is_main

    project = ctx.project
    settings = RetrainSettings.from_spec(spec, config.seed)
    training = training_set_of_spec(project, spec)
    eval_ids, eval_labels, against = heldout_to_measure(project)
    if is_main():  # under torchrun, rank 0 alone writes
        save_array(ctx.run.folder / "labels.npy", training.labels)
        save_array(ctx.run.folder / "keep.npy", training.keep)
    trusted = trusted_for_run(ctx, spec.get("trusted") or {}, [settings.method], config.seed)
    ctx.events.log(
        f"cleaned training set: {len(training.train_ids)} samples ({training.n_removed} removed, "
        f"{training.n_relabeled} relabeled); method {settings.method}; seeds {', '.join(map(str, settings.seeds))}; "
        f"scoring {len(eval_ids)} held-out samples against {against}"
    )

    def keep_first_cleaned(plan: ModelPlan, fit: FitResult) -> None:
        if plan.arm == "cleaned" and plan.seed == settings.seeds[0] and is_main():
            _save_model(ctx.run.folder, fit, config, project, plan)

    plans = settings.plans(project.sample_table(), training)
    records = paired_models.train_models(ctx, config, plans, eval_ids, eval_labels, stage="retrain", trusted=trusted,
                                         on_model=keep_first_cleaned)
    summary = retrain_summary(project, config, spec, settings, training, records, (against, len(eval_ids)), trusted)
    report_retrain(ctx, summary, against)
    return summary


def retrain_summary(project: Project, config: TrainConfig, spec: dict[str, Any], settings: RetrainSettings,
                    training: TrainingSet, records: dict[str, dict[str, Any]], measured: tuple[str, int],
                    trusted: TrustedSet | None) -> dict[str, Any]:
    """The run's summary: each arm's accuracy over the seeds, their difference paired by seed, what was trained.

    ``measured``: what the held-out samples were scored against, and how many.
    """
    seeds, baseline = settings.seeds, settings.baseline
    against, n_eval = measured
    cleaned = paired_models.arm_figures(records, "cleaned", seeds)
    original = paired_models.arm_figures(records, "original", seeds) if baseline else None
    difference = paired_models.difference_figures(records, "cleaned", "original", seeds) if baseline else None
    return {
        # The means over the seeds, under the names of a one-seed retrain (the app reads them).
        "accuracy_cleaned": cleaned["accuracy_mean"],
        "accuracy_original": None if original is None else original["accuracy_mean"],
        "accuracy_cleaned_std": cleaned["accuracy_std"],
        "accuracy_original_std": None if original is None else original["accuracy_std"],
        "accuracy_cleaned_per_seed": cleaned["accuracy_per_seed"],
        "accuracy_original_per_seed": None if original is None else original["accuracy_per_seed"],
        "difference": difference,  # cleaned - original, paired by seed, with its 95% interval
        "verdict": None if difference is None else difference["verdict"],
        "seeds": seeds,
        "method": {"name": settings.method, "options": settings.options},
        "trusted": None if trusted is None else trusted.record(),
        "accuracy_cleaned_measured_against": against,
        "accuracy_original_measured_against": against,
        "n_eval": int(n_eval),
        "n_train_cleaned": int(len(training.train_ids)),
        "n_train_original": int(len(project.sample_table().train_ids)),
        "n_removed": training.n_removed,
        "n_relabeled": training.n_relabeled,
        "n_auto": int(len(training.auto_ids)),
        "auto": None if spec.get("auto_top_k") is None else {
            "top_k": spec["auto_top_k"], "action": spec.get("auto_action", "remove"),
            "audit_run": training.audit_run, "detector": spec.get("detector", "cl"),
        },
        "model": model_record(config, project, settings.method, settings.options, seeds[0]),
    }


def report_retrain(ctx: JobContext, summary: dict[str, Any], against: str) -> None:
    """The retrain's ``result`` event and its line: held-out accuracy before and after, and the difference."""
    ctx.events.result("retrain", {key: summary[key] for key in (
        "accuracy_cleaned", "accuracy_original", "accuracy_cleaned_std", "accuracy_original_std", "difference",
        "verdict", "seeds", "method", "accuracy_cleaned_measured_against", "accuracy_original_measured_against",
        "n_train_cleaned", "n_removed", "n_relabeled")})
    seeds, difference = summary["seeds"], summary["difference"]
    after = describe_spread(spread(summary["accuracy_cleaned_per_seed"]))
    before = ("n/a" if summary["accuracy_original_per_seed"] is None
              else describe_spread(spread(summary["accuracy_original_per_seed"])))
    change = "" if difference is None else f"; cleaned - original: {difference['text']}"
    ctx.events.log(f"held-out accuracy ({against}, {len(seeds)} seed{'s' if len(seeds) != 1 else ''}): "
                   f"original {before}, cleaned {after}{change}")


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
    from engine.methods import parse_options

    return {"auto_top_k": auto_top_k, "auto_action": auto_action, "audit_run": audit_run,
            "detector": detector, "baseline": baseline, "method": method,
            "options": parse_options(method, options or {}), "seeds": paired_models.parse_seeds(seeds),
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
    tune of ``method`` (see engine.workflows.tune); UserError when there is none."""
    from engine.workflows.tune import BEST
    from engine.workflows.tune import resolve_best_options as from_tune

    if not any(isinstance(value, str) and value.strip().lower() == BEST for value in options.values()):
        return options
    if isinstance(project, Project):
        return from_tune(project, method, options)
    with Project.open(project) as opened:
        return from_tune(opened, method, options)
