"""Bulk decisions: many decisions in one transaction, taken back and re-applied as one undo step."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine import store
from engine.errors import UserError
from engine.store import DB_NAME, SCHEMA_VERSION, Decision, Project

CLASSES = ["cat", "dog", "bird"]


def make_project(root: Path, n: int = 9) -> Project:
    project = Project.create(root)
    project.add_classes(CLASSES)
    project.add_samples({"path": f"imgs/{i:03d}.png", "split": "train", "label": i % 3} for i in range(n))
    return project


def test_a_batch_is_one_undo_step_and_one_redo_step(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    project.decide(0, "keep")
    made = project.decide_many([(1, "relabel", 2), (2, "remove", None), (3, "relabel", "cat")])
    # Sample 3 is already a cat: relabelling it to cat is a keep, as for a single decision.
    assert made == [Decision(1, "relabel", 2, "bulk"), Decision(2, "remove", None, "bulk"),
                    Decision(3, "keep", None, "bulk")]
    project.decide(4, "remove")

    assert project.undo() == Decision(4, "unreviewed", None)
    assert set(project.decisions()) == {0, 1, 2, 3}
    states = project.undo_step()  # the whole batch, latest first
    assert [state.sample_id for state in states] == [3, 2, 1]
    assert all(state.action == "unreviewed" for state in states)
    assert set(project.decisions()) == {0}

    assert [state.sample_id for state in project.redo_step()] == [1, 2, 3]
    assert project.decisions()[1] == Decision(1, "relabel", 2, "bulk")
    assert project.decisions()[2] == Decision(2, "remove", None, "bulk")
    assert project.redo() == Decision(4, "remove", None, "person")
    assert not project.can_redo()


def test_a_batch_over_earlier_decisions_restores_them_on_undo(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    project.decide(1, "keep")
    project.decide_many([(1, "remove", None), (2, "remove", None)])
    project.undo()
    assert project.decisions() == {1: Decision(1, "keep", None, "person")}
    # A new decision after an undo drops the undone batch from the redo stack.
    project.decide(5, "keep")
    assert not project.can_redo()


def test_a_bad_entry_writes_nothing(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    with pytest.raises(UserError):
        project.decide_many([(1, "remove", None), (2, "relabel", "wolf")])
    assert project.decisions() == {}
    assert project.decide_many([]) == []
    assert not project.can_undo()


def test_a_version_1_project_gains_the_batch_column(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(store, "SCHEMA_VERSION", 1)  # a project as version 1 made it
        make_project(tmp_path / "p").close()
    conn = sqlite3.connect(tmp_path / "p" / DB_NAME)
    conn.execute("INSERT INTO decision_history(id, sample_id, action, created) VALUES (1, 0, 'keep', 0)")
    conn.execute("INSERT INTO decisions(sample_id, action, history_id) VALUES (0, 'keep', 1)")
    conn.commit()
    conn.close()
    with Project.open(tmp_path / "p") as project:
        assert project.execute("PRAGMA user_version")[0][0] == SCHEMA_VERSION
        project.decide_many([(1, "remove", None), (2, "remove", None)])
        assert len(project.undo_step()) == 2
        assert project.undo() == Decision(0, "unreviewed", None)  # the old single decision undoes alone
