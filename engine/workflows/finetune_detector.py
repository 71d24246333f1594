"""The finetune-detector job (``python -m engine finetune-detector PROJECT``): the review teaches td_lstm.

Fine-tunes the td_lstm detector on the person's reviewed samples of the project's
latest finished audit with training dynamics (relabeled or removed = mislabeled,
kept = correct), keeps the weights in the project (``PROJECT/detectors/td_lstm.pt``
and the card ``td_lstm.json``: base weights, how many reviews, date, the decisions'
fingerprint), and re-scores the project without training again: a NEW audit run
that hard-links the source run's recorded dynamics and arrays, copies the other
detectors' scores, and recomputes ``td_lstm`` and ``ensemble``. Later audits read
the project's weights too (``audit --td-weights shipped`` for the shipped ones).

It reports the detector's agreement with the person, as ROC-AUC of td_lstm's
scores on the reviewed samples against the person's verdicts: before (the weights
in effect until now), after on the very samples it was fine-tuned on (in-sample,
optimistic), and after by k-fold over the reviews (fine-tuned on k-1 folds, the
held-out fold scored; the honest figure).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import UserError

MIN_REVIEWED = 10  # reviewed samples with recorded dynamics, both verdicts present
MAX_FOLDS = 5
FINE_TUNE_EPOCHS = 30
FINE_TUNE_LR = 1e-3
FINE_TUNE_BATCH = 16  # small batches: a few dozen reviews still make enough steps
SEED = 0
# Files of the source run that the re-scored run does not share: its own record, and what it recomputes.
NOT_LINKED = {"events.jsonl", "spec.json", "summary.json", "td_lstm.npy", "ensemble_agreement.npy"}
FINETUNE_RESULT = "finetune"


# ------------------------------------------------------------------------ the reviews
def latest_dynamics_audit(project: Any) -> Any:
    """The latest finished audit whose run folder holds finished training dynamics; a UserError when none."""
    from engine.training.recorders import DYNAMICS_FOLDER

    audits = [run for run in project.runs("audit")
              if run.status == "ok" and (run.folder / DYNAMICS_FOLDER / "td.npy").is_file()]
    if not audits:
        raise UserError(f"{project.root} has no finished audit with training dynamics to fine-tune on",
                        f"run `python -m engine audit {project.root} --detectors all` (or td_lstm), review some "
                        "of its suggestions, then fine-tune")
    return audits[-1]


def check_enough_reviews(targets: np.ndarray, run_id: str) -> None:
    """Refuse fewer than MIN_REVIEWED reviewed samples, or reviews of one kind only, saying how to get more."""
    mislabeled = int(targets.sum())
    correct = len(targets) - mislabeled
    if len(targets) < MIN_REVIEWED or mislabeled == 0 or correct == 0:
        raise UserError(
            f"too few reviewed samples to fine-tune on: audit {run_id} has {len(targets)} reviewed "
            f"({mislabeled} relabeled or removed, {correct} kept); it needs at least {MIN_REVIEWED}, with at least "
            "one relabeled or removed and one kept (only samples a person decided one at a time count, not bulk "
            "decisions)",
            "review more of that audit's samples in the app (relabel or remove the wrong ones, keep the right ones, "
            "or `python -m engine decide`), then run finetune-detector again")


def roc_auc(targets: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC-AUC of ``scores`` against 0/1 ``targets``; None when only one kind is present."""
    from sklearn.metrics import roc_auc_score

    if len(np.unique(targets)) < 2:
        return None
    return float(roc_auc_score(targets, scores))


