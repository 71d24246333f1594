"""The typed, versioned event protocol between the engine and its consumers.

Every job emits a stream of events. Each is one JSON object on one line:
``{"v": 1, "type": "progress", "seq": 3, "time": 1700000000.0, "run_id": "...", ...}``.
The same stream goes to the run folder's ``events.jsonl`` and, when a live
consumer (the GUI) started the engine, to the engine's private event channel.

Versions. ``v`` is the major version: a reader refuses a newer major (the
meaning of existing fields changed) with one clear message. ``PROTOCOL_MINOR``
counts backwards-compatible additions (a new event type, a new field); a
reader ignores fields it does not know and skips (logs) event types it does
not know, so an older app keeps working with a newer engine. ``CAPABILITIES``
lists the event types this side speaks. An app learns the engine's with
``python -m engine --protocol``, which prints
``{"version": 1, "minor": 1, "capabilities": ["progress", ...]}`` and exits.

Validation. :func:`parse_event` checks every field against its declared type
(``str``; ``int``, never a bool; ``float`` from any JSON number; the members of
a ``Literal``; ``dict[str, float]`` for metric values) and raises
:class:`ProtocolError` for anything malformed, so a reader can log and skip
one bad line and keep reading.

Non-finite numbers. JSON has no NaN or infinity: they go on the wire as
``null``. A field declared ``float`` (not optional), or a metric value, reads
``null`` back as ``float("nan")``; a field declared ``float | None`` reads it
as ``None``.

This module is Qt-free and torch-free so that both sides can import it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import threading
import time
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any, ClassVar, Literal, get_args, get_origin, get_type_hints

PROTOCOL_VERSION = 1
# Minor 1: fields validated on parse, non-finite floats as null, capabilities published.
PROTOCOL_MINOR = 1

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
        """One wire line. Raises TypeError for a payload value that has no JSON form."""
        payload = {"v": PROTOCOL_VERSION, "type": self.type, **_field_values(self)}
        return json.dumps(_to_wire(payload, self.type), ensure_ascii=False, allow_nan=False)


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
CAPABILITIES: tuple[str, ...] = tuple(EVENT_TYPES)


def protocol_description() -> dict[str, Any]:
    """What ``python -m engine --protocol`` prints: how this side speaks."""
    return {"version": PROTOCOL_VERSION, "minor": PROTOCOL_MINOR, "capabilities": list(CAPABILITIES)}


class PrintProtocolAction(argparse.Action):
    """``--protocol``: print :func:`protocol_description` as JSON on stdout and exit 0."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(json.dumps(protocol_description()))
        parser.exit(0)


class ProtocolError(ValueError):
    """A line that is not a valid event of a version we understand."""


class NewerProtocolError(ProtocolError):
    """An event from a newer major protocol version: this reader cannot know what it means."""

    def __init__(self, version: int) -> None:
        super().__init__(f"the engine speaks protocol v{version}, a newer version than this app reads "
                         f"(v{PROTOCOL_VERSION})")
        self.version = version
        self.hint = "update the app to the engine's version"


