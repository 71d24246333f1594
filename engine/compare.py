"""Paired-seed comparisons: several models, each trained once per seed, measured on the same held-out set.

``compare`` trains every named method S times (seeds ``seed``, ``seed+1``, ...), all on the
cleaned training set (the decisions applied), and reports each method's held-out accuracy
as mean +- std and its paired difference to the baseline (``ce`` when listed, else the
first method) with a 95% t-interval; "no measurable change" where that interval holds
zero. ``retrain`` uses the same machinery for its before/after (cleaned vs original
labels, paired by seed).

Each finished model writes its result to ``models/<arm>-seed<S>.json`` in the run folder
before its checkpoint is removed: a resumed job skips the models that finished and
continues the one that was stopped from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import UserError
from engine.events import EventSink
from engine.jobs import CancelToken, JobContext, run_job
from engine.stats import describe_difference, describe_spread, paired_difference, spread
from engine.store import Project, RunInfo, atomic_write_bytes

if TYPE_CHECKING:
    from engine.training.config import TrainConfig
    from engine.training.fit import FitResult
    from engine.trusted import TrustedSet

COMPARE_KIND = "compare"
RESULTS_FOLDER = "models"
DEFAULT_SEEDS = 3
BASELINE_METHOD = "ce"


# ------------------------------------------------------------------ options
def parse_seeds(value: int) -> int:
    if value < 1:
        raise UserError(f"--seeds {value} must be at least 1", "pass --seeds 3 (more seeds, a narrower interval)")
    return value


def parse_method_list(text: str) -> list[str]:
    """``"ce,sln"`` -> ``["ce", "sln"]``, each a registered method, none twice."""
    from engine.methods import method_info

    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise UserError("--methods names no method", "pass e.g. --methods ce,sln")
    for name in names:
        method_info(name)
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UserError(f"--methods names {', '.join(twice)} more than once", "name each method once")
    return names


def options_for_methods(methods: Sequence[str], pairs: list[str] | None) -> list[dict[str, Any]]:
    """``[{"name": m, "options": {...}}]`` for ``methods`` from ``--option`` pairs.

    ``--option method.key=value`` sets one method's option; ``--option key=value`` sets it for
    every listed method that has it (an option none of them has is an error).
    """
    from engine.methods import option_fields, parse_options, split_option_args

    given: dict[str, dict[str, str]] = {name: {} for name in methods}
    for key, value in split_option_args(pairs).items():
        method, dot, option = key.partition(".")
        if dot:
            if method not in given:
                raise UserError(f"--option {key}={value}: method {method!r} is not compared here",
                                f"the methods are: {', '.join(methods)}")
            given[method][option] = value
            continue
        takers = [name for name in methods if key in {field.name for field in option_fields(name)}]
        if not takers:
            raise UserError(f"--option {key}={value}: none of the methods {', '.join(methods)} has an option {key!r}",
                            "see `python -m engine retrain --help` for every method's options")
        for name in takers:
            given[name][key] = value
    return [{"name": name, "options": parse_options(name, given[name])} for name in methods]


# ---------------------------------------------------------- the trusted set
def trusted_for_run(ctx: JobContext, spec: Mapping[str, Any], methods: Sequence[str], seed: int) -> TrustedSet | None:
    """The run's trusted set, or None when no method needs one and none was named.

    Chosen at the run's start and saved in its folder; a resumed run reads it back.
    Stops (UserError) when a meta-learning method would have a class without one.
    """
    from engine import trusted as trusted_module
    from engine.methods import method_info

    needing = [name for name in methods if method_info(name).needs_trusted]
    named = bool(spec.get("per_class") or spec.get("csv"))
    if not needing and not named:
        return None
    source = "csv" if spec.get("csv") else "per_class" if spec.get("per_class") else "review"
    saved = trusted_module.load_saved(ctx.run.folder, source)
    chosen = saved or trusted_module.choose(ctx.project, dict(spec), seed)
    names = ctx.project.class_names()
    if needing:
        trusted_module.require_every_class(chosen, names, needing)
    from engine.training.distributed import is_main

    if saved is None and is_main():  # under torchrun, rank 0 alone writes (the choice is seeded: alike on all)
        trusted_module.save(ctx.run.folder, chosen)
    ctx.events.log(chosen.describe(names) + "; kept out of the held-out evaluation (all are training samples)")
    return chosen


def check_trusted_before_start(project: Project, spec: Mapping[str, Any], methods: Sequence[str], seed: int) -> None:
    """The trusted-set check of :func:`trusted_for_run`, before a run is made (a clear refusal, no failed run)."""
    from engine import trusted as trusted_module
    from engine.methods import method_info

    needing = [name for name in methods if method_info(name).needs_trusted]
    if needing or spec.get("per_class") or spec.get("csv"):
        chosen = trusted_module.choose(project, dict(spec), seed)
        if needing:
            trusted_module.require_every_class(chosen, project.class_names(), needing)


# ------------------------------------------------------ training the models
@dataclass(frozen=True)
class ModelPlan:
    """One model of a comparison: ``arm`` (a method, or cleaned/original) trained with ``seed``."""

    arm: str
    method: str
    options: dict[str, Any]
    seed: int
    train_ids: np.ndarray
    train_labels: np.ndarray

    @property
    def key(self) -> str:
        return f"{self.arm}-seed{self.seed}"


def paired_seeds(first: int, count: int) -> list[int]:
    return [first + offset for offset in range(count)]


def train_models(
    ctx: JobContext,
    config: TrainConfig,
    plans: Sequence[ModelPlan],
    eval_ids: np.ndarray,
    eval_labels: np.ndarray,
    *,
    stage: str,
    trusted: TrustedSet | None = None,
    on_model: Callable[[ModelPlan, FitResult], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Train every plan not finished yet (in order) and return each one's result record by key.

    Progress covers the whole job (one ``stage``, the model named in its message); each model's
    curves carry its own stage name ("sln seed 1"). ``on_model`` runs after a model is trained,
    before its result is recorded (so what it saves exists whenever the result does).
    """
    from engine.training import distributed
    from engine.training.fit import StageProgress, fit_and_evaluate
    from engine.training.loop import steps_per_epoch

    folder = ctx.run.folder / RESULTS_FOLDER
    if distributed.is_main():  # under torchrun, rank 0 alone writes
        folder.mkdir(exist_ok=True)
    sizes = [config.epochs * steps_per_epoch(len(plan.train_ids), config.batch_size) for plan in plans]
    progress = StageProgress(ctx.events, stage, sum(sizes))
    records: dict[str, dict[str, Any]] = {}
    offset = 0
    for number, (plan, size) in enumerate(zip(plans, sizes, strict=True), start=1):
        result_file = folder / f"{plan.key}.json"
        if distributed.broadcast_object(result_file.is_file()):
            records[plan.key] = json.loads(result_file.read_text())
            ctx.events.log(f"{plan.arm}, seed {plan.seed}: finished before the resume "
                           f"(accuracy {records[plan.key]['accuracy']:.4f})")
            offset += size
            progress.update(offset, f"{plan.arm}, seed {plan.seed} ({number} of {len(plans)})")
            continue
        checkpoint = f"checkpoint-{plan.key}.pt"
        started = time.perf_counter()
        progress.update(offset, f"{plan.arm}, seed {plan.seed} ({number} of {len(plans)})")
        fit = fit_and_evaluate(
            ctx, dataclasses.replace(config, seed=plan.seed), plan.train_ids, plan.train_labels, eval_ids,
            eval_labels, stage=f"{plan.arm} seed {plan.seed}", method_name=plan.method, method_options=plan.options,
            trusted=trusted, checkpoint_name=checkpoint, progress=progress, progress_offset=offset,
        )
        if on_model is not None:
            on_model(plan, fit)
        record = {"arm": plan.arm, "method": plan.method, "options": plan.options, "seed": plan.seed,
                  "accuracy": fit.accuracy, "seconds": round(time.perf_counter() - started, 3),
                  "n_train": int(len(plan.train_ids))}
        if distributed.is_main():
            atomic_write_bytes(result_file, json.dumps(record, indent=2).encode())
            (ctx.run.folder / checkpoint).unlink(missing_ok=True)
        records[plan.key] = record
        offset += size
    return records


