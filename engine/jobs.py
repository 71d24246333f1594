"""Running a long job: its run folder, its events, cancellation and failure.

A job is a plain function ``body(ctx) -> summary`` (Orange's pattern): it reports
through ``ctx.events`` and checks ``ctx.cancel`` now and then. :func:`run_job`
gives it a run folder, turns SIGINT/SIGTERM into a cooperative cancel, and makes
sure the stream always ends with exactly one ``done`` event.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from engine.cancel import CancelToken
from engine.errors import Cancelled, UserError, user_error_from_exception
from engine.events import EventSink
from engine.store import DECISION_DEPENDENT_KINDS, Project, RunInfo, atomic_write_bytes


@dataclass
class JobContext:
    project: Project
    run: RunInfo
    events: EventSink
    cancel: CancelToken = field(default_factory=CancelToken)


class install_cancel_signals:
    """Context manager: SIGINT and SIGTERM request a cancel instead of killing the process.

    A second signal while cancelling falls back to the default (immediate) behaviour.
    """

    def __init__(self, token: CancelToken) -> None:
        self.token = token
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.token.requested:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        self.token.request(f"stopped by {signal.Signals(signum).name}")

    def __enter__(self) -> CancelToken:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handler)
        return self.token

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


def refuse_resume_if_label_state_changed(project: Project, run: RunInfo) -> None:
    """Refuse to resume ``run`` when what it trains on changed since it started.

    Its checkpoints and fold files were computed from the labels it recorded at its start
    and, for every kind that trains on the decisions (an audit, a retrain, a compare, a tune:
    ``DECISION_DEPENDENT_KINDS``), from the decisions too: an audit's folds are drawn on the
    relabeled labels without the removed samples, so after a decision a finished fold's
    file would land on other samples. Continuing on other labels would mix both. A run
    without a recorded fingerprint (an older version) is let through: the trainer's own
    checkpoint check still guards it (and an audit's fold files name their samples).
    """
    refusal = resume_refusal(project, run)
    if refusal is not None:
        raise refusal


def _decisions_matter(project: Project, run: RunInfo) -> bool:
    """Do the decisions made since ``run`` started change what it trains on? For an audit that recorded
    its labels, only when they relabel or remove a sample differently (a keep changes nothing it
    trains on); for every other run, any change."""
    return run.kind != "audit" or project.decisions_stale_reason(run) is not None


def resume_refusal(project: Project, run: RunInfo) -> UserError | None:
    """Why ``run`` may not be resumed because what it trains on changed (see
    :func:`refuse_resume_if_label_state_changed`), or None; ``status`` says it before anyone tries."""
    changed = [part for part in project.label_state_changes(run)
               if part == "labels" or (run.kind in DECISION_DEPENDENT_KINDS and _decisions_matter(project, run))]
    if not changed:
        return None
    what = " and ".join(changed)
    return UserError(
        f"the {what} changed since run {run.id} was stopped: resuming it would continue training "
        f"on the {what} of that time, so its result would describe neither",
        f"start a new run instead of --resume: python -m engine {run.kind} {project.root}",
    )


def record_resolved_precision(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec``, for a run that trains, with ``resolved_precision``: what its ``--precision`` (``auto``
    resolves by the hardware) trains in here, fp32, bf16 or fp16, so that a resume can keep to it."""
    train = spec.get("train")
    if isinstance(train, dict) and "resolved_precision" not in spec:
        from engine.training.device import resolved_precision

        spec["resolved_precision"] = resolved_precision(str(train.get("device", "auto")),
                                                        str(train.get("precision", "auto")))
    return spec


def run_job(
    project: Project,
    kind: str,
    spec: dict[str, Any],
    body: Callable[[JobContext], dict[str, Any]],
    events: EventSink,
    cancel: CancelToken | None = None,
    run: RunInfo | None = None,
) -> tuple[RunInfo, str]:
    """Run ``body`` as a recorded run of ``project``; returns the run and its final status.

    Pass ``run`` to continue an existing run (resume); otherwise a new one is made. A resume
    is refused (UserError, before anything runs) when the run finished, still runs in
    another process, or its labels/decisions changed since it started.
    Errors do not escape: they become an ``error`` event and status ``error``.

    Under torchrun (see engine.training.distributed) rank 0 makes or claims the run and the other
    ranks run ``body`` in it too, writing nothing: their project is read-only, their events silent.
    """
    from engine.training import distributed

    def make_run() -> RunInfo:
        return _new_or_resumed_run(project, kind, spec, run)

    if distributed.active():
        return _run_job_distributed(project, make_run, kind, body, events, cancel)
    return _run_body(project, make_run(), kind, body, events, cancel)


def _new_or_resumed_run(project: Project, kind: str, spec: dict[str, Any], run: RunInfo | None) -> RunInfo:
    """A new run of ``kind``, or ``run`` claimed for a resume (refused when what it trains on changed)."""
    if run is None:
        return project.new_run(kind, record_resolved_precision(spec))
    refuse_resume_if_label_state_changed(project, run)
    return project.claim_run_for_resume(run.id)  # refuses a finished run, or one still running elsewhere


def _run_body(
    project: Project,
    run: RunInfo,
    kind: str,
    body: Callable[[JobContext], dict[str, Any]],
    events: EventSink,
    cancel: CancelToken | None,
) -> tuple[RunInfo, str]:
    events.set_log_path(run.id, run.folder / "events.jsonl")
    token = cancel or CancelToken()
    ctx = JobContext(project, run, events, token)
    events.log(f"{kind} run {run.id} started")
    summary: dict[str, Any] = {}
    with install_cancel_signals(token):
        try:
            summary = body(ctx)
            status = "ok"
        except Cancelled as exc:
            status = "cancelled"
            summary = {"reason": str(exc)}
            from engine.training import distributed

            # Under torchrun, the launcher stops every rank (SIGTERM) when one dies: say which one died.
            stopped = distributed.stopped_peers()
            if stopped:
                stop = distributed.PeerStopped("; ".join(stopped) + f"; run {run.id} is interrupted",
                                               f"resume it with: {distributed.resume_command(run.id)}", killed=True)
                status, summary = "interrupted", {"reason": stop.message}
                events.error(stop.message, stop.hint)
        except UserError as exc:
            status = "error"
            events.error(exc.message, exc.hint)
            summary = {"error": exc.message}
        except KeyboardInterrupt:
            status = "cancelled"
            summary = {"reason": "interrupted"}
        except Exception as exc:  # noqa: BLE001 - anything else is a bug; report it, keep the project intact
            status = "error"
            from engine.training import distributed

            # Under torchrun: another rank stopped; else a full or read-only disk, a damaged store.
            stopped_peer = distributed.peer_failure(exc)
            known = stopped_peer or user_error_from_exception(exc, project.root)
            if stopped_peer is not None and stopped_peer.killed:  # resumable, as a killed single process
                status, summary = "interrupted", {"reason": stopped_peer.message}
                events.error(stopped_peer.message, stopped_peer.hint)
            elif known is not None:
                events.error(known.message, known.hint)
                summary = {"error": known.message}
            else:
                events.error(f"{type(exc).__name__}: {exc}", "this is a bug in Label Auditor; the log has the details",
                             traceback.format_exc())
                summary = {"error": f"{type(exc).__name__}: {exc}"}
    if status == "ok":
        summary = _with_training_rate(run, summary)
    try:
        project.finish_run(run.id, status, summary)
        if status == "ok":
            atomic_write_bytes(run.folder / "summary.json", json.dumps(summary, indent=2, default=str).encode())
    except (UserError, OSError, sqlite3.Error) as exc:
        # Recording the end failed too (the disk is still full): say so; the run's row names this
        # process, so it reads as interrupted, never as running, once the process is gone.
        known = user_error_from_exception(exc, project.root)
        if known is None:
            raise
        events.error(known.message, known.hint)
        status, summary = "error", {"error": known.message}
    message = {"ok": "finished", "cancelled": summary.get("reason", ""), "error": summary.get("error", ""),
               "interrupted": summary.get("reason", "")}[status]
    events.done("error" if status == "interrupted" else status, message)  # type: ignore[arg-type]
    events.close()  # the run's events.jsonl is complete
    return run, status


def _with_training_rate(run: RunInfo, summary: dict[str, Any]) -> dict[str, Any]:
    """``summary`` with the run's median training rate (engine.training.speed), for the next estimate of an audit.

    Bookkeeping only: a run whose events cannot be read keeps its summary as it was.
    """
    try:
        from engine.training.speed import record_training_rate

        return record_training_rate(run, summary)
    except (OSError, ValueError, UserError):
        return summary


def _run_job_distributed(project: Project, make_run: Callable[[], RunInfo], kind: str,
                         body: Callable[[JobContext], dict[str, Any]], events: EventSink,
                         cancel: CancelToken | None) -> tuple[RunInfo, str]:
    """:func:`run_job` on one of several torchrun ranks: rank 0 makes the run (``make_run``) and records it; the
    others only compute."""
    from engine.training import distributed

    if distributed.is_main():
        made: RunInfo | None = None
        try:
            made = make_run()
        finally:  # the other ranks wait for the run; None tells them it was refused (rank 0 says why)
            distributed.broadcast_object(None if made is None else
                                         (made.id, made.kind, made.created, made.spec, project.fingerprint()))
        distributed.set_job(made.id, events)
        return _run_body(project, made, kind, body, events, cancel)
    shared = distributed.broadcast_object(None)
    if shared is None:
        raise UserError("rank 0 could not start the run", "see rank 0's error")
    run_id, run_kind, created, run_spec, main_fingerprint = shared
    distributed.set_job(run_id, None)
    if main_fingerprint != project.fingerprint():
        message = (f"rank {distributed.rank()} reads other labels or decisions in {project.root} than rank 0")
        distributed.record_failure(message)
        raise UserError(message, "every rank must read the same project: put it on storage all nodes share, "
                        "at the same path, and change nothing while the job runs")
    info = RunInfo(run_id, run_kind, "running", created, None, run_spec, {}, project.runs_dir / run_id)
    token = cancel or CancelToken()
    ctx = JobContext(project, info, events, token)
    status = "ok"
    with install_cancel_signals(token):
        try:
            body(ctx)
        except Cancelled:
            status = "cancelled"
        except KeyboardInterrupt:
            status = "cancelled"
        except UserError as exc:
            status = "error"
            distributed.record_failure(exc.message)
        except Exception as exc:
            if distributed.is_collective_failure(exc):
                status = "error"  # another rank stopped: rank 0 (or the launcher) says which; this one stops quietly
            else:
                distributed.record_failure(f"{type(exc).__name__}: {exc}")
                raise  # its traceback on this rank's stderr; torchrun ends the group
    return info, status
