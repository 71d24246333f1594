"""Part E: the newer commands and options held to the campaign's standard (issue 23).

Case groups (one function each, registered in ``GROUPS``; ``E_ONLY=bad-values,kills`` runs some):

- ``bad-values``: every numeric option of every command, just outside each end of its range
  and not a number, and every choice option with a value it does not offer, generated from
  the engine's own option table (engine/options.py), so a new option is covered without an
  edit here; then the values only the data can refuse (``--trusted-per-class`` above the
  smallest class, a detector or method named twice, an epochs list naming one twice).
  Each must be refused with exit status 2, no traceback, no run made, and a message naming
  the option, the value and (for a range) the range. The ends themselves are tried on the
  commands that answer at once (``init``, ``inject-noise``) and must be accepted.
- ``kills``: SIGKILL at a random moment of ``compare``, ``tune``, ``train-detector``,
  ``finetune-detector`` and ``audit --detectors all``; then the project must open, no run may
  read as running, and the job continued (``--resume RUN``, or run again where the command
  has no resume: train-detector reuses its recorded dynamics, finetune-detector makes a new
  run) must end as an uninterrupted one did.
- ``torchrun``: ``python -m engine.torchrun --nproc-per-node 2`` (gloo, CPU) ``audit`` and
  ``retrain``, with rank 0, rank 1 or the launcher killed during training: exactly one
  message naming what stopped and the resume command, no traceback, the run interrupted;
  then that very command is run and must finish.

To add a group (``decide --all-flagged``, resume after decisions, ...): write
``def my_group(rec: lib.Recorder, bases: Bases) -> None`` adding one row per case with the
keys ``summarise`` counts (see ``COLUMN_KEYS``), and add it to ``GROUPS``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKOUT = Path(__file__).resolve().parents[1]
os.environ.setdefault("CHECKOUT", str(CHECKOUT))
SHARED = Path(os.environ.get("RELIABILITY_DIR", CHECKOUT.parent / "shared" / "reliability")).resolve()
sys.path.insert(0, str(SHARED))
sys.path.insert(0, str(Path(os.environ["CHECKOUT"]).resolve()))  # the engine's option table, its store

import lib  # noqa: E402  (the shared campaign's plumbing: paths, environment, running the engine)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import e_import  # noqa: E402  (import-predictions fed bad files, and killed mid-import)
import e_trust  # noqa: E402  (issue 19's groups: the CLI bulk action, resume after decisions)

ROOT = lib.WORK / "e"
SEED = int(os.environ.get("E_SEED", "20261207"))
R = random.Random(SEED)
PART = "e_commands"
TINY_TRAIN = ["--image-size", "16", "--batch-size", "16", "--device", "cpu", "--precision", "fp32"]
# What each command needs besides the option tried, so that only that option can be wrong.
REQUIRED: dict[str, list[str]] = {
    "inject-noise": ["--mode", "symmetric", "--rate", "0.1"],
    "decide": ["--sample", "0", "--keep"],
}


@dataclass
class Bases:
    """The projects the groups copy: ``tiny`` (3 classes with truth), made once per campaign."""

    tiny: Path
    images: Path


def counts() -> dict[str, int]:
    if lib.QUICK:
        return {"kills_each": 1, "torchrun": 3}
    return {"kills_each": 3, "torchrun": 6}


# ------------------------------------------------------------------ helpers
def engine_json(project: Path, *args: str, timeout: float = 600) -> dict[str, Any]:
    return lib.engine(*args, timeout=timeout)


def new_runs(project: Path, before: set[str]) -> list[tuple[str, str, str]]:
    return [run for run in lib.runs_in_db(project) if run[0] not in before]


def open_check(project: Path) -> dict[str, Any]:
    """Does ``status`` open the project (no traceback), and in what state does it leave its runs?"""
    res = lib.engine("status", str(project), "--json")
    out: dict[str, Any] = {"opens": res["rc"] == 0, "traceback": res["traceback"], "integrity": lib.integrity(project)}
    if res["rc"] != 0:
        out["error"] = lib.error_excerpt(res)
    out["runs"] = lib.runs_in_db(project)
    return out


def leftovers(folder: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames + dirnames:
            if name.endswith((".tmp", ".partial")) or ".tmp-" in name or ".importing-" in name:
                found.append(os.path.relpath(os.path.join(dirpath, name), folder))
    return sorted(found)


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    handle = open(log, "wb")  # noqa: SIM115 - the child owns it until it ends
    return subprocess.Popen(argv, cwd=str(lib.CHECKOUT), env=lib.env(), stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)


def summary_of(project: Path, run_id: str) -> dict[str, Any]:
    rows = lib.db_rows(project, "SELECT summary FROM runs WHERE id = ?", (run_id,))
    return json.loads(rows[0][0]) if rows and rows[0][0] else {}


_VOLATILE = re.compile(r"second|time|duration|elapsed|per_s|started|finished|path|folder|run_id|^id$|created|"
                       r"storage|study")


def stable(value: Any) -> Any:
    """A result without its timings and paths: what an uninterrupted and a resumed job must share."""
    if isinstance(value, dict):
        return {key: stable(item) for key, item in value.items() if not _VOLATILE.search(str(key))}
    if isinstance(value, list):
        return [stable(item) for item in value]
    return value


def scores_of(project: Path, run_id: str) -> dict[str, list[tuple[int, float, int, Any]]]:
    rows = lib.db_rows(project, "SELECT detector, sample_id, score, flagged, suggested_label FROM scores "
                                "WHERE run_id = ? ORDER BY detector, sample_id", (run_id,))
    out: dict[str, list[tuple[int, float, int, Any]]] = {}
    for detector, sample, score, flagged, suggested in rows:
        out.setdefault(detector, []).append((sample, score, flagged, suggested))
    return out


def file_digest(path: Path) -> str | None:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


# ------------------------------------------------------------------ bases
def make_bases() -> Bases:
    base = ROOT / "bases"
    images = base / "images"
    tiny = base / "tiny"
    if not (tiny / "project.db").is_file():
        lib.make_png_dataset(images, {"ant": 24, "bee": 20, "cat": 16}, size=16, seed=SEED)
        made = lib.engine("init", str(tiny), "--images", str(images), "--test-fraction", "0.25", "--folds", "2")
        assert made["rc"] == 0, made["stderr"][-2000:]
        noised = lib.engine("inject-noise", str(tiny), "--mode", "symmetric", "--rate", "0.2", "--seed", "1")
        assert noised["rc"] == 0, noised["stderr"][-2000:]
    return Bases(tiny=tiny, images=images)


def smallest_known_class(project: Path) -> tuple[str, int]:
    rows = lib.db_rows(project, "SELECT c.name, COUNT(*) FROM samples s JOIN classes c ON c.id = s.true_label "
                                "WHERE s.split = 'train' GROUP BY s.true_label ORDER BY COUNT(*), c.name")
    return str(rows[0][0]), int(rows[0][1])


# ------------------------------------------------------------------ group: bad values
def option_table() -> list[tuple[str, str, Any]]:
    """(command, flag, range or choices) for every numeric or choice option of every command, from the engine."""
    from engine.cli import build_parser
    from engine.options import OPTION_RANGES, subcommand_parsers

    table = []
    for command, parser in subcommand_parsers(build_parser()).items():
        for action in parser._actions:
            if not action.option_strings:
                continue
            flag = action.option_strings[0]
            if flag in OPTION_RANGES:
                table.append((command, flag, OPTION_RANGES[flag]))
            elif action.choices is not None:
                table.append((command, flag, tuple(action.choices)))
    return table


def bad_values_for(allowed: Any) -> list[str]:
    if isinstance(allowed, tuple):
        return ["no-such-choice"]
    step = 1 if allowed.integer else 0.01

    def text(value: float) -> str:
        return str(int(value)) if allowed.integer else f"{value:g}"

    values = [text(allowed.low if allowed.low_open else allowed.low - step),
              text(allowed.high if allowed.high_open else allowed.high + step), "x"]
    if not lib.QUICK:
        values += [text(allowed.high * 1000 + 1e9), "-1", "nan" if not allowed.integer else "1.5", ""]
    return values


def good_ends(allowed: Any) -> list[str]:
    step = 1 if allowed.integer else 0.001
    ends = [allowed.low + step if allowed.low_open else allowed.low, allowed.high - step if allowed.high_open else
            allowed.high]
    return [str(int(end)) if allowed.integer else f"{end:g}" for end in ends]


def argv_for(command: str, project: Path, flag: str, value: str, images: Path, out: Path) -> list[str]:
    if command == "init":
        return ["init", str(project), "--images", str(images), f"{flag}={value}"]
    if command == "train-detector":
        return ["train-detector", str(out / "w.pt"), "--project", str(project), f"{flag}={value}"]
    if command == "demo":
        return ["demo", str(project), f"{flag}={value}"]
    if command == "export":
        return ["export", str(project), "--out", str(out / "x.csv"), f"{flag}={value}"]
    extra = TINY_TRAIN + ["--epochs", "1"] if command in ("crossval", "audit", "retrain", "compare", "tune") and \
        flag not in TINY_TRAIN + ["--epochs"] else []
    return [command, str(project), *REQUIRED.get(command, []), *extra, f"{flag}={value}"]


def refusal_row(case: str, argv: list[str], project: Path, expect_words: list[str], before: set[str],
                kind: str = "bad value") -> dict[str, Any]:
    res = lib.engine(*argv, timeout=60)
    said = res["stderr"] + res["stdout"]
    made = new_runs(project, before) if (project / "project.db").is_file() else []
    refused = res["rc"] == 2 and not res["hung"]
    return {"part": "E", "group": "bad-values", "kind": kind, "case": case, "argv": argv, "rc": res["rc"],
            "hung": res["hung"], "traceback": res["traceback"], "silent_acceptance": not refused,
            "runs_made": made, "names_item": all(word in said for word in expect_words),
            "outcome": "rejected" if refused else "accepted", "message": lib.error_excerpt(res)}


def bad_values(rec: lib.Recorder, bases: Bases) -> None:
    from engine.options import OPTION_RANGES

    work = ROOT / "bad"
    project = lib.copy_project(bases.tiny, work / "project")
    before = {run[0] for run in lib.runs_in_db(project)}
    cases = 0
    for command, flag, allowed in option_table():
        for value in bad_values_for(allowed):
            target = work / f"new-{command}" if command in ("init", "demo") else project
            row = refusal_row(f"{command} {flag}={value}", argv_for(command, target, flag, value, bases.images, work),
                              project, [flag, repr(value) if value in ("x", "") else value] +
                              ([allowed.describe()] if not isinstance(allowed, tuple) else ["invalid choice"]), before)
            row["half_made"] = command in ("init", "demo") and target.exists()
            rec.add(row)
            cases += 1
    smallest_name, smallest = smallest_known_class(project)
    data_cases = [
        *[(f"{command} --trusted-per-class above the smallest class",
           [command, str(project), *TINY_TRAIN, "--epochs", "1", "--seeds", "1", "--trusted-per-class",
            str(smallest + 1)], ["--trusted-per-class", str(smallest + 1), repr(smallest_name), str(smallest)])
          for command in ("compare", "retrain")],
        *[(f"audit --detectors {names}", ["audit", str(project), *TINY_TRAIN, "--epochs", "1", "--detectors", names],
           ["--detectors", names]) for names in ("cl,cl", "all,all", "all,cl", "aum,cartography,aum")],
        ("compare --methods ce,ce", ["compare", str(project), *TINY_TRAIN, "--epochs", "1", "--methods", "ce,ce"],
         ["--methods", "ce"]),
        ("train-detector --epochs 2,2", ["train-detector", str(work / "w.pt"), "--project", str(project),
                                         "--epochs", "2,2"], ["--epochs", "2,2"]),
    ]
    for case, argv, words in data_cases:
        rec.add(refusal_row(case, argv, project, words, before, kind="refused by the data"))
        cases += 1
    # The ends of each range are accepted (on the commands that answer at once).
    for command, flag, allowed in option_table():
        if command not in ("init", "inject-noise") or isinstance(allowed, tuple) or flag not in OPTION_RANGES:
            continue
        for value in good_ends(allowed):
            target = work / f"edge-{command}-{flag}-{value}"
            if command == "inject-noise":
                target = lib.copy_project(bases.tiny, target)
            argv = argv_for(command, target, flag, value, bases.images, work)
            res = lib.engine(*argv, timeout=120)
            said = res["stderr"] + res["stdout"]
            # The range must hold its own ends; the data may still refuse a value (100 folds of 16 images).
            by_the_range = res["rc"] != 0 and ("out of range" in said or "usage:" in said or res["rc"] not in (0, 2))
            rec.add({"part": "E", "group": "bad-values", "kind": "valid end", "case": f"{command} {flag}={value}",
                     "argv": argv, "rc": res["rc"], "traceback": res["traceback"], "hung": res["hung"],
                     "false_rejection": by_the_range, "refused_by_the_data": res["rc"] == 2 and not by_the_range,
                     "message": lib.error_excerpt(res)})
            cases += 1
    lib.log(f"[E] bad values: {cases} cases")


# ------------------------------------------------------------------ group: kills
@dataclass
class KillJob:
    """A job to kill: its command line (a function of the project folder), how to continue it, what must match."""

    name: str
    argv: Callable[[Path], list[str]]
    resumable: bool  # --resume RUN; else the same command is run again
    result: Callable[[Path, str | None], Any]  # (project, run id) -> what must equal the uninterrupted job's
    prepare: Callable[[Path], None] | None = None


def kill_jobs(bases: Bases) -> list[KillJob]:
    train = [*TINY_TRAIN, "--seed", "0"]

    def run_summary(project: Path, run_id: str | None) -> Any:
        return stable(summary_of(project, run_id)) if run_id else None

    def search_outcome(project: Path, run_id: str | None) -> Any:
        """A study's outcome: the best, and each grid point's result. A trial the kill cut short stays in the
        study's history as failed and is tried again, so the trial numbers and order may differ."""
        if not run_id:
            return None
        made = summary_of(project, run_id)
        points = sorted((json.dumps(trial["params"], sort_keys=True), trial["state"], trial["value"])
                        for trial in made.get("trials", []) if trial["state"] != "fail")
        return made.get("best_value"), made.get("best_params"), points

    def audit_scores(project: Path, run_id: str | None) -> Any:
        return scores_of(project, run_id) if run_id else None

    def detector_card(project: Path, run_id: str | None) -> Any:
        card = project.parent / f"{project.name}-td.json"
        if not card.is_file():
            return None
        made = json.loads(card.read_text())
        return made["n_trained_on"], [(row["mode"], row["rate"], row["epochs"], row["td_lstm"], row["aum"])
                                      for row in made["figures"]]

    def finetuned_weights(project: Path, run_id: str | None) -> Any:
        return file_digest(project / "detectors" / "td_lstm.pt"), (audit_scores(project, run_id) if run_id else None)

    def reviewed(project: Path) -> None:
        """An audit with dynamics and a dozen reviews: what finetune-detector learns from."""
        res = lib.engine("audit", str(project), *train, "--epochs", "3", "--detectors", "aum,td_lstm", timeout=600)
        assert res["rc"] == 0, res["stderr"][-2000:]
        sys.path.insert(0, str(lib.CHECKOUT))
        from engine.store import Project

        with Project.open(project) as opened:
            table = opened.sample_table()
            for index, sample in enumerate(table.train_ids[:14]):
                opened.decide(int(sample), "remove" if index % 2 else "keep")

    return [
        KillJob("compare", lambda p: ["compare", str(p), *train, "--epochs", "6", "--methods", "ce,sln", "--seeds",
                                      "2"], True, run_summary),
        KillJob("tune", lambda p: ["tune", str(p), *train, "--epochs", "4", "--method", "sln", "--param",
                                   "sigma=0.1,0.5,1.0"], True, search_outcome),
        KillJob("audit-all", lambda p: ["audit", str(p), *train, "--epochs", "4", "--folds", "2", "--detectors",
                                        "all"], True, audit_scores),
        KillJob("train-detector", lambda p: ["train-detector", str(p.parent / f"{p.name}-td.pt"), "--project", str(p),
                                             "--noise", "symmetric:0.2,instance:0.3", "--epochs", "3",
                                             "--image-size", "16", "--batch-size", "16", "--lstm-epochs", "5"],
                False, detector_card),
        KillJob("finetune-detector", lambda p: ["finetune-detector", str(p)], False, finetuned_weights,
                prepare=reviewed),
    ]