def fold_of_each(targets: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(m,) fold index per review, stratified: each fold gets its share of both verdicts."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(targets), dtype=np.int64)
    for value in (0.0, 1.0):
        rows = rng.permutation(np.flatnonzero(targets == value))
        fold[rows] = np.arange(len(rows)) % folds
    return fold


def fine_tune(base: Any, sequences: np.ndarray, targets: np.ndarray, seed: int = SEED) -> Any:
    from engine.detectors.lstm_model import train_lstm

    return train_lstm(sequences, targets, epochs=FINE_TUNE_EPOCHS, batch_size=FINE_TUNE_BATCH, lr=FINE_TUNE_LR,
                      seed=seed, start_from=base)


def cross_validated_scores(base: Any, sequences: np.ndarray, targets: np.ndarray,
                           progress: Any = None) -> tuple[np.ndarray | None, int]:
    """Held-out scores of every review by k-fold (fine-tuned on the other folds) and k; (None, 0) when
    fewer than 2 reviews of either kind leave no fold with both."""
    from engine.detectors.lstm_model import predict_mislabeled

    folds = min(MAX_FOLDS, int(targets.sum()), int(len(targets) - targets.sum()))
    if folds < 2:
        return None, 0
    fold = fold_of_each(targets, folds, SEED)
    held_scores = np.zeros(len(targets), dtype=np.float64)
    for index in range(folds):
        if progress is not None:
            progress(index, folds)
        held = fold == index
        model = fine_tune(base, sequences[~held], targets[~held], seed=SEED + index)
        held_scores[held] = predict_mislabeled(model, sequences[held])
    return held_scores, folds


# ------------------------------------------------------------------------ the new run
def link_run_files(source: Path, target: Path) -> int:
    """Hard-link (copy where links cannot be made) the source run's arrays into ``target``; how many files.

    Checkpoints stay behind (the re-scored run trains nothing), and so do the files it
    writes itself.
    """
    count = 0
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if not path.is_file() or path.suffix == ".pt" or str(relative) in NOT_LINKED:
            continue
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, destination)
        except OSError:
            shutil.copy2(path, destination)
        count += 1
    return count


def stored_result(project: Any, run_id: str, detector: str, ids: np.ndarray, summary: dict[str, Any]) -> Any:
    """A detector's stored scores of ``run_id`` as a DetectorResult over ``ids`` (for the ensemble)."""
    from engine.detectors import DetectorResult

    stored = project.scores(run_id, detector)
    return DetectorResult(stored["score"][ids], stored["suggested"][ids], stored["flagged"][ids],
                          np.argsort(stored["rank"][ids], kind="stable"), summary=dict(summary))


def rescored_td_lstm(project: Any, source: Any, audited_ids: np.ndarray, weights: Path, described: str) -> Any:
    """td_lstm over ``audited_ids`` with ``weights``, from the source run's recorded dynamics.

    Audited samples the source run did not train on (removed by a decision) have no recorded
    dynamics here (the audit read them from its final model, which is not kept): they keep
    the source run's td_lstm score and suggestion where it had one, else 0 and none.
    """
    from engine.detectors.td_lstm import result_from_scores, score_td
    from engine.training.recorders import DYNAMICS_FOLDER, load_dynamics

    dynamics = load_dynamics(source.folder / DYNAMICS_FOLDER)
    recorded = np.asarray(dynamics.ids)
    scores = np.zeros(len(audited_ids), dtype=np.float64)
    suggested = np.full(len(audited_ids), -1, dtype=np.int64)
    if "td_lstm" in project.detectors(source.id):
        earlier = project.scores(source.id, "td_lstm")
        scores[:] = earlier["score"][audited_ids]
        suggested[:] = earlier["suggested"][audited_ids]
    position = np.searchsorted(recorded, audited_ids)
    position = np.minimum(position, max(len(recorded) - 1, 0))
    has = recorded[position] == audited_ids if len(recorded) else np.zeros(len(audited_ids), dtype=bool)
    scores[has] = score_td(np.asarray(dynamics.td)[position[has]], weights)
    classes = np.asarray(dynamics.td_classes)
    if classes.shape[1] > 1:  # column 1: the strongest other class by mean probability
        suggested[has] = classes[position[has], 1]
    result = result_from_scores(np.clip(scores, 0.0, 1.0), suggested, int(dynamics.td.shape[2]), described,
                                weights.name)
    result.summary["n_not_rescored"] = int((~has).sum())
    return result


