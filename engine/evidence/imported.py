"""Bring your own predictions: out-of-sample probabilities from the user's model, recorded as an audit.

``python -m engine import-predictions PROJECT --pred-probs FILE`` (and the app's import dialog) make a
run that every other part of the product treats like an audit, because it is one: its kind is
``audit``, its spec says where its evidence came from (``spec["evidence"]["oof_probs"]``: source
``imported``, the file, its sha256, size and modification time, ``--logits``, the name), and its folder
holds what a trained audit's does for confident learning:

- ``pred_probs.npy`` (N, K) float32, sample-id order (zeros for held-out samples the file had no row for;
  ``imported_ids.npy`` lists the samples it had a row for);
- ``labels_used.npy`` / ``removed_by_decisions.npy`` (engine.evidence.run_labels): the labels with the person's
  decisions applied, which the probabilities are judged against, as a trained audit records them;
- ``audited_ids.npy`` (the train split), ``confident_joint.npy``, ``noise_matrix.npy``; scores of the
  ``cl`` detector in the project database, saved by the same code as a trained audit's
  (:func:`engine.workflows.detection.run_detectors`): cleanlab's ``find_label_issues`` flagged set, ranked by
  self-confidence, exactly as engine/detectors/confident_learning.py does for K-fold probabilities.

Held-out (test) samples may have rows: they are stored (held-out accuracy) but never audited.

Nothing is half-imported: :func:`validate` reads and checks every row of every file and writes nothing;
:func:`import_predictions` does the same first and refuses (:class:`ImportRefused`, with the whole list)
before anything is written; a run that fails while writing (a full disk) is removed again. One whose
process was killed is removed by the store when it finds it (:meth:`engine.store.runs.Runs.runs`), and the
next import removes the temporary files the killed one left. The embeddings are moved into place at the end
of the run, so a run that reads as finished has them.

The run goes stale like any audit once the labels or decisions change (``Project.stale_reason``), and
also once the imported file changes: :func:`engine.store.label_state.source_changed_reason` re-hashes it when
it still exists and its size or modification time moved.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.cancel import CancelToken
from engine.errors import UserError
from engine.events import EventSink
from engine.evidence.imported_embeddings import (
    EMBEDDINGS_FOLDER,
    StagedEmbeddings,
    check_embeddings,
    embeddings_files,
    remove_stale_temporaries,
    valid_name,
)
from engine.evidence.imported_files import (
    SHOWN,
    ImportProblem,
    Problems,
    RowMatcher,
    file_record,
    file_sha256,
    open_rows,
)
from engine.jobs import JobContext, run_job
from engine.store import Project, RunInfo, evidence_source
from engine.store.label_state import IMPORTED_SOURCE

IMPORTED_IDS_FILE = "imported_ids.npy"  # the samples the file had a row for
SUM_TOLERANCE = 1e-3  # as confident_learning.validate_pred_probs: float32 softmax rows sum to 1 within ~1e-6
DETECTOR = "cl"
PRED_PROBS_FILE = "pred_probs.npy"  # engine.workflows.crossval.PRED_PROBS_FILE, without importing torch


@dataclass
class ImportPreview:
    """What an import would record, found without writing anything (see :func:`validate`).

    ``pred_probs`` and ``embeddings`` (None when not given) describe each file: ``file``, ``format`` (csv or
    npy), ``columns`` (a CSV's class columns, in the file's order), ``rows``, ``matched`` (rows matched to a
    sample), ``train_matched`` of ``train_total`` and ``heldout_matched`` of ``heldout_total``. ``problems``
    lists every problem, each naming its file, rows and fix; the import goes ahead only when it is empty.
    """

    project: str
    name: str
    logits: bool
    pred_probs: dict[str, Any] | None = None
    embeddings: dict[str, Any] | None = None
    problems: list[ImportProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"project": self.project, "name": self.name, "logits": self.logits, "ok": self.ok,
                "pred_probs": self.pred_probs, "embeddings": self.embeddings,
                "problems": [problem.to_dict() for problem in self.problems]}

    def describe(self) -> list[str]:
        """Lines for a terminal: each file's match, then each problem with its fix."""
        lines = []
        for what, info in (("predictions", self.pred_probs), ("embeddings", self.embeddings)):
            if info and "rows" in info:
                lines.append(f"{what}: {info['file']}: {info['rows']:,} rows, {info['matched']:,} matched to samples "
                             f"({info.get('train_matched', 0):,} of {info.get('train_total', 0):,} training, "
                             f"{info.get('heldout_matched', 0):,} of {info.get('heldout_total', 0):,} held-out)")
        for problem in self.problems:
            lines.append(f"error: {problem.message}")
            lines.append(f"  fix: {problem.fix}")
        return lines


