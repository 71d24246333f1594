"""The audit job: gather the evidence the chosen detectors require, then run every one of them.

Evidence is gathered once per kind, not once per detector (see
:data:`engine.detectors.EVIDENCE`):

- ``oof_probs`` (``cl``): K-fold cross-validation; the run folder gets
  ``pred_probs.npy`` (N, K) and, from confident learning,
  ``confident_joint.npy`` and ``noise_matrix.npy``, both (K, K);
- ``dynamics`` (``aum``, ``cartography``): ONE model trained on every training
  sample with a :class:`~engine.training.recorders.DynamicsRecorder`; its
  files are in ``dynamics/`` of the run folder, its final model in
  ``checkpoint-dynamics.pt``. One model instead of K.
- ``confident_class`` (``ocl``): recorded in that same run, into
  ``dynamics/confident_class.npy``.

Both are gathered when both are asked for. Per-sample scores go to the project
database, one set per detector (:meth:`Project.save_scores`); each detector's
extra arrays go to the run folder, per-sample ones in the order of
``audited_ids.npy`` (the ids the detectors saw); ``summary.json`` closes it.

The audit trains on the labels with the person's decisions applied: a relabel
is trained on (and audited) as its new label, a removed sample is left out of
training but still scored. With K-fold probabilities it gets the mean of the
fold models; with dynamics, which it has none of, it is scored from the final
model's prediction: its per-epoch evidence is that one prediction, repeated
(so its AUM is the final model's margin, its cartography confidence the final
model's probability of its label, its variability 0).

The detectors see the TRAIN split only. Held-out (test) samples are what
accuracy is measured on, so they are never audited, flagged or offered for
review (their labels must not drift towards the model's own suggestions), and
the estimated noise rate describes the training set alone. They still get
out-of-sample probabilities (the mean of the fold models, or the one dynamics
model, none of which saw them) for the held-out accuracy; their stored scores
are 0, unflagged, with no suggestion, ranked after every train sample.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.detectors import (
    DETECTORS,
    EMBEDDINGS,
    OOF_PROBS,
    DetectorInfo,
    DetectorInputs,
    DetectorResult,
    available_evidence,
    parse_detectors,
    required_evidence,
)
from engine.events import EventSink
from engine.jobs import CancelToken, JobContext, run_job
from engine.run_labels import AUDITED_IDS_FILE, record_run_labels
from engine.store import Project, RunInfo

if TYPE_CHECKING:
    from engine.training.config import TrainConfig

AUDIT_KIND = "audit"
DEFAULT_DETECTORS = ("cl",)
DYNAMICS_CHECKPOINT = "checkpoint-dynamics.pt"


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


DEFAULT_DYNAMICS_EPOCHS = 45
"""Epochs of the one dynamics run when neither ``--dynamics-epochs`` nor ``--epochs`` is given.

