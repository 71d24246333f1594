"""EngineProcess turns the engine's stdout into typed signals and reports a dead engine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from auditor.engine_process import EngineProcess, engine_invocation, engine_protocol
from auditor.views.job_view import JobView
from engine.events import CAPABILITIES, PROTOCOL_MINOR, Error, Log, Metric, Progress

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


def test_bad_event_lines_are_logged_and_skipped_and_reading_goes_on(qtbot: QtBot) -> None:
    process, seen = run_fake(qtbot, "badlines")
    assert seen["status"] == ["ok"]  # the done event after the bad lines arrived
    assert [event.done for event in seen["progress"] if isinstance(event, Progress)] == [1, 2, 3, 4]
    assert len(process.skipped_lines) == 4 and '"weird"' in process.skipped_lines[2]
    warnings = [event.message for event in seen["log"] if isinstance(event, Log) and event.level == "warning"]
    assert len(warnings) == 4 and "unknown event type 'telepathy'" in warnings[3]
    assert "'total' must be int" in warnings[1]
    assert seen["result"][0].data == {"accuracy": 0.9}  # type: ignore[attr-defined]
    assert seen["error"] == []


def test_a_newer_protocol_is_reported_once(qtbot: QtBot) -> None:
    process, seen = run_fake(qtbot, "newer")
    assert seen["status"] == ["error"]
    errors = [event for event in seen["error"] if isinstance(event, Error)]
    assert len(errors) == 1 and "protocol v2" in errors[0].message and "update the app" in errors[0].hint
    assert process.skipped_lines == [] and seen["done"] == []


def test_the_app_learns_the_engines_protocol() -> None:
    assert engine_protocol() == {"version": 1, "minor": PROTOCOL_MINOR, "capabilities": list(CAPABILITIES)}