class ImportRefused(UserError):
    """The files have problems: nothing was written. ``preview`` lists them all."""

    def __init__(self, preview: ImportPreview) -> None:
        self.preview = preview
        first = preview.problems[0]
        more = len(preview.problems) - 1
        super().__init__(f"nothing imported: {first.message}" + (f" (and {more} more problem{'s' * (more > 1)})"
                                                                 if more else ""),
                         first.fix)


@dataclass
class ImportResult:
    """What :func:`import_predictions` recorded: the audit run (None without ``pred_probs`` or when it failed),
    its status (ok, error or cancelled; a run that did not finish is removed), and the stored embeddings."""

    preview: ImportPreview
    run: RunInfo | None
    status: str
    embeddings: dict[str, Any] | None = None  # {"array", "record", "dims"} once stored


@dataclass
class _Checked:
    preview: ImportPreview
    probs: np.ndarray | None = None  # (N, K) float32
    has_row: np.ndarray | None = None  # (N,) bool
    source: dict[str, Any] | None = None
    staged: StagedEmbeddings | None = None


def default_name(pred_probs: Path | None, embeddings: Path | None) -> str:
    """The file's stem, reduced to letters, digits, ``.``, ``_`` and ``-`` (``imported`` if nothing is left)."""
    import re

    stem = (pred_probs or embeddings or Path("imported")).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:64] or IMPORTED_SOURCE


def validate(project: Project, *, pred_probs: Path | str | None = None, embeddings: Path | str | None = None,
             paths: Path | str | None = None, logits: bool = False, name: str | None = None) -> ImportPreview:
    """Read and check every row of the files an import would use; write nothing. The app's preview.

    ``pred_probs``: a .csv (``path`` + one column per class name, any order) or an (R, K) .npy with
    ``paths`` (one sample path per line); ``embeddings`` likewise (.csv: ``path`` + numeric columns).
    """
    return _check(project, _path(pred_probs), _path(embeddings), _path(paths), logits, name, stage=False).preview


def import_predictions(project: Project, *, pred_probs: Path | str | None = None,
                       embeddings: Path | str | None = None, paths: Path | str | None = None, logits: bool = False,
                       name: str | None = None, events: EventSink | None = None,
                       cancel: CancelToken | None = None) -> ImportResult:
    """Validate the files (as :func:`validate`), then record the predictions as an audit run scored by ``cl`` and
    store the embeddings (``<project>/embeddings/<name>.npy`` + ``.json``).

    Raises
    ------
    ImportRefused
        When any file has a problem; nothing is written then (``.preview`` lists every problem).
    """
    events = events or EventSink()
    started = time.perf_counter()
    _remove_what_killed_imports_left(project)
    checked = _check(project, _path(pred_probs), _path(embeddings), _path(paths), logits, name, stage=True)
    preview = checked.preview
    if not preview.ok:
        raise ImportRefused(preview)
    checked_s = time.perf_counter() - started
    run: RunInfo | None = None
    status = "ok"
    try:
        if checked.probs is not None:
            assert checked.has_row is not None and checked.source is not None
            spec = {"detectors": [DETECTOR], "evidence": {"oof_probs": checked.source}, "name": preview.name}
            probs, has_row = checked.probs, checked.has_row
            run, status = run_job(project, "audit", spec,
                                  lambda ctx: _record_run(ctx, probs, has_row, checked.source or {},
                                                          {"read_and_check": round(checked_s, 3)}, checked.staged),
                                  events, cancel=cancel)
            if status != "ok":
                _discard_run(project, run)
        elif checked.staged is not None:
            _commit_embeddings(checked.staged, events)
        stored = None
        if checked.staged is not None and status == "ok":
            staged = checked.staged
            stored = {"array": str(staged.target), "record": str(staged.record_path), "dims": staged.record["dims"]}
    finally:
        if checked.staged is not None:
            checked.staged.discard()  # a no-op once committed
    return ImportResult(preview, run if status == "ok" else None, status, stored)