def arm_figures(records: Mapping[str, dict[str, Any]], arm: str, seeds: Sequence[int]) -> dict[str, Any]:
    """One arm's accuracies by seed (in ``seeds`` order), their mean and std, and its seconds per model."""
    accuracies = [float(records[f"{arm}-seed{seed}"]["accuracy"]) for seed in seeds]
    seconds = [float(records[f"{arm}-seed{seed}"]["seconds"]) for seed in seeds]
    figures = spread(accuracies)
    return {"accuracy_mean": figures.mean, "accuracy_std": figures.std, "accuracy_per_seed": accuracies,
            "seconds_mean": spread(seconds).mean}


def difference_figures(records: Mapping[str, dict[str, Any]], arm: str, baseline: str,
                       seeds: Sequence[int]) -> dict[str, Any]:
    """``arm - baseline`` paired by seed, as :meth:`PairedDifference.to_dict` plus its one-line description."""
    difference = paired_difference(
        [float(records[f"{arm}-seed{seed}"]["accuracy"]) for seed in seeds],
        [float(records[f"{baseline}-seed{seed}"]["accuracy"]) for seed in seeds],
    )
    return {**difference.to_dict(), "text": describe_difference(difference)}


# ------------------------------------------------------------- the job
def compare_spec(
    *,
    methods: list[dict[str, Any]],
    seeds: int = DEFAULT_SEEDS,
    trusted: dict[str, Any] | None = None,
    auto_top_k: Any = None,
    auto_action: str = "remove",
    audit_run: str | None = None,
    detector: str = "cl",
) -> dict[str, Any]:
    """The run spec's compare part (training settings go under ``train``)."""
    return {"methods": methods, "seeds": parse_seeds(seeds), "trusted": trusted or {"per_class": None, "csv": None},
            "auto_top_k": auto_top_k, "auto_action": auto_action, "audit_run": audit_run, "detector": detector}