def labels_the_audit_used(project: Any, source: Any, audited_ids: np.ndarray) -> np.ndarray:
    """(len(audited_ids),) the labels ``source`` audited its samples with (the ensemble flags per given class).

    The samples it trained on carry the labels its dynamics recorded (the imported ones with the
    decisions of that time applied); the others, removed by a decision then, their imported label
    (a removed sample is never relabeled). The imported labels are those of the audit:
    :func:`gather_reviews` refuses a project whose labels changed since.
    """
    from engine.evidence.run_labels import run_labels
    from engine.training.recorders import DYNAMICS_FOLDER, load_dynamics

    recorded_by_run = run_labels(project, source)
    if recorded_by_run is not None:  # the audit recorded the labels it trained and scored on
        return recorded_by_run.labels[audited_ids]
    # An audit made before runs recorded their labels: rebuild them from its dynamics.
    labels = project.sample_table().label[audited_ids].astype(np.int64)
    dynamics = load_dynamics(source.folder / DYNAMICS_FOLDER)
    recorded, recorded_labels = np.asarray(dynamics.ids), np.asarray(dynamics.labels, dtype=np.int64)
    position = np.minimum(np.searchsorted(recorded, audited_ids), max(len(recorded) - 1, 0))
    has = recorded[position] == audited_ids if len(recorded) else np.zeros(len(audited_ids), dtype=bool)
    labels[has] = recorded_labels[position[has]]
    return labels


@dataclass(frozen=True)
class FineTuned:
    """The fine-tuned model and the detector's scores of the reviews: before, in-sample after, by k-fold after."""

    model: Any
    before_scores: np.ndarray
    before_weights: str  # the weights in effect until now, described
    in_sample_scores: np.ndarray
    held_scores: np.ndarray | None  # None when too few reviews of a kind leave no k-fold
    folds: int


def fine_tune_on_reviews(ctx: Any, reviews: dict[str, Any]) -> FineTuned:
    """Steps 1-3 of 4: score the reviews with the weights in effect, cross-validate, fine-tune on them all."""
    from engine.detectors.lstm_model import load_weights, predict_mislabeled
    from engine.detectors.td_lstm import shipped_weights_path, weights_in_effect

    events = ctx.events
    sequences, targets = reviews["sequences"], reviews["targets"]
    before_weights, before_described = weights_in_effect(ctx.project.root, "project")
    events.progress("finetune", 0, 4, message="scoring your reviews with the weights in effect")
    before_scores = predict_mislabeled(load_weights(before_weights), sequences)
    base = load_weights(shipped_weights_path())  # always from the shipped weights: no compounding on the same reviews

    def fold_progress(index: int, folds: int) -> None:
        ctx.cancel.raise_if_requested()
        events.progress("finetune", 1, 4, message=f"cross-validating over your reviews: fold {index + 1} of {folds}")

    held_scores, folds = cross_validated_scores(base, sequences, targets, fold_progress)
    ctx.cancel.raise_if_requested()
    events.progress("finetune", 2, 4, message=f"fine-tuning on all {len(targets)} reviews")
    model = fine_tune(base, sequences, targets)
    return FineTuned(model, before_scores, before_described, predict_mislabeled(model, sequences), held_scores, folds)


def keep_project_weights(ctx: Any, source: Any, model: Any, targets: np.ndarray) -> tuple[Path, str]:
    """Save the fine-tuned weights as the project's, with their card; (the weights file, their description)."""
    from engine.detectors.lstm_model import save_weights
    from engine.detectors.td_lstm import describe_project_weights, project_weights_path, shipped_weights_path
    from engine.store import atomic_write_bytes

    project = ctx.project
    weights = project_weights_path(project.root)
    card = {
        "base_weights": "shipped", "base_weights_file": shipped_weights_path().name,
        "n_reviewed": len(targets), "n_mislabeled": int(targets.sum()), "n_correct": int(len(targets) - targets.sum()),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "decisions_fingerprint": project.decisions_fingerprint(),
        "source_run": source.id, "rescored_run": ctx.run.id,
        "epochs": FINE_TUNE_EPOCHS, "lr": FINE_TUNE_LR, "batch_size": FINE_TUNE_BATCH, "seed": SEED,
    }
    pending = weights.with_name(weights.name + ".part")
    save_weights(model, pending)
    os.replace(pending, weights)
    atomic_write_bytes(weights.with_suffix(".json"), json.dumps(card, indent=2).encode())
    return weights, describe_project_weights(card)


