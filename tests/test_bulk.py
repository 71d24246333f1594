"""Bulk decisions: many decisions in one transaction, taken back and re-applied as one undo step."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

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
    assert made == [Decision(1, "relabel", 2), Decision(2, "remove", None), Decision(3, "keep", None)]
    project.decide(4, "remove")

    assert project.undo() == Decision(4, "unreviewed", None)
    assert set(project.decisions()) == {0, 1, 2, 3}
    states = project.undo_step()  # the whole batch, latest first
    assert [state.sample_id for state in states] == [3, 2, 1]
    assert all(state.action == "unreviewed" for state in states)
    assert set(project.decisions()) == {0}

    assert [state.sample_id for state in project.redo_step()] == [1, 2, 3]
    assert project.decisions()[1] == Decision(1, "relabel", 2)
    assert project.decisions()[2] == Decision(2, "remove", None)
    assert project.redo() == Decision(4, "remove", None)
    assert not project.can_redo()


def test_a_batch_over_earlier_decisions_restores_them_on_undo(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    project.decide(1, "keep")
    project.decide_many([(1, "remove", None), (2, "remove", None)])
    project.undo()
    assert project.decisions() == {1: Decision(1, "keep", None)}
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


def test_a_version_1_project_gains_the_batch_column(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    project.decide(0, "keep")
    project.close()
    conn = sqlite3.connect(tmp_path / "p" / DB_NAME)
    conn.execute("CREATE TABLE old AS SELECT id, sample_id, action, new_label, prev_action, prev_label, created, "
                 "state FROM decision_history")
    conn.execute("DROP TABLE decision_history")
    conn.executescript("""
        CREATE TABLE decision_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        sample_id INTEGER NOT NULL REFERENCES samples(id),
        action TEXT NOT NULL,
        new_label INTEGER,
        prev_action TEXT,
        prev_label INTEGER,
        created REAL NOT NULL,
        state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'undone', 'dropped'))
    );
    CREATE INDEX decision_history_state ON decision_history(state, id);
    INSERT INTO decision_history SELECT * FROM old;
    DROP TABLE old;
    PRAGMA user_version=1;
    """)
    conn.commit()
    conn.close()
    with Project.open(tmp_path / "p") as project:
        assert project.execute("PRAGMA user_version")[0][0] == SCHEMA_VERSION == 2
        project.decide_many([(1, "remove", None), (2, "remove", None)])
        assert len(project.undo_step()) == 2
        assert project.undo() == Decision(0, "unreviewed", None)  # the old single decision undoes alone
