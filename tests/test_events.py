"""The event protocol: typed, versioned, replayable, and robust to a killed writer."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.events import (
    CAPABILITIES,
    PROTOCOL_MINOR,
    PROTOCOL_VERSION,
    ConsoleRenderer,
    Done,
    Error,
    EventSink,
    Log,
    Metric,
    NewerProtocolError,
    Progress,
    ProtocolError,
    Result,
    parse_event,
    read_events,
)


def test_every_event_type_round_trips_through_the_wire(tmp_path: Path) -> None:
    sink = EventSink(run_id="run-1", log_path=tmp_path / "events.jsonl")
    sent = [
        Progress(stage="crossval", done=3, total=10, eta_s=12.5, message="fold 1/3"),
        Metric(stage="train", fold=0, epoch=1, values={"loss": 0.5, "acc": 0.75}),
        Log(level="warning", message="ünïcode ok"),
        Result(kind="pred_probs", data={"shape": [4, 2]}),
        Error(message="bad", hint="fix it", detail="trace"),
        Done(status="cancelled", message="stopped by SIGINT"),
    ]
    stamped = [sink.emit(event) for event in sent]
    sink.close()
    replayed = list(read_events(tmp_path / "events.jsonl"))
    assert replayed == stamped
    assert [event.seq for event in replayed] == [1, 2, 3, 4, 5, 6]
    assert all(event.run_id == "run-1" for event in replayed)
    assert isinstance(replayed[1], Metric) and replayed[1].values == {"loss": 0.5, "acc": 0.75}


def test_wire_format_is_versioned_json() -> None:
    line = Progress(stage="cache", done=1, total=2).to_json()
    payload = json.loads(line)
    assert payload["v"] == PROTOCOL_VERSION and payload["type"] == "progress"
    with pytest.raises(ProtocolError, match="protocol v2"):
        parse_event(json.dumps({**payload, "v": PROTOCOL_VERSION + 1}))
    with pytest.raises(ProtocolError, match="unknown event type"):
        parse_event(json.dumps({**payload, "type": "telepathy"}))
    with pytest.raises(ProtocolError, match="not JSON"):
        parse_event("epoch 1: loss 0.3")
    # Fields added by a later minor revision are ignored rather than fatal.
    assert parse_event(json.dumps({**payload, "new_field": 1})) == parse_event(line)


def test_a_torn_last_line_from_a_killed_writer_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(Log(message="one").to_json() + "\n" + '{"v": 1, "type": "prog')
    assert [event.message for event in read_events(path) if isinstance(event, Log)] == ["one"]


def test_console_renderer_writes_plain_lines_off_a_terminal(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with open(out, "w") as stream:
        sink = EventSink(console=ConsoleRenderer(stream))
        sink.metric("train", {"loss": 1.25}, fold=0, epoch=0)
        sink.error("the folder is empty", "add images")
        sink.done("error", "the folder is empty")
    text = out.read_text()
    assert text.count("the folder is empty") == 1  # the done event does not repeat the error
    assert "[train] fold 1 epoch 1  loss 1.25" in text
    assert "error: the folder is empty" in text and "fix: add images" in text


GOOD_PROGRESS = {"v": 1, "type": "progress", "seq": 1, "time": 1.5, "run_id": "r", "stage": "train",
                 "done": 1, "total": 2, "eta_s": None, "message": ""}


@pytest.mark.parametrize("change", [
    {"type": ["progress"]},
    {"type": None},
    {"total": "many"},
    {"done": True},  # a bool is not a count
    {"done": 1.5},
    {"eta_s": "soon"},
    {"stage": 3},
    {"seq": None},
    {"v": "1"},
    {"v": 0},
])
def test_every_field_is_validated(change: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        parse_event(json.dumps({**GOOD_PROGRESS, **change}))


@pytest.mark.parametrize("line", [
    {"v": 1, "type": "done", "status": "weird"},
    {"v": 1, "type": "log", "level": "shout", "message": "hi"},
    {"v": 1, "type": "metric", "values": {"loss": "low"}},
    {"v": 1, "type": "metric", "values": [0.5]},
    {"v": 1, "type": "metric", "fold": "first"},
    {"v": 1, "type": "result", "kind": "x", "data": [1, 2]},
    {"v": 1, "type": "error", "message": None},
])
def test_wrong_literal_members_and_containers_are_refused(line: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        parse_event(json.dumps(line))


def test_a_valid_line_parses_with_numbers_read_as_declared() -> None:
    event = parse_event(json.dumps({**GOOD_PROGRESS, "eta_s": 3, "time": 2}))
    assert isinstance(event, Progress) and event.eta_s == 3.0 and isinstance(event.eta_s, float)
    assert isinstance(parse_event(json.dumps({"v": 1, "type": "done", "status": "cancelled"})), Done)


def test_a_newer_major_version_says_so() -> None:
    with pytest.raises(NewerProtocolError, match="protocol v2") as caught:
        parse_event(json.dumps({**GOOD_PROGRESS, "v": 2}))
    assert caught.value.version == 2 and "update the app" in caught.value.hint


def test_non_finite_metrics_travel_as_null_and_read_back_as_nan(tmp_path: Path) -> None:
    sink = EventSink(run_id="r", log_path=tmp_path / "events.jsonl")
    sink.metric("train", {"loss": math.nan, "acc": 0.5, "grad": math.inf}, fold=0, epoch=0)
    sink.progress("train", 1, 2, eta_s=math.inf)
    sink.done("ok")
    sink.close()
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["values"] == {"loss": None, "acc": 0.5, "grad": None}
    metric, progress, done = (parse_event(line) for line in lines)
    assert isinstance(metric, Metric) and math.isnan(metric.values["loss"]) and math.isnan(metric.values["grad"])
    assert metric.values["acc"] == 0.5
    assert isinstance(progress, Progress) and progress.eta_s is None
    assert isinstance(done, Done) and done.status == "ok"


def test_an_event_that_cannot_be_serialised_becomes_an_error_log(tmp_path: Path) -> None:
    sink = EventSink(run_id="r", log_path=tmp_path / "events.jsonl")
    sink.result("summary", {"model": object(), "shape": np.zeros(2, dtype=np.int64)})
    sink.result("summary", {"shape": np.zeros(2, dtype=np.int64), "path": tmp_path, "n": np.int32(3)})
    sink.done("ok")
    sink.close()
    first, second, done = read_events(tmp_path / "events.jsonl")
    assert isinstance(first, Log) and first.level == "error" and "result event could not be written" in first.message
    assert isinstance(second, Result) and second.data == {"shape": [0, 0], "path": str(tmp_path), "n": 3}
    assert isinstance(done, Done) and [first.seq, second.seq, done.seq] == [1, 2, 3]


def test_capabilities_are_published_by_the_engine() -> None:
    assert set(CAPABILITIES) == {"progress", "metric", "log", "result", "error", "done"}
    out = subprocess.run([sys.executable, "-m", "engine", "--protocol"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=60, check=True).stdout
    assert json.loads(out) == {"version": PROTOCOL_VERSION, "minor": PROTOCOL_MINOR,
                               "capabilities": list(CAPABILITIES)}


def test_a_full_disk_under_the_run_log_never_stops_the_live_stream() -> None:
    live = io.StringIO()
    sink = EventSink(run_id="r", log_path=Path("/dev/full"), live=live)
    sink.log("one")
    sink.done("ok")
    sink.close()
    assert [parse_event(line).type for line in live.getvalue().splitlines()] == ["log", "done"]
