"""A run knows which labels it saw: audits record them, evaluation and the app grade against them,
a resume after decisions is refused, and the K-fold's fold files name their samples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from auditor.metrics import evaluation_report, read_truth
from engine.cancel import CancelToken
from engine.cli import main
from engine.data.importing import import_folder
from engine.errors import UserError
from engine.events import Event, EventSink, Metric
from engine.evidence.run_labels import LABELS_USED_FILE, REMOVED_FILE, read_run_labels, record_run_labels
from engine.jobs import JobContext, run_job
from engine.store import Project, RunInfo
from engine.training.config import TrainConfig
from engine.workflows.audit import audit_body, audit_spec, run_audit
from engine.workflows.crossval import crossval_pred_probs
from engine.workflows.evaluate import evaluate_run

TINY = TrainConfig(model="small_cnn", epochs=1, image_size=16, batch_size=8, seed=0)
TINY_ARGS = ["--model", "small_cnn", "--epochs", "1", "--image-size", "16", "--batch-size", "8"]


def folder_project(image_folder: Path, root: Path) -> Project:
    """The image folder as a project whose truth is known: each image's folder is its class."""
    project = import_folder(root, image_folder, test_fraction=0.25, folds=3)
    table = project.sample_table()
    project.set_labels(table.label, table.label.copy())
    return project


class CancelAfterFirstFold(EventSink):
    """Asks the job to stop once fold 0 is finished (its fold file is written before its metric event)."""

    def __init__(self, token: CancelToken) -> None:
        super().__init__()
        self.token = token

    def emit(self, event: Event) -> Event:
        if isinstance(event, Metric) and event.stage == "crossval" and event.fold == 0:
            self.token.request("test: stop after fold 1")
        return event


def audit_stopped_after_first_fold(project: Project) -> RunInfo:
    """A 3-fold audit cancelled once fold 0's file is written (fold 1's is not)."""
    token = CancelToken()
    run, status = run_audit(project, TINY, folds=3, events=CancelAfterFirstFold(token), cancel=token)
    assert status == "cancelled"
    assert (run.folder / "fold0.npz").is_file() and not (run.folder / "fold1.npz").is_file()
    return run