def json_option(job: KillJob) -> list[str]:
    return [] if job.name == "train-detector" else ["--json"]  # train-detector prints lines, no event stream


def latest_run(project: Path, before: set[str]) -> str | None:
    made = new_runs(project, before)
    return made[-1][0] if made else None


def kills(rec: lib.Recorder, bases: Bases) -> None:
    for job in kill_jobs(bases):
        base = ROOT / "kills" / job.name / "base"
        lib.copy_project(bases.tiny, base)
        if job.prepare is not None:
            job.prepare(base)
        reference = lib.copy_project(base, ROOT / "kills" / job.name / "reference")
        before = {run[0] for run in lib.runs_in_db(reference)}
        started = time.monotonic()
        res = lib.engine(*job.argv(reference), *json_option(job), timeout=900)
        took = time.monotonic() - started
        assert res["rc"] == 0, f"{job.name}: {res['stderr'][-2000:]}"
        expected = job.result(reference, latest_run(reference, before))
        lib.log(f"[E] {job.name}: uninterrupted in {took:.1f}s")
        for case in range(counts()["kills_each"]):
            rec.add(kill_case(job, base, case, took, expected))


def kill_case(job: KillJob, base: Path, case: int, took: float, expected: Any) -> dict[str, Any]:
    project = lib.copy_project(base, ROOT / "kills" / job.name / f"k{case:02d}")
    for stale in project.parent.glob(f"{project.name}-td*"):
        subprocess.run(["rm", "-rf", str(stale)], check=False)
    before = {run[0] for run in lib.runs_in_db(project)}
    extra = json_option(job)
    log = project.parent / f"k{case:02d}.log"
    proc = start(lib.engine_argv(*job.argv(project), *extra), log)
    delay = R.uniform(min(1.5, took * 0.3), took * 0.9)
    time.sleep(delay)
    finished_first = proc.poll() is not None
    with contextlib.suppress(ProcessLookupError):  # gone already: it finished first
        os.killpg(proc.pid, signal.SIGKILL)  # the job's own process group (start_new_session)
    proc.wait()
    check = open_check(project)
    runs = new_runs(project, before)
    row: dict[str, Any] = {"part": "E", "group": "kills", "kind": job.name, "case": case,
                           "killed_after_s": round(delay, 2), "finished_before_kill": finished_first,
                           "opens": check["opens"], "traceback": check["traceback"], "integrity": check["integrity"],
                           "runs_after_kill": runs, "wrong_state": any(state == "running" for _, _, state in runs)}
    run_id = runs[-1][0] if runs else None
    if job.resumable and run_id is not None and runs[-1][2] != "ok":
        again = lib.engine(*job.argv(project)[:2], "--resume", run_id, "--json", timeout=900)
        continued = run_id
    else:  # no --resume (or nothing recorded yet): the same command again
        again = lib.engine(*job.argv(project), *extra, timeout=900)
        continued = latest_run(project, before)
    row.update(resume_rc=again["rc"] if not again["hung"] else "hung", resume_traceback=again["traceback"],
               resume_error=lib.error_excerpt(again) if again["rc"] else "",
               runs_after_resume=lib.runs_in_db(project)[-3:], leftovers_after_resume=leftovers(project))
    got = job.result(project, continued)
    row["resume_differs"] = again["rc"] != 0 or got != expected
    if row["resume_differs"] and again["rc"] == 0:
        row["difference"] = str([got, expected])[:600]
    lib.log(f"[E] kill {job.name} {case} at {delay:.1f}s (finished first: {finished_first}): runs {runs}, "
            f"continued rc {row['resume_rc']}, same {not row['resume_differs']}")
    return row


