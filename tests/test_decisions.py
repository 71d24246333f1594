"""Decisions from the command line: decide, undo, redo; durable under SIGKILL; clear errors."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from engine import store
from engine.cli import main
from engine.store import Decision, Project

CLASSES = ["cat", "dog", "bird"]
REPO = Path(__file__).resolve().parents[1]


def make_project(root: Path, n: int = 12) -> Path:
    with Project.create(root) as project:
        project.add_classes(CLASSES)
        project.add_samples(
            {"path": f"imgs/{i:03d}.png", "split": "train", "label": i % 3} for i in range(n)
        )
        project.set_meta("source", {"kind": "folder", "image_root": str(root)})
    return root


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_decide_undo_redo_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(make_project(tmp_path / "p"))
    code, out, _ = run_cli(capsys, "decide", root, "--sample", "4", "--relabel", "bird")
    assert code == 0 and "sample 4 (imgs/004.png): relabeled dog -> bird" in out
    code, out, _ = run_cli(capsys, "decide", root, "--sample", "imgs/005.png", "--remove", "--json")
    facts = json.loads(out)
    assert code == 0 and facts["sample_id"] == 5 and facts["action"] == "remove" and facts["can_undo"]
    assert run_cli(capsys, "decide", root, "--sample", "4", "--keep")[0] == 0  # overrides the relabel
    assert run_cli(capsys, "decide", root, "--sample", "0", "--relabel", "1")[0] == 0  # class by index

    with Project.open(root) as project:
        decisions = project.decisions()
        assert {i: (d.action, d.new_label) for i, d in decisions.items()} == {
            4: ("keep", None), 5: ("remove", None), 0: ("relabel", 1)}

    # Undo walks back in order; undoing the keep of sample 4 restores its relabel.
    code, out, _ = run_cli(capsys, "undo", root)
    assert "undid; now sample 0 (imgs/000.png): unreviewed" in out
    code, out, _ = run_cli(capsys, "undo", root, "--json")
    facts = json.loads(out)
    assert facts["sample_id"] == 4 and facts["action"] == "relabel" and facts["new_label"] == "bird"
    assert facts["can_redo"]
    code, out, _ = run_cli(capsys, "redo", root)
    assert code == 0 and "redid: sample 4 (imgs/004.png): kept (verified)" in out
    with Project.open(root) as project:
        labels, keep = project.labels_with_decisions()
        assert labels[4] == 1 and not keep[5] and labels[0] == 0  # 4 kept as dog; 0's relabel undone

    # A new decision drops the redo stack.
    run_cli(capsys, "decide", root, "--sample", "7", "--remove")
    code, out, _ = run_cli(capsys, "redo", root, "--json")
    assert code == 0 and json.loads(out)["redo"] is False
    code, out, _ = run_cli(capsys, "decisions", root, "--json")
    assert sorted(row["sample_id"] for row in json.loads(out)) == [4, 5, 7]

    for _ in range(4):  # 7 remove, 4 keep, 5 remove, 4 relabel (0's relabel was dropped with the redo stack)
        run_cli(capsys, "undo", root)
    code, out, _ = run_cli(capsys, "undo", root)
    assert code == 0 and "nothing to undo" in out
    with Project.open(root) as project:
        assert project.decisions() == {}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sample", "99", "--keep"], "no sample '99'"),
        (["--sample", "imgs/nope.png", "--remove"], "no sample 'imgs/nope.png'"),
        (["--sample", "3", "--relabel", "horse"], "unknown class 'horse'"),
        (["--sample", "3", "--relabel", "7"], "unknown class '7'"),
        (["--sample", "3", "--accept"], "no finished audit run"),
        (["--sample", "3", "--accept", "--run", "20990101-audit-x"], "no run '20990101-audit-x'"),
    ],
)
def test_malformed_requests_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             argv: list[str], message: str) -> None:
    root = str(make_project(tmp_path / "p"))
    code, out, err = run_cli(capsys, "decide", root, *argv)
    assert code == 2 and message in err and "fix:" in err and out == ""
    with Project.open(root) as project:
        assert project.decisions() == {} and project.decision_history() == []


def test_unknown_project_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "undo", str(tmp_path / "missing"))
    assert code == 2 and "not a Label Auditor project" in err


def test_accept_takes_the_audit_suggestion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project(tmp_path / "p")
    with Project.open(root) as project:
        run = project.new_run("audit", {})
        suggested = np.full(12, 2, dtype=np.int64)
        project.save_scores(run.id, "cl", np.linspace(0, 1, 12), suggested, np.zeros(12, dtype=bool))
        project.finish_run(run.id, "ok", {})
    code, out, _ = run_cli(capsys, "decide", str(root), "--sample", "1", "--accept")
    assert code == 0 and "relabeled dog -> bird" in out


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    from engine.store import Project

    project = Project.open(sys.argv[1])
    for sample_id in range(project.num_samples):
        project.decide(sample_id, "relabel", (sample_id + 1) % 3)
        print(sample_id, flush=True)  # acknowledged: decide() returned, so it is committed
    """
)


