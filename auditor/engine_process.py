"""The engine as a child process, seen as a stream of typed Qt signals.

The GUI never imports the engine's heavy parts (torch, cleanlab): it starts
``python -m engine <command> PROJECT --json`` with QProcess, reads one event
per stdout line, and re-emits each as its own signal (qtconsole's pattern:
one reader, ``_handle_<type>`` dispatch, a liveness signal for a dead backend).
stderr carries library noise; its tail is kept for the error report.

A line that looks like an event but is malformed, or has a type this app does
not know (a newer engine's addition), is logged and skipped: reading goes on,
and the job's ``done`` still arrives. Events of a newer major protocol version
are reported once, as an error telling the user to update the app.
:func:`engine_protocol` asks the engine which protocol version and event types
it speaks.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, Signal

from engine.events import (
    EVENT_TYPES,
    PROTOCOL_VERSION,
    Done,
    Error,
    Log,
    Metric,
    NewerProtocolError,
    Progress,
    ProtocolError,
    Result,
    parse_event,
)

ENGINE_EXECUTABLE = "label-auditor-engine"  # the frozen engine, bundled beside the app
STDERR_TAIL_LINES = 200
EXIT_CANCELLED = 130

logger = logging.getLogger(__name__)


def engine_invocation(command: str, project: Path | str, options: Sequence[str] = ()) -> tuple[str, list[str]]:
    """The program and arguments that run one engine command with a live JSON event channel.

    A frozen app has no ``python -m``: it ships the engine as its own executable
    next to the app's, built from ``engine/__main__.py`` (see packaging/README.md).
    """
    program, prefix = _engine_program()
    return program, [*prefix, command, str(project), "--json", *options]


def _engine_program() -> tuple[str, list[str]]:
    """The engine's program and the arguments that come before its own."""
    if getattr(sys, "frozen", False):
        suffix = ".exe" if sys.platform == "win32" else ""
        return str(Path(sys.executable).with_name(ENGINE_EXECUTABLE + suffix)), []
    # -u: unbuffered, so every event reaches us the moment it is written.
    return sys.executable, ["-u", "-m", "engine"]


def engine_protocol(timeout_s: float = 60.0) -> dict[str, object]:
    """The engine's ``{"version", "minor", "capabilities"}`` (``python -m engine --protocol``).

    An engine from before ``--protocol`` existed answers with a usage error: it speaks
    version 1, minor 0, with the six original event types.
    """
    program, prefix = _engine_program()
    env = dict(item.split("=", 1) for item in _engine_environment().toStringList() if "=" in item)
    try:
        done = subprocess.run([program, *prefix, "--protocol"], capture_output=True, text=True, timeout=timeout_s, env=env)
        answer = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, json.JSONDecodeError):
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("capabilities"), list):
        return {"version": PROTOCOL_VERSION, "minor": 0, "capabilities": list(EVENT_TYPES)}
    return answer


def _looks_like_event(line: str) -> bool:
    """A JSON object with ``v`` and ``type``: meant as an event, unlike an answer document's lines."""
    try:
        payload = json.loads(line)
    except (ValueError, RecursionError):
        return False
    return isinstance(payload, dict) and "v" in payload and "type" in payload


def _engine_environment() -> QProcessEnvironment:
    env = QProcessEnvironment.systemEnvironment()
    # The child must import the same `engine` package as we do, wherever we were started from.
    import engine

    package_parent = str(Path(engine.__file__).resolve().parent.parent)
    existing = env.value("PYTHONPATH", "")
    env.insert("PYTHONPATH", package_parent + (os.pathsep + existing if existing else ""))
    env.insert("PYTHONIOENCODING", "utf-8")
    return env


