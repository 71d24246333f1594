"""Exports: the corrected-labels CSV, the cleaned ImageFolder, and arrays for cleanlab users.

The CSV has one row per sample, in sample-id order: the input's own columns
(a CSV source: its columns in their order, rebuilt from the project; a folder
or the demo: ``path`` relative to the image root and ``label``), then
``original_label`` (the project's observed label, before any decision), ``final_label``
(after the decisions; empty when removed), ``action`` (kept, relabeled, removed,
unreviewed), ``score``, ``suggested_label`` and ``detector`` (from the latest audit
run, or the one named, and by default the detector the review ranks by:
:func:`engine.detectors.review_detector`). Samples the audit never scored (the
held-out split) have those three cells empty. When the audit saw other labels than
the project's current ones (decisions made since, noise injected), the report says
so under ``stale``.

Every cell that a spreadsheet would run as a formula (starting with ``= + - @``,
a tab or a carriage return) is prefixed with ``'``, as OWASP recommends against
CSV injection, unless it is a plain number (``-1``, ``+.5``, ``1e-3``), which a
spreadsheet reads as that number and a training pipeline must get back unchanged.

An export writes its files as one set (:class:`ExportSet`): each is first
written to a staging area, and only when all are complete are they renamed into
place, one right after the other. The staging area is the project's own
``staging/export-<pid>-*`` folder when the target is on the project's file
system (a rename needs one), so a killed export leaves nothing in the user's
folders; otherwise it is a uniquely named ``.<name>.tmp-<pid>-*`` file (O_EXCL)
or folder beside the target. A failure, Ctrl-C or full disk leaves the previous
export as it was; the staging of an export that was killed is removed by the
next export. An export never writes into
the project's store, over the CSV the project was imported from, or over one
of its images.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from engine.detectors import review_detector
from engine.errors import UserError, ensure_free_space, user_error_from_oserror
from engine.evidence.run_labels import audited_mask, labels_for_grading
from engine.store import (
    DB_NAME,
    Project,
    RunInfo,
    default_mode,
    fsync_folder,
    temp_name_prefix,
    write_temp_beside,
)

ADDED_COLUMNS = ("original_label", "final_label", "action", "score", "suggested_label", "detector")
ACTION_WORDS = {"keep": "kept", "relabel": "relabeled", "remove": "removed"}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A plain decimal number: optional sign, digits with an optional point (or a point and digits), optional exponent.
# Spreadsheets read it as that number, never as a formula.
PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
CLEANLAB_FILES = ("pred_probs.npy", "noise_matrix.npy", "confident_joint.npy", "labels.npy", "final_labels.npy",
                  "classes.txt", "paths.txt")
# Folders the project writes itself (beside project.db): an export inside them could destroy the project.
PROJECT_STAGING = "staging"  # in a project: where exports are staged (see ExportSet)
STORE_FOLDERS = ("runs", "cache", "openset", PROJECT_STAGING)
MAX_NAME_BYTES = 255  # one file or folder name, on nearly every file system
CLASS_FOLDER_BYTES = 200  # a class folder name, leaving room for a "_N" suffix that keeps it unique
STALE_AFTER_S = 24 * 3600  # staging older than this is a leftover even if its pid was reused


def escape_cell(value: Any) -> Any:
    """A cell made safe for spreadsheets: text a spreadsheet would run as a formula gets a leading ``'``.

    Plain numbers (``-1``, ``+1``, ``-0.0``, ``+.5``, ``-1e-3``) are left as they are: a spreadsheet reads
    them as numbers, and a pipeline reading the CSV must get the same value back.
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


@dataclass(frozen=True)
class ExportRows:
    """The export as a header and rows of plain values (before escaping)."""

    columns: list[str]
    rows: list[list[Any]]
    run_id: str | None
    detector: str | None
    stale: str | None = None  # why the scores' audit no longer describes the labels (None: it does)


def audit_for_export(project: Project, run_id: str | None, detector: str | None) -> tuple[RunInfo | None, str | None]:
    """The audit run and detector whose scores the export carries: named ones, or the latest (None if no audit).

    The default detector is the one the review ranks by (:func:`engine.detectors.review_detector`).
    """
    if run_id is None:
        audits = [run for run in project.runs("audit") if run.status == "ok" and project.detectors(run.id)]
        if not audits:
            if detector is not None:
                raise UserError("this project has no finished audit to take scores from",
                                "run `python -m engine audit PROJECT` first, or export without --detector")
            return None, None
        run = audits[-1]
    else:
        run = project.run(run_id)
    detectors = project.detectors(run.id)
    if not detectors:
        raise UserError(f"run {run.id} ({run.kind}) has no detector scores", "name an audit run with --run")
    if detector is None:
        detector = review_detector(detectors)
    elif detector not in detectors:
        raise UserError(f"run {run.id} has no scores from detector {detector!r}",
                        f"detectors in that run: {', '.join(detectors)}")
    return run, detector


