"""`python -m engine status`: what a project holds."""

from __future__ import annotations

import argparse
import shlex
from collections import Counter
from typing import Any

from engine.commands.common import add_command, print_json
from engine.events import format_duration
from engine.methods import METHODS
from engine.store import Project, RunInfo, evidence_source
from engine.words import plural
from engine.workflows.trusted import describe_review_summary, review_summary


def add_parser(subparsers: Any) -> None:
    add_command(subparsers, "status", handle=handle, help="show a project's data, noise, runs and decisions")


RESUMABLE = ("interrupted", "cancelled", "error", "unknown")


def run_status(project: Project, run: RunInfo) -> dict[str, Any]:
    """One run as status shows it: ``stale`` says why its results no longer describe the labels (or None);
    ``resume`` is the command that continues an unfinished run (or None); ``resume_refused`` says why an
    unfinished run cannot be resumed (its labels or decisions changed) and what to do instead."""
    resume, refused = None, None
    if run.status in RESUMABLE and run.spec.get("rescored_from"):  # a finetune-detector run: it trains nothing
        resume = f"python -m engine finetune-detector {shlex.quote(str(project.root))}"
    elif run.status in RESUMABLE and run.spec.get("evidence"):  # an import that stopped: it trains nothing
        refused = "an import is not resumed; import the file again (`python -m engine import-predictions`)"
    elif run.status in RESUMABLE and run.kind in ("audit", "crossval", "retrain", "compare", "tune"):
        resume = f"python -m engine {run.kind} {shlex.quote(str(project.root))} --resume {run.id}"
        model = str(run.spec.get("train", {}).get("model", ""))
        if ":" in model:  # resume imports no code the user did not name: the user adds it, knowingly
            resume += f"   (its model is the code {model}: add --model {model} if you trust it)"
    if resume and not run.spec.get("rescored_from"):
        from engine.jobs import resume_refusal

        refusal = resume_refusal(project, run)  # the labels or decisions it trains on changed since
        if refusal is not None:
            resume, refused = None, f"{refusal.message}; {refusal.hint}"
    return {"id": run.id, "kind": run.kind, "status": run.status,
            "duration_s": (run.finished - run.created) if run.finished else None, "summary": run.summary,
            "stale": project.stale_reason(run) if run.status == "ok" else None, "resume": resume,
            "resume_refused": refused,
            "methods": run_methods(run), "td_lstm_weights": run_td_lstm_weights(run),
            "evidence_source": evidence_source(run) if run.kind == "audit" else None}


# --- td_lstm weights (helper "finetune"): which weights scored an audit, and which the project holds now
def run_td_lstm_weights(run: RunInfo) -> str | None:
    """The weights td_lstm read in an audit run, as its summary says (None: td_lstm did not run)."""
    detectors = run.summary.get("detectors") if isinstance(run.summary, dict) else None
    td_lstm = detectors.get("td_lstm") if isinstance(detectors, dict) else None
    return str(td_lstm.get("weights")) if isinstance(td_lstm, dict) and td_lstm.get("weights") else None


def project_td_lstm_weights(project: Project) -> str:
    """The weights the next audit's td_lstm reads (unless --td-weights shipped)."""
    from engine.detectors.td_lstm import weights_in_effect

    return weights_in_effect(project.root, "project")[1]


def run_methods(run: RunInfo) -> list[dict[str, Any]]:
    """The training methods a retrain or compare run names in its spec (an older retrain: ce), else []."""
    if run.kind == "retrain":
        return [{"name": run.spec.get("method", "ce"), "options": run.spec.get("options") or {}}]
    if run.kind == "compare":
        return [{"name": m.get("name"), "options": m.get("options") or {}} for m in run.spec.get("methods", [])
                if isinstance(m, dict)]
    return []


def describe_methods(methods: list[dict[str, Any]]) -> str:
    """``sln (sigma=0.5), ce``."""
    return ", ".join(str(m["name"]) + (" (" + ", ".join(f"{k}={v}" for k, v in m["options"].items()) + ")"
                                       if m["options"] else "") for m in methods)


