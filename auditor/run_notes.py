"""What the app says about runs: which one was interrupted, why, and the command that resumes it.

Worded as the CLI's ``status`` words it, so the app and the terminal give the same advice.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.errors import UserError
from engine.store import Project, RunInfo

RESUMABLE_KINDS = ("audit", "crossval", "retrain")


def run_note(project: Project, run: RunInfo) -> str:
    """A line about a run for people: why it was interrupted and the command that resumes it."""
    from engine.commands.status import run_status  # the CLI's own wording of the resume command

    status = run_status(project, run)
    resume = status["resume"]
    reason = str(run.summary.get("reason") or run.summary.get("error") or "")
    reason = reason[:1].upper() + reason[1:]
    if resume:
        return f"{reason + ' — ' if reason else ''}resume it with: {resume}"
    if status.get("resume_refused"):  # as the CLI would answer a --resume
        return f"{reason + ' — ' if reason else ''}it cannot be resumed: {status['resume_refused']}"
    return reason


def interrupted_run(runs: Iterable[RunInfo]) -> RunInfo | None:
    """The latest interrupted audit/crossval/retrain run of ``runs`` (oldest first), unless a run of its kind
    finished after it."""
    latest: dict[str, RunInfo] = {}
    for run in runs:
        if run.kind in RESUMABLE_KINDS and run.status != "running":
            latest[run.kind] = run
    interrupted = [run for run in latest.values() if run.status == "interrupted"]
    return max(interrupted, key=lambda run: run.created) if interrupted else None


def mark_dead_run(project: Project, run_id: str) -> RunInfo | None:
    """A killed engine never finishes its run row: the store reads it as interrupted (its process is gone);
    record that now, with the reason. The run as it is after; None when it cannot be read or written."""
    try:
        run = project.run(run_id)
        if run.status == "running":
            project.finish_run(run_id, "interrupted", {"reason": "the engine process died before it finished"})
            run = project.run(run_id)
    except UserError:
        return None
    return run