def _commit_embeddings(staged: StagedEmbeddings, events: EventSink) -> None:
    staged.commit()
    events.log(f"embeddings stored in {staged.target} ({staged.record['dims']} dimensions)")


def _remove_what_killed_imports_left(project: Project) -> None:
    """The temporary files of imports that were killed: their staged embeddings, and a file an import run was
    writing when it was killed after it finished (its summary). Listing the runs removes a killed import's run."""
    remove_stale_temporaries(project.root / EMBEDDINGS_FOLDER)
    for run in project.runs():
        if evidence_source(run).get("source") == IMPORTED_SOURCE:
            remove_stale_temporaries(run.folder)


def _path(value: Path | str | None) -> Path | None:
    return None if value is None else Path(value).expanduser().absolute()


def _check(project: Project, pred_probs: Path | None, embeddings: Path | None, paths: Path | None, logits: bool,
           name: str | None, *, stage: bool) -> _Checked:
    problems = Problems()
    chosen = name if name is not None else default_name(pred_probs, embeddings)
    preview = ImportPreview(str(project.root), chosen, logits)
    checked = _Checked(preview)
    if pred_probs is None and embeddings is None:
        raise UserError("nothing to import", "give --pred-probs FILE, --embeddings FILE, or both")
    if not valid_name(chosen):
        problems.whole("--name", f"{chosen!r} is not a usable name",
                       "use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    table = project.sample_table()
    train_ids, test_ids = table.train_ids, table.test_ids
    if pred_probs is not None:
        checked.probs, checked.has_row, preview.pred_probs = _check_pred_probs(
            project, pred_probs, paths, logits, table.paths, train_ids, problems)
        if checked.probs is not None:
            checked.source = {"source": IMPORTED_SOURCE, **file_record(pred_probs), "logits": logits,
                              "name": chosen, "paths_file": None, "paths_sha256": None}
            if pred_probs.suffix.lower() == ".npy" and paths is not None:
                checked.source.update(paths_file=str(paths), paths_sha256=file_sha256(paths))
    if embeddings is not None:
        stage_in = project.root if stage and not problems else None
        preview.embeddings, checked.staged = check_embeddings(embeddings, paths, table.paths, problems, name=chosen,
                                                              stage_in=stage_in)
    for info in (preview.pred_probs, preview.embeddings):
        if info is not None and "matched_ids" in info:
            matched = info.pop("matched_ids")
            info.update(train_matched=int(np.isin(train_ids, matched).sum()), train_total=len(train_ids),
                        heldout_matched=int(np.isin(test_ids, matched).sum()), heldout_total=len(test_ids))
    preview.problems = problems.list()
    if preview.problems and checked.staged is not None:
        checked.staged.discard()
        checked.staged = None
    return checked


def _check_pred_probs(project: Project, file: Path, paths: Path | None, logits: bool, sample_paths: list[str],
                      train_ids: np.ndarray, problems: Problems
                      ) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """(probs (N, K) float32, has_row (N,) bool, info) of a predictions file; None arrays when it has problems."""
    class_names = project.class_names()
    info: dict[str, Any] = {"file": str(file), "format": file.suffix.lower().lstrip(".")}
    before = len(problems.list())
    rows = open_rows(file, paths, problems, option="--pred-probs")
    if rows is None:
        return None, None, info
    order: np.ndarray | None = None  # the file's column of each class (None: the values cannot be checked)
    if rows.columns:
        extra = [column for column in rows.columns if column not in class_names]
        missing = [name for name in class_names if name not in rows.columns]
        if extra:
            problems.whole(file, f"has columns that are not classes of this project: {_listed(extra)}",
                           f"name one column per class, exactly as the project names them ({_listed(class_names)}), "
                           "besides path; remove or rename the others")
        if missing:
            problems.whole(file, f"has no column for the classes {_listed(missing)}",
                           "add one column per class: each row's probability of that class")
        else:  # with extra columns too the rows are still checked, on the class columns
            order = np.array([rows.columns.index(name) for name in class_names])
        info["columns"] = [column for column in rows.columns if column in class_names]
    elif rows.width != len(class_names):
        problems.whole(file, f"has {rows.width} columns, but the project has {len(class_names)} classes",
                       f"give one column per class in the project's class order ({_listed(class_names)}; "
                       "`python -m engine status PROJECT` lists them)")
    else:
        order = np.arange(len(class_names))
        info["columns"] = class_names
    matcher = RowMatcher(sample_paths, problems, file, rows.row_word, rows.paths_file)
    n, k = len(sample_paths), len(class_names)
    probs = np.zeros((n, k), dtype=np.float32)
    for chunk in rows.chunks:
        ids = matcher.match(chunk)  # the paths are checked even when the columns are wrong
        if order is None:
            continue
        checked = _check_rows(chunk.values[:, order], chunk.first, chunk.unread, file, rows.row_word, logits,
                              problems)
        good = ids >= 0
        probs[ids[good]] = checked[good]
    if not rows.stopped:  # else the rows it could not read are not missing: the file is fixed first
        if matcher.rows == 0:
            problems.whole(file, "has no rows", "add one row per training sample")
        matcher.check_train_covered(train_ids, file)
    has_row = matcher.first_row >= 0
    info.update(rows=matcher.rows, matched=int(has_row.sum()), matched_ids=np.flatnonzero(has_row))
    if len(problems.list()) != before or order is None:
        return None, None, info
    return probs, has_row, info


def _check_rows(values: np.ndarray, first: int, unread: np.ndarray | None, file: Path, row_word: str, logits: bool,
                problems: Problems) -> np.ndarray:
    """Each row checked as probabilities (or, with ``logits``, turned into them by a softmax); float32 rows."""
    row_numbers = np.arange(first, first + len(values))
    finite = np.isfinite(values).all(axis=1)
    reported = unread if unread is not None else np.zeros(len(values), dtype=bool)
    problems.rows(file, "has NaN or infinite values", "give a finite number in every class column",
                  row_numbers[~finite & ~reported], row_word=row_word)
    if logits:
        safe = np.where(finite[:, None], values, 0.0)
        shifted = np.exp(safe - safe.max(axis=1, keepdims=True))  # the max subtracted: exp never overflows
        return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
    negative = finite & (values < 0).any(axis=1)
    problems.rows(file, "has negative probabilities",
                  "give probabilities in [0, 1]; if these are logits (scores before a softmax), pass --logits",
                  row_numbers[negative], row_word=row_word,
                  examples=[f"min {values[row].min():.4g}" for row in np.flatnonzero(negative)[:SHOWN]])
    sums = values.sum(axis=1)
    off = finite & ~negative & (np.abs(sums - 1.0) > SUM_TOLERANCE)
    problems.rows(file, f"has rows that do not sum to 1 (within {SUM_TOLERANCE:g})",
                  "give each row's class probabilities (a softmax output), all classes included; if these are "
                  "logits, pass --logits",
                  row_numbers[off], row_word=row_word,
                  examples=[f"sum {sums[row]:.6g}" for row in np.flatnonzero(off)[:SHOWN]])
    # Kept as given (not renormalised): a K-fold run's own pred_probs.npy imported back is the same array.
    return values.astype(np.float32)


def _listed(names: list[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:12])
    return shown + (f" and {len(names) - 12} more" if len(names) > 12 else "")


def _record_run(ctx: JobContext, probs: np.ndarray, has_row: np.ndarray, source: dict[str, Any],
                timings: dict[str, float], staged: StagedEmbeddings | None = None) -> dict[str, Any]:
    """The job body: record the probabilities and the labels they are judged against, run ``cl``, summarise; then
    move the staged embeddings into place, last: a run that reads as finished has its embeddings stored (a run
    killed before it finished is removed, see :meth:`engine.store.runs.Runs.runs`)."""
    from engine.arrays import save_array
    from engine.detectors import OOF_PROBS, DetectorInputs, parse_detectors
    from engine.evidence.run_labels import AUDITED_IDS_FILE, record_run_labels
    from engine.workflows.detection import run_detectors

    started = time.perf_counter()
    project, folder = ctx.project, ctx.run.folder
    table = project.sample_table()
    labels, keep = project.labels_with_decisions()
    labels_used = record_run_labels(folder, labels, keep)
    audited_ids = table.train_ids  # held-out samples are never audited
    save_array(folder / PRED_PROBS_FILE, probs)  # the name engine.workflows.crossval gives a trained audit's
    save_array(folder / IMPORTED_IDS_FILE, np.flatnonzero(has_row))
    save_array(folder / AUDITED_IDS_FILE, audited_ids)
    inputs = DetectorInputs(labels=labels, num_classes=project.num_classes, pred_probs=probs)
    ctx.events.log(f"imported {int(has_row.sum()):,} predictions from {source['file']}")
    results = run_detectors(project, ctx.run, parse_detectors([DETECTOR]), inputs, ctx.events, ctx.cancel,
                            scored_ids=audited_ids)
    timings["record_and_detect"] = round(time.perf_counter() - started, 3)
    heldout = table.test_ids[has_row[table.test_ids]]
    accuracy, against, n_eval = _heldout_accuracy(table, probs, heldout)
    headline = results[DETECTOR]
    summary: dict[str, Any] = {
        "n_samples": len(table.label),
        "n_train": len(table.train_ids),
        "n_test": len(table.test_ids),
        "num_classes": project.num_classes,
        "evidence": [OOF_PROBS],
        "evidence_source": IMPORTED_SOURCE,
        "imported": {key: source.get(key) for key in ("file", "sha256", "logits", "name", "paths_file")},
        "n_imported_rows": int(has_row.sum()),
        "n_audited": len(audited_ids),
        "n_removed_by_decisions": int((~keep[audited_ids]).sum()),  # scored all the same
        "n_relabeled_by_decisions": int((labels[audited_ids] != table.label[audited_ids]).sum()),
        "labels_used": labels_used,
        "n_flagged": {name: result.num_flagged for name, result in results.items()},
        "estimated_noise_rate": headline.summary.get("estimated_noise_rate"),
        "heldout_accuracy": accuracy,
        "heldout_accuracy_measured_against": against,
        "heldout_accuracy_model": "the imported predictions",
        "n_heldout": n_eval,
        "detectors": {name: result.summary for name, result in results.items()},
        "timings_s": timings,
    }
    ctx.events.result("audit", {key: summary[key] for key in (
        "n_samples", "n_audited", "n_flagged", "estimated_noise_rate", "heldout_accuracy",
        "heldout_accuracy_measured_against")})
    ctx.events.log(f"import done: cl flagged {headline.num_flagged:,} of {len(audited_ids):,} training samples; "
                   f"estimated noise rate {summary['estimated_noise_rate']:.3f}")
    if staged is not None:
        _commit_embeddings(staged, ctx.events)
    return summary


def _heldout_accuracy(table: Any, probs: np.ndarray, heldout: np.ndarray) -> tuple[float | None, str, int]:
    """Accuracy on the held-out samples the file had rows for, against what a trained audit's is measured on."""
    from engine.workflows.sample_sets import heldout_targets

    test_ids, target, against = heldout_targets(table)
    chosen = np.isin(test_ids, heldout)
    if not chosen.any():
        return None, against, 0
    return float((probs[test_ids[chosen]].argmax(axis=1) == target[chosen]).mean()), against, int(chosen.sum())


def _discard_run(project: Project, run: RunInfo) -> None:
    """Remove a run that did not finish: its folder first (a folder without its row would be adopted), then its
    row and scores. Nothing of a failed import stays behind."""
    shutil.rmtree(run.folder, ignore_errors=True)
    with project.transaction() as conn:
        conn.execute("DELETE FROM scores WHERE run_id = ?", (run.id,))
        conn.execute("DELETE FROM runs WHERE id = ?", (run.id,))


def stored_embeddings(project: Project, name: str) -> tuple[Path, Path]:
    """Where the embeddings of source ``name`` are stored in ``project`` (array, record)."""
    return embeddings_files(project.root, name)