A sample's trajectory is the evidence: a long run separates the samples learned late (hard but
right) from those learned only by memorising (mislabeled), and one model costs a K-fold audit's
1/K. Measured on CIFAR-10N worse_label, 1,000 images per class, small CNN: ROC-AUC of AUM 0.849
at 12 epochs, 0.897 at 45, 0.898 at 50 (the README's detector tables). 45 rather than 50: on a
2-core CPU with bf16 the 45-epoch run takes 162 s, under the plain ``aum`` script's 182 s for
12 epochs of its own CNN; 50 epochs took 184 s, a tie.
"""


def resolve_dynamics_epochs(dynamics_epochs: int | None, epochs: int | None) -> int:
    """The dynamics run's epochs: ``--dynamics-epochs``, else an explicit ``--epochs``, else the default."""
    chosen = dynamics_epochs or epochs or DEFAULT_DYNAMICS_EPOCHS
    if chosen < 1:
        from engine.errors import UserError

        raise UserError(f"--dynamics-epochs must be at least 1 (got {chosen})", "pass --dynamics-epochs 1 or more")
    return int(chosen)


def record_dynamics(
    ctx: JobContext, config: TrainConfig, train_ids: np.ndarray, labels: np.ndarray,
    evidence: tuple[str, ...] | list[str] = (),
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Train one model on ``train_ids`` with the dynamics recorder; the evidence of every sample.

    ``evidence`` may name further kinds that a recorder of ``EVIDENCE_RECORDERS`` makes in the same
    run (``confident_class``); each comes back as an (N, E) array of that name.

    Returns
    -------
    arrays : dict of (N, ...) arrays, indexed by sample id
        ``margin`` and ``given_prob`` (N, E), ``mean_probs`` (N, K) float32: recorded for the
        trained samples; for every other one, the final model's prediction repeated over epochs.
    probs : np.ndarray of shape (N, K)
        The final model's probabilities of the samples it did not train on (zeros for the others).
    """
    from engine.detectors.early_learning import class_probs_from_td, early_learning_window
    from engine.detectors.td_lstm import td_of_every_sample
    from engine.training import distributed
    from engine.training.fit import fit_and_evaluate
    from engine.training.loop import predict_probs
    from engine.training.recorders import DYNAMICS_FOLDER, EVIDENCE_RECORDERS, DynamicsRecorder, load_dynamics

    project = ctx.project
    n, num_classes, epochs = project.num_samples, project.num_classes, config.epochs
    table = project.sample_table()
    recorder = DynamicsRecorder(ctx.run.folder / DYNAMICS_FOLDER, train_ids, labels[train_ids], num_classes, epochs)
    extra_recorders = [EVIDENCE_RECORDERS[name](recorder.folder, train_ids, labels[train_ids], num_classes, epochs)
                       for name in evidence if name in EVIDENCE_RECORDERS]
    ctx.events.log(f"dynamics: one model on {len(train_ids)} samples, recording every epoch")
    test_ids = table.test_ids
    result = fit_and_evaluate(
        ctx, config, train_ids, labels[train_ids], test_ids, table.given_label[test_ids], stage="train",
        callbacks=[recorder, *extra_recorders], checkpoint_name=DYNAMICS_CHECKPOINT,
    )
    others = np.setdiff1d(np.arange(n), recorder.ids)
    probs = np.zeros((n, num_classes), dtype=np.float32)
    if len(others):  # under torchrun every rank scores its share of them
        probs[others] = predict_probs(result.model, result.data, others, result.state.amp)
    if not distributed.is_main():
        return {}, probs  # rank 0 alone has the recorded files and runs the detectors
    recorded = load_dynamics(recorder.folder)
    margin = np.empty((n, epochs), dtype=np.float32)
    given_prob = np.empty((n, epochs), dtype=np.float32)
    mean_probs = np.empty((n, num_classes), dtype=np.float32)
    margin[recorded.ids] = recorded.margin
    given_prob[recorded.ids] = recorded.given_prob
    mean_probs[recorded.ids] = recorded.mean_probs
    if len(others):
        other_probs = probs[others].astype(np.float64)
        given = other_probs[np.arange(len(others)), labels[others]]
        rest = other_probs.copy()
        rest[np.arange(len(others)), labels[others]] = -np.inf
        tiny = np.finfo(np.float32).tiny  # log of a probability that underflowed to 0
        # Logits share the softmax normaliser: their difference is the log ratio of the probabilities.
        final_margin = np.log(np.maximum(given, tiny)) - np.log(np.maximum(rest.max(axis=1), tiny))
        margin[others] = final_margin[:, None]
        given_prob[others] = given[:, None]
        mean_probs[others] = probs[others]
    early_probs = np.empty((n, num_classes), dtype=np.float32)  # how many are mislabeled: early_learning.py
    early_probs[recorded.ids] = class_probs_from_td(recorded.td, recorded.td_classes, num_classes,
                                                    early_learning_window(epochs))
    if len(others):
        early_probs[others] = probs[others]
    arrays: dict[str, np.ndarray] = {"margin": margin, "given_prob": given_prob, "mean_probs": mean_probs,
                                     "early_probs": early_probs}
    arrays["td"] = td_of_every_sample(recorded.ids, np.asarray(recorded.td), probs, labels)  # for td_lstm
    for extra in extra_recorders:
        spread = np.empty((n, epochs), dtype=np.int16)
        spread[extra.ids] = extra.read()
        if len(others):
            spread[others] = extra.untrained(probs[others], labels[others], epochs)
        arrays[extra.evidence] = spread
    return arrays, probs


def audit_body(ctx: JobContext, config: TrainConfig, spec: dict[str, Any]) -> dict[str, Any]:
    """The job body: gather the evidence, detect, summarise. ``spec`` has ``folds`` and ``detectors``."""
    from engine.crossval import crossval_pred_probs, heldout_accuracy, save_array

    folds = int(spec.get("folds", 3))
    detectors = parse_detectors(list(spec.get("detectors", DEFAULT_DETECTORS)))
    evidence = required_evidence(detectors)
    project = ctx.project
    table = project.sample_table()
    timings: dict[str, float] = {}
    # The person's decisions: relabels are trained on and audited as such; removed samples are not trained on.
    labels, keep = project.labels_with_decisions()
    from engine.training import distributed

    # Recorded before any training (a resume checks them): what grades or shows this run uses these labels.
    labels_used = record_run_labels(ctx.run.folder, labels, keep) if distributed.is_main() else {}
    audited_ids = table.train_ids  # held-out samples are never audited (see the module docstring)
    fit_ids = audited_ids[keep[audited_ids]]

    pred_probs: np.ndarray | None = None
    arrays: dict[str, np.ndarray] = {}
    heldout_probs: np.ndarray | None = None
    heldout_model = ""
    if OOF_PROBS in evidence:
        started = time.perf_counter()
        pred_probs = crossval_pred_probs(ctx, config, folds, labels=labels, keep=keep)
        timings["crossval"] = round(time.perf_counter() - started, 3)
        heldout_probs, heldout_model = pred_probs, f"mean of the {folds} fold models"
        ctx.cancel.raise_if_requested()
    if any(name not in (OOF_PROBS, EMBEDDINGS) for name in evidence):  # the rest come from the one dynamics run
        started = time.perf_counter()
        # Runs from before --dynamics-epochs trained the dynamics model for --epochs.
        dynamics_config = dataclasses.replace(config, epochs=int(spec.get("dynamics_epochs") or config.epochs))
        arrays, final_probs = record_dynamics(ctx, dynamics_config, fit_ids, labels, evidence)
        timings["dynamics"] = round(time.perf_counter() - started, 3)
        if heldout_probs is None:
            heldout_probs, heldout_model = final_probs, "one model trained on all training samples"
        ctx.cancel.raise_if_requested()
    if not distributed.is_main():
        return {}  # under torchrun the evidence is gathered; rank 0 alone detects and writes
    if EMBEDDINGS in evidence:  # the embeddings' neighbour index (engine/embeddings/evidence.py): no training
        from engine.embeddings.evidence import gather_embedding_evidence

        started = time.perf_counter()
        arrays = {**arrays, **gather_embedding_evidence(ctx, spec, audited_ids)}
        timings["embeddings"] = round(time.perf_counter() - started, 3)

    from engine.detectors.td_lstm import detector_settings  # the project's fine-tuned weights, or the shipped ones

    inputs = DetectorInputs(labels=labels, num_classes=project.num_classes, pred_probs=pred_probs, arrays=arrays,
                            settings=detector_settings(project.root, spec.get("td_lstm_weights", "project")))
    started = time.perf_counter()
    save_array(ctx.run.folder / AUDITED_IDS_FILE, audited_ids)
    results = run_detectors(project, ctx.run, detectors, inputs, ctx.events, ctx.cancel, scored_ids=audited_ids)
    timings["detect"] = round(time.perf_counter() - started, 3)

    if heldout_probs is not None:
        accuracy, against, n_eval = heldout_accuracy(table, heldout_probs)
    else:  # only detectors on embeddings ran: no model was trained to measure
        accuracy, against, n_eval, heldout_model = None, "", 0, ""
    # The headline estimate comes from confident learning when it ran, else from the first label detector.
    label_results = [result for name, result in results.items() if DETECTORS[name].issue == "label"]
    headline = results.get("cl") or (label_results or list(results.values()))[0]
    n_removed = int((~keep[audited_ids]).sum())
    summary: dict[str, Any] = {
        "n_samples": len(table.label),
        "n_train": len(table.train_ids),
        "n_test": len(table.test_ids),
        "num_classes": project.num_classes,
        "folds": folds,
        "evidence": evidence,
        "n_audited": len(audited_ids),
        "n_trained_on": len(fit_ids),
        "n_removed_by_decisions": n_removed,  # scored, not trained on
        "n_relabeled_by_decisions": int((labels[audited_ids] != table.label[audited_ids]).sum()),
        "labels_used": labels_used,  # the labels it trained and scored on: engine.run_labels
        "n_flagged": {name: result.num_flagged for name, result in results.items()},
        "estimated_noise_rate": headline.summary.get("estimated_noise_rate"),  # of the train split
        "heldout_accuracy": accuracy,
        "heldout_accuracy_measured_against": against,
        "heldout_accuracy_model": heldout_model,
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
        f"audit done: flagged {flagged} of {len(audited_ids)} training samples"
        + (f"; estimated noise rate {summary['estimated_noise_rate']:.3f}"
           if summary["estimated_noise_rate"] is not None else "")
        + (f"; held-out accuracy {accuracy:.3f} (against {against}, {heldout_model})" if accuracy is not None else "")
    )
    return summary


def audit_spec(config: TrainConfig, folds: int, detectors: list[str] | tuple[str, ...],
               dynamics_epochs: int | None = None, embedding_source: str | None = None) -> dict[str, Any]:
    """The run spec of an audit (what ``--resume`` re-reads): training settings, folds, detectors.

    ``dynamics_epochs``: the dynamics run's epochs (default :data:`DEFAULT_DYNAMICS_EPOCHS`, as for the
    CLI and the app; ``config.epochs`` is the K-fold models').
    """
    names = [info.name for info in parse_detectors(list(detectors))]  # fails before a run is made
    return {"train": config.to_dict(), "folds": int(folds), "detectors": names,
            "dynamics_epochs": resolve_dynamics_epochs(dynamics_epochs, None), "embedding_source": embedding_source}


def run_audit(
    project: Project,
    config: TrainConfig,
    *,
    folds: int = 3,
    detectors: list[str] | tuple[str, ...] = DEFAULT_DETECTORS,
    events: EventSink | None = None,
    cancel: CancelToken | None = None,
    dynamics_epochs: int | None = None,
    embedding_source: str | None = None,
) -> tuple[RunInfo, str]:
    """Audit the project as a recorded run; returns (run, status: ok | error | cancelled).

    The library entry point (tests, bench, the GUI's engine process);
    ``python -m engine audit`` is the same job.
    """
    spec = audit_spec(config, folds, detectors, dynamics_epochs, embedding_source)
    return run_job(project, AUDIT_KIND, spec, lambda ctx: audit_body(ctx, config, spec),
                   events or EventSink(), cancel=cancel)
