"""The event protocol: typed, versioned, replayable, and robust to a killed writer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.events import (
    PROTOCOL_VERSION,
    ConsoleRenderer,
    Done,
    Error,
    EventSink,
    Log,
    Metric,
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
    with pytest.raises(ProtocolError, match="version"):
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
    text = out.read_text()
    assert "[train] fold 1 epoch 1  loss 1.25" in text
    assert "error: the folder is empty" in text and "fix: add images" in text
