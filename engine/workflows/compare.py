"""Paired-seed comparisons: several models, each trained once per seed, measured on the same held-out set.

``compare`` trains every named method S times (seeds ``seed``, ``seed+1``, ...), all on the
cleaned training set (the decisions applied), and reports each method's held-out accuracy
as mean +- std and its paired difference to the baseline (``ce`` when listed, else the
first method) with a 95% t-interval; "no measurable change" where that interval holds
zero. ``retrain`` uses the same machinery for its before/after (cleaned vs original
labels, paired by seed).

Each finished model writes its result to ``models/<arm>-seed<S>.json`` in the run folder
before its checkpoint is removed (engine.workflows.paired_models): a resumed job skips the
models that finished and continues the one that was stopped from its checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine.cancel import CancelToken
from engine.errors import UserError
from engine.events import EventSink
from engine.jobs import JobContext, run_job
from engine.stats import describe_spread, spread
from engine.store import Project, RunInfo
from engine.workflows.paired_models import (
    BASELINE_METHOD,
    DEFAULT_SEEDS,
    ModelPlan,
    arm_figures,
    difference_figures,
    paired_seeds,
    parse_seeds,
    train_models,
)
from engine.workflows.sample_sets import heldout_to_measure, training_set_of_spec
from engine.workflows.trusted import trusted_for_run

if TYPE_CHECKING:
    from engine.training.config import TrainConfig

COMPARE_KIND = "compare"


# ------------------------------------------------------------------ options
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

    project = ctx.project
    methods = [{"name": m["name"], "options": parse_options(m["name"], m.get("options", {}))} for m in spec["methods"]]
    names = [m["name"] for m in methods]
    baseline = BASELINE_METHOD if BASELINE_METHOD in names else names[0]
    seeds = paired_seeds(config.seed, int(spec.get("seeds", DEFAULT_SEEDS)))
    training = training_set_of_spec(project, spec)
    eval_ids, eval_labels, against = heldout_to_measure(project)
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
        "trusted": None if trusted is None else trusted.record(),
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