def input_columns(project: Project) -> tuple[list[str], list[list[Any]]]:
    """The input's columns and each sample's values in them, rebuilt from the project (sample-id order)."""
    source = project.source
    table = project.sample_table()
    names = project.class_names()
    given = [names[label] for label in table.given_label]
    if source.get("kind") != "csv":
        return ["path", "label"], [[path, label] for path, label in zip(table.paths, given)]
    columns = [str(column) for column in source.get("columns") or []]
    path_column, label_column = source.get("path_column", "path"), source.get("label_column", "label")
    truth_column = source.get("truth_column")
    for needed in (path_column, label_column):
        if needed not in columns:
            columns.append(needed)
    # The truth column is not kept per sample; its cells are the true class names (empty where unknown).
    truth = ["" if t < 0 else names[t] for t in table.true_label]
    extras = project.sample_extras()
    rows = []
    for index, extra in enumerate(extras):
        known = {path_column: table.paths[index], label_column: given[index]}
        if truth_column:
            known[truth_column] = truth[index]
        rows.append([known[c] if c in known else extra.get(c, "") for c in columns])
    return columns, rows


def scores_source(project: Project, run_id: str | None = None, detector: str | None = None) -> dict[str, Any]:
    """Where an export's scores come from: ``run_id`` and ``detector`` (None: no audit yet) and ``stale`` (None,
    or why that audit saw other labels than the project's current ones). The app says it before exporting."""
    run, detector = audit_for_export(project, run_id, detector)
    return {"run_id": None if run is None else run.id, "detector": detector,
            "stale": None if run is None else project.stale_reason(run)}


def export_rows(project: Project, *, run_id: str | None = None, detector: str | None = None) -> ExportRows:
    """The corrected-labels table: input columns plus :data:`ADDED_COLUMNS`, one row per sample."""
    run, detector = audit_for_export(project, run_id, detector)
    columns, rows = input_columns(project)
    names = project.class_names()
    table = project.sample_table()
    decisions = project.decisions()
    scores = project.scores(run.id, detector) if run is not None and detector is not None else None
    audited = audited_mask(project, run) if run is not None else None
    added = list(ADDED_COLUMNS)
    # An input column of the same name would be shadowed on reading back: ours get a prefix then.
    added = [f"auditor_{name}" if name in columns else name for name in added]
    for sample_id, row in enumerate(rows):
        original = names[table.label[sample_id]]
        decision = decisions.get(sample_id)
        if decision is None:
            action, final = "unreviewed", original
        elif decision.action == "remove":
            action, final = "removed", ""
        elif decision.action == "relabel" and decision.new_label is not None:
            action, final = "relabeled", names[decision.new_label]
        else:
            action, final = ACTION_WORDS[decision.action], original
        if scores is None or audited is None or not audited[sample_id]:  # no audit, or one that never scored it
            score, suggested, source = "", "", ""
        else:
            score = f"{scores['score'][sample_id]:.6f}"
            suggestion = int(scores["suggested"][sample_id])
            suggested, source = (names[suggestion] if suggestion >= 0 else ""), detector or ""
        row.extend([original, final, action, score, suggested, source])
    return ExportRows(columns + added, rows, None if run is None else run.id, detector,
                      None if run is None else project.stale_reason(run))


def csv_bytes(export: ExportRows) -> bytes:
    """The table as UTF-8 CSV bytes with every cell escaped (see :func:`escape_cell`)."""
    buffer = io.StringIO()
    # CRLF line ends (RFC 4180): the writer then quotes any cell holding a CR or LF of its own.
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([escape_cell(column) for column in export.columns])
    writer.writerows([[escape_cell(cell) for cell in row] for row in export.rows])
    return buffer.getvalue().encode("utf-8")


