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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.cancel import CancelToken
from engine.detectors import (
    DETECTORS,
    EMBEDDINGS,
    OOF_PROBS,
    DetectorInputs,
    DetectorResult,
    parse_detectors,
    required_evidence,
)
from engine.events import EventSink
from engine.evidence.run_labels import AUDITED_IDS_FILE, record_run_labels
from engine.jobs import JobContext, run_job
from engine.store import Project, RunInfo
from engine.workflows.budget import audit_fit_ids, dynamics_epochs_for, get_preset
from engine.workflows.detection import run_detectors

if TYPE_CHECKING:
    from engine.training.config import TrainConfig

AUDIT_KIND = "audit"
DEFAULT_DETECTORS = ("cl",)


DEFAULT_DYNAMICS_EPOCHS = 45
"""Epochs of the one dynamics run when neither ``--dynamics-epochs`` nor ``--epochs`` is given and the number of
training samples is not known: library callers that name no preset (:func:`audit_spec`, the bench), and every
run made before the presets (``engine.workflows.budget``), whose specs record the epochs they trained.

A sample's trajectory is the evidence: a long run separates the samples learned late (hard but
right) from those learned only by memorising (mislabeled), and one model costs a K-fold audit's
1/K. Measured on CIFAR-10N worse_label, 1,000 images per class, small CNN: ROC-AUC of AUM 0.849
at 12 epochs, 0.897 at 45, 0.898 at 50 (the README's detector tables). 45 rather than 50: on a
2-core CPU with bf16 the 45-epoch run takes 162 s, under the plain ``aum`` script's 182 s for
12 epochs of its own CNN; 50 epochs took 184 s, a tie.
"""


def resolve_dynamics_epochs(dynamics_epochs: int | None, epochs: int | None, n_train: int | None = None,
                            preset: str | None = None) -> int:
    """The dynamics run's epochs: ``--dynamics-epochs``, else an explicit ``--epochs``, else the preset's rule for
    ``n_train`` training samples (:func:`engine.workflows.budget.dynamics_epochs_for`); without ``n_train``,
    :data:`DEFAULT_DYNAMICS_EPOCHS`."""
    from engine.options import check_option

    # ``is None``, not ``or``: a 0 given is refused, never replaced by the fallback.
    check_option("--dynamics-epochs", dynamics_epochs)
    check_option("--epochs", epochs)
    if dynamics_epochs is not None:
        return int(dynamics_epochs)
    if epochs is not None:
        return int(epochs)
    if n_train is None:
        return DEFAULT_DYNAMICS_EPOCHS
    return dynamics_epochs_for(n_train, get_preset(preset))


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
    from engine.training import distributed
    from engine.training.checkpoints import DYNAMICS_CHECKPOINT
    from engine.training.fit import fit_and_evaluate
    from engine.training.loop import predict_probs
    from engine.training.recorders import DYNAMICS_FOLDER, EVIDENCE_RECORDERS, DynamicsRecorder

    project = ctx.project
    n, num_classes, epochs = project.num_samples, project.num_classes, config.epochs
    table = project.sample_table()
    recorder = DynamicsRecorder(ctx.run.folder / DYNAMICS_FOLDER, train_ids, labels[train_ids], num_classes, epochs)
    recorders = [recorder, *(EVIDENCE_RECORDERS[name](recorder.folder, train_ids, labels[train_ids], num_classes,
                                                      epochs) for name in evidence if name in EVIDENCE_RECORDERS)]
    ctx.events.log(f"dynamics: one model on {len(train_ids)} samples, recording every epoch")
    test_ids = table.test_ids
    result = fit_and_evaluate(
        ctx, config, train_ids, labels[train_ids], test_ids, table.given_label[test_ids], stage="train",
        callbacks=recorders, checkpoint_name=DYNAMICS_CHECKPOINT,
    )
    others = recorder.untrained_ids(n)
    probs = np.zeros((n, num_classes), dtype=np.float32)
    if len(others):  # under torchrun every rank scores its share of them
        probs[others] = predict_probs(result.model, result.data, others, result.state.amp)
    if not distributed.is_main():
        return {}, probs  # rank 0 alone has the recorded files and runs the detectors
    # Each recorder hands over its own evidence, for every sample (the others: the final model's prediction).
    return {name: array for each in recorders for name, array in each.evidence_arrays(probs, labels).items()}, probs


