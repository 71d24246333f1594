"""The audit job: K-fold probabilities for every sample, then every chosen detector.

``run_audit`` makes a run of kind ``"audit"``. Its folder holds
``pred_probs.npy`` (N, K) (written by cross-validation), each detector's extra
arrays (for confident learning ``confident_joint.npy`` and
``noise_matrix.npy``, both (K, K)), and ``summary.json``. Per-sample scores go
to the project database, one set per detector (:meth:`Project.save_scores`).

The detectors see the TRAIN split only. Held-out (test) samples are what
accuracy is measured on, so they are never audited, flagged or offered for
review (their labels must not drift towards the model's own suggestions), and
the estimated noise rate describes the training set alone. They still get
out-of-sample probabilities (the mean of the fold models, none of which saw
them) for the held-out accuracy; their stored scores are 0, unflagged, with no
suggestion, ranked after every train sample.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.detectors import DetectorInfo, DetectorInputs, DetectorResult, parse_detectors
from engine.events import EventSink
from engine.jobs import CancelToken, JobContext, run_job
from engine.store import Project, RunInfo

if TYPE_CHECKING:
    from engine.training.config import TrainConfig

AUDIT_KIND = "audit"
DEFAULT_DETECTORS = ("cl",)


def run_detectors(
    project: Project,
    run: RunInfo,
    detectors: list[DetectorInfo],
    inputs: DetectorInputs,
    events: EventSink | None = None,
    cancel: CancelToken | None = None,
    scored_ids: np.ndarray | None = None,
) -> dict[str, DetectorResult]:
    """Run each detector on ``inputs``; save its scores to the project and its extras to the run folder.

    ``scored_ids`` (default: every sample) are the sample ids the detectors see: they get
    the rows of ``inputs`` at those ids, and the returned results are indexed by position
    in ``scored_ids`` (so are per-sample extras). The stored scores cover every sample:
    the others get score 0, no suggestion, not flagged, ranked last.
    """
    from engine.crossval import save_array

    n = len(inputs.labels)
    if scored_ids is not None:
        scored_ids = np.asarray(scored_ids, dtype=np.int64)
        inputs = DetectorInputs(
            inputs.labels[scored_ids], inputs.num_classes,
            None if inputs.pred_probs is None else inputs.pred_probs[scored_ids],
            {name: array[scored_ids] for name, array in inputs.arrays.items()},
        )
    results: dict[str, DetectorResult] = {}
    for index, info in enumerate(detectors):
        if cancel is not None:
            cancel.raise_if_requested()
        if events is not None:
            events.progress("detect", index, len(detectors), message=info.title)
        available = set(inputs.arrays) | ({"pred_probs"} if inputs.pred_probs is not None else set())
        missing = [name for name in info.requires if name not in available]
        if missing:
            raise ValueError(f"detector {info.name} needs {', '.join(missing)}, which this audit did not record")
        started = time.perf_counter()
        step_inputs = DetectorInputs(inputs.labels, inputs.num_classes, inputs.pred_probs, inputs.arrays, dict(results))
        result = info.load()(step_inputs)
        stored = result if scored_ids is None else spread_to_all_samples(result, scored_ids, n)
        project.save_scores(run.id, info.name, stored.scores, stored.suggested, stored.flagged, stored.ranking)
        for name, array in result.extras.items():
            save_array(run.folder / f"{name}.npy", array)
        result.summary["seconds"] = round(time.perf_counter() - started, 3)
        results[info.name] = result
        if events is not None:
            events.log(f"{info.name}: {result.num_flagged} of {len(result.scores)} samples flagged")
    if events is not None:
        events.progress("detect", len(detectors), len(detectors))
    return results


def spread_to_all_samples(result: DetectorResult, scored_ids: np.ndarray, n: int) -> DetectorResult:
    """A result over ``scored_ids`` as one over all ``n`` samples: the rest score 0, unflagged, ranked last."""
    scores = np.zeros(n, dtype=np.float64)
    scores[scored_ids] = result.scores
    suggested = np.full(n, -1, dtype=np.int64)
    suggested[scored_ids] = result.suggested
    flagged = np.zeros(n, dtype=bool)
    flagged[scored_ids] = result.flagged
    ranking = np.concatenate([scored_ids[result.ranking], np.setdiff1d(np.arange(n), scored_ids)])
    return DetectorResult(scores, suggested, flagged, ranking, result.extras, result.summary)


def audit_body(ctx: JobContext, config: TrainConfig, spec: dict[str, Any]) -> dict[str, Any]:
    """The job body: cross-validate, detect, summarise. ``spec`` has ``folds`` and ``detectors``."""
    from engine.crossval import crossval_pred_probs, heldout_accuracy

    folds = int(spec.get("folds", 3))
    detectors = parse_detectors(list(spec.get("detectors", DEFAULT_DETECTORS)))
    project = ctx.project
    table = project.sample_table()
    timings: dict[str, float] = {}

    started = time.perf_counter()
    pred_probs = crossval_pred_probs(ctx, config, folds)
    timings["crossval"] = round(time.perf_counter() - started, 3)
    ctx.cancel.raise_if_requested()

    inputs = DetectorInputs(labels=table.label, num_classes=project.num_classes, pred_probs=pred_probs)
    started = time.perf_counter()
    train_ids = table.train_ids  # held-out samples are never audited (see the module docstring)
    results = run_detectors(project, ctx.run, detectors, inputs, ctx.events, ctx.cancel, scored_ids=train_ids)
    timings["detect"] = round(time.perf_counter() - started, 3)

    accuracy, against, n_eval = heldout_accuracy(table, pred_probs)
    # The headline estimate comes from confident learning when it ran, else from the first detector.
    headline = results.get("cl") or next(iter(results.values()))
    summary: dict[str, Any] = {
        "n_samples": len(table.label),
        "n_train": len(table.train_ids),
        "n_test": len(table.test_ids),
        "num_classes": project.num_classes,
        "folds": folds,
        "n_audited": len(train_ids),
        "n_flagged": {name: result.num_flagged for name, result in results.items()},
        "estimated_noise_rate": headline.summary.get("estimated_noise_rate"),  # of the train split
        "heldout_accuracy": accuracy,
        "heldout_accuracy_measured_against": against,
        "heldout_evaluated_against": against,  # the older name, kept for readers of earlier summaries
        "n_heldout": n_eval,
        "detectors": {name: result.summary for name, result in results.items()},
        "timings_s": timings,
    }
    ctx.events.result("audit", {key: summary[key] for key in (
        "n_samples", "n_audited", "n_flagged", "estimated_noise_rate", "heldout_accuracy",
        "heldout_accuracy_measured_against")})
    flagged = ", ".join(f"{name} {count}" for name, count in summary["n_flagged"].items())
    ctx.events.log(
        f"audit done: flagged {flagged} of {len(train_ids)} training samples; estimated noise rate "
        f"{summary['estimated_noise_rate']:.3f}"
        + (f"; held-out accuracy {accuracy:.3f} (against {against})" if accuracy is not None else "")
    )
    return summary


def audit_spec(config: TrainConfig, folds: int, detectors: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """The run spec of an audit (what ``--resume`` re-reads): training settings, folds, detectors."""
    names = [info.name for info in parse_detectors(list(detectors))]  # fails before a run is made
    return {"train": config.to_dict(), "folds": int(folds), "detectors": names}


def run_audit(
    project: Project,
    config: TrainConfig,
    *,
    folds: int = 3,
    detectors: list[str] | tuple[str, ...] = DEFAULT_DETECTORS,
    events: EventSink | None = None,
    cancel: CancelToken | None = None,
) -> tuple[RunInfo, str]:
    """Audit the project as a recorded run; returns (run, status: ok | error | cancelled).

    The library entry point (tests, bench, the GUI's engine process);
    ``python -m engine audit`` is the same job.
    """
    spec = audit_spec(config, folds, detectors)
    return run_job(project, AUDIT_KIND, spec, lambda ctx: audit_body(ctx, config, spec),
                   events or EventSink(), cancel=cancel)
