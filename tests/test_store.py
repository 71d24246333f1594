"""The project store: schema versions, runs made elsewhere, decisions with history."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from engine.errors import UserError
from engine.store import SCHEMA_VERSION, Project


def make_project(root: Path, n: int = 6) -> Project:
    project = Project.create(root)
    project.set_meta("source", {"kind": "folder", "image_root": str(root / "images")})
    project.add_classes(["cat", "dog"])
    project.add_samples({"path": f"{'cat' if i % 2 == 0 else 'dog'}/{i}.png", "split": "train", "label": i % 2}
                        for i in range(n))
    return project


def test_schema_is_versioned_and_a_newer_schema_is_refused(tmp_path: Path) -> None:
    make_project(tmp_path / "p").close()
    conn = sqlite3.connect(tmp_path / "p" / "project.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(UserError, match="newer Label Auditor"):
        Project.open(tmp_path / "p")


def test_opening_a_folder_that_is_not_a_project_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a Label Auditor project") as info:
        Project.open(tmp_path)
    assert "engine init" in info.value.hint


def test_samples_resolve_by_id_or_path_and_classes_by_name_or_index(tmp_path: Path) -> None:
    with make_project(tmp_path / "p") as project:
        assert project.resolve_sample(3) == 3
        assert project.resolve_sample("dog/3.png") == 3
        assert project.resolve_class("dog") == 1 and project.resolve_class("0") == 0
        with pytest.raises(UserError, match="no sample 'nope.png'"):
            project.resolve_sample("nope.png")
        with pytest.raises(UserError, match="unknown class 'horse'") as info:
            project.resolve_class("horse")
        assert "cat, dog" in info.value.hint


def test_decisions_undo_and_redo_like_an_editor(tmp_path: Path) -> None:
    with make_project(tmp_path / "p") as project:
        project.decide(0, "relabel", "dog")
        project.decide(1, "remove")
        project.decide(0, "keep")  # changes its mind about sample 0
        assert {d.sample_id: d.action for d in project.decisions().values()} == {0: "keep", 1: "remove"}
        assert project.undo().action == "relabel"  # sample 0 back to its earlier decision
        assert project.undo().action == "unreviewed"  # sample 1 back to no decision
        assert project.decisions()[0].new_label == 1 and 1 not in project.decisions()
        assert project.redo().action == "remove"
        project.decide(2, "keep")  # a new decision drops what could still be redone
        assert not project.can_redo()
        labels, keep = project.labels_with_decisions()
        assert labels[0] == 1 and not keep[1] and keep.sum() == 5
        states = [entry["state"] for entry in project.decision_history()]
        assert states == ["active", "active", "dropped", "active"]


def test_a_run_copied_in_from_elsewhere_is_adopted(tmp_path: Path) -> None:
    with make_project(tmp_path / "p") as project:
        folder = project.runs_dir / "20260101-000000-audit-cluster"
        folder.mkdir(parents=True)
        (folder / "spec.json").write_text(json.dumps({"kind": "audit", "folds": 3}))
        (folder / "summary.json").write_text(json.dumps({"flagged": 2}))
        runs = project.runs()
        assert [(run.id, run.kind, run.status) for run in runs] == [(folder.name, "audit", "ok")]
        assert project.run(kind="audit").summary == {"flagged": 2}
        with pytest.raises(UserError, match="no run 'missing'"):
            project.run("missing")


def test_scores_round_trip_with_ranking(tmp_path: Path) -> None:
    with make_project(tmp_path / "p") as project:
        run = project.new_run("audit", {})
        scores = np.array([0.1, 0.9, 0.5, 0.0, 0.7, 0.2])
        project.save_scores(run.id, "cl", scores, np.array([0, 0, 1, -1, 0, 1]), scores > 0.6)
        saved = project.scores(run.id, "cl")
        assert np.allclose(saved["score"], scores)
        assert saved["rank"].tolist() == [4, 0, 2, 5, 1, 3]
        assert saved["suggested"][3] == -1 and saved["flagged"].sum() == 2
        with pytest.raises(UserError, match="no scores from detector 'lstm'"):
            project.scores(run.id, "lstm")


def test_relabeling_to_the_label_it_already_has_is_a_keep(tmp_path: Path) -> None:
    with make_project(tmp_path / "p") as project:
        decision = project.decide("dog/1.png", "relabel", "dog")
        assert (decision.action, decision.new_label) == ("keep", None)
        assert project.decisions()[1].action == "keep"


def test_the_store_imports_nothing_that_imports_it() -> None:
    """The store sits below everything that reads run folders: no engine module it reaches (imports inside
    functions included) imports the store back, so it needs no late imports to load."""
    from test_house import _imported_modules, _module_name, _sources

    paths = {_module_name(path): path for path in _sources("engine")}
    graph = {name: _imported_modules(path, set(paths)) for name, path in paths.items()}
    store = {name for name in graph if name == "engine.store" or name.startswith("engine.store.")}
    reached: set[str] = set()
    waiting = [module for part in store for module in graph[part]]
    while waiting:
        module = waiting.pop()
        if module not in reached and module not in store:
            reached.add(module)
            waiting.extend(graph[module])
    # Importing any part of the store runs engine/store/__init__.py, which loads every part.
    assert sorted(module for module in reached if graph[module] & store) == []
