"""Bulk decisions: many decisions in one transaction, taken back and re-applied as one undo step."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.errors import UserError
from engine.store import DB_NAME, SCHEMA_VERSION, Decision, Project, schema

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
        patch.setattr(schema, "SCHEMA_VERSION", 1)  # a project as version 1 made it
        make_project(tmp_path / "p").close()
    conn = sqlite3.connect(tmp_path / "p" / DB_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.execute("INSERT INTO decision_history(id, sample_id, action, created) VALUES (1, 0, 'keep', 0)")
    conn.execute("INSERT INTO decisions(sample_id, action, history_id) VALUES (0, 'keep', 1)")
    conn.commit()
    conn.close()
    with Project.open(tmp_path / "p") as project:
        assert project.execute("PRAGMA user_version")[0][0] == SCHEMA_VERSION
        project.decide_many([(1, "remove", None), (2, "remove", None)])
        assert len(project.undo_step()) == 2
        assert project.undo() == Decision(0, "unreviewed", None)  # the old single decision undoes alone


# ------------------------------------------------ decide --all-flagged: the app's bulk action in the CLI
def audited_project(root: Path) -> Path:
    """12 samples labelled i % 3 (10 and 11 held out) and an audit: cl flags 1, 2, 5, 10 and suggests the next
    class; the ensemble flags 1, 4, 7, 8, 11 and suggests 1's own label, 4's class after next, the next for 7, 8."""
    with Project.create(root) as project:
        project.add_classes(CLASSES)
        project.add_samples({"path": f"imgs/{i:03d}.png", "split": "test" if i >= 10 else "train",
                             "label": i % 3} for i in range(12))
        project.set_meta("source", {"kind": "folder", "image_root": str(root)})
        labels = np.arange(12) % 3
        run = project.new_run("audit", {})
        flagged = np.isin(np.arange(12), [1, 2, 5, 10])
        project.save_scores(run.id, "cl", np.linspace(0, 1, 12), (labels + 1) % 3, flagged)
        suggested = (labels + 1) % 3
        suggested[1], suggested[4] = labels[1], (labels[4] + 2) % 3
        ensemble_scores = np.linspace(1, 0, 12)  # ranks 0 first: 1 before 4 before 8
        project.save_scores(run.id, "ensemble", ensemble_scores, suggested, np.isin(np.arange(12), [1, 4, 7, 8, 11]))
        project.finish_run(run.id, "ok", {})
    return root


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_decide_all_flagged_is_one_bulk_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(audited_project(tmp_path / "p"))
    assert cli(capsys, "decide", root, "--sample", "7", "--keep")[0] == 0  # a person's: left as it is
    code, out, err = cli(capsys, "decide", root, "--all-flagged", "--accept", "--json")
    assert code == 0, err
    facts = json.loads(out)
    # The ranking detector (ensemble) by default; held-out 11 and decided 7 are left alone.
    assert facts["detector"] == "ensemble" and facts["count"] == 3 and facts["left_as_decided"] == 1
    assert facts["counts"] == {"relabel": 2, "remove": 0, "keep": 1}
    assert [(row["sample_id"], row["action"], row["new_label"], row["provenance"]) for row in facts["decisions"]] == [
        (1, "keep", None, "bulk"), (4, "relabel", "cat", "bulk"), (8, "relabel", "cat", "bulk")]
    with Project.open(root) as project:
        assert {i: d.provenance for i, d in project.decisions().items()} == {
            7: "person", 1: "bulk", 4: "bulk", 8: "bulk"}

    code, out, _ = cli(capsys, "undo", root, "--json")
    assert code == 0 and json.loads(out)["step_size"] == 3  # the whole step at once
    with Project.open(root) as project:
        assert project.decisions() == {7: Decision(7, "keep", None, "person")}

    code, out, _ = cli(capsys, "decide", root, "--all-flagged", "--remove", "--detector", "cl", "--pair", "bird:cat")
    assert code == 0 and "2 samples: 2 removed: every undecided training sample flagged by cl" in out
    assert "labelled bird and suggested cat" in out
    with Project.open(root) as project:
        assert {i: (d.action, d.provenance) for i, d in project.decisions().items()} == {
            7: ("keep", "person"), 2: ("remove", "bulk"), 5: ("remove", "bulk")}
    code, out, _ = cli(capsys, "decide", root, "--all-flagged", "--keep", "--detector", "cl", "--pair", "2:0")
    assert code == 0 and "nothing was decided" in out and "2 flagged sample(s) already decided" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--detector", "aum"], "--detector 'aum': audit "),
        (["--pair", "bird"], "--pair 'bird' needs the form GIVEN:SUGGESTED"),
        (["--pair", "bird:"], "needs the form GIVEN:SUGGESTED"),
        (["--pair", "bird:wolf"], "--pair 'bird:wolf': unknown class 'wolf'"),
        (["--run", "20990101-audit-x"], "no run '20990101-audit-x'"),
        (["--include-heldout"], "--include-heldout works only with --sample"),
    ],
)
def test_decide_all_flagged_refuses_bad_values(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               argv: list[str], message: str) -> None:
    root = str(audited_project(tmp_path / "p"))
    code, out, err = cli(capsys, "decide", root, "--all-flagged", "--accept", *argv)
    assert code == 2 and message in err and "fix:" in err and out == ""
    with Project.open(root) as project:
        assert project.decisions() == {}


def test_decide_all_flagged_needs_a_fresh_audit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "p"
    make_project(root).close()
    code, _, err = cli(capsys, "decide", str(root), "--all-flagged", "--keep")
    assert code == 2 and "no finished audit" in err and "python -m engine audit" in err
    code, _, err = cli(capsys, "decide", str(root), "--sample", "1", "--keep", "--pair", "cat:dog")
    assert code == 2 and "--pair works only with --all-flagged" in err
    code, _, err = cli(capsys, "decide", str(root), "--all-flagged", "--relabel", "cat")
    assert code == 2 and "not --relabel cat" in err

    stale = str(audited_project(tmp_path / "stale"))
    with Project.open(stale) as project:
        table = project.sample_table()
        changed = table.label.copy()
        changed[0] = 1
        project.set_labels(changed, table.true_label)  # the labels change after the audit
    code, out, err = cli(capsys, "decide", stale, "--all-flagged", "--remove")
    assert code == 2 and "is stale: labels changed" in err and "--stale-ok" in err
    assert cli(capsys, "decide", stale, "--all-flagged", "--remove", "--stale-ok")[0] == 0


def test_the_decisions_listing_says_which_were_bulk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(audited_project(tmp_path / "p"))
    assert cli(capsys, "decide", root, "--sample", "0", "--keep")[0] == 0
    assert cli(capsys, "decide", root, "--all-flagged", "--keep", "--detector", "cl")[0] == 0
    code, out, _ = cli(capsys, "decisions", root)
    assert code == 0 and "sample 0 (imgs/000.png): kept (verified)\n" in out
    assert "sample 5 (imgs/005.png): kept (verified) (bulk: not trusted)" in out