def test_acknowledged_decisions_survive_sigkill(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", n=5000)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    acknowledged: list[int] = []
    with subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(root)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env) as process:
        assert process.stdout is not None and process.stderr is not None
        try:
            for line in process.stdout:
                acknowledged.append(int(line))
                if len(acknowledged) == 40:
                    os.kill(process.pid, signal.SIGKILL)  # mid-sequence, between any two statements
                    break
        finally:
            process.kill()
            process.wait(timeout=30)
        errors = process.stderr.read()
    assert process.returncode == -signal.SIGKILL, errors
    assert len(acknowledged) == 40
    with Project.open(root) as project:
        decisions = project.decisions()
        history = project.decision_history()
        for sample_id in acknowledged:
            assert decisions[sample_id].action == "relabel"
            assert decisions[sample_id].new_label == (sample_id + 1) % 3
        # Whatever was committed after the last acknowledgement is whole, never torn.
        assert len(history) == len(decisions) >= 40
        assert project.num_samples == 5000 and len(decisions) < 5000
        # The project still works after the kill.
        project.undo()
        assert len(project.decisions()) == len(decisions) - 1


def test_heldout_samples_need_include_heldout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "p"
    with Project.create(root) as project:
        project.add_classes(CLASSES)
        project.add_samples({"path": f"imgs/{i:03d}.png", "split": "test" if i >= 4 else "train", "label": i % 3}
                            for i in range(6))
        project.set_meta("source", {"kind": "folder", "image_root": str(root)})
    for action in (["--relabel", "bird"], ["--remove"], ["--keep"]):
        code, out, err = run_cli(capsys, "decide", str(root), "--sample", "4", *action)
        assert code == 2 and "held-out (test) split" in err and "--include-heldout" in err and out == ""
    with Project.open(root) as project:
        assert project.decisions() == {}
    code, out, _ = run_cli(capsys, "decide", str(root), "--sample", "imgs/004.png", "--relabel", "bird",
                           "--include-heldout")
    assert code == 0 and "relabeled dog -> bird" in out
    assert run_cli(capsys, "decide", str(root), "--sample", "1", "--remove")[0] == 0  # train: as before


def test_accepting_a_stale_suggestion_asks_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project(tmp_path / "p")
    with Project.open(root) as project:
        run = project.new_run("audit", {})
        project.save_scores(run.id, "cl", np.linspace(0, 1, 12), np.full(12, 2, dtype=np.int64),
                            np.zeros(12, dtype=bool))
        project.finish_run(run.id, "ok", {})
        table = project.sample_table()
        changed = table.label.copy()
        changed[1] = 0  # labels change after the audit (new noise, say)
        project.set_labels(changed, table.true_label)
    code, out, err = run_cli(capsys, "decide", str(root), "--sample", "1", "--accept")
    assert code == 2 and f"run {run.id} is stale: labels changed" in err and "--stale-ok" in err and out == ""
    with Project.open(root) as project:
        assert project.decisions() == {}
    code, out, _ = run_cli(capsys, "decide", str(root), "--sample", "1", "--accept", "--stale-ok")
    assert code == 0 and "relabeled cat -> bird" in out