def rescore_into_run(ctx: Any, source: Any, weights: Path, described: str) -> tuple[dict[str, Any], int]:
    """Step 4 of 4: this run gets the source run's files, td_lstm re-scored with ``weights``, the other detectors'
    scores as they were, and the ensemble recomputed; (each detector's result, how many files were linked)."""
    from engine.arrays import save_array
    from engine.evidence.run_labels import AUDITED_IDS_FILE
    from engine.workflows.detection import spread_to_all_samples

    project = ctx.project
    ctx.events.progress("finetune", 3, 4, message="re-scoring the project from the recorded dynamics")
    ctx.cancel.raise_if_requested()
    linked = link_run_files(source.folder, ctx.run.folder)
    audited_ids = (np.load(source.folder / AUDITED_IDS_FILE) if (source.folder / AUDITED_IDS_FILE).is_file()
                   else project.sample_table().train_ids)
    save_array(ctx.run.folder / AUDITED_IDS_FILE, audited_ids)
    order = [name for name in source.spec.get("detectors", []) if name != "ensemble"] or \
        [name for name in project.detectors(source.id) if name != "ensemble"]
    if "td_lstm" not in order:
        order.append("td_lstm")
    source_summaries = source.summary.get("detectors", {}) if isinstance(source.summary, dict) else {}
    results: dict[str, Any] = {}
    for name in order:
        if name == "td_lstm":
            results[name] = rescored_td_lstm(project, source, audited_ids, weights, described)
            stored = spread_to_all_samples(results[name], audited_ids, project.num_samples)
            project.save_scores(ctx.run.id, name, stored.scores, stored.suggested, stored.flagged, stored.ranking)
            save_array(ctx.run.folder / "td_lstm.npy", results[name].extras["td_lstm"])
        else:  # another detector: its scores as they were
            results[name] = stored_result(project, source.id, name, audited_ids, source_summaries.get(name, {}))
            copied = project.scores(source.id, name)
            project.save_scores(ctx.run.id, name, copied["score"], copied["suggested"], copied["flagged"],
                                np.argsort(copied["rank"], kind="stable"))
    if "ensemble" in project.detectors(source.id) or "ensemble" in source.spec.get("detectors", []):
        results["ensemble"] = rescored_ensemble(ctx, source, audited_ids, results)
    return results, linked


def rescored_ensemble(ctx: Any, source: Any, audited_ids: np.ndarray, results: dict[str, Any]) -> Any:
    """The ensemble of ``results`` on the labels the source audit used, saved to this run."""
    from engine.arrays import save_array
    from engine.detectors import DetectorInputs
    from engine.detectors.ensemble import detect as ensemble_detect
    from engine.workflows.detection import spread_to_all_samples

    project = ctx.project
    ensemble = ensemble_detect(DetectorInputs(labels_the_audit_used(project, source, audited_ids),
                                              project.num_classes, earlier=dict(results)))
    stored = spread_to_all_samples(ensemble, audited_ids, project.num_samples)
    project.save_scores(ctx.run.id, "ensemble", stored.scores, stored.suggested, stored.flagged, stored.ranking)
    for name, array in ensemble.extras.items():
        save_array(ctx.run.folder / f"{name}.npy", array)
    return ensemble


def agreement_record(source: Any, targets: np.ndarray, tuned: FineTuned, weights: Path, described: str,
                     n_flagged_td_lstm: int) -> dict[str, Any]:
    """The detector's ROC-AUC against the person's verdicts, before and after (the ``finetune`` result)."""
    crossed = tuned.held_scores
    return {
        "source_run": source.id,
        "n_reviewed": len(targets), "n_mislabeled": int(targets.sum()), "n_correct": int(len(targets) - targets.sum()),
        "before": {"roc_auc": roc_auc(targets, tuned.before_scores), "weights": tuned.before_weights},
        "after_in_sample": {"roc_auc": roc_auc(targets, tuned.in_sample_scores)},
        "after_cross_validated": {"roc_auc": roc_auc(targets, crossed) if crossed is not None else None,
                                  "folds": tuned.folds,
                                  "note": "" if crossed is not None else
                                  "needs at least 2 relabeled or removed and 2 kept reviews"},
        "weights": described, "weights_file": str(weights),
        "n_flagged_td_lstm": n_flagged_td_lstm,
    }