def project_status(project: Project) -> dict[str, Any]:
    table = project.sample_table()
    names = project.class_names()
    decisions = Counter(decision.action for decision in project.decisions().values())
    per_class = [
        {"class": name, "train": int(((table.label == index) & (table.split == "train")).sum()),
         "test": int(((table.label == index) & (table.split == "test")).sum())}
        for index, name in enumerate(names)
    ]
    return {
        "project": str(project.root),
        "source": project.source,
        "samples": {"total": len(table.paths), "train": int(len(table.train_ids)), "test": int(len(table.test_ids))},
        "classes": per_class,
        "truth_known": table.truth_known,
        "noise": project.noise_history(),
        "skipped_images": len(project.meta("skipped", []) or []),
        "runs": [run_status(project, run) for run in project.runs()],
        "decisions": {"relabel": decisions["relabel"], "remove": decisions["remove"], "keep": decisions["keep"]},
        "trusted": review_summary(project),
        "td_lstm_weights": project_td_lstm_weights(project),
    }


def handle(args: argparse.Namespace) -> int:
    with Project.open(args.project) as project:
        status = project_status(project)
    if args.json:
        print_json(status)
        return 0
    samples = status["samples"]
    print(f"{status['project']}: {samples['total']} samples ({samples['train']} train, {samples['test']} held out), "
          f"{len(status['classes'])} classes, source {status['source'].get('kind', '?')}")
    for row in status["classes"]:
        print(f"  {row['class']:<20} {row['train']:>7} train {row['test']:>7} test")
    if status["skipped_images"]:
        skipped = status["skipped_images"]
        print(f"  {plural(skipped, 'image')} {'was' if skipped == 1 else 'were'} skipped at import "
              "(see `status --json`)")
    print("truth: " + ("known" if status["truth_known"] else "unknown"))
    for noise in status["noise"]:
        print(f"noise: {noise['mode']} rate {noise['rate']} seed {noise['seed']} ({noise['changed']} samples changed)")
    for run in status["runs"]:
        took = f" in {format_duration(run['duration_s'])}" if run["duration_s"] else ""
        figures = ", ".join(f"{key} {value:.4g}" for key, value in run["summary"].items()
                            if isinstance(value, float))
        print(f"run {run['id']}: {run['status']}{took}" + (f"  ({figures})" if figures else ""))
        if run["methods"]:
            print(f"  method{'s' if len(run['methods']) > 1 else ''}: {describe_methods(run['methods'])}")
        for line in run["summary"].get("lines", []) if run["kind"] == "compare" else []:
            print(f"  {line}")
        difference = run["summary"].get("difference") if run["kind"] == "retrain" else None
        if isinstance(difference, dict) and difference.get("text"):
            print(f"  cleaned - original: {difference['text']}")
        source = run.get("evidence_source") or {}
        if source.get("source") == "imported":
            print(f"  predictions imported from {source.get('file')} (sha256 {str(source.get('sha256'))[:12]}...)")
        if run.get("td_lstm_weights"):
            print(f"  td_lstm weights: {run['td_lstm_weights']}")
        if run["stale"]:
            print(f"  stale: {run['stale']}")
        if run["status"] == "interrupted":
            print(f"  {run['summary'].get('reason', 'its process ended before it finished')}")
        if run["resume"]:
            print(f"  resume it with: {run['resume']}")
        elif run.get("resume_refused"):
            print(f"  cannot be resumed: {run['resume_refused']}")
    counts = status["decisions"]
    print(f"decisions: {counts['relabel']} relabeled, {counts['remove']} removed, {counts['keep']} kept")
    meta_methods = ", ".join(name for name, info in METHODS.items() if info.needs_trusted)
    print(f"trusted set of the review (what {meta_methods} learn from by default): "
          f"{describe_review_summary(status['trusted'])}")
    print(f"td_lstm weights for the next audit: {status['td_lstm_weights']}")
    return 0
