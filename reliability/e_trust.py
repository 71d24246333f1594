"""Part E, trust after a person acts (issue 19): the CLI bulk action and resuming an audit after decisions.

Groups (registered in e_commands.GROUPS):

- ``bulk``: ``decide --all-flagged`` with each action on an audited project: one undoable
  bulk step (``undo`` takes back exactly the step, ``redo`` restores it), every decision
  recorded as ``bulk`` and none in ``status --json``'s trusted set; its bad values refused
  with a message naming the option; and SIGKILLs at random moments of the bulk step, after
  which the decisions are all there or none (never a half step).
- ``resume-after-decisions``: an audit SIGKILLed mid-run, then a relabel, a keep or nothing, then
  ``audit --resume``. After a relabel it is refused (its folds were drawn on other labels) with
  one message naming what changed and the command that starts anew, no traceback, the run not
  left running, nothing of the old folds reused, ``status`` saying it cannot be resumed, and
  the new audit it names then finishes. After a keep (nothing it trains on changed) or nothing,
  the resume finishes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import lib  # the shared campaign's plumbing (e_commands puts it on sys.path)

ROOT = lib.WORK / "e" / "trust"
TRAIN = ["--image-size", "16", "--batch-size", "16", "--device", "cpu", "--precision", "fp32", "--seed", "0"]


def _decisions(project: Path) -> dict[int, tuple[str, Any, str]]:
    rows = lib.db_rows(project, "SELECT sample_id, action, new_label, provenance FROM decisions")
    return {int(sample): (action, label, provenance) for sample, action, label, provenance in rows}


def _audited(base: Path, tiny: Path) -> Path:
    """A copy of ``tiny`` with a finished 2-fold audit (cl and aum), made once."""
    if not (base / "project.db").is_file():
        lib.copy_project(tiny, base)
        made = lib.engine("audit", str(base), *TRAIN, "--epochs", "3", "--folds", "2", "--detectors", "cl,aum",
                          timeout=600)
        assert made["rc"] == 0, made["stderr"][-2000:]
    return base


def _refusal_row(case: str, res: dict[str, Any], project: Path, before: dict[int, Any], words: list[str]) -> dict:
    message = lib.error_excerpt(res)
    return {"part": "E", "group": "bulk", "kind": "bulk-bad-value", "case": case, "rc": res["rc"],
            "hung": res["hung"], "traceback": res["traceback"], "outcome": "rejected" if res["rc"] == 2 else "other",
            "silent_acceptance": res["rc"] == 0, "names_item": all(word in message for word in words),
            "lost_or_wrong": _decisions(project) != before, "message": message[:300]}


def bulk(rec: lib.Recorder, bases: Any) -> None:
    audited = _audited(ROOT / "audited", bases.tiny)
    for action in ("--accept", "--remove", "--keep"):
        rec.add(_bulk_step(audited, action))
    bad = [("unknown-detector", ["--accept", "--detector", "nope"], ["--detector", "nope"]),
           ("pair-without-colon", ["--remove", "--pair", "ant"], ["--pair", "ant"]),
           ("pair-unknown-class", ["--remove", "--pair", "ant:wolf"], ["--pair", "wolf"]),
           ("relabel-in-bulk", ["--relabel", "ant"], ["--relabel"]),
           ("no-run", ["--keep", "--run", "20990101-audit-none"], ["20990101-audit-none"])]
    for case, argv, words in bad:
        project = lib.copy_project(audited, ROOT / "bad" / case)
        before = _decisions(project)
        rec.add(_refusal_row(case, lib.engine("decide", str(project), "--all-flagged", *argv), project, before, words))
    cases = 3 if lib.QUICK else 8
    for case in range(cases):
        rec.add(_bulk_kill(audited, case, cases))


def _bulk_step(audited: Path, action: str) -> dict[str, Any]:
    project = lib.copy_project(audited, ROOT / "step" / action.strip("-"))
    first = lib.db_rows(project, "SELECT id FROM samples WHERE split = 'train' ORDER BY id LIMIT 1")[0][0]
    kept = lib.engine("decide", str(project), "--sample", str(first), "--keep")  # a person's: left as it is
    assert kept["rc"] == 0, kept["stderr"][-1000:]
    before = _decisions(project)
    res = lib.engine("decide", str(project), "--all-flagged", action, "--json")
    row: dict[str, Any] = {"part": "E", "group": "bulk", "kind": f"bulk{action}", "case": 0, "rc": res["rc"],
                           "hung": res["hung"], "traceback": res["traceback"]}
    if res["rc"] != 0:
        row.update(false_rejection=True, message=lib.error_excerpt(res))
        return row
    facts = json.loads(res["stdout"])
    after = _decisions(project)
    made = {sample: state for sample, state in after.items() if before.get(sample) != state}
    status = json.loads(lib.engine("status", str(project), "--json")["stdout"])
    undone = lib.engine("undo", str(project), "--json")
    after_undo = _decisions(project)
    redone = lib.engine("redo", str(project), "--json")
    row.update(count=facts["count"], made=len(made),
               lost_or_wrong=(len(made) != facts["count"] or any(state[2] != "bulk" for state in made.values())
                              or after_undo != before or _decisions(project) != after
                              or undone["rc"] != 0 or redone["rc"] != 0),
               trusted=status.get("trusted", {}).get("samples"),
               silent_acceptance=status.get("trusted", {}).get("samples") != 1)  # only the person's keep is trusted
    lib.log(f"[E] bulk {action}: {facts['count']} decided, trusted {row['trusted']}, undo/redo whole step: "
            f"{not row['lost_or_wrong']}")
    return row


def _bulk_kill(audited: Path, case: int, cases: int) -> dict[str, Any]:
    """SIGKILL during a bulk step: afterwards the step is whole or absent."""
    project = lib.copy_project(audited, ROOT / "kill" / f"k{case:02d}")
    before = _decisions(project)
    full = lib.copy_project(audited, ROOT / "kill" / f"full{case:02d}")
    started = time.monotonic()
    assert lib.engine("decide", str(full), "--all-flagged", "--remove")["rc"] == 0
    took = time.monotonic() - started
    complete = _decisions(full)
    log = open(project.parent / f"k{case:02d}.log", "wb")  # noqa: SIM115 - the child owns it until it ends
    import subprocess

    proc = subprocess.Popen(lib.engine_argv("decide", str(project), "--all-flagged", "--remove"),
                            cwd=str(lib.CHECKOUT), env=lib.env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    delay = took * (0.5 + 0.5 * case / max(1, cases - 1))  # from mid-run (imports done) to its very end
    time.sleep(delay)
    finished_first = proc.poll() is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    log.close()
    after = _decisions(project)
    whole = after in (before, complete)
    status = lib.engine("status", str(project), "--json")
    lib.log(f"[E] bulk kill {case} at {delay:.2f}s (finished first: {finished_first}): "
            f"{len(after)} decisions of {len(complete)}; whole or none: {whole}")
    return {"part": "E", "group": "bulk", "kind": "bulk-kill", "case": case, "killed_after_s": delay,
            "finished_before_kill": finished_first, "lost_or_wrong": not whole,
            "traceback": status["traceback"], "opens": status["rc"] == 0}


def resume_after_decisions(rec: lib.Recorder, bases: Any) -> None:
    for case, (decision, expect_refusal) in enumerate([(["--relabel", "bee"], True), (["--keep"], False),
                                                       (None, False)]):
        rec.add(_resume_case(bases.tiny, case, decision, expect_refusal))


def _stopped_audit(tiny: Path, folder: Path) -> tuple[Path, str | None]:
    """A copy of ``tiny`` whose 3-fold audit was SIGKILLed after its first fold."""
    project = lib.copy_project(tiny, folder)
    log = open(folder.parent / f"{folder.name}.log", "wb")  # noqa: SIM115
    import subprocess

    argv = lib.engine_argv("audit", str(project), *TRAIN, "--epochs", "4", "--folds", "3", "--detectors", "cl",
                           "--json")
    proc = subprocess.Popen(argv, cwd=str(lib.CHECKOUT), env=lib.env(), stdout=subprocess.PIPE,
                            stderr=log, text=True, start_new_session=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 300
    for line in proc.stdout:  # kill once the first fold's file is written: its progress says fold 2
        if ('"fold": 2' in line or "fold 2" in line) or time.monotonic() > deadline:
            break
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    log.close()
    runs = lib.runs_in_db(project)
    return project, (runs[-1][0] if runs else None)


def _resume_case(tiny: Path, case: int, decision: list[str] | None, expect_refusal: bool) -> dict[str, Any]:
    project, run_id = _stopped_audit(tiny, ROOT / "resume" / f"r{case:02d}")
    row: dict[str, Any] = {"part": "E", "group": "resume-after-decisions", "kind": "resume-after-decisions",
                           "case": case, "decision": decision, "run": run_id}
    if run_id is None:
        row.update(wrong_state=True, message="the audit recorded no run before the kill")
        return row
    if decision is not None:
        table = lib.db_rows(project, "SELECT id FROM samples WHERE split = 'train' ORDER BY id LIMIT 1")
        made = lib.engine("decide", str(project), "--sample", str(table[0][0]), *decision)
        assert made["rc"] == 0, made["stderr"][-1000:]
    status = lib.engine("status", str(project), "--json")
    runs = {run["id"]: run for run in json.loads(status["stdout"])["runs"]} if status["rc"] == 0 else {}
    said = runs.get(run_id, {})
    res = lib.engine("audit", str(project), "--resume", run_id, "--json", timeout=600)
    message = lib.error_excerpt(res)
    state = dict((run[0], run[2]) for run in lib.runs_in_db(project)).get(run_id)
    if expect_refusal:
        row.update(rc=res["rc"], traceback=res["traceback"] or status["traceback"], hung=res["hung"],
                   outcome="rejected" if res["rc"] == 2 else "other",
                   resume_differs=res["rc"] == 0,  # the old folds would have been reused on other labels
                   names_item=("changed since run" in message and "start a new run" in message),
                   status_says=bool(said.get("resume_refused")) and not said.get("resume"),
                   wrong_state=state == "running", message=message[:300])
        row["silent_acceptance"] = not row["status_says"]
        fresh = lib.engine("audit", str(project), *TRAIN, "--epochs", "4", "--folds", "3", "--detectors", "cl",
                           timeout=600)
        row["false_rejection"] = fresh["rc"] != 0  # the command the message names must work
    else:
        row.update(rc=res["rc"], traceback=res["traceback"], hung=res["hung"], false_rejection=res["rc"] != 0,
                   resume_differs=res["rc"] != 0, wrong_state=state != "ok", message=message[:300])
    lib.log(f"[E] resume after decisions {decision}: rc {res['rc']}: {message[:160]!r}")
    return row