@dataclass
class GatheredEvidence:
    """What the detectors read, and the out-of-sample probabilities the held-out accuracy is measured with."""

    pred_probs: np.ndarray | None  # (N, K) K-fold probabilities (oof_probs), or None
    arrays: dict[str, np.ndarray]  # the dynamics run's evidence by kind, (N, ...) each
    heldout_probs: np.ndarray | None  # (N, K); None when only detectors on embeddings ran (nothing trained)
    heldout_model: str  # which model(s) gave ``heldout_probs``, in words
    timings: dict[str, float]


def gather_evidence(ctx: JobContext, config: TrainConfig, spec: dict[str, Any], evidence: list[str],
                    labels: np.ndarray, keep: np.ndarray, fit_ids: np.ndarray) -> GatheredEvidence:
    """Train what ``evidence`` needs: the K-fold models (oof_probs), and the one dynamics run for every other kind."""
    from engine.workflows.crossval import crossval_pred_probs

    folds = int(spec.get("folds", 3))
    timings: dict[str, float] = {}
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
    return GatheredEvidence(pred_probs, arrays, heldout_probs, heldout_model, timings)


def audit_body(ctx: JobContext, config: TrainConfig, spec: dict[str, Any]) -> dict[str, Any]:
    """The job body: gather the evidence, detect, summarise. ``spec`` has ``folds`` and ``detectors``."""
    from engine.arrays import save_array
    from engine.detectors.td_lstm import detector_settings  # the project's fine-tuned weights, or the shipped ones
    from engine.training import distributed

    detectors = parse_detectors(list(spec.get("detectors", DEFAULT_DETECTORS)))
    evidence = required_evidence(detectors)
    project = ctx.project
    table = project.sample_table()
    # The person's decisions: relabels are trained on and audited as such; removed samples are not trained on.
    labels, keep = project.labels_with_decisions()
    # Recorded before any training (a resume checks them): what grades or shows this run uses these labels.
    labels_used = record_run_labels(ctx.run.folder, labels, keep) if distributed.is_main() else {}
    audited_ids = table.train_ids  # held-out samples are never audited (see the module docstring)
    fit_ids = audit_fit_ids(project, (labels, keep))
    gathered = gather_evidence(ctx, config, spec, evidence, labels, keep, fit_ids)
    if not distributed.is_main():
        return {}  # under torchrun the evidence is gathered; rank 0 alone detects and writes
    if EMBEDDINGS in evidence:  # the embeddings' neighbour index (engine/embeddings/evidence.py): no training
        from engine.embeddings.evidence import gather_embedding_evidence

        started = time.perf_counter()
        gathered.arrays = {**gathered.arrays, **gather_embedding_evidence(ctx, spec, audited_ids)}
        gathered.timings["embeddings"] = round(time.perf_counter() - started, 3)

    inputs = DetectorInputs(labels=labels, num_classes=project.num_classes, pred_probs=gathered.pred_probs,
                            arrays=gathered.arrays,
                            settings=detector_settings(project.root, spec.get("td_lstm_weights", "project")))
    started = time.perf_counter()
    save_array(ctx.run.folder / AUDITED_IDS_FILE, audited_ids)
    results = run_detectors(project, ctx.run, detectors, inputs, ctx.events, ctx.cancel, scored_ids=audited_ids)
    gathered.timings["detect"] = round(time.perf_counter() - started, 3)
    summary = audit_summary(project, int(spec.get("folds", 3)), evidence, (labels, keep, labels_used), fit_ids,
                            results, gathered)
    # What it trained, as the app and status show it: the preset (None: a run from before them, or a library
    # caller's) and the dynamics run's epochs (None: it had no dynamics run).
    summary["preset"] = spec.get("preset")
    summary["dynamics_epochs"] = (int(spec.get("dynamics_epochs") or config.epochs)
                                  if any(name not in (OOF_PROBS, EMBEDDINGS) for name in evidence) else None)
    report_audit(ctx, summary)
    return summary


