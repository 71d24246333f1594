"""The typed, versioned event protocol between the engine and its consumers.

Every job emits a stream of events. Each is one JSON object on one line:
``{"v": 1, "type": "progress", "seq": 3, "time": 1700000000.0, "run_id": "...", ...}``.
The same stream goes to the run folder's ``events.jsonl`` and, when a live
consumer (the GUI) started the engine, to the engine's private event channel.

This module is Qt-free and torch-free so that both sides can import it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any, ClassVar, Literal

PROTOCOL_VERSION = 1

DoneStatus = Literal["ok", "error", "cancelled"]
LogLevel = Literal["debug", "info", "warning", "error"]


@dataclass(frozen=True)
class Event:
    """Base of every message; ``type`` names the subclass on the wire."""

    type: ClassVar[str] = "event"
    run_id: str = ""
    seq: int = 0
    time: float = 0.0

    def to_json(self) -> str:
        payload = {"v": PROTOCOL_VERSION, "type": self.type, **asdict(self)}
        return json.dumps(payload, ensure_ascii=False, allow_nan=False, default=_json_default)


@dataclass(frozen=True)
class Progress(Event):
    """How far a stage has come. ``eta_s`` is None until it can be estimated."""

    type: ClassVar[str] = "progress"
    stage: str = ""
    done: int = 0
    total: int = 0
    eta_s: float | None = None
    message: str = ""


@dataclass(frozen=True)
class Metric(Event):
    """Named values at a point of training (one epoch of one fold, say)."""

    type: ClassVar[str] = "metric"
    stage: str = ""
    fold: int | None = None
    epoch: int | None = None
    values: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Log(Event):
    type: ClassVar[str] = "log"
    level: LogLevel = "info"
    message: str = ""


@dataclass(frozen=True)
class Result(Event):
    """A finished piece of output; ``data`` is small JSON, big arrays are named by path."""

    type: ClassVar[str] = "result"
    kind: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Error(Event):
    """A failure a person can act on: what went wrong and what to do about it."""

    type: ClassVar[str] = "error"
    message: str = ""
    hint: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Done(Event):
    """Always the last event of a job."""

    type: ClassVar[str] = "done"
    status: DoneStatus = "ok"
    message: str = ""


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls for cls in (Progress, Metric, Log, Result, Error, Done)
}


class ProtocolError(ValueError):
    """A line that is not a valid event of a version we understand."""


def _json_default(value: Any) -> Any:
    # numpy scalars and paths turn up in payloads; keep the wire plain JSON.
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def parse_event(line: str) -> Event:
    """Parse one wire line into its typed event; unknown fields are ignored (forward compatible)."""
    try:
        payload = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not JSON: {line[:80]!r}") from exc
    if not isinstance(payload, dict):
        raise ProtocolError(f"not an event object: {line[:80]!r}")
    version = payload.get("v")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"event protocol version {version!r}; this build reads {PROTOCOL_VERSION}")
    cls = EVENT_TYPES.get(payload.get("type", ""))
    if cls is None:
        raise ProtocolError(f"unknown event type {payload.get('type')!r}")
    known = {f.name for f in fields(cls)}
    return cls(**{key: value for key, value in payload.items() if key in known})


def read_events(path: Path) -> Iterator[Event]:
    """Replay a run's ``events.jsonl``; a torn last line (a killed writer) is skipped."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                yield parse_event(line)
            except ProtocolError:
                continue


