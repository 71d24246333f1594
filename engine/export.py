"""Exports: the corrected-labels CSV, the cleaned ImageFolder, and arrays for cleanlab users.

The CSV has one row per sample, in sample-id order: the input's own columns
(a CSV source: its columns in their order, rebuilt from the project; a folder
or the demo: ``path`` relative to the image root and ``label``), then
``original_label`` (the observed label the audit saw), ``final_label`` (after
the decisions; empty when removed), ``action`` (kept, relabeled, removed,
unreviewed), ``score``, ``suggested_label`` and ``detector`` (from the latest
audit run, or the one named).

Every cell that a spreadsheet would read as a formula (starting with
``= + - @``, a tab or a carriage return) is prefixed with ``'``, as OWASP
recommends against CSV injection. Every file is written to a temporary name
and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import UserError
from engine.store import Project, RunInfo, atomic_write_bytes

ADDED_COLUMNS = ("original_label", "final_label", "action", "score", "suggested_label", "detector")
ACTION_WORDS = {"keep": "kept", "relabel": "relabeled", "remove": "removed"}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(value: Any) -> Any:
    """A cell made safe for spreadsheets: text starting like a formula gets a leading ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


@dataclass(frozen=True)
class ExportRows:
    """The export as a header and rows of plain values (before escaping)."""

    columns: list[str]
    rows: list[list[Any]]
    run_id: str | None
    detector: str | None


def audit_for_export(project: Project, run_id: str | None, detector: str | None) -> tuple[RunInfo | None, str | None]:
    """The audit run and detector whose scores the export carries: named ones, or the latest (None if no audit)."""
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
        detector = "cl" if "cl" in detectors else detectors[0]
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


def export_rows(project: Project, *, run_id: str | None = None, detector: str | None = None) -> ExportRows:
    """The corrected-labels table: input columns plus :data:`ADDED_COLUMNS`, one row per sample."""
    run, detector = audit_for_export(project, run_id, detector)
    columns, rows = input_columns(project)
    names = project.class_names()
    table = project.sample_table()
    decisions = project.decisions()
    scores = project.scores(run.id, detector) if run is not None and detector is not None else None
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
        if scores is None:
            score, suggested, source = "", "", ""
        else:
            score = f"{scores['score'][sample_id]:.6f}"
            suggestion = int(scores["suggested"][sample_id])
            suggested, source = (names[suggestion] if suggestion >= 0 else ""), detector or ""
        row.extend([original, final, action, score, suggested, source])
    return ExportRows(columns + added, rows, None if run is None else run.id, detector)


def csv_bytes(export: ExportRows) -> bytes:
    """The table as UTF-8 CSV bytes with every cell escaped (see :func:`escape_cell`)."""
    buffer = io.StringIO()
    # CRLF line ends (RFC 4180): the writer then quotes any cell holding a CR or LF of its own.
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([escape_cell(column) for column in export.columns])
    writer.writerows([[escape_cell(cell) for cell in row] for row in export.rows])
    return buffer.getvalue().encode("utf-8")


def export_csv(project: Project, out: Path | str, *, run_id: str | None = None,
               detector: str | None = None) -> dict[str, Any]:
    """Write the corrected-labels CSV atomically; returns counts per action and where it went."""
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out} is a folder", "name the CSV file to write, e.g. --out corrected.csv")
    if not out.parent.is_dir():
        raise UserError(f"folder {out.parent} does not exist", "create it first, or choose another --out")
    export = export_rows(project, run_id=run_id, detector=detector)
    atomic_write_bytes(out, csv_bytes(export))
    action_column = len(export.columns) - len(ADDED_COLUMNS) + 2
    counts: dict[str, int] = {}
    for row in export.rows:
        counts[row[action_column]] = counts.get(row[action_column], 0) + 1
    return {"csv": str(out), "rows": len(export.rows), "actions": counts, "run_id": export.run_id,
            "detector": export.detector}