def audit_summary(project: Project, folds: int, evidence: list[str],
                  trained_labels: tuple[np.ndarray, np.ndarray, dict[str, Any]], fit_ids: np.ndarray,
                  results: dict[str, DetectorResult], gathered: GatheredEvidence) -> dict[str, Any]:
    """The run's summary: the counts, each detector's flagged set and summary, the held-out accuracy, timings.

    ``trained_labels``: the labels the run used, which samples it kept, and their record (``labels_used``).
    """
    from engine.workflows.crossval import heldout_accuracy

    labels, keep, labels_used = trained_labels
    table = project.sample_table()
    audited_ids = table.train_ids
    accuracy, against, n_eval = (heldout_accuracy(table, gathered.heldout_probs) if gathered.heldout_probs is not None
                                 else (None, "", 0))  # only detectors on embeddings ran: no model to measure
    # The headline estimate comes from confident learning when it ran, else from the first label detector.
    label_results = [result for name, result in results.items() if DETECTORS[name].issue == "label"]
    headline = results.get("cl") or (label_results or list(results.values()))[0]
    return {
        "n_samples": len(table.label),
        "n_train": len(table.train_ids),
        "n_test": len(table.test_ids),
        "num_classes": project.num_classes,
        "folds": folds,
        "evidence": evidence,
        "n_audited": len(audited_ids),
        "n_trained_on": len(fit_ids),
        "n_removed_by_decisions": int((~keep[audited_ids]).sum()),  # scored, not trained on
        "n_relabeled_by_decisions": int((labels[audited_ids] != table.label[audited_ids]).sum()),
        "labels_used": labels_used,  # the labels it trained and scored on: engine.evidence.run_labels
        "n_flagged": {name: result.num_flagged for name, result in results.items()},
        "estimated_noise_rate": headline.summary.get("estimated_noise_rate"),  # of the train split
        "heldout_accuracy": accuracy,
        "heldout_accuracy_measured_against": against,
        "heldout_accuracy_model": gathered.heldout_model,
        "n_heldout": n_eval,
        "detectors": {name: result.summary for name, result in results.items()},
        "timings_s": gathered.timings,
    }


def report_audit(ctx: JobContext, summary: dict[str, Any]) -> None:
    """The audit's ``result`` event and its closing log line."""
    ctx.events.result("audit", {key: summary[key] for key in (
        "n_samples", "n_audited", "n_flagged", "estimated_noise_rate", "heldout_accuracy",
        "heldout_accuracy_measured_against")})
    flagged = ", ".join(f"{name} {count}" for name, count in summary["n_flagged"].items())
    accuracy = summary["heldout_accuracy"]
    ctx.events.log(
        f"audit done: flagged {flagged} of {summary['n_audited']} training samples"
        + (f"; estimated noise rate {summary['estimated_noise_rate']:.3f}"
           if summary["estimated_noise_rate"] is not None else "")
        + (f"; held-out accuracy {accuracy:.3f} (against {summary['heldout_accuracy_measured_against']}, "
           f"{summary['heldout_accuracy_model']})" if accuracy is not None else "")
    )


def audit_spec(config: TrainConfig, folds: int, detectors: list[str] | tuple[str, ...],
               dynamics_epochs: int | None = None, embedding_source: str | None = None,
               preset: str | None = None, n_train: int | None = None) -> dict[str, Any]:
    """The run spec of an audit (what ``--resume`` re-reads): training settings, folds, detectors.

    ``dynamics_epochs``: the dynamics run's epochs; not given, ``preset``'s rule for ``n_train`` training samples
    when both are given, else :data:`DEFAULT_DYNAMICS_EPOCHS` (``config.epochs`` is the K-fold models').
    The spec records the number resolved, so a resume trains what the run started with.
    """
    names = [info.name for info in parse_detectors(list(detectors))]  # fails before a run is made
    spec: dict[str, Any] = {"train": config.to_dict(), "folds": int(folds), "detectors": names,
                            "dynamics_epochs": resolve_dynamics_epochs(dynamics_epochs, None,
                                                                       n_train if preset is not None else None, preset),
                            "embedding_source": embedding_source}
    if preset is not None:
        spec["preset"] = preset
    return spec


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
    preset: str | None = None,
) -> tuple[RunInfo, str]:
    """Audit the project as a recorded run; returns (run, status: ok | error | cancelled).

    The library entry point (tests, bench, the GUI's engine process);
    ``python -m engine audit`` is the same job. ``preset`` (``engine.workflows.budget.PRESETS``) sizes the
    dynamics run by the number of samples it trains on when ``dynamics_epochs`` is not given; without it,
    :data:`DEFAULT_DYNAMICS_EPOCHS`. ``config.epochs`` stays the K-fold models' either way.
    """
    n_train = len(audit_fit_ids(project)) if preset is not None and dynamics_epochs is None else None
    spec = audit_spec(config, folds, detectors, dynamics_epochs, embedding_source, preset, n_train)
    return run_job(project, AUDIT_KIND, spec, lambda ctx: audit_body(ctx, config, spec),
                   events or EventSink(), cancel=cancel)