# ------------------------------------------------------------------ group: torchrun
def rank_pid(parent: int, rank: int, deadline: float) -> int | None:
    while time.monotonic() < deadline:
        for task in Path(f"/proc/{parent}/task").iterdir():
            for child in (task / "children").read_text().split():
                try:
                    environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
                except OSError:
                    continue
                if f"RANK={rank}".encode() in environ:
                    return int(child)
        time.sleep(0.2)
    return None


def torchrun_kills(rec: lib.Recorder, bases: Bases) -> None:
    combos = [("rank0", "audit"), ("rank1", "retrain"), ("launcher", "audit"), ("rank1", "audit"),
              ("rank0", "retrain"), ("launcher", "retrain")][:counts()["torchrun"]]
    for case, (victim, command) in enumerate(combos):
        rec.add(torchrun_case(bases, case, victim, command))


def torchrun_case(bases: Bases, case: int, victim: str, command: str) -> dict[str, Any]:
    project = lib.copy_project(bases.tiny, ROOT / "torchrun" / f"{victim}-{command}-{case:02d}")
    extra = ["--folds", "2"] if command == "audit" else ["--seeds", "1", "--no-baseline"]
    argv = [lib.PY, "-m", "engine.torchrun", "--standalone", "--nproc-per-node", "2", command, str(project), *extra,
            *TINY_TRAIN, "--batch-size", "8", "--epochs", "60", "--json"]
    environment = lib.env({"LABEL_AUDITOR_DIST_TIMEOUT": "30", "OMP_NUM_THREADS": "1"})
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        environment.pop(name, None)
    proc = subprocess.Popen(argv, cwd=str(lib.CHECKOUT), env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 180
    for line in proc.stdout:
        lines.append(line)
        if '"type": "metric"' in line or time.monotonic() > deadline:
            break
    time.sleep(R.uniform(0.0, 2.0))
    target = proc.pid if victim == "launcher" else rank_pid(proc.pid, int(victim[-1]), time.monotonic() + 30)
    if target is not None:
        lib.kill_pid(target)
    try:
        rest, stderr = proc.communicate(timeout=120)
        hung = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        rest, stderr = proc.communicate()
        hung = True
    stdout = [line for line in lines + rest.splitlines() if line.strip()]
    errors = [json.loads(line) for line in stdout if '"type": "error"' in line]
    messages = [f"{event['message']}\n  fix: {event.get('hint', '')}" for event in errors]
    lines_err = stderr.splitlines()
    messages += [line + "\n" + (lines_err[index + 1] if index + 1 < len(lines_err) else "")
                 for index, line in enumerate(lines_err) if line.startswith("error: ")]
    check = open_check(project)
    runs = lib.runs_in_db(project)
    named = {"rank0": "rank 0 stopped", "rank1": "rank 1 stopped", "launcher": "torchrun launcher"}[victim]
    row: dict[str, Any] = {"part": "E", "group": "torchrun", "kind": f"torchrun-{victim}-{command}", "case": case,
                           "killed": target is not None, "rc": proc.returncode, "hung": hung,
                           "traceback": lib.TRACEBACK in stderr or check["traceback"], "messages": messages,
                           "one_message": len(messages) == 1, "names_item": bool(messages) and named in messages[0],
                           "runs_after_kill": runs, "opens": check["opens"],
                           "wrong_state": any(state != "interrupted" for _, _, state in runs) or not runs,
                           "stderr_tail": lib.last_lines(stderr, 4)}
    found = re.search(r"resume (?:it|the run) with: ([^;\n]+)", messages[0]) if messages else None
    if found is None:
        row["resume_rc"] = "no resume command"
        row["resume_differs"] = True
        return row
    again = lib.run(shlex.split(found.group(1)), timeout=900, extra_env={"LABEL_AUDITOR_DIST_TIMEOUT": "30",
                                                                          "OMP_NUM_THREADS": "1"})
    final = lib.runs_in_db(project)
    row.update(resume_command=found.group(1), resume_rc=again["rc"] if not again["hung"] else "hung",
               resume_traceback=again["traceback"], runs_after_resume=final,
               resume_differs=again["rc"] != 0 or not final or final[-1][2] != "ok",
               leftovers_after_resume=leftovers(project))
    lib.log(f"[E] torchrun {victim} {command}: {len(messages)} message(s) {messages[:1]!r:.160}; "
            f"runs {runs}; resumed rc {row['resume_rc']}")
    return row


# ------------------------------------------------------------------ summary
GROUPS: dict[str, Callable[[lib.Recorder, Bases], None]] = {
    "bad-values": bad_values,
    "kills": kills,
    "torchrun": torchrun_kills,
    "bulk": e_trust.bulk,
    "resume-after-decisions": e_trust.resume_after_decisions,
    "import-bad-inputs": e_import.import_bad_inputs,
}
COLUMNS = ["cases", "traceback", "hang", "silent accept", "half-made proj", "decisions lost", "run wrong state",
           "resume differs", "half-written export", "temp leftovers", "valid input refused", "msg lacks file/row"]
HEADS = ["cases", "tb", "hang", "silent", "half-proj", "dec-lost", "run-state", "resume≠", "half-exp", "leftover",
         "refused", "no-name"]
COLUMN_KEYS = {  # the row keys each column counts (as the shared summary.py counts parts A and B)
    "traceback": ("traceback", "resume_traceback"), "hang": ("hung",), "silent accept": ("silent_acceptance",),
    "half-made proj": ("half_made",), "decisions lost": ("lost_or_wrong",), "run wrong state": ("wrong_state",),
    "resume differs": ("resume_differs",), "half-written export": ("half_written_export",),
    "temp leftovers": ("leftovers_after_resume", "leftovers"), "valid input refused": ("false_rejection",),
}


def summarise() -> None:
    path = lib.RESULTS / f"{PART}.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    table: dict[str, dict[str, int]] = {}
    for row in rows:
        group = {"bad-values": "E bad values", "torchrun": "E torchrun kills", "bulk": f"E bulk: {row['kind']}",
                 "resume-after-decisions": "E resume after decisions", "import-bad-inputs": f"E import: {row['kind']}"
                 }.get(row["group"], f"E kill: {row['kind']}")
        counts_ = table.setdefault(group, dict.fromkeys(COLUMNS, 0))
        counts_["cases"] += 1
        for column, keys in COLUMN_KEYS.items():
            counts_[column] += int(any(bool(row.get(key)) for key in keys))
        counts_["hang"] += row.get("resume_rc") == "hung"
        lacks = (row.get("outcome") == "rejected" and row.get("names_item") is False) or \
            (row["group"] == "torchrun" and not (row.get("one_message") and row.get("names_item")))
        counts_["msg lacks file/row"] += int(lacks)
    total = {column: sum(values[column] for values in table.values()) for column in COLUMNS}
    width = max([len(group) for group in table] + [5])
    print("\n" + "=" * 110)
    print("Reliability campaign, part E: the newer commands (counts of cases; columns as in the shared README;")
    print("no-name here: a refusal not naming option, value and range, or a torchrun stop without one naming message)")
    print(f"{'':<{width}} " + " ".join(f"{head:>9}" for head in HEADS))
    for group, values in [*sorted(table.items()), ("TOTAL", total)]:
        print(f"{group:<{width}} " + " ".join(f"{values[column]:>9}" for column in COLUMNS))
    print("=" * 110)
    killed = [row for row in rows if row["group"] in ("kills", "torchrun") or
              (row["group"] == "import-bad-inputs" and "killed_after_s" in row)]
    landed = [row for row in killed if not row.get("finished_before_kill") and row.get("killed", True)]
    print(f"kills: {len(killed)} in all ({len(landed)} landed while the work was unfinished)")
    failing = [row for row in rows if any(row.get(key) for keys in COLUMN_KEYS.values() for key in keys)]
    for row in failing[:20]:
        print(f"  {row['group']} {row.get('kind')} {row.get('case')}: {row.get('message') or row.get('messages') or ''}"[:300])


def main() -> None:
    if "--summary" in sys.argv[1:]:
        summarise()
        return
    ROOT.mkdir(parents=True, exist_ok=True)
    only = [name.strip() for name in os.environ.get("E_ONLY", "").split(",") if name.strip()]
    unknown = [name for name in only if name not in GROUPS]
    if unknown:
        raise SystemExit(f"unknown E_ONLY group(s) {unknown}; known: {', '.join(GROUPS)}")
    rec = lib.Recorder(PART)
    bases = make_bases()
    for name, group in GROUPS.items():
        if not only or name in only:
            lib.log(f"[E] group {name}")
            group(rec, bases)
    lib.log(f"[E] done: {rec.path}")


if __name__ == "__main__":
    main()