def safe_folder_name(name: str) -> str:
    """A class name usable as one folder name on every OS (separators and reserved characters replaced)."""
    cleaned = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", name).strip().rstrip(".")
    return cleaned if cleaned not in ("", ".", "..") else f"_{cleaned or 'class'}"


def _unique_name(taken: set[str], name: str) -> str:
    # Case-insensitively unique, so the layout also survives a copy to macOS or Windows.
    stem, suffix = os.path.splitext(name)
    candidate, number = name, 1
    while candidate.lower() in taken:
        candidate = f"{stem}_{number}{suffix}"
        number += 1
    taken.add(candidate.lower())
    return candidate


def export_image_folder(project: Project, folder: Path | str, *, copy: bool = False) -> dict[str, Any]:
    """The cleaned dataset as ``<folder>/<final_label>/<file>``; removed samples are left out.

    Files are symlinks to the originals (absolute) unless ``copy``. Two files of
    one class with the same name get ``_1``, ``_2``... suffixes. The layout is
    built in a temporary sibling folder and renamed into place at the end, so a
    failure leaves nothing half-made; ``folder`` must not exist or be empty.
    """
    folder = Path(folder).absolute()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"{folder} already exists and is not an empty folder",
                        "choose a new folder for --folder (the export never overwrites files)")
    if not folder.parent.is_dir():
        raise UserError(f"folder {folder.parent} does not exist", "create it first, or choose another --folder")
    labels, keep = project.labels_with_decisions()
    names = project.class_names()
    folder_names = {}
    taken_classes: set[str] = set()
    for index, name in enumerate(names):
        folder_names[index] = _unique_name(taken_classes, safe_folder_name(name))
    staging = folder.with_name(f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    taken: dict[int, set[str]] = {index: set() for index in range(len(names))}
    written = 0
    try:
        for index in range(len(names)):
            (staging / folder_names[index]).mkdir()
        for sample_id in np.flatnonzero(keep):
            source = project.sample_image_path(int(sample_id))
            if not source.is_file():
                raise UserError(f"image of sample {sample_id} is missing: {source}",
                                "restore the image (or remove the sample) and export again")
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
            written += 1
        if folder.exists():
            folder.rmdir()  # empty, checked above
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"folder": str(folder), "images": written, "removed": int((~keep).sum()),
            "mode": "copy" if copy else "symlink"}


def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())


def export_cleanlab(project: Project, folder: Path | str, *, run_id: str | None = None) -> dict[str, Any]:
    """Arrays for cleanlab users: ``pred_probs.npy`` (N, K), ``noise_matrix.npy`` (K, K), ``labels.npy`` (N,).

    ``labels.npy`` holds the observed labels the audit saw (the ``labels``
    argument of cleanlab's functions); ``final_labels.npy`` (N,) the labels after
    the decisions, -1 for removed samples; ``classes.txt`` the class names, one a
    line, in index order. The arrays come from the latest audit run, or ``run_id``.
    """
    folder = Path(folder)
    run = project.run(run_id, kind=None if run_id else "audit")
    pred_probs_file = run.folder / "pred_probs.npy"
    if not pred_probs_file.is_file():
        raise UserError(f"run {run.id} ({run.kind}) has no pred_probs.npy", "name a finished audit run with --run")
    folder.mkdir(parents=True, exist_ok=True)
    table = project.sample_table()
    final, keep = project.labels_with_decisions()
    final = np.where(keep, final, -1)
    written = []
    for name in ("pred_probs", "noise_matrix", "confident_joint"):
        source = run.folder / f"{name}.npy"
        if source.is_file():
            atomic_write_bytes(folder / source.name, source.read_bytes())
            written.append(source.name)
    _save_npy(folder / "labels.npy", table.label)
    _save_npy(folder / "final_labels.npy", final.astype(np.int64))
    atomic_write_bytes(folder / "classes.txt", "".join(f"{name}\n" for name in project.class_names()).encode())
    written += ["labels.npy", "final_labels.npy", "classes.txt"]
    return {"folder": str(folder), "files": written, "run_id": run.id}