def compare_body(ctx: JobContext, config: TrainConfig, spec: dict[str, Any]) -> dict[str, Any]:
    from engine.methods import parse_options
    from engine.retrain import cleaned_training_set, heldout_targets

    project = ctx.project
    methods = [{"name": m["name"], "options": parse_options(m["name"], m.get("options", {}))} for m in spec["methods"]]
    names = [m["name"] for m in methods]
    baseline = BASELINE_METHOD if BASELINE_METHOD in names else names[0]
    seeds = paired_seeds(config.seed, int(spec.get("seeds", DEFAULT_SEEDS)))
    training = cleaned_training_set(project, auto_top_k=spec.get("auto_top_k"),
                                    auto_action=spec.get("auto_action", "remove"),
                                    audit_run=spec.get("audit_run"), detector=spec.get("detector", "cl"))
    eval_ids, eval_labels, against = heldout_targets(project, training)
    trusted = trusted_for_run(ctx, spec.get("trusted") or {}, names, config.seed)
    train_labels = training.labels[training.train_ids]
    ctx.events.log(f"comparing {', '.join(names)} over seeds {', '.join(map(str, seeds))}: "
                   f"{len(training.train_ids)} training samples ({training.n_removed} removed, "
                   f"{training.n_relabeled} relabeled), {len(eval_ids)} held-out samples scored against {against}")
    plans = [ModelPlan(m["name"], m["name"], m["options"], seed, training.train_ids, train_labels)
             for seed in seeds for m in methods]
    records = train_models(ctx, config, plans, eval_ids, eval_labels, stage="compare", trusted=trusted)
    per_method = {m["name"]: {"options": m["options"], **arm_figures(records, m["name"], seeds)} for m in methods}
    differences = {name: difference_figures(records, name, baseline, seeds) for name in names if name != baseline}
    lines = [f"{name}: {describe_spread(spread(figures['accuracy_per_seed']))}"
             + (f"; vs {baseline}: {differences[name]['text']}" if name in differences else " (baseline)")
             for name, figures in per_method.items()]
    for line in lines:
        ctx.events.log(line)
    summary = {
        "methods": per_method,
        "baseline": baseline,
        "differences": differences,
        "seeds": seeds,
        "measured_against": against,
        "n_eval": int(len(eval_ids)),
        "n_train": int(len(training.train_ids)),
        "trusted": None if trusted is None else {"source": trusted.source, "count": int(len(trusted.ids)),
                                                 "ids_file": "trusted_ids.npy"},
        "lines": lines,
    }
    ctx.events.result("compare", {key: summary[key] for key in ("methods", "baseline", "differences", "seeds",
                                                                 "measured_against", "lines")})
    return summary


def run_compare(
    project: Project,
    config: TrainConfig,
    *,
    events: EventSink | None = None,
    cancel: CancelToken | None = None,
    run: RunInfo | None = None,
    **options: Any,
) -> tuple[RunInfo, str]:
    """Compare as a recorded run; ``options`` are those of :func:`compare_spec`. Returns (run, status).

    Pass ``run`` (a cancelled compare run) to resume it with its own spec.
    """
    if run is not None:
        spec = run.spec
        from engine.training.config import TrainConfig as Config

        config = Config.from_dict(spec["train"])
    else:
        spec = {"train": config.to_dict(), **compare_spec(**options)}
    return run_job(project, COMPARE_KIND, spec, lambda ctx: compare_body(ctx, config, spec),
                   events or EventSink(), cancel=cancel, run=run)
