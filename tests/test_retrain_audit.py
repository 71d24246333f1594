"""Audit and retrain: the training set they build, and both jobs end to end on the demo project."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cleanlab.filter import find_label_issues

from engine.cli import main
from engine.errors import UserError
from engine.export import export_csv
from engine.store import Project
from engine.training.config import TrainConfig
from engine.workflows.audit import run_audit
from engine.workflows.evaluate import evaluate_run
from engine.workflows.retrain import run_retrain
from engine.workflows.sample_sets import cleaned_training_set, heldout_to_measure, parse_top_k

ACCURACY_FLOOR = 0.5  # digits, 10 classes: chance is 0.1


def small_project(root: Path, truth_known: bool = True) -> Project:
    """10 samples of 3 classes: ids 0-7 train, 8-9 test; an audit run ranking them 9, 8, ..., 0."""
    project = Project.create(root)
    project.add_classes(["a", "b", "c"])
    labels = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    project.add_samples(
        {"path": f"{i}.png", "split": "train" if i < 8 else "test", "label": labels[i],
         "true_label": (labels[i] if i != 9 else 1) if truth_known else None}
        for i in range(10)
    )
    project.set_meta("source", {"kind": "folder", "image_root": str(root)})
    run = project.new_run("audit", {})
    scores = np.linspace(0.0, 0.9, 10)
    project.save_scores(run.id, "cl", scores, np.full(10, 2), scores > 0.65)  # flagged: 7, 8, 9
    project.finish_run(run.id, "ok", {})
    return project


def test_training_set_applies_decisions(tmp_path: Path) -> None:
    with small_project(tmp_path / "p") as project:
        project.decide(1, "remove")
        project.decide(2, "relabel", "a")
        project.decide(3, "relabel", "a")  # relabel to its own label: no change in training
        project.decide(9, "relabel", "c")  # a test sample
        training = cleaned_training_set(project)
        np.testing.assert_array_equal(training.train_ids, [0, 2, 3, 4, 5, 6, 7])
        assert training.labels[2] == 0 and training.n_removed == 1 and training.n_relabeled == 1
        assert len(training.auto_ids) == 0 and training.audit_run is None
        eval_ids, eval_labels, against = heldout_to_measure(project)
        assert against == "truth"
        np.testing.assert_array_equal(eval_ids, [8, 9])
        np.testing.assert_array_equal(eval_labels, [2, 1])  # the truth, not the decision


def test_heldout_without_truth_uses_the_given_labels_not_edited_ones(tmp_path: Path) -> None:
    with small_project(tmp_path / "p", truth_known=False) as project:
        project.decide(8, "remove")
        project.decide(9, "relabel", "b")
        eval_ids, eval_labels, against = heldout_to_measure(project)
        assert against == "given_labels"
        # Every held-out sample, against the label it was imported with: decisions never move the yardstick.
        np.testing.assert_array_equal(eval_ids, [8, 9])
        np.testing.assert_array_equal(eval_labels, [2, 0])


def test_auto_top_k_follows_the_ranking_and_writes_no_decisions(tmp_path: Path) -> None:
    with small_project(tmp_path / "p") as project:
        project.decide(7, "keep")  # the user's decision wins over auto mode
        training = cleaned_training_set(project, auto_top_k=2)
        # Ranking is 9, 8 (test: never touched), 7 (decided), then 6, 5.
        np.testing.assert_array_equal(training.auto_ids, [6, 5])
        assert not training.keep[[5, 6]].any() and training.n_removed == 2
        relabel = cleaned_training_set(project, auto_top_k=3, auto_action="relabel")
        np.testing.assert_array_equal(relabel.auto_ids, [6, 5, 4])
        assert (relabel.labels[[6, 5, 4]] == 2).all() and relabel.n_relabeled == 2  # 5 already was c
        flagged = cleaned_training_set(project, auto_top_k="flagged")
        assert len(flagged.auto_ids) == 0  # 7 is decided; 8 and 9 are test samples
        assert flagged.audit_run == project.run(kind="audit").id
        assert list(project.decisions()) == [7]
        with pytest.raises(UserError, match="no run 'gone'"):
            cleaned_training_set(project, auto_top_k=2, audit_run="gone")
        with pytest.raises(UserError, match="no scores from detector 'aum'"):
            cleaned_training_set(project, auto_top_k=2, detector="aum")
    assert parse_top_k("flagged") == "flagged" and parse_top_k("5") == 5
    for bad in ("0", "x"):
        with pytest.raises(UserError):
            parse_top_k(bad)


def test_cli_rejects_malformed_jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small_project(tmp_path / "p").close()
    root = str(tmp_path / "p")
    assert main(["audit", root, "--detectors", "cl,nope"]) == 2
    assert "unknown detector 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:  # refused where it is parsed, naming the option and its range
        main(["retrain", root, "--auto-top-k", "zero"])
    assert refused.value.code == 2
    assert "--auto-top-k: 'zero' is not a whole number from 1" in capsys.readouterr().err
    assert main(["audit", root, "--resume", "no-such-run"]) == 2
    assert "no run 'no-such-run'" in capsys.readouterr().err


def test_audit_and_retrain_end_to_end_on_the_demo(demo_project: Path, tmp_path: Path) -> None:
    # small_cnn learns the digits in 3 epochs; cnn7, the default, is deeper and needs more than a test's budget.
    config = TrainConfig(model="small_cnn", epochs=3, image_size=16, batch_size=64, seed=0)
    with Project.open(demo_project) as project:
        run, status = run_audit(project, config, folds=2)
        assert status == "ok"
        run = project.run(run.id)
        table = project.sample_table()
        n, k = len(table.label), project.num_classes

        # Every sample has probabilities; the train split alone is audited, and what was stored for it is
        # cleanlab's own answer on those samples. Held-out samples are never flagged or offered for review.
        pred_probs = np.load(run.folder / "pred_probs.npy")
        assert pred_probs.shape == (n, k)
        saved = project.scores(run.id, "cl")
        train, test = table.train_ids, table.test_ids
        direct = train[find_label_issues(table.label[train], pred_probs[train],
                                         return_indices_ranked_by="self_confidence", n_jobs=1)]
        np.testing.assert_array_equal(np.flatnonzero(saved["flagged"]), np.sort(direct))
        np.testing.assert_array_equal(np.argsort(saved["rank"])[: len(direct)], direct)
        assert ((saved["score"] >= 0) & (saved["score"] <= 1)).all() and (saved["suggested"][train] >= 0).all()
        assert not saved["flagged"][test].any() and (saved["suggested"][test] == -1).all()
        assert np.load(run.folder / "noise_matrix.npy").shape == (k, k)
        assert np.load(run.folder / "confident_joint.npy").sum() == len(train)
        summary = run.summary
        assert summary["n_samples"] == n and summary["n_audited"] == len(train)
        assert summary["n_flagged"]["cl"] == len(direct)
        assert summary["heldout_accuracy_measured_against"] == "truth"
        assert "heldout_evaluated_against" not in summary  # each key written once (readers fall back to it)
        # Clearly better than chance (0.1) on the easy digits, even after one short epoch per fold.
        assert summary["heldout_accuracy"] > ACCURACY_FLOOR
        # The demo's noise is 20% of the train split; the estimate is of that split, in the right region.
        assert 0.08 < summary["estimated_noise_rate"] < 0.4
        # What is flagged is mostly truly mislabeled, and the suggestions for those mostly name the truth.
        flagged = np.flatnonzero(saved["flagged"])
        truly_noisy = flagged[table.label[flagged] != table.true_label[flagged]]
        assert len(truly_noisy) > 0.5 * len(flagged)
        assert (saved["suggested"][truly_noisy] == table.true_label[truly_noisy]).mean() > 0.6

        report = evaluate_run(project)
        assert report["run_id"] == run.id and report["true_noise_rate"] > 0.05
        assert report["detectors"]["cl"]["roc_auc"] is not None

        # Review a little, then retrain: decisions plus the top 20 suggestions, removed without review.
        ranked = np.argsort(saved["rank"])
        train_ranked = [int(i) for i in ranked if table.split[i] == "train"]
        project.decide(train_ranked[0], "remove")
        project.decide(train_ranked[1], "relabel", int((table.label[train_ranked[1]] + 1) % k))
        retrain_run, status = run_retrain(project, config, auto_top_k=20, seeds=1)  # one pair; paired seeds: test_compare.py
        assert status == "ok"
        result = project.run(retrain_run.id).summary
        assert result["n_removed"] == 21 and result["n_relabeled"] == 1 and result["n_auto"] == 20
        assert result["n_train_cleaned"] == len(table.train_ids) - 21
        assert result["accuracy_cleaned_measured_against"] == result["accuracy_original_measured_against"] == "truth"
        assert "evaluated_against" not in result  # the older name is read (the app falls back to it), not written
        assert result["accuracy_cleaned"] > ACCURACY_FLOOR and result["accuracy_original"] > ACCURACY_FLOOR
        assert result["n_eval"] == len(test)  # every held-out sample, the open-set-free demo has none to skip
        state = torch.load(retrain_run.folder / "model.pt", weights_only=True)
        assert state and all(isinstance(value, torch.Tensor) for value in state.values())
        assert len(project.decisions()) == 2  # auto mode wrote no decisions

        export = export_csv(project, tmp_path / "out.csv")
        assert export["run_id"] == run.id and export["actions"]["removed"] == 1


def test_cli_audit_retrain_evaluate_on_an_image_folder(image_folder: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from engine.data.importing import import_folder

    import_folder(tmp_path / "project", image_folder, test_fraction=0.25, folds=2).close()
    root = str(tmp_path / "project")
    train = ["--epochs", "1", "--image-size", "16", "--batch-size", "8"]
    assert main(["audit", root, "--folds", "2", *train]) == 0
    assert main(["retrain", root, *train, "--auto-top-k", "3", "--auto-action", "relabel"]) == 0
    with Project.open(root) as project:
        audit = project.run(kind="audit")
        assert project.detectors(audit.id) == ["cl"] and audit.spec["folds"] == 2
        assert len(project.scores(audit.id, "cl")["score"]) == project.num_samples
        retrain = project.run(kind="retrain").summary
        assert retrain["n_auto"] == 3 and retrain["auto"]["audit_run"] == audit.id
        # A folder has no truth: measured against the held-out samples' labels as imported.
        assert retrain["accuracy_cleaned_measured_against"] == "given_labels"
        assert retrain["accuracy_original_measured_against"] == "given_labels"
        assert not project.scores(audit.id, "cl")["flagged"][project.sample_table().test_ids].any()
        assert retrain["n_removed"] == 0 and retrain["n_relabeled"] <= 3
    capsys.readouterr()
    assert main(["evaluate", root]) == 2
    assert "no ground truth" in capsys.readouterr().err