def rescore_body(ctx: Any, source: Any, reviews: dict[str, Any]) -> dict[str, Any]:
    """The job: fine-tune, save the project's weights, re-score into this new audit run."""
    started = time.perf_counter()
    targets = reviews["targets"]
    tuned = fine_tune_on_reviews(ctx, reviews)
    weights, described = keep_project_weights(ctx, source, tuned.model, targets)
    results, linked = rescore_into_run(ctx, source, weights, described)
    agreement = agreement_record(source, targets, tuned, weights, described, results["td_lstm"].num_flagged)
    ctx.events.progress("finetune", 4, 4)
    ctx.events.result(FINETUNE_RESULT, agreement)
    ctx.events.log(agreement_line(agreement))
    source_summaries = source.summary.get("detectors", {}) if isinstance(source.summary, dict) else {}
    summary = {key: value for key, value in source.summary.items() if key not in ("timings_s",)}
    summary["detectors"] = {**source_summaries, **{name: result.summary for name, result in results.items()}}
    summary["n_flagged"] = {name: result.num_flagged for name, result in results.items()}
    headline = results.get("cl") or next(iter(results.values()))
    summary["estimated_noise_rate"] = headline.summary.get("estimated_noise_rate")
    summary["rescored_from"] = source.id
    summary["n_linked_files"] = linked
    summary[FINETUNE_RESULT] = agreement
    summary["timings_s"] = {"finetune": round(time.perf_counter() - started, 3)}
    return summary


def agreement_line(agreement: dict[str, Any]) -> str:
    """One line: the detector's ROC-AUC against the person's verdicts, before and after, with the counts."""

    def fmt(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, (int, float)) else "—"

    crossed = agreement["after_cross_validated"]
    return (f"td_lstm's agreement with your {agreement['n_reviewed']} reviews ({agreement['n_mislabeled']} relabeled "
            f"or removed, {agreement['n_correct']} kept), ROC-AUC: before {fmt(agreement['before']['roc_auc'])} "
            f"({agreement['before']['weights']}); after {fmt(crossed['roc_auc'])} by {crossed['folds']}-fold "
            f"cross-validation over your reviews" + (f" ({crossed['note']})" if crossed.get("note") else "")
            + f", {fmt(agreement['after_in_sample']['roc_auc'])} on the reviews it was fine-tuned on (optimistic)")


def gather_reviews(project: Any, source: Any) -> dict[str, Any]:
    """The reviewed samples of ``source``'s dynamics as model inputs and 0/1 targets; refuses too few."""
    from engine.detectors.lstm_model import prepare_sequences
    from engine.detectors.td_lstm import reviewed_targets
    from engine.training.recorders import DYNAMICS_FOLDER, load_dynamics
    from engine.workflows.trusted import person_verdicts

    if "labels" in project.label_state_changes(source):
        raise UserError(f"the labels changed since audit {source.id}: its dynamics describe labels that no longer "
                        "exist", f"run a new audit (`python -m engine audit {project.root} --detectors all`), "
                        "review, then fine-tune")
    dynamics = load_dynamics(source.folder / DYNAMICS_FOLDER)
    decisions = person_verdicts(project)  # a bulk action's decisions are no evidence: nobody looked at each
    rows, targets = reviewed_targets(dynamics.ids, dynamics.labels, project.sample_table().label, decisions)
    check_enough_reviews(targets, source.id)
    return {"sequences": prepare_sequences(np.asarray(dynamics.td)[rows]), "targets": targets}


def run_finetune(project: Any, events: Any) -> tuple[Any, str]:
    """Fine-tune on the reviews of the latest dynamics audit and re-score into a new audit run; (run, status).

    Refuses (UserError, before any run is made) a project without such an audit, or with too few reviews.
    """
    from engine.jobs import run_job

    source = latest_dynamics_audit(project)
    reviews = gather_reviews(project, source)
    spec = {key: value for key, value in source.spec.items() if key not in ("fingerprint", "process", "kind")}
    spec.update({"rescored_from": source.id, "td_lstm_weights": "project"})
    return run_job(project, "audit", spec, lambda ctx: rescore_body(ctx, source, reviews), events)
