"""Part E, bring your own predictions (group ``import-bad-inputs``): ``import-predictions`` fed bad files.

Every case runs the real CLI (``python -m engine import-predictions PROJECT ...``; imported embeddings
are given there too, as ``--embeddings FILE``: ``embed`` only computes them) on a copy of the campaign's
``tiny`` project, and records one row: the exit status (a refusal is 2; a bad input that exits 0 is a
silent acceptance), whether a traceback appeared, whether the message names the file and, where it
applies, the row (or line) and a fix, whether anything was half-imported (a new run, a changed
``embeddings/`` folder, the project no longer opening) and whether a temporary file was left in the
project folder. The bad inputs: a CSV without ``path``, with an extra or a missing class column, an
unknown path, training samples without a row, NaN, +inf, a negative value, a row not summing to 1
(and that very file accepted with ``--logits``), a ``.npy`` of the wrong width, without ``--paths``, or
with a paths file of another length, a repeated path, a pickled object array (refused unread: its
unpickling would make a marker folder), a truncated ``.npy``, an empty CSV, a CSV that is not UTF-8, a
folder or a missing file given as the file, and embeddings with NaN, the wrong number of rows or of a
complex or object dtype. Valid files (a CSV; a ``.npy`` + ``--paths`` with embeddings) must be accepted.

Then SIGKILLs during a large import (a generated project of 20,000 samples: a predictions CSV and a
``.npy`` of embeddings with ``--paths``), half at moments spread over the whole command, half after its
run's first event: the project must open and hold no half-imported run (none that did not finish, no
finished one without its embeddings: they are moved into place at the end of the run; embeddings
moved in whose run the kill stopped are a whole embeddings import, noted as ``embeddings_without_run``),
and the same import run again must succeed, leave no temporary file, and record what an uninterrupted
import records (the same ``cl`` scores, the same stored embeddings).

``QUICK=1`` runs every kind of bad input once; the full run adds the ``.npy`` and embeddings-CSV
variants of the row checks and more kills.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lib  # the shared campaign's plumbing (e_commands puts it on sys.path)
import numpy as np

ROOT = lib.WORK / "e" / "import"
GROUP = "import-bad-inputs"
BIG_SAMPLES = 20_000
BIG_DIMS = 128


@dataclass
class Samples:
    """What the files are written for: the project's samples (sample-id order) and classes."""

    paths: list[str]
    split: list[str]
    label: np.ndarray
    classes: list[str]

    @classmethod
    def of(cls, project: Path) -> Samples:
        rows = lib.db_rows(project, "SELECT path, split, label FROM samples ORDER BY id")
        classes = [str(row[0]) for row in lib.db_rows(project, "SELECT name FROM classes ORDER BY id")]
        return cls([str(r[0]) for r in rows], [str(r[1]) for r in rows], np.array([int(r[2]) for r in rows]),
                   classes)

    @property
    def train(self) -> list[int]:
        return [index for index, split in enumerate(self.split) if split == "train"]

    def probs(self, seed: int = 0) -> np.ndarray:
        """(N, K) probabilities that mostly favour each sample's label (rows sum to 1)."""
        rng = np.random.default_rng(seed)
        logits = rng.normal(size=(len(self.paths), len(self.classes)))
        logits[np.arange(len(self.paths)), self.label] += 2.5
        probs = np.exp(logits)
        return probs / probs.sum(axis=1, keepdims=True)

    def vectors(self, dims: int = 8, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).normal(size=(len(self.paths), dims)).astype(np.float32)


def write_csv(path: Path, paths: list[str], values: np.ndarray, columns: list[str]) -> Path:
    """A CSV with ``path`` first; NaN and infinities written as ``nan``/``inf`` (as numpy and pandas spell them)."""
    import pandas as pd

    frame = pd.DataFrame(values, columns=columns)
    frame.insert(0, "path", paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, na_rep="nan")
    return path


def write_paths(path: Path, paths: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in paths), encoding="utf-8")
    return path