class EventSink:
    """Stamps events with run id, sequence number and time, and writes them everywhere they go.

    ``log_path`` is the run folder's events.jsonl (appended, flushed per event).
    ``live`` is the private channel of a live consumer (see :func:`claim_stdout_for_events`).
    ``console`` renders events for a person on a terminal.
    """

    def __init__(
        self,
        run_id: str = "",
        log_path: Path | None = None,
        live: IO[str] | None = None,
        console: ConsoleRenderer | None = None,
    ) -> None:
        self.run_id = run_id
        self._seq = 0
        self._lock = threading.Lock()
        self._log = open(log_path, "a", encoding="utf-8") if log_path else None
        self._live = live
        self._console = console

    def set_log_path(self, run_id: str, log_path: Path) -> None:
        with self._lock:
            self.run_id = run_id
            if self._log:
                self._log.close()
            self._log = open(log_path, "a", encoding="utf-8")

    def emit(self, event: Event) -> Event:
        with self._lock:
            self._seq += 1
            stamped = type(event)(**{**_field_values(event), "run_id": self.run_id, "seq": self._seq, "time": time.time()})
            line = stamped.to_json() + "\n"
            for stream in (self._log, self._live):
                if stream is None:
                    continue
                try:
                    stream.write(line)
                    stream.flush()
                except (BrokenPipeError, ValueError):
                    # The consumer went away; the run folder still has the record.
                    if stream is self._live:
                        self._live = None
            if self._console:
                self._console.render(stamped)
        return stamped

    # Conveniences, so callers read like prose.
    def progress(self, stage: str, done: int, total: int, eta_s: float | None = None, message: str = "") -> None:
        self.emit(Progress(stage=stage, done=done, total=total, eta_s=eta_s, message=message))

    def metric(self, stage: str, values: dict[str, float], fold: int | None = None, epoch: int | None = None) -> None:
        self.emit(Metric(stage=stage, fold=fold, epoch=epoch, values={k: float(v) for k, v in values.items()}))

    def log(self, message: str, level: LogLevel = "info") -> None:
        self.emit(Log(level=level, message=message))

    def result(self, kind: str, data: dict[str, Any]) -> None:
        self.emit(Result(kind=kind, data=data))

    def error(self, message: str, hint: str = "", detail: str = "") -> None:
        self.emit(Error(message=message, hint=hint, detail=detail))

    def done(self, status: DoneStatus, message: str = "") -> None:
        self.emit(Done(status=status, message=message))

    def close(self) -> None:
        with self._lock:
            if self._log:
                self._log.close()
                self._log = None


def _field_values(event: Event) -> dict[str, Any]:
    return {f.name: getattr(event, f.name) for f in fields(event)}


class ConsoleRenderer:
    """Human-readable rendering: a one-line progress bar on a terminal, plain lines otherwise."""

    def __init__(self, stream: IO[str] | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self._is_tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._bar_open = False
        self._last_plain = 0.0

    def render(self, event: Event) -> None:
        if isinstance(event, Progress):
            self._render_progress(event)
            return
        if self.quiet and not isinstance(event, (Error, Done)):
            return
        self._close_bar()
        if isinstance(event, Metric):
            where = " ".join(part for part in (
                f"fold {event.fold + 1}" if event.fold is not None else "",
                f"epoch {event.epoch + 1}" if event.epoch is not None else "",
            ) if part)
            values = "  ".join(f"{name} {value:.4g}" for name, value in event.values.items())
            print(f"[{event.stage}] {where}  {values}".rstrip(), file=self.stream)
        elif isinstance(event, Log):
            print(f"{event.level}: {event.message}" if event.level != "info" else event.message, file=self.stream)
        elif isinstance(event, Error):
            print(f"error: {event.message}", file=self.stream)
            if event.hint:
                print(f"  fix: {event.hint}", file=self.stream)
        elif isinstance(event, Done) and event.status != "ok":
            print(f"{event.status}: {event.message}".rstrip(": "), file=self.stream)

    def _render_progress(self, event: Progress) -> None:
        if self.quiet:
            return
        fraction = event.done / event.total if event.total else 0.0
        eta = f" ETA {format_duration(event.eta_s)}" if event.eta_s is not None else ""
        text = f"{event.stage}: {event.done}/{event.total}{eta} {event.message}".rstrip()
        if self._is_tty:
            width = 24
            filled = int(round(width * fraction))
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r[{bar}] {text[:90]:<90}")
            self.stream.flush()
            self._bar_open = True
        else:
            now = time.monotonic()
            # Off a terminal, a line every few seconds (and at the end) is plenty.
            if event.done >= event.total or now - self._last_plain > 5:
                self._last_plain = now
                print(text, file=self.stream)

    def _close_bar(self) -> None:
        if self._bar_open:
            self.stream.write("\n")
            self._bar_open = False


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def claim_stdout_for_events() -> IO[str]:
    """Reserve the process's real stdout for events; everything else printed goes to stderr.

    Libraries print to fd 1 (tqdm, warnings, C extensions). After this call fd 1
    is a copy of stderr, so their output can never interleave with an event line;
    events go to the returned stream, a private duplicate of the original stdout.
    """
    sys.stdout.flush()
    private_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8")
    return os.fdopen(private_fd, "w", buffering=1, encoding="utf-8")


class EtaEstimator:
    """ETA from the mean rate so far; None until one unit is done."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.start = time.monotonic()

    def eta(self, done: int) -> float | None:
        if done <= 0 or self.total <= 0:
            return None
        elapsed = time.monotonic() - self.start
        return elapsed / done * (self.total - done)
