"""`demo`, `init` and `inject-noise` under --json stream events like the training jobs, and the app's
import dialog shows them as a real progress bar."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from engine.events import Done, Error, Event, Progress, Result, parse_event

REPO = Path(__file__).resolve().parent.parent


def run_engine(*args: str) -> tuple[int, list[Event], str]:
    """Run ``python -m engine ARGS --json``; every stdout line must be an event."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "engine", *args, "--json"], capture_output=True, text=True,
                          timeout=300, env=env, cwd=REPO)
    events = [parse_event(line) for line in done.stdout.splitlines() if line.strip()]
    return done.returncode, events, done.stderr


def assert_progress_then_done(events: list[Event], stages: set[str], result_kind: str) -> Result:
    """Each stage's done counts rise to its total; the summary is a result event; done(ok) comes last."""
    progress = [e for e in events if isinstance(e, Progress)]
    assert stages <= {e.stage for e in progress}
    for stage in stages:
        counts = [e.done for e in progress if e.stage == stage]
        totals = {e.total for e in progress if e.stage == stage}
        assert len(totals) == 1 and totals.pop() == counts[-1] > 0
        assert counts == sorted(counts) and len(set(counts)) >= 2, (stage, counts)  # it moves, never back
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    results = [e for e in events if isinstance(e, Result)]
    assert [r.kind for r in results] == [result_kind]
    assert isinstance(events[-1], Done) and events[-1].status == "ok"
    assert events.index(results[0]) == len(events) - 2
    return results[0]


def test_demo_streams_progress(tmp_path: Path) -> None:
    code, events, stderr = run_engine("demo", str(tmp_path / "demo"), "--noise-rate", "0.1", "--seed", "2")
    assert code == 0, stderr
    result = assert_progress_then_done(events, {"images", "import"}, "demo")
    assert result.data["samples"] == 1797 and result.data["noise"]["rate"] == 0.1
    assert result.data["source"]["kind"] == "demo"


def test_init_and_inject_noise_stream_progress(tmp_path: Path, image_folder: Path) -> None:
    project = tmp_path / "shapes"
    code, events, stderr = run_engine("init", str(project), "--images", str(image_folder))
    assert code == 0, stderr
    result = assert_progress_then_done(events, {"import"}, "import")
    assert result.data["samples"] == 36 and [c["name"] for c in result.data["classes"]] == ["circle", "cross", "stripes"]

    code, events, stderr = run_engine("inject-noise", str(project), "--mode", "symmetric", "--rate", "0.25")
    assert code == 0, stderr
    result = assert_progress_then_done(events, {"noise"}, "noise")
    assert result.data["changed"] == round(0.25 * result.data["train_samples"])


def test_a_refused_import_ends_with_error_and_done(tmp_path: Path) -> None:
    code, events, _ = run_engine("init", str(tmp_path / "p"), "--images", str(tmp_path / "missing"))
    assert code == 2
    errors = [e for e in events if isinstance(e, Error)]
    assert len(errors) == 1 and "missing" in errors[0].message
    assert isinstance(events[-1], Done) and events[-1].status == "error"
    assert not (tmp_path / "p").exists()


@pytest.mark.skipif(not os.environ.get("QT_QPA_PLATFORM"), reason="GUI test: set QT_QPA_PLATFORM=offscreen")
def test_import_dialog_shows_a_real_bar(qtbot: QtBot, tmp_path: Path, image_folder: Path) -> None:
    from auditor.engine_process import EngineProcess
    from auditor.views.progress_dialog import EngineProgressDialog

    process = EngineProcess()
    dialog = EngineProgressDialog(process, "Importing shapes…")
    qtbot.addWidget(dialog)
    bars: list[tuple[int, int]] = []
    process.progress.connect(lambda _: bars.append((dialog.value(), dialog.maximum())))
    with qtbot.waitSignal(process.finished, timeout=120_000) as finished:
        process.start("init", tmp_path / "shapes", ["--images", str(image_folder)])
    assert finished.args == ["ok"]
    assert bars and bars[-1] == (36, 36)  # a determinate bar that reached its end, not a busy spinner
    assert all(maximum == 36 for _, maximum in bars)


def test_sigterm_cancels_an_import_and_leaves_no_half_project(tmp_path: Path) -> None:
    """The app's Cancel sends SIGTERM: the job ends with done "cancelled", and the half-made project is gone."""
    target = tmp_path / "demo"
    events = []
    with subprocess.Popen([sys.executable, "-m", "engine", "demo", str(target), "--json"], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}) as process:
        assert process.stdout is not None
        for line in process.stdout:
            events.append(parse_event(line))
            if isinstance(events[-1], Progress) and events[-1].stage == "images":
                process.send_signal(signal.SIGTERM)  # while the images are being written
                break
        events += [parse_event(line) for line in process.stdout if line.strip()]
        assert process.wait(timeout=120) == 130
    assert isinstance(events[-1], Done) and events[-1].status == "cancelled"
    assert not target.exists() and list(tmp_path.iterdir()) == []  # no staging folder left either
