"""How well the detectors of a run found the known label errors.

Needs the truth: injected noise keeps it, and a CSV import can name a truth
column. A sample is truly mislabeled when its true label differs from the label
the run used (an audit trains and scores on the labels with the person's decisions
applied, and records them: engine.evidence.run_labels; for a run made by an older version,
which recorded none, the observed label, and the report says so); an open-set sample (true label -1, outside the label set) is
always mislabeled, since no class of ours is right for it. Samples whose truth
is unknown are left out; if none is known, that is an error. Only the train
split is evaluated: the audit never audits held-out samples.

A run whose labels changed since it ran is evaluated all the same, against the labels it
used, but the report says it is stale (``stale``): its scores describe labels that no
longer exist.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.errors import UserError
from engine.evidence.run_labels import labels_for_grading
from engine.store import UNKNOWN_TRUTH, Project, RunInfo, SampleTable, evidence_source


def truly_mislabeled(table: SampleTable, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(known (N,) bool, mislabeled (N,) bool): where the truth is known, and where label != truth.

    ``labels`` (N,): the labels to judge (default: the observed ones), e.g. those a run used.

    Raises
    ------
    UserError
        When no sample's truth is known.
    """
    known = table.true_label != UNKNOWN_TRUTH
    if not known.any():
        raise UserError(
            "this project has no ground truth to evaluate against",
            "inject noise first (`python -m engine inject-noise PROJECT`), use the demo project, "
            "or import a CSV with a truth column",
        )
    # true_label -1 (open set) never equals a class index, so it counts as mislabeled.
    return known, known & (table.true_label != (table.label if labels is None else labels))


def detection_metrics(is_noisy: np.ndarray, scores: np.ndarray, flagged: np.ndarray) -> dict[str, Any]:
    """Ranking and set metrics of one detector.

    Parameters
    ----------
    is_noisy : np.ndarray of shape (n,) bool
        The truth: which samples are mislabeled.
    scores : np.ndarray of shape (n,) float
        The detector's scores, higher = more likely mislabeled.
    flagged : np.ndarray of shape (n,) bool
        The detector's flagged set.

    Returns
    -------
    dict
        ``roc_auc`` and ``average_precision`` (None when the truth has only one
        class, where they are undefined), ``precision``, ``recall``, ``f1`` of the
        flagged set (scikit-learn's, 0 where undefined), and the counts.
    """
    from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

    is_noisy = np.asarray(is_noisy, dtype=bool)
    flagged = np.asarray(flagged, dtype=bool)
    both_classes = 0 < is_noisy.sum() < len(is_noisy)
    precision, recall, f1, _ = precision_recall_fscore_support(
        is_noisy, flagged, average="binary", pos_label=True, zero_division=0
    )
    return {
        "roc_auc": float(roc_auc_score(is_noisy, scores)) if both_classes else None,
        "average_precision": float(average_precision_score(is_noisy, scores)) if is_noisy.any() else None,
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "n": int(len(is_noisy)),
        "n_noisy": int(is_noisy.sum()),
        "n_flagged": int(flagged.sum()),
        "n_true_positives": int((is_noisy & flagged).sum()),
    }


def evaluation_run(project: Project, run_id: str | None = None) -> RunInfo:
    """The run to evaluate: ``run_id``, or the latest finished audit; it must hold detector scores."""
    run = project.run(run_id, kind=None if run_id else "audit")
    if not project.detectors(run.id):
        raise UserError(f"run {run.id} ({run.kind}, {run.status}) has no detector scores",
                        "evaluate a finished audit run (see `python -m engine status PROJECT`)")
    return run


