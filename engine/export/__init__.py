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
of its imag

The package's modules, one purpose each:

- ``table``: the corrected-labels rows and their escaped CSV (:func:`export_rows`, :func:`csv_bytes`);
- ``image_folder``: the cleaned ImageFolder, names made safe (:func:`fit_name`, :func:`safe_folder_name`);
- ``cleanlab_arrays``: the arrays for cleanlab users;
- ``targets``: what an export may not overwrite (:func:`check_target`);
- ``staging``: staging the files of one export and moving them into place together (:class:`ExportSet`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import user_error_from_oserror
from engine.export.cleanlab_arrays import CLEANLAB_FILES, check_cleanlab_target, stage_cleanlab
from engine.export.image_folder import check_folder_target, fit_name, safe_folder_name, stage_image_folder
from engine.export.staging import ExportSet, clean_project_staging, clean_stale_staging
from engine.export.table import (
    ADDED_COLUMNS,
    ExportRows,
    audit_for_export,
    check_csv_target,
    csv_bytes,
    escape_cell,
    export_rows,
    input_columns,
    scores_source,
    stage_csv,
)
from engine.export.targets import check_target
from engine.store import Project

__all__ = ["ADDED_COLUMNS", "CLEANLAB_FILES", "ExportRows", "ExportSet", "audit_for_export", "check_target",
           "clean_project_staging", "clean_stale_staging", "csv_bytes", "escape_cell", "export_cleanlab", "export_csv",
           "export_image_folder", "export_rows", "export_set", "fit_name", "input_columns", "safe_folder_name",
           "scores_source"]


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
        check_csv_target(project, out)
    if folder is not None:
        check_folder_target(project, folder)
    if cleanlab is not None:
        check_cleanlab_target(project, cleanlab)
    report: dict[str, Any] = {}
    target = next(path for path in (out, folder, cleanlab, Path.cwd()) if path is not None)
    try:
        with ExportSet(project.root) as staged:
            if out is not None:
                report["csv"] = stage_csv(project, staged, out, run_id, detector)
            if cleanlab is not None:
                run_for_arrays = report["csv"]["run_id"] if "csv" in report and report["csv"]["run_id"] else run_id
                target = cleanlab
                report["cleanlab"] = stage_cleanlab(project, staged, cleanlab, run_for_arrays)
            if folder is not None:
                target = folder
                report["folder"] = stage_image_folder(project, staged, folder, copy)
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