class Unpickled:
    """An object whose unpickling makes a folder: a file holding it must be refused without being unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.mkdir, (self.marker,)


@dataclass
class Case:
    """One import: the arguments after the project, the words its message must hold (the file, the row, the
    problem), and whether it is a valid input that must be accepted."""

    kind: str
    argv: list[str]
    words: list[str]
    accept: bool = False
    marker: Path | None = None  # made only if the file was unpickled
    full_only: bool = False
    expect_embeddings: bool = False  # accepted: embeddings/<name>.npy must be stored


def cases(samples: Samples, folder: Path) -> list[Case]:
    """Every case, its files written afresh under ``folder``."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    paths, classes, train = samples.paths, samples.classes, samples.train
    probs = samples.probs()
    vectors = samples.vectors()
    dims = [f"d{i}" for i in range(vectors.shape[1])]
    row_of = {sample: sample + 1 for sample in range(len(paths))}  # CSV data row / .npy row of each sample
    t1, t2 = train[1], train[2]  # training samples whose rows are spoilt
    out: list[Case] = []

    def csv(name: str, values: np.ndarray = probs, names: list[str] = classes, rows: list[str] = paths) -> str:
        return str(write_csv(folder / name, rows, values, names))

    def npy(name: str, array: np.ndarray, **save: Any) -> str:
        np.save(folder / name, array, **save)
        return str(folder / name)

    paths_txt = str(write_paths(folder / "paths.txt", paths))
    # Controls: the files every bad one below differs from in one thing are accepted.
    out.append(Case("valid csv", ["--pred-probs", csv("good.csv")], [], accept=True))
    out.append(Case("valid npy + paths + embeddings",
                    ["--pred-probs", npy("good.npy", probs), "--paths", paths_txt, "--embeddings",
                     npy("good_emb.npy", vectors), "--name", "byom"], [], accept=True, expect_embeddings=True))
    # -- the columns of a CSV
    (folder / "nopath.csv").write_text((folder / "good.csv").read_text().replace("path,", "file,", 1))
    out.append(Case("csv without a path column", ["--pred-probs", str(folder / "nopath.csv")],
                    ["nopath.csv", "no 'path' column", "fix:", "add a column named path"]))
    out.append(Case("csv with an extra class column",
                    ["--pred-probs", csv("extra.csv", np.c_[probs, np.zeros(len(paths))], [*classes, "wolf"])],
                    ["extra.csv", "'wolf'", "not classes of this project", "fix:"]))
    out.append(Case("csv with a class column missing",
                    ["--pred-probs", csv("missing_class.csv", probs[:, :-1], classes[:-1])],
                    ["missing_class.csv", f"no column for the classes '{classes[-1]}'", "fix:"]))
    # -- the rows' paths
    unknown = list(paths)
    unknown[t1] = "elsewhere/ghost.png"
    out.append(Case("unknown path", ["--pred-probs", csv("unknown.csv", rows=unknown)],
                    ["unknown.csv", "not samples of this project", f"data row {row_of[t1]}", "'elsewhere/ghost.png'",
                     "fix:"]))
    dropped = train[-4:]
    keep = [index for index in range(len(paths)) if index not in dropped]
    out.append(Case("training samples without a row",
                    ["--pred-probs", csv("short.csv", probs[keep], rows=[paths[i] for i in keep])],
                    ["short.csv", f"has no row for {len(dropped)} of the {len(train)} training samples",
                     *[f"'{paths[i]}'" for i in dropped], "fix:"]))
    repeated = [*paths, paths[t1]]
    out.append(Case("repeated path (csv)", ["--pred-probs", csv("repeat.csv", np.r_[probs, probs[[t1]]],
                                                                rows=repeated)],
                    ["repeat.csv", "repeats paths", f"data row {len(repeated)}", f"'{paths[t1]}'", "fix:"]))
    out.append(Case("repeated path (paths file)",
                    ["--pred-probs", npy("repeat.npy", np.r_[probs, probs[[t1]]]), "--paths",
                     str(write_paths(folder / "repeat_paths.txt", repeated))],
                    ["repeat_paths.txt", "repeats paths", f"line {len(repeated)}", "fix:"], full_only=True))
    # -- the values of a row
    for kind, value, name, words in (("NaN", np.nan, "nan", ["NaN or infinite"]),
                                     ("+inf", np.inf, "inf", ["NaN or infinite"]),
                                     ("negative value", -0.25, "negative", ["negative probabilities", "--logits"])):
        bad = probs.copy()
        bad[t1, 0] = value
        if kind == "negative value":
            bad[t1, 1] += 0.25
        out.append(Case(f"{kind} (csv)", ["--pred-probs", csv(f"{name}.csv", bad)],
                        [f"{name}.csv", *words, f"data row {row_of[t1]}", "fix:"]))
        out.append(Case(f"{kind} (npy)", ["--pred-probs", npy(f"{name}.npy", bad), "--paths", paths_txt],
                        [f"{name}.npy", *words, f"row {row_of[t1]}", "fix:"], full_only=True))
    unsummed = probs.copy()
    unsummed[t2] *= 1.1
    unsummed[t1] = np.linspace(2.0, 0.5, len(classes))  # logits (all positive here), not probabilities
    out.append(Case("row not summing to 1", ["--pred-probs", csv("logits.csv", unsummed)],
                    ["logits.csv", "do not sum to 1", f"data rows {row_of[t1]}, {row_of[t2]}", "--logits", "fix:"]))
    out.append(Case("the same file with --logits", ["--pred-probs", csv("logits.csv", unsummed), "--logits"], [],
                    accept=True))
    # -- .npy files
    out.append(Case("npy of the wrong width", ["--pred-probs", npy("narrow.npy", probs[:, :-1]), "--paths", paths_txt],
                    ["narrow.npy", f"has {len(classes) - 1} columns", f"{len(classes)} classes", "fix:"]))
    out.append(Case("npy without --paths", ["--pred-probs", npy("nopaths.npy", probs)],
                    ["nopaths.npy", "does not say which sample", "--paths", "fix:"]))
    out.append(Case("paths file of another length",
                    ["--pred-probs", npy("probs.npy", probs), "--paths",
                     str(write_paths(folder / "fewer_paths.txt", paths[:-1]))],
                    ["probs.npy", "fewer_paths.txt", f"has {len(paths)} rows", f"{len(paths) - 1} lines", "fix:"]))
    marker = folder / "UNPICKLED"
    objects = np.empty((len(paths), len(classes)), dtype=object)
    objects[:] = 0.0
    objects[0, 0] = Unpickled(marker)
    out.append(Case("pickled object npy", ["--pred-probs", npy("objects.npy", objects, allow_pickle=True), "--paths",
                                           paths_txt],
                    ["objects.npy", "without pickle", "fix:"], marker=marker))
    npy("truncated.npy", probs)
    data = (folder / "truncated.npy").read_bytes()
    (folder / "truncated.npy").write_bytes(data[:len(data) // 2])
    out.append(Case("truncated npy", ["--pred-probs", str(folder / "truncated.npy"), "--paths", paths_txt],
                    ["truncated.npy", "fix:"]))
    # -- files that are not files of rows
    (folder / "empty.csv").write_bytes(b"")
    out.append(Case("empty csv", ["--pred-probs", str(folder / "empty.csv")], ["empty.csv", "is empty", "fix:"]))
    (folder / "header_only.csv").write_text("path," + ",".join(classes) + "\n")
    out.append(Case("csv with a header and no rows", ["--pred-probs", str(folder / "header_only.csv")],
                    ["header_only.csv", "no rows", "fix:"], full_only=True))
    latin = (folder / "good.csv").read_text(encoding="utf-8").replace(paths[t1], paths[t1][:-4] + "\u00e9.png")
    (folder / "latin1.csv").write_bytes(latin.encode("latin-1"))
    out.append(Case("csv not UTF-8", ["--pred-probs", str(folder / "latin1.csv")],
                    ["latin1.csv", "not UTF-8", f"on line {row_of[t1] + 1}", "fix:"]))  # the header: line 1
    # The same byte past the first 8 KiB (the header reads as UTF-8; the rows' reader meets it): long numbers.
    padded = "path," + ",".join(classes) + "\n" + "".join(
        f"{path},{','.join(f'{value:.300f}' for value in row)}\n" for path, row in zip(paths, probs, strict=True))
    padded = padded.replace(paths[-1] + ",", paths[-1][:-4] + "\u00e9.png,")  # the last row: byte 50,000 or so
    (folder / "latin1_deep.csv").write_bytes(padded.encode("latin-1"))
    out.append(Case("csv not UTF-8 past 8 KiB", ["--pred-probs", str(folder / "latin1_deep.csv")],
                    ["latin1_deep.csv", "not UTF-8", f"on line {len(paths) + 1}", "fix:"], full_only=True))
    (folder / "a_folder.csv").mkdir(exist_ok=True)
    out.append(Case("a folder given as the file", ["--pred-probs", str(folder / "a_folder.csv")],
                    ["a_folder.csv", "is not a file", "fix:"]))
    out.append(Case("a file that does not exist", ["--pred-probs", str(folder / "no_such.csv")],
                    ["no_such.csv", "does not exist", "fix:"]))
    out.append(Case("paths file that does not exist",
                    ["--pred-probs", npy("probs.npy", probs), "--paths", str(folder / "no_such_paths.txt")],
                    ["no_such_paths.txt", "does not exist", "fix:"], full_only=True))
    # -- embeddings
    nan_vectors = vectors.copy()
    nan_vectors[t1, 3] = np.nan
    out.append(Case("embeddings with NaN (npy)", ["--embeddings", npy("emb_nan.npy", nan_vectors), "--paths",
                                                  paths_txt],
                    ["emb_nan.npy", "NaN or infinite", f"row {row_of[t1]}", "fix:"]))
    out.append(Case("embeddings with NaN (csv)", ["--embeddings", csv("emb_nan.csv", nan_vectors, dims)],
                    ["emb_nan.csv", "NaN or infinite", f"data row {row_of[t1]}", "fix:"], full_only=True))
    out.append(Case("embeddings of the wrong row count",
                    ["--embeddings", npy("emb_short.npy", vectors[:-1]), "--paths", paths_txt],
                    ["emb_short.npy", f"has {len(paths) - 1} rows", f"{len(paths)} lines", "fix:"]))
    held_out = [index for index in range(len(paths)) if index not in train][0]
    rest = [index for index in range(len(paths)) if index != held_out]
    out.append(Case("embeddings without a held-out sample's row (csv)",
                    ["--embeddings", csv("emb_missing.csv", vectors[rest], dims, [paths[i] for i in rest])],
                    ["emb_missing.csv", f"no row for 1 of the {len(paths)} samples", f"'{paths[held_out]}'", "fix:"],
                    full_only=True))
    out.append(Case("embeddings of complex dtype",
                    ["--embeddings", npy("emb_complex.npy", vectors.astype(np.complex64)), "--paths", paths_txt],
                    ["emb_complex.npy", "complex64", "fix:"]))
    emb_marker = folder / "UNPICKLED_EMB"
    emb_objects = np.empty(vectors.shape, dtype=object)
    emb_objects[:] = 0.0
    emb_objects[0, 0] = Unpickled(emb_marker)
    out.append(Case("embeddings of object dtype",
                    ["--embeddings", npy("emb_objects.npy", emb_objects, allow_pickle=True), "--paths", paths_txt],
                    ["emb_objects.npy", "without pickle", "fix:"], marker=emb_marker))
    out.append(Case("embeddings of a text dtype",
                    ["--embeddings", npy("emb_text.npy", vectors.astype("U8")), "--paths", paths_txt],
                    ["emb_text.npy", "not (rows, columns) of numbers", "fix:"], full_only=True))
    out.append(Case("good predictions with bad embeddings",
                    ["--pred-probs", csv("good.csv"), "--embeddings", npy("emb_nan.npy", nan_vectors), "--paths",
                     paths_txt],
                    ["emb_nan.npy", "NaN or infinite", "fix:"], full_only=True))
    return [case for case in out if not (lib.QUICK and case.full_only)]


# ------------------------------------------------------------------ one case
def _e() -> Any:
    """e_commands' helpers (new_runs, leftovers, open_check, start): imported when first used, as it imports us."""
    import e_commands

    return e_commands


def embeddings_state(project: Path) -> dict[str, tuple[int, int]]:
    """The stored embeddings (name: size, mtime): what a refused import must leave as it was."""
    folder = project / "embeddings"
    if not folder.is_dir():
        return {}
    return {entry.name: (entry.stat().st_size, entry.stat().st_mtime_ns) for entry in folder.iterdir()}


def run_case(project: Path, case: Case, index: int) -> dict[str, Any]:
    before = {run[0] for run in lib.runs_in_db(project)}
    stored = embeddings_state(project)
    argv = ["import-predictions", str(project), *case.argv]
    res = lib.engine(*argv, timeout=120)
    said = res["stderr"] + res["stdout"]
    made = _e().new_runs(project, before)
    check = _e().open_check(project)
    left = _e().leftovers(project)
    emb_changed = embeddings_state(project) != stored
    unpickled = case.marker is not None and case.marker.exists()
    row: dict[str, Any] = {"part": "E", "group": GROUP, "kind": case.kind, "case": index, "argv": argv,
                           "rc": res["rc"], "hung": res["hung"], "seconds": res["seconds"],
                           "traceback": res["traceback"] or check["traceback"], "opens": check["opens"],
                           "integrity": check["integrity"], "runs_made": made, "embeddings_changed": emb_changed,
                           "leftovers": left, "message": lib.error_excerpt(res)}
    if case.accept:
        stored_now = embeddings_state(project)
        ok = res["rc"] == 0 and [state for _, _, state in made] == ["ok"]  # every valid control has predictions
        if case.expect_embeddings:
            ok = ok and any(name.endswith(".npy") for name in stored_now)
        row.update(outcome="accepted" if res["rc"] == 0 else "rejected", false_rejection=not ok,
                   half_made=not check["opens"] or check["integrity"] != "ok")
    else:
        refused = res["rc"] == 2 and not res["hung"]
        missing = [word for word in case.words if word not in said]
        row.update(outcome="rejected" if refused else "accepted", silent_acceptance=not refused or unpickled,
                   unpickled=unpickled, names_item=not missing, words_missing=missing,
                   half_made=bool(made) or emb_changed or not check["opens"] or check["integrity"] != "ok")
    lib.log(f"[E] import {case.kind}: rc {res['rc']}{' TRACEBACK' if row['traceback'] else ''}"
            f"{' runs ' + str(made) if made and not case.accept else ''}{' leftovers ' + str(left) if left else ''}"
            f"{' lacks ' + str(row.get('words_missing')) if row.get('words_missing') else ''}: "
            f"{row['message'][:150]!r}")
    return row


# ------------------------------------------------------------------ kills during a large import
def big_project(count: int) -> Path:
    """A generated project of ``count`` tiny images in 4 classes (made once per campaign)."""
    base = ROOT / f"big{count}"
    project = base / "project"
    if not (project / "project.db").is_file():
        images = base / "images"
        if not images.is_dir():
            from PIL import Image

            # One image per class, hard-linked (copied where links fail): init reads each header only.
            for index, name in enumerate(("ant", "bee", "cat", "dog")):
                (images / name).mkdir(parents=True, exist_ok=True)
                first = images / name / "00000.png"
                Image.new("RGB", (8, 8), (60 * index, 40, 200 - 40 * index)).save(first)
                for number in range(1, count // 4):
                    target = images / name / f"{number:05d}.png"
                    try:
                        os.link(first, target)
                    except OSError:
                        target.write_bytes(first.read_bytes())
        made = lib.engine("init", str(project), "--images", str(images), "--test-fraction", "0.2", "--folds", "2",
                          timeout=900)
        assert made["rc"] == 0, made["stderr"][-2000:]
    return project


def import_files(project: Path) -> list[str]:
    samples = Samples.of(project)
    folder = project.parent / "files"
    if not (folder / "emb.npy").is_file():
        probs = samples.probs(seed=1)
        write_csv(folder / "preds.csv", samples.paths, probs, samples.classes)
        write_paths(folder / "paths.txt", samples.paths)
        np.save(folder / "emb.npy", samples.vectors(BIG_DIMS, seed=1))
    return ["--pred-probs", str(folder / "preds.csv"), "--embeddings", str(folder / "emb.npy"), "--paths",
            str(folder / "paths.txt"), "--name", "byom"]


def imported_state(project: Path, before: set[str]) -> dict[str, Any]:
    """The new runs, their cl scores, and the stored embeddings' digests: what an import leaves."""
    runs = [run for run in lib.runs_in_db(project) if run[0] not in before]
    folder = project / "embeddings"
    digests = {entry.name: hashlib.sha256(entry.read_bytes()).hexdigest()
               for entry in sorted(folder.iterdir())} if folder.is_dir() else {}
    return {"runs": runs, "scores": [_e().scores_of(project, run[0]) for run in runs if run[2] == "ok"],
            "array": digests.get("byom.npy"), "record": "byom.json" in digests}


def kill_cases(rec: lib.Recorder) -> None:
    project = big_project(BIG_SAMPLES)
    argv = import_files(project)
    reference = lib.copy_project(project, ROOT / "kills" / "reference")
    started = time.monotonic()
    res = lib.engine("import-predictions", str(reference), *argv, timeout=900)
    took = time.monotonic() - started
    assert res["rc"] == 0, res["stderr"][-2000:]
    expected = imported_state(reference, set())
    in_run = float(_e().summary_of(reference, expected["runs"][0][0])["timings_s"]["record_and_detect"])
    lib.log(f"[E] import {BIG_SAMPLES:,} rows uninterrupted in {took:.1f}s ({in_run:.1f}s of it in its run)")
    count = 4 if lib.QUICK else 12
    for case in range(count):
        # Even cases: at a moment spread over the whole command, jittered (reading, checking, staging, the run).
        # Odd cases: once the run exists (its first event), at a moment spread over its recording and cl.
        if case % 2 == 0:
            trigger, delay = "start", took * (0.2 + 0.8 * (case + _e().R.random()) / count)
        else:
            trigger, delay = "run", in_run * 1.2 * (case - 1 + 2 * _e().R.random()) / count
        rec.add(kill_case(project, argv, case, trigger, delay, expected))


def kill_case(base: Path, argv: list[str], case: int, trigger: str, delay: float,
              expected: dict[str, Any]) -> dict[str, Any]:
    leftovers, open_check = _e().leftovers, _e().open_check
    project = lib.copy_project(base, ROOT / "kills" / f"k{case:02d}")
    proc = subprocess.Popen(lib.engine_argv("import-predictions", str(project), *argv, "--json"),
                            cwd=str(lib.CHECKOUT), env=lib.env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    assert proc.stdout is not None
    if trigger == "run":  # the run's first event names it
        for line in proc.stdout:
            if '"run_id": "2' in line:
                break
    time.sleep(delay)
    finished_first = proc.poll() is not None
    with contextlib.suppress(ProcessLookupError):  # gone already: it finished first
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    at_kill = lib.runs_in_db(project)  # read directly: what the kill left, before anything opens the project
    check = open_check(project)  # status: how the project reads to the next person
    after_kill = imported_state(project, set())
    runs = after_kill["runs"]
    stored = after_kill["array"] is not None and after_kill["record"]
    # A half-imported run: one that did not finish, or a finished one without its embeddings (they are moved into
    # place at the end of the run). Without a run, embeddings already moved in are a whole embeddings import, and an
    # array whose record was not yet written is no source to any reader: both are noted, not counted.
    half_run = any(state != "ok" for _, _, state in runs) or (bool(runs) and not stored) or len(runs) > 1
    row: dict[str, Any] = {"part": "E", "group": GROUP, "kind": "kill during a large import", "case": case,
                           "trigger": trigger, "killed_after_s": round(delay, 2), "finished_before_kill": finished_first,
                           "runs_at_kill": at_kill, "opens": check["opens"], "integrity": check["integrity"],
                           "traceback": check["traceback"], "runs_after_kill": runs,
                           "embeddings_after_kill": after_kill["array"] is not None,
                           "leftovers_after_kill": leftovers(project),
                           "embeddings_without_run": not runs and after_kill["array"] is not None,
                           "half_made": half_run or not check["opens"] or check["integrity"] != "ok",
                           "wrong_state": any(state != "ok" for _, _, state in runs)}
    before = {run[0] for run in lib.runs_in_db(project)}
    again = lib.engine("import-predictions", str(project), *argv, timeout=900)
    second = imported_state(project, before)
    row.update(resume_rc=again["rc"] if not again["hung"] else "hung", resume_traceback=again["traceback"],
               resume_error=lib.error_excerpt(again) if again["rc"] else "",
               runs_after_resume=lib.runs_in_db(project), leftovers_after_resume=leftovers(project),
               resume_differs=again["rc"] != 0 or second["scores"] != expected["scores"]
               or second["array"] != expected["array"] or len(second["runs"]) != 1)
    lib.log(f"[E] import kill {case} {delay:.2f}s after its {trigger} (finished first: {finished_first}): "
            f"runs at the kill {at_kill}, then {runs}; embeddings {row['embeddings_after_kill']}, leftovers "
            f"{row['leftovers_after_kill']}; again rc {row['resume_rc']}, same {not row['resume_differs']}")
    return row


# ------------------------------------------------------------------ the group
def import_bad_inputs(rec: lib.Recorder, bases: Any) -> None:
    project = lib.copy_project(bases.tiny, ROOT / "project")
    samples = Samples.of(project)
    for index, case in enumerate(cases(samples, ROOT / "files")):
        # A valid input changes the project: it gets its own copy, so that every bad one meets the same project.
        target = lib.copy_project(bases.tiny, ROOT / f"accepted-{index:02d}") if case.accept else project
        rec.add(run_case(target, case, index))
    kill_cases(rec)
