"""The corrected-labels table: the input's columns rebuilt from the project, the audit's scores beside each
sample's decision (:func:`export_rows`), and its CSV bytes with every formula-like cell escaped (:func:`csv_bytes`)."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.detectors import review_detector
from engine.errors import UserError
from engine.evidence.run_labels import audited_mask
from engine.export.staging import ExportSet
from engine.export.targets import check_target
from engine.store import Project, RunInfo

ADDED_COLUMNS = ("original_label", "final_label", "action", "score", "suggested_label", "detector")
ACTION_WORDS = {"keep": "kept", "relabel": "relabeled", "remove": "removed"}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A plain decimal number: optional sign, digits with an optional point (or a point and digits), optional exponent.
# Spreadsheets read it as that number, never as a formula.
PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


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


def check_csv_target(project: Project, out: Path) -> None:
    if out.is_dir():
        raise UserError(f"{out} is a folder", "name the CSV file to write, e.g. --out corrected.csv")
    if not out.parent.is_dir():
        raise UserError(f"folder {out.parent} does not exist", "create it first, or choose another --out")
    check_target(project, out, "--out")


def stage_csv(project: Project, staged: ExportSet, out: Path, run_id: str | None,
               detector: str | None) -> dict[str, Any]:
    export = export_rows(project, run_id=run_id, detector=detector)
    staged.stage_file(out, csv_bytes(export))
    action_column = len(export.columns) - len(ADDED_COLUMNS) + 2
    counts: dict[str, int] = {}
    for row in export.rows:
        counts[row[action_column]] = counts.get(row[action_column], 0) + 1
    return {"csv": str(out), "rows": len(export.rows), "actions": counts, "run_id": export.run_id,
            "detector": export.detector, "stale": export.stale}