class EngineProcess(QObject):
    """One engine job. Start it, listen to its signals, cancel or kill it.

    ``finished(status)`` is emitted once at the end with ok | error | cancelled | died.
    ``died(exit_code, message)`` is emitted first when the process ended without a done event.
    """

    started = Signal()
    progress = Signal(object)  # engine.events.Progress
    metric = Signal(object)  # engine.events.Metric
    log = Signal(object)  # engine.events.Log
    result = Signal(object)  # engine.events.Result
    error = Signal(object)  # engine.events.Error
    done = Signal(object)  # engine.events.Done
    answer = Signal(object)  # the JSON document of an answer-style command (export, status)
    stderr_text = Signal(str)
    died = Signal(int, str)
    finished = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._process: QProcess | None = None
        self._stdout_buffer = b""
        self._stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._stderr_partial = ""
        self._done: Done | None = None
        self._errors: list[Error] = []
        self._other_stdout: list[str] = []
        self._cancel_requested = False
        self._newer_protocol: NewerProtocolError | None = None
        self.skipped_lines: list[str] = []
        self.command = ""
        self.run_id = ""

    # ---------------------------------------------------------------- control
    def start(self, command: str, project: Path | str, options: Sequence[str] = (),
              program: str | None = None, arguments: Sequence[str] | None = None) -> None:
        """Run ``command`` on ``project``; ``program``/``arguments`` override the launcher (tests)."""
        if self.is_running():
            raise RuntimeError("this EngineProcess is already running a job")
        self.command = command
        self.run_id = ""
        self._stdout_buffer = b""
        self._stderr_tail.clear()
        self._stderr_partial = ""
        self._done = None
        self._errors = []
        self._other_stdout = []
        self._cancel_requested = False
        self._newer_protocol = None
        self.skipped_lines = []
        default_program, default_args = engine_invocation(command, project, options)
        process = QProcess(self)
        process.setProcessEnvironment(_engine_environment())
        process.readyReadStandardOutput.connect(self._read_stdout)
        process.readyReadStandardError.connect(self._read_stderr)
        process.finished.connect(self._on_finished)
        process.errorOccurred.connect(self._on_error_occurred)
        process.started.connect(self.started)
        self._process = process
        process.start(program or default_program, list(arguments if arguments is not None else default_args))

    def cancel(self) -> None:
        """Ask the engine to stop: SIGTERM makes it checkpoint and end with a cancelled done event."""
        if self.is_running() and self._process is not None:
            self._cancel_requested = True
            self._process.terminate()

    def kill(self) -> None:
        """Stop at once (no checkpoint); reported through ``died``."""
        if self.is_running() and self._process is not None:
            self._process.kill()

    def is_running(self) -> bool:
        return self._process is not None and self._process.state() != QProcess.ProcessState.NotRunning

    def wait(self, msecs: int = 30000) -> bool:
        return self._process.waitForFinished(msecs) if self._process is not None else True

    def pid(self) -> int:
        return int(self._process.processId()) if self._process is not None else 0

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested

    def stderr_tail(self) -> str:
        lines = list(self._stderr_tail)
        if self._stderr_partial:
            lines.append(self._stderr_partial)
        return "\n".join(lines)

    @property
    def errors(self) -> list[Error]:
        return list(self._errors)

    # ---------------------------------------------------------------- reading
    def _read_stdout(self) -> None:
        if self._process is None:
            return
        self._stdout_buffer += bytes(self._process.readAllStandardOutput().data())
        *lines, self._stdout_buffer = self._stdout_buffer.split(b"\n")
        for raw in lines:
            self._handle_line(raw.decode("utf-8", errors="replace").strip())

    def _handle_line(self, line: str) -> None:
        if not line:
            return
        try:
            event = parse_event(line)
        except NewerProtocolError as exc:
            self._report_newer_protocol(exc)
            return
        except ProtocolError as exc:
            if _looks_like_event(line):
                self._skip_line(line, str(exc))
            else:
                # Not an event: part of an answer-style command's JSON document (read at exit).
                self._other_stdout.append(line)
            return
        if event.run_id:
            self.run_id = event.run_id
        handler = getattr(self, f"_handle_{event.type}", None)
        if handler is not None:
            handler(event)

    def _skip_line(self, line: str, reason: str) -> None:
        """A malformed or unknown event: note it where a person can see it, and read on."""
        self.skipped_lines.append(line)
        logger.warning("skipped an engine event line: %s: %s", reason, line[:200])
        self.log.emit(Log(run_id=self.run_id, level="warning", message=f"skipped an engine event line: {reason}"))

    def _report_newer_protocol(self, exc: NewerProtocolError) -> None:
        """Said once per job: every later line of that version is just as unreadable."""
        if self._newer_protocol is not None:
            return
        self._newer_protocol = exc
        event = Error(run_id=self.run_id, message=str(exc), hint=exc.hint)
        self._errors.append(event)
        self.error.emit(event)

    def _handle_progress(self, event: Progress) -> None:
        self.progress.emit(event)

    def _handle_metric(self, event: Metric) -> None:
        self.metric.emit(event)

    def _handle_log(self, event: Log) -> None:
        self.log.emit(event)

    def _handle_result(self, event: Result) -> None:
        self.result.emit(event)

    def _handle_error(self, event: Error) -> None:
        self._errors.append(event)
        self.error.emit(event)

    def _handle_done(self, event: Done) -> None:
        self._done = event
        self.done.emit(event)

    def _read_stderr(self) -> None:
        if self._process is None:
            return
        text = self._stderr_partial + bytes(self._process.readAllStandardError().data()).decode("utf-8", "replace")
        *lines, self._stderr_partial = text.replace("\r", "\n").split("\n")
        for line in lines:
            if line.strip():
                self._stderr_tail.append(line)
        if lines:
            self.stderr_text.emit("\n".join(lines))

    def _on_finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        # Drain what is left: the last event may arrive together with the exit.
        self._read_stdout()
        self._read_stderr()
        if self._stdout_buffer.strip():
            self._handle_line(self._stdout_buffer.decode("utf-8", errors="replace").strip())
            self._stdout_buffer = b""
        if self._done is not None:
            self.finished.emit(self._done.status)
            return
        if self._newer_protocol is not None:
            # Its done event was unreadable too; the error already says why.
            self.finished.emit("error")
            return
        if exit_status == QProcess.ExitStatus.NormalExit and self._finish_answer(int(exit_code)):
            return
        if exit_status == QProcess.ExitStatus.CrashExit:
            message = "the engine process was killed" if not self._cancel_requested else "the engine stopped"
        else:
            message = f"the engine process exited with code {exit_code} before it finished its job"
        self.died.emit(int(exit_code), message)
        self.finished.emit("died")

    def _finish_answer(self, exit_code: int) -> bool:
        """End a command that answers with one JSON document (no event stream); False if it died."""
        if exit_code == 0:
            text = "\n".join(self._other_stdout)
            try:
                document = json.loads(text) if text.strip() else {}
            except json.JSONDecodeError:
                document = {"output": text}
            self.answer.emit(document)
            self.finished.emit("ok")
            return True
        if exit_code == EXIT_CANCELLED:
            self.finished.emit("cancelled")
            return True
        # The CLI reports a UserError as "error: <message>" and "  fix: <hint>" on stderr.
        lines = list(self._stderr_tail)
        messages = [line[len("error: "):] for line in lines if line.startswith("error: ")]
        if not messages:
            return False
        hints = [line.strip()[len("fix: "):] for line in lines if line.strip().startswith("fix: ")]
        event = Error(message=messages[-1], hint=hints[-1] if hints else "", detail="")
        self._errors.append(event)
        self.error.emit(event)
        self.finished.emit("error")
        return True

    def _on_error_occurred(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and self._process is not None:
            message = f"could not start the engine: {self._process.errorString()}"
            self._stderr_tail.append(message)
            self.died.emit(-1, message)
            self.finished.emit("died")
