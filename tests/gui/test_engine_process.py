"""EngineProcess turns the engine's stdout into typed signals and reports a dead engine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from auditor.engine_process import EngineProcess, engine_invocation
from auditor.views.job_view import JobView
from engine.events import Metric, Progress

FAKE = str(Path(__file__).with_name("fake_engine.py"))


def run_fake(qtbot: QtBot, mode: str) -> tuple[EngineProcess, dict[str, list[object]]]:
    process = EngineProcess()
    seen: dict[str, list[object]] = {name: [] for name in ("progress", "metric", "log", "result", "error", "done")}
    for name, events in seen.items():
        getattr(process, name).connect(events.append)
    with qtbot.waitSignal(process.finished, timeout=20000) as blocker:
        process.start("fake", "unused", program=sys.executable, arguments=["-u", FAKE, mode])
    seen["status"] = [blocker.args[0]]
    return process, seen


def test_events_become_signals(qtbot: QtBot) -> None:
    process, seen = run_fake(qtbot, "ok")
    assert seen["status"] == ["ok"]
    assert [event.done for event in seen["progress"] if isinstance(event, Progress)] == [1, 2, 3]
    metrics = [event for event in seen["metric"] if isinstance(event, Metric)]
    assert [m.epoch for m in metrics] == [0, 1, 2] and metrics[0].values["loss"] == 1.0
    assert seen["result"][0].data == {"accuracy": 0.9}  # type: ignore[attr-defined]
    assert process.run_id == "fake-run"
    # Library prints went to stderr, never into the event stream.
    assert "library noise" in process.stderr_tail()


def test_engine_error_is_reported_with_hint_and_log(qtbot: QtBot) -> None:
    view = JobView()
    qtbot.addWidget(view)
    process = EngineProcess()
    view.attach(process, "Audit")
    with qtbot.waitSignal(process.finished, timeout=20000) as blocker:
        process.start("fake", "unused", program=sys.executable, arguments=["-u", FAKE, "error"])
    assert blocker.args == ["error"]
    assert view.error_panel.isVisibleTo(view)
    assert "could not be read" in view.error_panel.title.text()
    assert "check the image root" in view.error_panel.hint.text()
    assert "RuntimeError: boom" in view.error_panel.details.toPlainText()
    assert view.curves.point_count() == 9  # loss, acc, val_acc over 3 epochs


def test_a_dead_engine_is_reported(qtbot: QtBot) -> None:
    process = EngineProcess()
    with qtbot.waitSignals([process.died, process.finished], timeout=20000):
        process.start("fake", "unused", program=sys.executable, arguments=["-u", FAKE, "die"])
    assert "Segmentation fault" in process.stderr_tail()


def test_cancel_ends_with_cancelled(qtbot: QtBot) -> None:
    process = EngineProcess()
    with qtbot.waitSignal(process.progress, timeout=20000):
        process.start("fake", "unused", program=sys.executable, arguments=["-u", FAKE, "slow"])
    with qtbot.waitSignal(process.finished, timeout=20000) as blocker:
        process.cancel()
    assert blocker.args == ["cancelled"]


def test_answer_style_commands(qtbot: QtBot) -> None:
    process = EngineProcess()
    answers: list[object] = []
    process.answer.connect(answers.append)
    with qtbot.waitSignal(process.finished, timeout=20000) as blocker:
        process.start("fake", "unused", program=sys.executable, arguments=["-u", FAKE, "answer"])
    assert blocker.args == ["ok"] and answers == [{"project": "/p", "samples": 3}]

    errors: list[object] = []
    process.error.connect(errors.append)
    with qtbot.waitSignal(process.finished, timeout=20000) as blocker:
        process.start("fake", "unused", program=sys.executable, arguments=["-u", FAKE, "usererror"])
    assert blocker.args == ["error"]
    assert errors[0].message == "no images found in /data"  # type: ignore[attr-defined]
    assert errors[0].hint.startswith("point --images")  # type: ignore[attr-defined]


def test_missing_program_is_reported(qtbot: QtBot, tmp_path: Path) -> None:
    process = EngineProcess()
    with qtbot.waitSignal(process.died, timeout=10000) as blocker:
        process.start("fake", "unused", program=str(tmp_path / "no-such-engine"), arguments=[])
    assert "could not start" in blocker.args[1]


def test_frozen_app_runs_the_bundled_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    program, args = engine_invocation("audit", "/p", ["--epochs", "1"])
    assert program == sys.executable and args[:4] == ["-u", "-m", "engine", "audit"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    program, args = engine_invocation("audit", "/p", ["--epochs", "1"])
    assert Path(program).name.startswith("label-auditor-engine")
    assert args == ["audit", "/p", "--json", "--epochs", "1"]