def test_an_audit_records_the_labels_it_trained_on_and_is_graded_against_them(
        image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with folder_project(image_folder, tmp_path / "p") as project:
        table = project.sample_table()
        train = table.train_ids
        wrong, removed = train[:4], train[4]
        for sample in wrong:  # four decisions that make a right label wrong: the audit trains on them
            project.decide(int(sample), "relabel", int((table.label[sample] + 1) % 3))
        project.decide(int(removed), "remove")
        run, status = run_audit(project, TINY, folds=2)
        assert status == "ok"
        run = project.run(run.id)

        used = read_run_labels(run.folder, run.summary)
        labels, keep = project.labels_with_decisions()
        assert used is not None and np.array_equal(used.labels, labels) and np.array_equal(used.removed, ~keep)
        entry = run.summary["labels_used"]
        assert entry["file"] == LABELS_USED_FILE and entry["removed_file"] == REMOVED_FILE and entry["n_removed"] == 1
        assert len(entry["sha256"]) == 64 and project.stale_reason(run) is None

        # The audit saw 4 wrong labels among the train samples; the observed labels hold none.
        report = evaluate_run(project, run.id)
        assert report["detectors"]["cl"]["n_noisy"] == 4 and report["graded_against_run_labels"] is True
        assert "the labels run" in report["graded_against"] and "4 relabeled and 1 removed" in report["graded_against"]
        truth = read_truth(project, run)  # the app's Detector curves and Probabilities views
        app = evaluation_report(truth, run, {"cl": project.scores(run.id, "cl")["score"]},
                                {"cl": project.scores(run.id, "cl")["flagged"]})
        assert app["detectors"]["cl"]["n_noisy"] == 4 and app["true_noise_rate"] == report["true_noise_rate"]
        assert app["detectors"]["cl"]["roc_auc"] == pytest.approx(report["detectors"]["cl"]["roc_auc"])
        assert int(read_truth(project).mislabeled.sum()) == 0  # without a run: the observed labels

        # A decision made since: the audit now describes other labels than the project's.
        project.decide(int(train[6]), "relabel", int((table.label[train[6]] + 2) % 3))
        assert "1 samples are relabeled or removed differently" in (project.stale_reason(run) or "")
        assert evaluate_run(project, run.id)["detectors"]["cl"]["n_noisy"] == 4  # still graded on what it saw

        # A file changed after the run is noticed, never silently used.
        np.save(run.folder / LABELS_USED_FILE, table.label)
        with pytest.raises(UserError, match="was changed after run"):
            evaluate_run(project, run.id)


def test_a_run_of_an_older_version_is_graded_against_the_observed_labels_and_says_so(tmp_path: Path,
                                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with Project.create(tmp_path / "p") as project:
        project.add_classes(["a", "b"])
        project.add_samples({"path": f"{i}.png", "split": "train", "label": i % 2, "true_label": 0} for i in range(8))
        run = project.new_run("audit", {})
        project.save_scores(run.id, "cl", np.linspace(0, 1, 8), np.zeros(8, dtype=np.int64), np.arange(8) % 2 == 1)
        project.finish_run(run.id, "ok", {})
        report = evaluate_run(project)
        assert report["graded_against_run_labels"] is False and "recorded no labels" in report["graded_against"]
        assert report["detectors"]["cl"]["n_noisy"] == 4
        assert "older version" in read_truth(project, project.run(run.id)).label_source
    assert main(["evaluate", str(tmp_path / "p")]) == 0
    assert "graded against the project's observed labels" in capsys.readouterr().out


def test_resuming_an_audit_after_decisions_is_refused_and_never_reuses_its_folds(
        image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "p"
    with folder_project(image_folder, root) as project:
        run = audit_stopped_after_first_fold(project)
        table = project.sample_table()
        train = table.train_ids
        for sample in train[::3][:8]:  # relabel enough samples (of every class) that the folds are drawn differently
            project.decide(int(sample), "relabel", int((table.label[sample] + 1) % 3))

    # status says so before anyone tries (the app's interrupted-run note reads it) ...
    assert main(["status", str(root), "--json"]) == 0
    listed = next(entry for entry in json.loads(capsys.readouterr().out)["runs"] if entry["id"] == run.id)
    assert listed["resume"] is None and "the decisions changed since run" in listed["resume_refused"]
    # ... and the CLI (so the app, whose Resume runs it) refuses, saying what changed and what to do.
    code = main(["audit", str(root), "--resume", run.id, *TINY_ARGS])
    err = capsys.readouterr().err
    assert code == 2 and f"the decisions changed since run {run.id} was stopped" in err
    assert f"start a new run instead of --resume: python -m engine audit {root}" in err

    with Project.open(root) as project:
        resumed = project.claim_run_for_resume(run.id)
        ctx = JobContext(project, resumed, EventSink())
        # Were the refusal bypassed, the run's own checks stop it: the labels it started with ...
        spec = audit_spec(TINY, 3, ["cl"])
        with pytest.raises(UserError, match="differ from those run .* started with"):
            audit_body(ctx, TINY, spec)
        # ... and fold 0's file, which holds the probabilities of samples that are no longer fold 0's.
        labels, keep = project.labels_with_decisions()
        with pytest.raises(UserError, match="fold0.npz of run .* holds the probabilities of other samples"):
            crossval_pred_probs(ctx, TINY, 3, labels=labels, keep=keep)


def test_a_resume_with_the_same_labels_reuses_its_finished_fold(image_folder: Path, tmp_path: Path) -> None:
    with folder_project(image_folder, tmp_path / "p") as project:
        spec = audit_spec(TINY, 3, ["cl"])
        run = audit_stopped_after_first_fold(project)
        fold0 = (run.folder / "fold0.npz").read_bytes()
        with np.load(run.folder / "fold0.npz") as saved:
            assert "held_out_ids" in saved.files and "other_ids" in saved.files
        resumed, status = run_job(project, "audit", spec, lambda ctx: audit_body(ctx, TINY, spec), EventSink(),
                                  run=project.run(run.id))
        assert status == "ok" and (run.folder / "fold0.npz").read_bytes() == fold0


def test_a_keep_made_while_an_audit_was_stopped_leaves_it_resumable(
        image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A keep changes nothing an audit trains on (its labels, its folds): the resume goes on and reuses fold 0."""
    root = tmp_path / "p"
    with folder_project(image_folder, root) as project:
        run = audit_stopped_after_first_fold(project)
        fold0 = (run.folder / "fold0.npz").read_bytes()
        project.decide(int(project.sample_table().train_ids[0]), "keep")
    assert main(["status", str(root), "--json"]) == 0
    listed = next(entry for entry in json.loads(capsys.readouterr().out)["runs"] if entry["id"] == run.id)
    assert listed["resume_refused"] is None and f"--resume {run.id}" in listed["resume"]
    assert main(["audit", str(root), "--resume", run.id, *TINY_ARGS]) == 0
    with Project.open(root) as project:
        finished = project.run(run.id)
        assert finished.status == "ok" and (finished.folder / "fold0.npz").read_bytes() == fold0
        assert project.stale_reason(finished) is None  # its scores still describe the labels


def test_record_run_labels_refuses_other_labels_for_the_same_run(tmp_path: Path) -> None:
    labels, keep = np.array([0, 1, 2]), np.array([True, False, True])
    first = record_run_labels(tmp_path, labels, keep)
    assert record_run_labels(tmp_path, labels, keep) == first  # a resume with the same labels
    with pytest.raises(UserError, match="of 1 samples differ"):
        record_run_labels(tmp_path, np.array([0, 1, 1]), keep)
    assert json.dumps(first)


def test_each_folds_heldout_accuracy_is_measured_against_the_summarys_labels(image_folder: Path, tmp_path: Path,
                                                                             recorded_events: Any) -> None:
    from engine.events import Log

    with folder_project(image_folder, tmp_path / "p") as project:
        table = project.sample_table()
        for sample in table.test_ids:  # held-out labels edited (as --include-heldout may): the truth still grades
            project.decide(int(sample), "relabel", int((table.label[sample] + 1) % 3))
        run, status = run_audit(project, TINY, folds=2, events=recorded_events)
        assert status == "ok"
        summary = project.run(run.id).summary
        assert summary["heldout_accuracy_measured_against"] == "truth"
        other_ids = np.setdiff1d(np.arange(project.num_samples), table.train_ids)
        rows = np.searchsorted(other_ids, table.test_ids)
        folds = {event.fold: event.values for event in recorded_events.events
                 if isinstance(event, Metric) and event.stage == "crossval"}
        assert set(folds) == {0, 1}
        for fold, values in folds.items():
            with np.load(run.folder / f"fold{fold}.npz") as saved:
                expected = float((saved["other"][rows].argmax(1) == table.true_label[table.test_ids]).mean())
            assert values["heldout_acc"] == pytest.approx(expected)
        logs = [event.message for event in recorded_events.events if isinstance(event, Log)]
        assert any("fold 1/2: held-out accuracy" in line and "(against truth)" in line for line in logs)
