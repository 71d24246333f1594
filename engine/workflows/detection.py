"""Running detectors on gathered evidence, and storing what they find.

The last step of every job that scores samples: a trained audit (engine.workflows.audit), an import of
predictions (engine.evidence.imported) and a re-score with fine-tuned weights
(engine.workflows.finetune_detector). Each detector's scores go to the project database
(:meth:`Project.save_scores`), its extra arrays to the run folder. Light: no torch.
"""

from __future__ import annotations

import time

import numpy as np

from engine.arrays import save_array
from engine.cancel import CancelToken
from engine.detectors import DetectorInfo, DetectorInputs, DetectorResult, available_evidence
from engine.events import EventSink
from engine.store import Project, RunInfo


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
    n = len(inputs.labels)
    if scored_ids is not None:
        scored_ids = np.asarray(scored_ids, dtype=np.int64)
        inputs = DetectorInputs(
            inputs.labels[scored_ids], inputs.num_classes,
            None if inputs.pred_probs is None else inputs.pred_probs[scored_ids],
            {name: array[scored_ids] for name, array in inputs.arrays.items()}, settings=inputs.settings,
        )
    results: dict[str, DetectorResult] = {}
    for index, info in enumerate(detectors):
        if cancel is not None:
            cancel.raise_if_requested()
        if events is not None:
            events.progress("detect", index, len(detectors), message=info.title)
        available = available_evidence(inputs)
        missing = [name for name in info.requires if name not in available]
        if missing:
            raise ValueError(f"detector {info.name} needs {', '.join(missing)}, which this audit did not record")
        started = time.perf_counter()
        step_inputs = DetectorInputs(inputs.labels, inputs.num_classes, inputs.pred_probs, inputs.arrays, dict(results),
                                     inputs.settings)
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