def test_each_decision_records_how_it_was_made_and_undo_restores_it(tmp_path: Path) -> None:
    with Project.open(make_project(tmp_path / "p")) as project:
        project.decide_many([(1, "relabel", "bird"), (2, "keep", None)])  # a bulk action
        project.decide(1, "relabel", "cat")  # a person looks at sample 1 and overrides the bulk relabel
        project.decide(3, "keep", provenance="automatic")
        assert {i: (d.action, d.provenance) for i, d in project.decisions().items()} == {
            1: ("relabel", "person"), 2: ("keep", "bulk"), 3: ("keep", "automatic")}
        history = project.decision_history()
        assert [(row["sample_id"], row["provenance"], row["prev_provenance"]) for row in history] == [
            (1, "bulk", None), (2, "bulk", None), (1, "person", "bulk"), (3, "automatic", None)]

        project.undo()  # sample 3
        undone = project.undo()  # the person's relabel: the bulk relabel is back, as a bulk decision
        assert undone == Decision(1, "relabel", 2, "bulk")
        assert project.decisions()[1] == Decision(1, "relabel", 2, "bulk")
        assert project.redo() == Decision(1, "relabel", 0, "person")
        assert project.decisions()[1].provenance == "person"
        with pytest.raises(ValueError, match="provenance"):
            project.decide(4, "keep", provenance="guess")


def _version_2_project(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project as schema version 2 wrote it (no provenance), with history written as that version did."""
    with monkeypatch.context() as patch:
        patch.setattr(store.schema, "SCHEMA_VERSION", 2)
        make_project(root)
    conn = sqlite3.connect(root / store.DB_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    history = [  # (id, sample, action, new_label, prev_action, prev_label, state, batch)
        (1, 0, "keep", None, None, None, "active", None),  # a person keeps sample 0
        (2, 0, "remove", None, "keep", None, "active", 1),  # a bulk remove over it
        (3, 0, "relabel", 2, "remove", None, "active", None),  # a person relabels it
        (4, 1, "keep", None, None, None, "active", 2),  # a bulk keep of sample 1
        (5, 1, "remove", None, "keep", None, "undone", None),  # a person's remove over it, undone
        (6, 2, "keep", None, None, None, "dropped", None),  # undone earlier, then dropped
    ]
    conn.executemany("INSERT INTO decision_history(id, sample_id, action, new_label, prev_action, prev_label, "
                     "created, state, batch) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
                     history)
    conn.executemany("INSERT INTO decisions(sample_id, action, new_label, history_id) VALUES (?, ?, ?, ?)",
                     [(0, "relabel", 2, 3), (1, "keep", None, 5)])
    conn.commit()
    conn.close()
    return root


def test_a_version_2_project_gains_provenance_traced_from_its_history(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _version_2_project(tmp_path / "p", monkeypatch)
    with Project.open(root) as project:
        assert project.execute("PRAGMA user_version")[0][0] == store.SCHEMA_VERSION == 3
        # Rows with a batch number were bulk, the others a person's; the current state of sample 1 is the
        # bulk keep that the undone remove had replaced.
        assert {i: d.provenance for i, d in project.decisions().items()} == {0: "person", 1: "bulk"}
        assert project.redo() == Decision(1, "remove", None, "person")
        assert project.undo() == Decision(1, "keep", None, "bulk")
        assert project.undo() == Decision(1, "unreviewed", None)  # batch 2
        assert project.undo() == Decision(0, "remove", None, "bulk")
        assert project.undo() == Decision(0, "keep", None, "person")  # batch 1: back to the person's keep