# ------------------------------------------------------------ targets
def _real(path: Path | str) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _same_file(a: Path, b: Path) -> bool:
    if _real(a) == _real(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links too
    except OSError:
        return False


def _project_image_at(project: Project, target: Path) -> str | None:
    """The sample (its path) whose image file ``target`` is, symlinks resolved or not; None when it is none."""
    candidates = {Path(os.path.abspath(target)), _real(target)}
    image_roots = {Path(os.path.abspath(project.image_root)), _real(project.image_root)}
    project_roots = {Path(os.path.abspath(project.root)), _real(project.root)}
    for path in candidates:
        for root in image_roots:
            if _inside(path, root) and path != root:
                relative = path.relative_to(root).as_posix()
                if project.execute("SELECT 1 FROM samples WHERE path = ? LIMIT 1", (relative,)):
                    return relative
        for root in project_roots:
            if _inside(path, root) and path != root:
                relative = path.relative_to(root).as_posix()
                rows = project.execute("SELECT path FROM samples WHERE image_override = ? LIMIT 1", (relative,))
                if rows:
                    return str(rows[0][0])
    return None


def check_target(project: Project, target: Path, option: str, files: tuple[str, ...] = ()) -> None:
    """Refuse an export target that would overwrite the project's store, its import source, or one of its images.

    ``target`` is the file (or, with ``files``, the folder receiving those files) that ``option`` names.
    Symlinks are resolved, so a link pointing into the project is refused too.
    """
    real, root = _real(target), _real(project.root)
    store_files = {root / name for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal")}
    if real in store_files or any(_inside(real, root / folder) for folder in STORE_FOLDERS):
        raise UserError(f"{option} {target} is inside the project's store ({root}): writing there would destroy "
                        "the project", f"choose a {option} outside {root}, e.g. next to the project folder")
    for path in [target, *(target / name for name in files)]:
        source_csv = project.source.get("csv")
        if source_csv and _same_file(path, Path(source_csv)):
            raise UserError(f"{option} {path} is the CSV this project was imported from: the export would overwrite it",
                            f"choose another {option}, e.g. {Path(source_csv).with_name('corrected.csv')}")
        image = _project_image_at(project, path)
        if image is not None:
            raise UserError(f"{option} {path} is the image of sample {image!r}: the export would overwrite it",
                            f"choose a {option} outside the image folder {project.image_root}")


# ------------------------------------------------------------ staging
def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass  # best effort: a leftover is removed by the next export


def _writer_alive(rest: str, entry: Path) -> bool:
    """Whether the process that made staging ``entry`` (named ``...tmp-<pid>-<random>``) may still be writing it."""
    match = re.match(r"(\d+)-", rest)
    if match is None:
        return False  # no pid: an older version's staging, long finished
    try:
        if time.time() - entry.lstat().st_mtime > STALE_AFTER_S:
            return False
    except OSError:
        return True  # already gone
    pid = int(match.group(1))
    if pid == os.getpid():
        return True  # this process's own, e.g. a second export from the app while the first runs
    if os.name == "nt":
        return True  # os.kill would end the process there; the age above decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def clean_stale_staging(parent: Path, name: str) -> list[Path]:
    """Remove the ``.<name>.tmp-*`` files and folders in ``parent`` left by an export that was killed."""
    prefix = temp_name_prefix(name)
    try:
        entries = [entry for entry in parent.iterdir() if entry.name.startswith(prefix)]
    except OSError:
        return []
    stale = [entry for entry in entries if not _writer_alive(entry.name[len(prefix):], entry)]
    for entry in stale:
        _remove(entry)
    return stale


def clean_project_staging(project_root: Path) -> list[Path]:
    """Remove the ``staging/export-<pid>-*`` folders of exports that were killed."""
    base = project_root / PROJECT_STAGING
    try:
        entries = [entry for entry in base.iterdir() if entry.name.startswith("export-")]
    except OSError:
        return []
    stale = [entry for entry in entries if not _writer_alive(entry.name[len("export-"):], entry)]
    for entry in stale:
        _remove(entry)
    return stale


def _device(path: Path) -> int | None:
    try:
        return os.stat(path).st_dev
    except OSError:
        return None


class ExportSet:
    """The files of one export, staged and then moved into place together by :meth:`commit`.

    Use as a context manager: leaving it without a commit (an error, Ctrl-C)
    removes every staged file and folder, and the targets keep their old content.
    ``project_root``: stage in the project's ``staging/`` folder where a target shares its file system.
    """

    def __init__(self, project_root: Path | None = None) -> None:
        self._staged: list[Path] = []
        self._moves: list[Callable[[], None]] = []
        self._project_root = project_root
        self._private: Path | None = None
        if project_root is not None:
            clean_project_staging(project_root)

    def __enter__(self) -> ExportSet:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for path in self._staged:
            _remove(path)  # after a commit, only emptied staging folders remain
        if self._private is not None:
            _remove(self._private)

    def _private_area(self, target: Path) -> Path | None:
        """The project's staging folder for this export, when ``target`` can be renamed into from there."""
        if self._project_root is None:
            return None
        if _device(target.parent) is None or _device(target.parent) != _device(self._project_root):
            return None
        if self._private is None:
            base = self._project_root / PROJECT_STAGING
            base.mkdir(exist_ok=True)
            self._private = Path(tempfile.mkdtemp(prefix=f"export-{os.getpid()}-", dir=base))
        return self._private

    def stage_file(self, target: Path, data: bytes) -> None:
        """``data`` staged for ``target``, in a synced, uniquely named file (in the project, or beside it)."""
        clean_stale_staging(target.parent, target.name)
        private = self._private_area(target)
        ensure_free_space(private or target.parent, len(data), reserve_bytes=0)
        if private is None:
            temp = write_temp_beside(target, data)
        else:
            temp = write_temp_beside(Path(tempfile.mkdtemp(dir=private)) / target.name, data)
        self._staged.append(temp)

        def move() -> None:
            os.replace(temp, target)
            fsync_folder(target.parent)

        self._moves.append(move)

    def staging_folder(self, target: Path) -> Path:
        """A new folder to build ``target`` in (in the project, or beside it); the caller adds the move with
        :meth:`on_commit`."""
        clean_stale_staging(target.parent, target.name)
        private = self._private_area(target)
        folder = Path(tempfile.mkdtemp(prefix=f"{temp_name_prefix(target.name)}{os.getpid()}-",
                                       dir=private or target.parent))
        self._staged.append(folder)
        os.chmod(folder, default_mode(folder=True))  # mkdtemp makes it 0700; the export is the user's folder
        return folder

    def on_commit(self, move: Callable[[], None]) -> None:
        self._moves.append(move)

    def commit(self) -> None:
        """Move every staged piece into place, quickly one after the other (all the writing is done by now).

        The pieces move in the reverse order of staging, so the file staged first (the CSV) lands last.
        """
        for move in reversed(self._moves):
            move()


# ------------------------------------------------------------ CSV
def _check_csv_target(project: Project, out: Path) -> None:
    if out.is_dir():
        raise UserError(f"{out} is a folder", "name the CSV file to write, e.g. --out corrected.csv")
    if not out.parent.is_dir():
        raise UserError(f"folder {out.parent} does not exist", "create it first, or choose another --out")
    check_target(project, out, "--out")


def _stage_csv(project: Project, staged: ExportSet, out: Path, run_id: str | None,
               detector: str | None) -> dict[str, Any]:
    export = export_rows(project, run_id=run_id, detector=detector)
    staged.stage_file(out, csv_bytes(export))
    action_column = len(export.columns) - len(ADDED_COLUMNS) + 2
    counts: dict[str, int] = {}
    for row in export.rows:
        counts[row[action_column]] = counts.get(row[action_column], 0) + 1
    return {"csv": str(out), "rows": len(export.rows), "actions": counts, "run_id": export.run_id,
            "detector": export.detector, "stale": export.stale}


# ------------------------------------------------------------ ImageFolder
def fit_name(name: str, limit: int = MAX_NAME_BYTES, keep_suffix: bool = False) -> str:
    """``name`` if it fits in ``limit`` UTF-8 bytes, else cut and ended with ``~`` and 8 hex digits of its hash,
    so two long names that share a beginning stay apart (the suffix, e.g. ``.png``, is kept if asked)."""
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) <= limit:
        return name
    stem, suffix = os.path.splitext(name) if keep_suffix else (name, "")
    if len(suffix.encode("utf-8", "surrogateescape")) > 16:
        stem, suffix = name, ""
    digest = hashlib.sha256(encoded).hexdigest()[:8]
    room = limit - len(suffix.encode("utf-8", "surrogateescape")) - len(digest) - 1
    cut = stem.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")
    return f"{cut}~{digest}{suffix}"


def safe_folder_name(name: str) -> str:
    """A class name usable as one folder name on every OS: separators and reserved characters replaced, and
    shortened (see :func:`fit_name`) when longer than a file system allows."""
    cleaned = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", name).strip().rstrip(".")
    cleaned = cleaned if cleaned not in ("", ".", "..") else f"_{cleaned or 'class'}"
    return fit_name(cleaned, CLASS_FOLDER_BYTES)


def _unique_name(taken: set[str], name: str) -> str:
    # Case-insensitively unique, so the layout also survives a copy to macOS or Windows.
    stem, suffix = os.path.splitext(name)
    candidate, number = fit_name(name, keep_suffix=True), 1
    while candidate.lower() in taken:
        candidate = fit_name(f"{stem}_{number}{suffix}", keep_suffix=True)
        number += 1
    taken.add(candidate.lower())
    return candidate


def _check_folder_target(project: Project, folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"{folder} already exists and is not an empty folder",
                        "choose a new folder for --folder (the export never overwrites files)")
    if not folder.parent.is_dir():
        raise UserError(f"folder {folder.parent} does not exist", "create it first, or choose another --folder")
    check_target(project, folder, "--folder")


def _stage_image_folder(project: Project, staged: ExportSet, folder: Path, copy: bool) -> dict[str, Any]:
    labels, keep = project.labels_with_decisions()
    names = project.class_names()
    folder_names: dict[int, str] = {}
    taken_classes: set[str] = set()
    for index, name in enumerate(names):
        folder_names[index] = _unique_name(taken_classes, safe_folder_name(name))
    renamed = {names[index]: folder_names[index] for index in range(len(names)) if folder_names[index] != names[index]}
    kept = [int(sample_id) for sample_id in np.flatnonzero(keep)]
    sources = {sample_id: project.sample_image_path(sample_id) for sample_id in kept}
    for sample_id, source in sources.items():
        if not source.is_file():
            raise UserError(f"image of sample {sample_id} is missing: {source}",
                            "restore the image (or remove the sample) and export again")
    if copy:
        ensure_free_space(folder.parent, sum(source.stat().st_size for source in sources.values()), reserve_bytes=0)
    staging = staged.staging_folder(folder)
    taken: dict[int, set[str]] = {index: set() for index in range(len(names))}
    for index in range(len(names)):
        (staging / folder_names[index]).mkdir()
    for sample_id, source in sources.items():
        label = int(labels[sample_id])
        target = staging / folder_names[label] / _unique_name(taken[label], source.name)
        if copy:
            shutil.copy2(source, target)
        else:
            try:
                target.symlink_to(source.resolve())
            except OSError as exc:  # a file system (or OS policy) without symlinks
                raise UserError(f"cannot make a symlink in {folder.parent}: {exc.strerror}",
                                "export with --copy to copy the images instead") from None

    def move() -> None:
        if folder.exists():
            folder.rmdir()  # empty, checked before; fails (and so stops the commit) if it no longer is
        os.replace(staging, folder)
        fsync_folder(folder.parent)

    staged.on_commit(move)
    return {"folder": str(folder), "images": len(sources), "removed": int((~keep).sum()),
            "mode": "copy" if copy else "symlink", "renamed_classes": renamed}


# ------------------------------------------------------------ cleanlab
def _check_cleanlab_target(project: Project, folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file, not a folder", "name a folder for --cleanlab (new or existing)")
    check_target(project, folder, "--cleanlab", CLEANLAB_FILES)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _stage_cleanlab(project: Project, staged: ExportSet, folder: Path, run_id: str | None) -> dict[str, Any]:
    run = project.run(run_id, kind=None if run_id else "audit")
    if not (run.folder / "pred_probs.npy").is_file():
        raise UserError(f"run {run.id} ({run.kind}) has no pred_probs.npy", "name a finished audit run with --run")
    table = project.sample_table()
    final, keep = project.labels_with_decisions()
    contents: dict[str, bytes] = {}
    for name in ("pred_probs.npy", "noise_matrix.npy", "confident_joint.npy"):
        if (run.folder / name).is_file():
            contents[name] = (run.folder / name).read_bytes()
    # The labels the run's probabilities go with (cleanlab's ``labels``): the ones it trained on.
    contents["labels.npy"] = _npy_bytes(labels_for_grading(project, run, table.label).labels)
    contents["final_labels.npy"] = _npy_bytes(np.where(keep, final, -1).astype(np.int64))
    contents["classes.txt"] = "".join(f"{name}\n" for name in project.class_names()).encode()
    # Each row's sample, one path a line: `import-predictions --pred-probs pred_probs.npy --paths paths.txt` reads
    # the arrays back. Left out when a path holds a line break (one a line could not name it).
    if not any("\n" in path or "\r" in path for path in table.paths):
        contents["paths.txt"] = "".join(f"{path}\n" for path in table.paths).encode()
    folder.parent.mkdir(parents=True, exist_ok=True)
    ensure_free_space(folder.parent, sum(len(data) for data in contents.values()), reserve_bytes=0)
    staging = staged.staging_folder(folder)
    for name, data in contents.items():
        with open(staging / name, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    fsync_folder(staging)

    def move() -> None:
        if not folder.exists():
            os.replace(staging, folder)
        else:
            for name in contents:
                os.replace(staging / name, folder / name)
            # A file of the previous set this one lacks (noise_matrix.npy of another run) would not match it.
            for name in CLEANLAB_FILES:
                if name not in contents:
                    (folder / name).unlink(missing_ok=True)
            fsync_folder(folder)
        fsync_folder(folder.parent)

    staged.on_commit(move)
    return {"folder": str(folder), "files": list(contents), "run_id": run.id}


# ------------------------------------------------------------ the export
def export_set(project: Project, *, out: Path | str | None = None, folder: Path | str | None = None,
               copy: bool = False, cleanlab: Path | str | None = None, run_id: str | None = None,
               detector: str | None = None) -> dict[str, Any]:
    """Write the CSV (``out``), the cleaned ImageFolder (``folder``) and the cleanlab arrays (``cleanlab``)
    that are asked for, as one set: all of them, or (on any failure) none and the old files untouched.

    The cleanlab arrays come from the audit whose scores the CSV carries (or ``run_id``, or the latest audit).
    Returns a report per piece, under ``csv``, ``folder`` and ``cleanlab``.
    """
    out = None if out is None else Path(out).absolute()
    folder = None if folder is None else Path(folder).absolute()
    cleanlab = None if cleanlab is None else Path(cleanlab).absolute()
    # Every check first, before anything is written.
    if out is not None:
        _check_csv_target(project, out)
    if folder is not None:
        _check_folder_target(project, folder)
    if cleanlab is not None:
        _check_cleanlab_target(project, cleanlab)
    report: dict[str, Any] = {}
    target = next(path for path in (out, folder, cleanlab, Path.cwd()) if path is not None)
    try:
        with ExportSet(project.root) as staged:
            if out is not None:
                report["csv"] = _stage_csv(project, staged, out, run_id, detector)
            if cleanlab is not None:
                run_for_arrays = report["csv"]["run_id"] if "csv" in report and report["csv"]["run_id"] else run_id
                target = cleanlab
                report["cleanlab"] = _stage_cleanlab(project, staged, cleanlab, run_for_arrays)
            if folder is not None:
                target = folder
                report["folder"] = _stage_image_folder(project, staged, folder, copy)
            staged.commit()
    except OSError as exc:
        error = user_error_from_oserror(exc, target)  # a full disk, a read-only folder: said plainly
        if error is None:
            raise
        raise error from None
    return report


def export_csv(project: Project, out: Path | str, *, run_id: str | None = None,
               detector: str | None = None) -> dict[str, Any]:
    """Write the corrected-labels CSV atomically; returns counts per action and where it went."""
    return dict(export_set(project, out=out, run_id=run_id, detector=detector)["csv"])


def export_image_folder(project: Project, folder: Path | str, *, copy: bool = False) -> dict[str, Any]:
    """The cleaned dataset as ``<folder>/<final_label>/<file>``; removed samples are left out.

    Files are symlinks to the originals (absolute) unless ``copy``. Two files of
    one class with the same name get ``_1``, ``_2``... suffixes; a class name too
    long for a folder name is shortened (``renamed_classes`` in the report). The
    layout is built in a staging folder beside it and renamed into place at the
    end, so a failure leaves nothing half-made; ``folder`` must not exist or be empty.
    """
    return dict(export_set(project, folder=folder, copy=copy)["folder"])


def export_cleanlab(project: Project, folder: Path | str, *, run_id: str | None = None) -> dict[str, Any]:
    """Arrays for cleanlab users: ``pred_probs.npy`` (N, K), ``noise_matrix.npy`` (K, K), ``labels.npy`` (N,).

    ``labels.npy`` holds the labels the audit trained and scored on (the ``labels``
    argument of cleanlab's functions: the observed labels with the decisions made
    before it; for an audit of an older version, the observed labels); ``final_labels.npy`` (N,) the labels after
    the decisions, -1 for removed samples; ``classes.txt`` the class names, one a
    line, in index order; ``paths.txt`` each row's sample path, one a line (what ``import-predictions --paths``
    reads). The arrays come from the latest audit run, or ``run_id``.
    Files of an earlier export there are replaced as a set.
    """
    return dict(export_set(project, cleanlab=folder, run_id=run_id)["cleanlab"])