def _to_wire(value: Any, where: str) -> Any:
    """Plain JSON: non-finite floats become null; numpy/torch values and paths become their JSON form."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_wire_key(key, where): _to_wire(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_wire(item, where) for item in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays, torch tensors
        return _to_wire(value.tolist(), where)
    raise TypeError(f"{where}: a {type(value).__name__} has no JSON form")


def _wire_key(key: Any, where: str) -> str:
    if isinstance(key, str):
        return key
    if hasattr(key, "item"):  # a numpy integer key
        key = key.item()
    if isinstance(key, (bool, int, float)) or key is None:
        return json.dumps(key)
    raise TypeError(f"{where}: a dictionary key of type {type(key).__name__} has no JSON form")


_MISMATCH = object()  # what _coerce returns for a value that does not fit its type


def _coerce(value: Any, annotation: Any) -> Any:
    """``value`` read as ``annotation`` (float from any number, null as NaN for a float), or _MISMATCH."""
    if annotation is Any:
        return value
    if annotation is type(None):
        return None if value is None else _MISMATCH
    if annotation is str:
        return value if isinstance(value, str) else _MISMATCH
    if annotation is bool:
        return value if isinstance(value, bool) else _MISMATCH
    if annotation is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _MISMATCH
    if annotation is float:
        if value is None:
            return math.nan  # a non-finite value on the wire
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        return _MISMATCH
    origin = get_origin(annotation)
    if origin is Literal:
        return value if any(value == member and type(value) is type(member) for member in get_args(annotation)) \
            else _MISMATCH
    if origin in (typing.Union, types.UnionType):
        members = get_args(annotation)
        if value is None and type(None) in members:
            return None
        for member in members:
            coerced = _coerce(value, member)
            if coerced is not _MISMATCH:
                return coerced
        return _MISMATCH
    if origin is dict:
        if not isinstance(value, dict):
            return _MISMATCH
        key_type, value_type = get_args(annotation) or (Any, Any)
        result: dict[Any, Any] = {}
        for key, item in value.items():
            coerced_key, coerced_item = _coerce(key, key_type), _coerce(item, value_type)
            if coerced_key is _MISMATCH or coerced_item is _MISMATCH:
                return _MISMATCH
            result[coerced_key] = coerced_item
        return result
    if origin is list:
        if not isinstance(value, list):
            return _MISMATCH
        (item_type,) = get_args(annotation) or (Any,)
        items = [_coerce(item, item_type) for item in value]
        return _MISMATCH if any(item is _MISMATCH for item in items) else items
    raise TypeError(f"no wire reading for the annotation {annotation!r}")


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


_FIELD_TYPES: dict[str, dict[str, Any]] = {
    name: {f.name: get_type_hints(cls)[f.name] for f in fields(cls)} for name, cls in EVENT_TYPES.items()
}


def parse_event(line: str) -> Event:
    """Parse and validate one wire line into its typed event.

    Fields this version does not know are ignored (a newer minor may add them);
    every known field must have its declared type, or :class:`ProtocolError`.
    """
    try:
        payload = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(f"not JSON: {line[:80]!r}") from exc
    if not isinstance(payload, dict):
        raise ProtocolError(f"not an event object: {line[:80]!r}")
    version = payload.get("v")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ProtocolError(f"no valid protocol version (\"v\": {version!r}): {line[:80]!r}")
    if version > PROTOCOL_VERSION:
        raise NewerProtocolError(version)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"event protocol version {version}; this build reads {PROTOCOL_VERSION}")
    type_name = payload.get("type")
    if not isinstance(type_name, str):
        raise ProtocolError(f"the event type must be a string, not {type_name!r}: {line[:80]!r}")
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise ProtocolError(f"unknown event type {type_name!r}")
    values: dict[str, Any] = {}
    for name, annotation in _FIELD_TYPES[type_name].items():
        if name not in payload:
            continue  # the dataclass default
        coerced = _coerce(payload[name], annotation)
        if coerced is _MISMATCH:
            raise ProtocolError(f"{type_name} event: field {name!r} must be {_type_name(annotation)}, "
                                f"not {payload[name]!r:.60}")
        values[name] = coerced
    return cls(**values)


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
        """Stamp and write ``event``. An event with no JSON form is replaced by an error log, never raised."""
        with self._lock:
            self._seq += 1
            stamped = type(event)(**{**_field_values(event), "run_id": self.run_id, "seq": self._seq, "time": time.time()})
            try:
                line = stamped.to_json() + "\n"
            except (TypeError, ValueError) as exc:
                # A bad payload must not end the job it reports on: say so in its place.
                stamped = Log(run_id=self.run_id, seq=self._seq, time=stamped.time, level="error",
                              message=f"a {event.type} event could not be written: {exc}")
                line = stamped.to_json() + "\n"
            for stream in (self._log, self._live):
                if stream is None:
                    continue
                try:
                    stream.write(line)
                    stream.flush()
                except (OSError, ValueError):
                    if stream is self._live:
                        # The consumer went away; the run folder still has the record.
                        self._live = None
                    else:
                        # The run folder's disk is full or gone: the live consumer and the
                        # console still hear the job, whose next write reports the disk.
                        with contextlib.suppress(OSError, ValueError):
                            stream.close()
                        self._log = None
            if self._console:
                self._console.render(stamped)
        return stamped

    # Conveniences, so callers read like prose.
    def progress(self, stage: str, done: int, total: int, eta_s: float | None = None, message: str = "") -> None:
        self.emit(Progress(stage=stage, done=done, total=total, eta_s=eta_s, message=message))

    def metric(self, stage: str, values: dict[str, float], fold: int | None = None, epoch: int | None = None) -> None:
        """Non-finite values are allowed: they travel as null and read back as NaN."""
        self.emit(Metric(stage=stage, fold=fold, epoch=epoch,
                         values={k: math.nan if v is None else float(v) for k, v in values.items()}))

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
        self._last_error = ""

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
            self._last_error = event.message
            print(f"error: {event.message}", file=self.stream)
            if event.hint:
                print(f"  fix: {event.hint}", file=self.stream)
        elif isinstance(event, Done) and event.status != "ok" and event.message != self._last_error:
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