def evaluate_run(project: Project, run_id: str | None = None) -> dict[str, Any]:
    """Every detector of a run against the truth.

    Returns
    -------
    dict
        ``run_id``, ``stale`` (None, or why the run no longer describes these labels),
        ``graded_against`` (which labels a sample is judged by: the run's own, or for an older
        run the observed ones) with ``graded_against_run_labels`` (bool), ``n_evaluated`` (train
        samples with known truth), ``true_noise_rate`` (over them; per split in
        ``true_noise_rate_by_split``), and ``detectors``: name ->
        metrics of :func:`detection_metrics` plus ``estimated_noise_rate`` (as the run
        recorded it; None when the detector made no estimate), ``estimated_by`` (how it
        estimates, when it said), ``true_noise_rate`` beside it (the same for every
        detector: over the evaluated samples), and ``flagged_rate``.
    """
    run = evaluation_run(project, run_id)
    table = project.sample_table()
    graded = labels_for_grading(project, run, table.label)
    any_known, noisy = truly_mislabeled(table, graded.labels)
    known = any_known & (table.split == "train")
    if not known.any():
        raise UserError("no training sample of this project has a known truth to evaluate against",
                        "the audit scores the train split only: give train samples a truth (inject noise, "
                        "or a CSV truth column)")
    per_split = {
        split: float(noisy[any_known & (table.split == split)].mean())
        for split in ("train", "test") if (any_known & (table.split == split)).any()
    }
    detectors: dict[str, Any] = {}
    recorded = run.summary.get("detectors", {})
    for name in project.detectors(run.id):
        saved = project.scores(run.id, name)
        metrics = detection_metrics(noisy[known], saved["score"][known], saved["flagged"][known])
        metrics["estimated_noise_rate"] = recorded.get(name, {}).get("estimated_noise_rate")
        metrics["estimated_by"] = recorded.get(name, {}).get("estimated_by")
        metrics["true_noise_rate"] = float(noisy[known].mean())
        metrics["flagged_rate"] = float(saved["flagged"][known].mean())
        detectors[name] = metrics
    return {
        "run_id": run.id,
        "evidence_source": evidence_source(run),  # trained here, or imported from a file (with its sha256)
        "stale": project.stale_reason(run),
        "graded_against": graded.description,
        "graded_against_run_labels": graded.recorded,
        "evaluated_split": "train",
        "n_samples": len(table.label),
        "n_evaluated": int(known.sum()),
        "true_noise_rate": float(noisy[known].mean()),
        "true_noise_rate_by_split": per_split,
        "n_open_set": int((table.true_label == -1).sum()),
        "detectors": detectors,
    }


def format_evaluation(report: dict[str, Any]) -> str:
    """A small table of :func:`evaluate_run`'s report for a terminal."""

    def fmt(value: float | None) -> str:
        return "   n/a" if value is None else f"{value:6.3f}"

    graded = "the labels it used" if report.get("graded_against_run_labels") else "the current observed labels"
    lines = [f"WARNING: run {report['run_id']} is stale: {report['stale']}. These figures grade its old "
             f"results against {graded}, not the project's current ones; run a new audit."] \
        if report.get("stale") else []
    lines += [
        f"run {report['run_id']}: {report['n_evaluated']} of {report['n_samples']} samples (train split) with known "
        f"truth, true noise rate {report['true_noise_rate']:.3f}",
        *([f"graded against {report['graded_against']}"] if report.get("graded_against") else []),
        f"{'detector':<11} {'ROC-AUC':>7} {'AP':>6} {'prec':>6} {'recall':>6} {'F1':>6} {'flagged':>8} "
        f"{'est.noise':>9} {'true.noise':>10}",
    ]
    for name, m in report["detectors"].items():
        true_rate = m.get("true_noise_rate", report["true_noise_rate"])
        lines.append(
            f"{name:<11} {fmt(m['roc_auc']):>7} {fmt(m['average_precision'])} {fmt(m['precision'])} "
            f"{fmt(m['recall'])} {fmt(m['f1'])} {m['n_flagged']:>8d} {fmt(m['estimated_noise_rate']):>9} "
            f"{fmt(true_rate):>10}"
        )
    return "\n".join(lines)
