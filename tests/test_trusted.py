"""The trusted set: the review by default, --trusted-per-class from the truth, --trusted-csv; clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.data.importing import import_folder
from engine.errors import UserError
from engine.methods import METHODS, MethodInfo
from engine.noise import inject_noise
from engine.store import Project
from engine.workflows import trusted
from engine.workflows.sample_sets import heldout_to_measure

TRAIN = ["--epochs", "1", "--image-size", "16", "--batch-size", "8", "--device", "cpu"]


def project_with_truth(root: Path, image_folder: Path) -> Path:
    import_folder(root, image_folder, test_fraction=0.25, folds=2).close()
    with Project.open(root) as project:
        inject_noise(project, "symmetric", 0.2, 0)
    return root


@pytest.fixture
def meta_method(monkeypatch: pytest.MonkeyPatch) -> str:
    """A registered method that needs a trusted set (plain cross-entropy underneath: fast, and no other helper's)."""
    monkeypatch.setitem(METHODS, "meta_ce", MethodInfo("meta_ce", "ce", "CrossEntropy", None, "needs trust",
                                                       needs_trusted=True))
    return "meta_ce"


def test_the_review_is_the_default_trusted_set(image_folder: Path, tmp_path: Path) -> None:
    with Project.open(project_with_truth(tmp_path / "p", image_folder)) as project:
        table = project.sample_table()
        train, test = table.train_ids, table.test_ids
        project.decide(int(train[0]), "keep")
        project.decide(int(train[1]), "relabel", int((table.label[train[1]] + 1) % 3))
        project.decide(int(train[2]), "remove")  # removed: not trusted
        project.decide(int(test[0]), "keep")  # held out: never learnt from, never trusted
        chosen = trusted.choose(project, trusted.trusted_spec(), seed=0)
        assert chosen.source == "review"
        np.testing.assert_array_equal(chosen.ids, np.sort(train[:2]))
        expected = {int(train[0]): int(table.label[train[0]]), int(train[1]): int((table.label[train[1]] + 1) % 3)}
        assert dict(zip(chosen.ids.tolist(), chosen.labels.tolist(), strict=True)) == expected


def test_per_class_draws_from_the_truth_with_the_seed(image_folder: Path, tmp_path: Path) -> None:
    with Project.open(project_with_truth(tmp_path / "p", image_folder)) as project:
        table = project.sample_table()
        chosen = trusted.choose(project, trusted.trusted_spec(per_class=2), seed=3)
        assert chosen.source == "per_class"
        np.testing.assert_array_equal(chosen.per_class(3), [2, 2, 2])
        assert (table.split[chosen.ids] == "train").all()  # kept out of held-out evaluation
        np.testing.assert_array_equal(chosen.labels, table.true_label[chosen.ids])  # the truth, not the noisy label
        again = trusted.choose(project, trusted.trusted_spec(per_class=2), seed=3)
        np.testing.assert_array_equal(again.ids, chosen.ids)
        other = trusted.choose(project, trusted.trusted_spec(per_class=2), seed=4)
        assert not np.array_equal(other.ids, chosen.ids)
        eval_ids, _, _ = heldout_to_measure(project)
        assert not set(chosen.ids.tolist()) & set(eval_ids.tolist())
    with pytest.raises(UserError, match="must be at least 1"):
        trusted.trusted_spec(per_class=0)
    with pytest.raises(UserError, match="both name a trusted set"):
        trusted.trusted_spec(per_class=2, csv="x.csv")


def test_per_class_needs_a_known_truth(image_folder: Path, tmp_path: Path) -> None:
    import_folder(tmp_path / "p", image_folder, test_fraction=0.25, folds=2).close()  # a folder: no truth
    with Project.open(tmp_path / "p") as project, pytest.raises(UserError, match="this project knows none"):
        trusted.choose(project, trusted.trusted_spec(per_class=5), seed=0)


def test_trusted_csv_by_path_or_id_and_its_refusals(image_folder: Path, tmp_path: Path) -> None:
    with Project.open(project_with_truth(tmp_path / "p", image_folder)) as project:
        table = project.sample_table()
        train, test = table.train_ids, table.test_ids
        names = project.class_names()
        by_path = tmp_path / "trusted.csv"
        by_path.write_text(f"path,label\n{table.paths[train[3]]},{names[2]}\n{table.paths[train[0]]},0\n")
        chosen = trusted.choose(project, trusted.trusted_spec(csv=by_path), seed=0)
        assert chosen.source == "csv"
        assert dict(zip(chosen.ids.tolist(), chosen.labels.tolist(), strict=True)) == {int(train[0]): 0,
                                                                                       int(train[3]): 2}
        by_id = tmp_path / "ids.csv"
        by_id.write_text(f"id,label\n{train[5]},{names[1]}\n")
        assert trusted.choose(project, trusted.trusted_spec(csv=by_id), seed=0).ids.tolist() == [int(train[5])]

        held_out = tmp_path / "held.csv"
        held_out.write_text(f"id,label\n{train[5]},0\n{test[0]},0\n")
        with pytest.raises(UserError, match=r"held.csv line 3: sample .* is held out"):
            trusted.choose(project, trusted.trusted_spec(csv=held_out), seed=0)
        unknown = tmp_path / "unknown.csv"
        unknown.write_text(f"id,label\n{train[5]},zebra\n")
        with pytest.raises(UserError, match="unknown.csv line 2: unknown class 'zebra'"):
            trusted.choose(project, trusted.trusted_spec(csv=unknown), seed=0)
        columns = tmp_path / "columns.csv"
        columns.write_text("file,class\na.png,0\n")
        with pytest.raises(UserError, match="needs a path \\(or id\\) column and a label column"):
            trusted.choose(project, trusted.trusted_spec(csv=columns), seed=0)
        with pytest.raises(UserError, match="does not exist"):
            trusted.choose(project, trusted.trusted_spec(csv=tmp_path / "gone.csv"), seed=0)


def test_a_meta_method_stops_with_counts_per_class(image_folder: Path, tmp_path: Path, meta_method: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root = project_with_truth(tmp_path / "p", image_folder)
    assert main(["retrain", str(root), *TRAIN, "--method", meta_method]) == 2
    err = capsys.readouterr().err
    assert f"method {meta_method} learns from a trusted set, and the review (samples a person kept or relabeled " \
        "one at a time) gives none" in err and "review more samples" in err and "--trusted-per-class N" in err
    with Project.open(root) as project:
        assert not project.runs()  # refused before a run was made
        table = project.sample_table()
        circle = int(table.train_ids[table.label[table.train_ids] == 0][0])
        project.decide(circle, "keep")
        names = project.class_names()
    assert main(["compare", str(root), *TRAIN, "--methods", f"ce,{meta_method}"]) == 2
    err = capsys.readouterr().err
    assert f"gives {names[0]} 1, {names[1]} 0, {names[2]} 0: none of {names[1]}, {names[2]}" in err


def test_the_trusted_set_is_saved_in_the_run_and_kept_out_of_evaluation(
        image_folder: Path, tmp_path: Path, meta_method: str) -> None:
    root = project_with_truth(tmp_path / "p", image_folder)
    assert main(["compare", str(root), *TRAIN, "--methods", f"ce,{meta_method}", "--seeds", "1",
                 "--trusted-per-class", "2"]) == 0
    with Project.open(root) as project:
        run = project.run(kind="compare")
        assert run.spec["trusted"] == {"per_class": 2, "csv": None}
        assert run.summary["trusted"] == {"source": "per_class", "count": 6, "ids_file": trusted.IDS_FILE}
        saved = trusted.load_saved(run.folder, "per_class")
        assert saved is not None and len(saved.ids) == 6
        table = project.sample_table()
        assert (table.split[saved.ids] == "train").all()
        np.testing.assert_array_equal(saved.labels, table.true_label[saved.ids])


def test_only_a_persons_one_sample_decisions_are_trusted(image_folder: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = project_with_truth(tmp_path / "p", image_folder)
    with Project.open(root) as project:
        table = project.sample_table()
        train = [int(i) for i in table.train_ids]
        project.decide(train[0], "keep")  # a person, one sample: trusted
        project.decide(train[1], "relabel", int((table.label[train[1]] + 1) % 3))  # trusted
        project.decide_many([(train[2], "keep", None), (train[3], "relabel", int((table.label[train[3]] + 1) % 3)),
                             (train[1], "keep", None)])  # "accept all": over the person's relabel of train[1]
        project.decide_many([(train[4], "keep", None)], provenance="automatic")
        project.decide(train[3], "keep")  # a person looked at a bulk-decided sample: now trusted
        chosen = trusted.from_review(project)
        assert chosen.ids.tolist() == sorted([train[0], train[3]])
        assert chosen.labels.tolist() == [int(table.label[i]) for i in sorted([train[0], train[3]])]
        project.undo()  # train[3] goes back to its bulk relabel: no longer trusted
        project.undo()  # the automatic keep of train[4]
        project.undo()  # the bulk batch: train[1] is the person's relabel again
        assert trusted.from_review(project).ids.tolist() == sorted([train[0], train[1]])
        project.redo()
        project.redo()

    assert main(["status", str(root), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["trusted"]["samples"] == 1
    assert status["trusted"]["decisions"] == {"person": 1, "bulk": 3, "automatic": 1}
    assert status["trusted"]["excluded"] == 4 and sum(status["trusted"]["per_class"].values()) == 1
    assert main(["status", str(root)]) == 0
    out = capsys.readouterr().out
    assert "1 trusted sample (kept or relabeled by a person, one at a time); 3 bulk and 1 automatic" in out
    assert "mlc" in out and "l2rw" in out
