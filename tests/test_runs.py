"""Runs: label fingerprints and staleness, interrupted runs, and what --resume refuses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import engine.store.runs
from engine.cli import main
from engine.commands.common import check_resumed_model
from engine.detectors import DetectorInputs, parse_detectors
from engine.errors import UserError
from engine.store import Project, process_alive, this_process
from engine.workflows.detection import run_detectors

REPO = Path(__file__).resolve().parents[1]


def make_project(root: Path, n: int = 12) -> Path:
    """n samples of 3 classes; every 4th is held out."""
    with Project.create(root) as project:
        project.add_classes(["cat", "dog", "bird"])
        project.add_samples({"path": f"imgs/{i:03d}.png", "split": "test" if i % 4 == 3 else "train",
                             "label": i % 3, "true_label": i % 3} for i in range(n))
        project.set_meta("source", {"kind": "folder", "image_root": str(root)})
    return root


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def stopped_run(project: Project, kind: str, spec: dict | None = None) -> str:
    run = project.new_run(kind, {"train": {"model": "small_cnn", "epochs": 1}, **(spec or {})})
    project.finish_run(run.id, "cancelled", {"reason": "stopped by SIGINT"})
    return run.id


def test_fingerprints_follow_labels_images_and_decisions(tmp_path: Path) -> None:
    with Project.open(make_project(tmp_path / "p")) as project:
        labels, decisions = project.labels_fingerprint(), project.decisions_fingerprint()
        run = project.new_run("audit", {"folds": 2})
        assert run.spec["fingerprint"] == {"labels": labels, "decisions": decisions}
        spec_file = json.loads((run.folder / "spec.json").read_text())
        assert spec_file["fingerprint"] == run.spec["fingerprint"] and spec_file["folds"] == 2
        assert spec_file["process"]["pid"] == os.getpid()

        project.decide(0, "remove")
        assert project.labels_fingerprint() == labels and project.decisions_fingerprint() != decisions
        table = project.sample_table()
        project.set_labels(table.label, table.true_label, {5: "openset/5.png"})  # an image replaced
        replaced = project.labels_fingerprint()
        assert replaced != labels
        changed = table.label.copy()
        changed[1] = 2
        project.set_labels(changed, table.true_label, {5: "openset/5.png"})
        assert project.labels_fingerprint() not in (labels, replaced)


def test_stale_reason_per_kind(tmp_path: Path) -> None:
    with Project.open(make_project(tmp_path / "p")) as project:
        audit = project.new_run("audit", {})
        retrain = project.new_run("retrain", {})
        legacy = project.new_run("audit", {})
        project.execute("SELECT 1")
        with project.transaction() as conn:  # a run made before fingerprints existed
            conn.execute("UPDATE runs SET spec = '{}' WHERE id = ?", (legacy.id,))
        for run_id in (audit.id, retrain.id, legacy.id):
            project.finish_run(run_id, "ok", {})
        audit, retrain, legacy = (project.run(r.id) for r in (audit, retrain, legacy))
        assert project.stale_reason(audit) is None and project.stale_reason(retrain) is None

        project.decide(2, "relabel", "cat")
        # An audit trains on the decisions too: one that recorded no labels is stale once they change.
        assert "decisions changed since this audit run" in (project.stale_reason(audit) or "")
        assert project.stale_reason(audit, decided_since_ok=True) is None  # its review does not count there
        assert "decisions changed since this retrain run" in (project.stale_reason(retrain) or "")

        table = project.sample_table()
        changed = table.label.copy()
        changed[0] = 1
        project.set_labels(changed, table.true_label)
        project.record_noise("symmetric", 0.1, 7, {}, 1)
        reason = project.stale_reason(audit) or ""
        assert reason.startswith("labels changed since this audit run") and "seed 7" in reason
        assert project.stale_reason(legacy) is None  # no fingerprint recorded: unknown, not stale


def test_an_audit_is_stale_when_the_labels_it_recorded_differ_from_the_effective_ones(tmp_path: Path) -> None:
    from engine.evidence.run_labels import record_run_labels

    with Project.open(make_project(tmp_path / "p")) as project:
        project.decide(0, "relabel", "dog")
        run = project.new_run("audit", {})
        labels, keep = project.labels_with_decisions()
        summary = {"labels_used": record_run_labels(run.folder, labels, keep)}
        project.finish_run(run.id, "ok", summary)
        run = project.run(run.id)
        assert project.stale_reason(run) is None

        project.decide(1, "keep")  # the decisions changed, the labels it trained on did not
        assert project.stale_reason(run) is None
        project.decide(4, "remove")
        project.decide(5, "relabel", "cat")
        reason = project.stale_reason(run) or ""
        assert reason.startswith("decisions changed since this audit run: 2 samples are relabeled or removed")
        assert project.stale_reason(run, decided_since_ok=True) is None
        project.undo()
        project.undo()
        assert project.stale_reason(run) is None  # the labels it saw again
        project.undo()
        project.undo()  # the relabel of sample 0 it trained on, taken back
        assert "1 samples are relabeled or removed" in (project.stale_reason(run) or "")


KILLED_RUN = textwrap.dedent(
    """
    import sys, time
    from engine.store import Project

    project = Project.open(sys.argv[1])
    run = project.new_run(sys.argv[2], {"train": {"model": "small_cnn"}})
    print(run.id, flush=True)
    time.sleep(120)
    """
)


def start_run_in_other_process(root: Path, kind: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(root), kind], stdout=subprocess.PIPE,
                               text=True, env=env)
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def test_a_killed_run_is_interrupted_and_says_how_to_resume(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project(tmp_path / "p")
    process, run_id = start_run_in_other_process(root, "audit")
    try:
        with Project.open(root) as project:
            assert project.run(run_id).status == "running"  # its process is alive
            # A second engine on the same run is refused while the first runs.
            with pytest.raises(UserError, match=f"run {run_id} is still running \\(process {process.pid}"):
                project.claim_run_for_resume(run_id)
        code, _, err = run_cli(capsys, "audit", str(root), "--resume", run_id)
        assert code == 2 and "is still running" in err
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert process.stdout is not None
        process.stdout.close()
    with Project.open(root) as project:
        run = project.run(run_id)
        assert run.status == "interrupted" and "ended before the run finished" in run.summary["reason"]
        # Recorded, so every reader of the store (the app, another tool) sees it too.
        assert project.execute("SELECT status FROM runs WHERE id = ?", (run_id,)) == [("interrupted",)]
    code, out, _ = run_cli(capsys, "status", str(root))
    assert code == 0 and f"run {run_id}: interrupted" in out
    assert f"resume it with: python -m engine audit {root} --resume {run_id}" in out
    code, out, _ = run_cli(capsys, "status", str(root), "--json")
    (listed,) = json.loads(out)["runs"]
    assert listed["status"] == "interrupted" and listed["resume"].endswith(f"--resume {run_id}")
    with Project.open(root) as project:
        claimed = project.claim_run_for_resume(run_id)  # now it may be resumed, by this process
        assert claimed.status == "running" and claimed.spec["process"] == this_process()
        assert project.run(run_id).status == "running"


def test_process_alive_tells_a_reused_pid_and_another_host() -> None:
    me = this_process()
    assert process_alive(me) is True
    assert process_alive({**me, "host": me["host"] + "-elsewhere"}) is None  # cannot tell: not guessed
    assert process_alive(None) is None
    if me["started"] is not None:  # Linux: a pid reused by a later process is not the run's process
        assert process_alive({**me, "started": str(int(me["started"]) + 1)}) is False


@pytest.mark.parametrize(("kind", "change", "message"), [
    ("retrain", "decisions", "the decisions changed since run"),
    ("retrain", "labels", "the labels changed since run"),
    ("crossval", "labels", "the labels changed since run"),
    ("audit", "labels", "the labels changed since run"),
])
def test_resume_refuses_when_what_it_trains_on_changed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       kind: str, change: str, message: str) -> None:
    root = make_project(tmp_path / "p")
    with Project.open(root) as project:
        run_id = stopped_run(project, kind, {"folds": 2})
        if change == "decisions":
            for sample in (0, 1, 2):
                project.decide(sample, "remove")
        else:
            table = project.sample_table()
            changed = table.label.copy()
            changed[[0, 1]] = changed[[1, 0]]
            project.set_labels(changed, table.true_label)
    code, _, err = run_cli(capsys, kind, str(root), "--resume", run_id)
    assert code == 2 and message in err and "start a new run" in err
    with Project.open(root) as project:
        assert project.run(run_id).status == "cancelled"  # refused before it was claimed: left as it was


def test_resume_never_imports_a_model_named_in_the_project(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project(tmp_path / "p")
    with Project.open(root) as project:
        run_id = stopped_run(project, "audit", {"train": {"model": "builtins:print"}, "folds": 2})
    code, _, err = run_cli(capsys, "audit", str(root), "--resume", run_id)
    assert code == 2 and "custom model 'builtins:print'" in err and "--model builtins:print" in err
    code, _, err = run_cli(capsys, "audit", str(root), "--resume", run_id, "--model", "small_cnn")
    assert code == 2 and "trains model 'builtins:print', not 'small_cnn'" in err
    check_resumed_model(run_id, "builtins:print", "builtins:print")  # named by the user: allowed
    check_resumed_model(run_id, "resnet18", None)  # built-in: resumes as it is
    with pytest.raises(UserError, match="a resumed run keeps its own settings"):
        check_resumed_model(run_id, "resnet18", "small_cnn")


def test_new_run_makes_the_row_before_spec_json_and_cleans_up_on_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_project(tmp_path / "p")
    real_write = engine.store.runs.atomic_write_bytes
    rows_seen: list[int] = []

    def watching_write(path: Path, data: bytes) -> None:
        if path.name == "spec.json":
            with Project.open(root) as other:  # what another reader sees at that moment
                rows_seen.append(len(other.execute("SELECT id FROM runs")))
        real_write(path, data)

    monkeypatch.setattr(engine.store.runs, "atomic_write_bytes", watching_write)
    with Project.open(root) as project:
        run = project.new_run("audit", {})
        assert rows_seen == [1] and (run.folder / "spec.json").is_file()

        def failing_write(path: Path, data: bytes) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(engine.store.runs, "atomic_write_bytes", failing_write)
        with pytest.raises(OSError):
            project.new_run("audit", {})
        assert [r.id for r in project.runs()] == [run.id]
        assert [path.name for path in project.runs_dir.iterdir()] == [run.id]


def test_detectors_see_the_train_split_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 120
    with Project.open(make_project(tmp_path / "p", n=n)) as project:
        table = project.sample_table()
        labels = table.label.copy()
        labels[table.test_ids[:10]] = (labels[table.test_ids[:10]] + 1) % 3  # held-out "errors": never flagged
        probs = np.full((n, 3), 0.05)
        probs[np.arange(n), table.true_label] = 0.9
        probs += rng.random((n, 3)) * 0.01
        probs /= probs.sum(1, keepdims=True)
        train = table.train_ids
        noisy_train = train[:8]
        labels[noisy_train] = (labels[noisy_train] + 1) % 3
        run = project.new_run("audit", {})
        results = run_detectors(project, run, parse_detectors("cl"),
                                DetectorInputs(labels=labels, num_classes=3, pred_probs=probs), scored_ids=train)
        saved = project.scores(run.id, "cl")
        assert set(np.flatnonzero(saved["flagged"])) == set(noisy_train)
        test = table.test_ids
        assert not saved["flagged"][test].any() and (saved["score"][test] == 0).all()
        assert (saved["suggested"][test] == -1).all() and (saved["rank"][test] >= len(train)).all()
        np.testing.assert_array_equal(saved["suggested"][noisy_train], table.true_label[noisy_train])
        # The estimate is of the training set: 8 of the 90 train samples, not diluted or raised by held-out ones.
        assert results["cl"].summary["estimated_noise_rate"] == pytest.approx(8 / len(train), abs=0.02)


def test_status_marks_stale_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project(tmp_path / "p")
    with Project.open(root) as project:
        audit = project.new_run("audit", {})
        project.finish_run(audit.id, "ok", {})
        fresh = json.loads(run_cli(capsys, "status", str(root), "--json")[1])["runs"][0]
        assert fresh["stale"] is None and fresh["resume"] is None
        table = project.sample_table()
        changed = table.label.copy()
        changed[0] = 2
        project.set_labels(changed, table.true_label)
    code, out, _ = run_cli(capsys, "status", str(root))
    assert code == 0 and f"run {audit.id}: ok" in out and "  stale: labels changed since this audit run" in out
    listed = json.loads(run_cli(capsys, "status", str(root), "--json")[1])["runs"][0]
    assert listed["stale"].startswith("labels changed since this audit run")
