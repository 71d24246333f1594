"""Reading a CSV label file into candidates: its columns checked, every row's path and label validated, each
refusal naming the data row and the fix (:func:`read_csv_candidates`)."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from pathlib import Path, PureWindowsPath

from engine.data.importing.names import Candidate, row_name
from engine.errors import UserError
from engine.events import EventSink


def read_csv_candidates(
    csv_file: Path,
    image_root: Path,
    *,
    path_column: str,
    label_column: str,
    truth_column: str | None,
) -> tuple[list[Candidate], list[str]]:
    """Candidates from a CSV, in row order, and the CSV's column names in order."""
    import pandas as pd  # heavy: only when a CSV is imported

    name = csv_file.name
    if not csv_file.is_file():
        raise UserError(f"CSV file {csv_file} does not exist", "check the --csv path")
    try:
        # dtype=str and no NA parsing: labels like "NA" or "1" stay exactly as written.
        frame = pd.read_csv(csv_file, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{csv_file} is not UTF-8 text ({exc.reason} at byte {exc.start})",
                        "save the CSV with UTF-8 encoding") from None
    except pd.errors.EmptyDataError:
        raise UserError(f"{csv_file} is empty", "its first line must name the columns, e.g. path,label") from None
    except pd.errors.ParserError as exc:
        raise UserError(f"{csv_file} is not a valid CSV: {exc}",
                        "check the quoting and the number of fields on the line named") from None
    columns = [str(column) for column in frame.columns]
    wanted = {"--path-column": path_column, "--label-column": label_column}
    if truth_column:
        wanted["--truth-column"] = truth_column
    missing = [f"{column!r} ({option})" for option, column in wanted.items() if column not in columns]
    if missing:
        raise UserError(
            f"{name} has no column {', '.join(missing)}; its columns are: {', '.join(repr(c) for c in columns)}",
            "name existing columns with --path-column, --label-column (and --truth-column)",
        )
    if len(set(wanted.values())) < len(wanted):
        raise UserError(f"the same column of {name} is named for two roles: {wanted}",
                        "the path, label and truth columns must be different columns")
    if frame.empty:
        raise UserError(f"{name} has a header but no data rows", "add one row per image: path,label")

    extra_columns = [c for c in columns if c not in wanted.values()]
    paths = frame[path_column].tolist()
    labels = [label.strip() for label in frame[label_column].tolist()]
    truths = [t.strip() for t in frame[truth_column].tolist()] if truth_column else [""] * len(paths)
    extras = frame[extra_columns].to_dict("records") if extra_columns else [{} for _ in paths]

    _reject_rows(name, [r for r, p in enumerate(paths, 1) if not p.strip()],
                 f"has an empty path (column {path_column!r})", "fill in the image path or delete the row")
    _reject_rows(name, [r for r, lab in enumerate(labels, 1) if not lab],
                 f"has an empty label (column {label_column!r})", "fill in the class name or delete the row")
    _reject_rows(name, [r for r, p in enumerate(paths, 1) if "\x00" in p],
                 f"has a NUL character in its path (column {path_column!r}); no file name can hold one",
                 "correct the path (the file was probably damaged by the program that wrote it) or delete the row")
    stored = [p.replace("\\", "/") for p in paths]
    _reject_rows(name, [r for r, p in enumerate(paths, 1) if _is_absolute(p)],
                 "has an absolute path", f"write paths relative to the image root {image_root}")
    _reject_rows(name, [r for r, p in enumerate(stored, 1) if _escapes(p)],
                 "has a path outside the image root (it climbs out with '..')",
                 f"write paths that stay inside the image root {image_root}, or choose a higher --image-root")
    _reject_duplicates(name, stored)
    class_names = set(labels)
    _reject_rows(name, [r for r, t in enumerate(truths, 1) if t and t not in class_names],
                 f"has a truth (column {truth_column!r}) that is not one of the labels "
                 f"({', '.join(sorted(class_names)[:20])})",
                 "use a class name from the label column, or leave the truth cell empty when unknown")

    candidates = [
        Candidate(path=path, file=image_root / path, label=label, source_row=row, truth=truth or None,
                  extra={k: str(v) for k, v in extra.items()}, csv_name=name)
        for row, (path, label, truth, extra) in enumerate(zip(stored, labels, truths, extras), 1)
    ]
    return candidates, columns


# What pandas and spreadsheets write for an empty cell; as a label it is a missing value, not a class.
MISSING_LABEL_TOKENS = frozenset({"nan", "na", "n/a", "none", "null", "#n/a", "<na>", "-nan", "#na"})


def warn_of_missing_value_labels(candidates: Sequence[Candidate], label_column: str, events: EventSink) -> None:
    # 'nan' or 'NULL' may be a real class name, so it is imported; but where a spreadsheet or pandas wrote an
    # empty cell so, the person should know before auditing a class of unlabeled images.
    markers = sorted({c.label for c in candidates if c.label.lower() in MISSING_LABEL_TOKENS})
    for marker in markers:
        rows = [c.source_row for c in candidates if c.label == marker]
        shown = ", ".join(str(row) for row in rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
        events.log(f"class {marker!r} (column {label_column!r}, data rows {shown}) is how spreadsheets and pandas "
                   "write an empty cell: if these images have no label, fill the labels in or delete the rows "
                   "and import again", "warning")


def _reject_rows(csv_name: str, rows: Sequence[int], problem: str, fix: str) -> None:
    if not rows:
        return
    shown = ", ".join(str(r) for r in rows[:10]) + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")
    first = row_name(csv_name, rows[0])
    many = f"{csv_name} data rows {shown} {problem} (first: line {rows[0] + 1})"
    what = f"{first} {problem}" if len(rows) == 1 else many
    raise UserError(what, fix + "; data rows count from 1 after the header line")


def _is_absolute(path: str) -> bool:
    return path.startswith(("/", "\\")) or bool(PureWindowsPath(path).drive)


def _escapes(path: str) -> bool:
    normal = posixpath.normpath(path)
    return normal == ".." or normal.startswith("../")


def _reject_duplicates(csv_name: str, paths: Sequence[str]) -> None:
    first_row: dict[str, int] = {}
    clashes: list[tuple[int, int]] = []
    for row, path in enumerate(paths, 1):
        key = posixpath.normpath(path)  # "a.png" and "./a.png" are one file
        if key in first_row:
            clashes.append((first_row[key], row))
        else:
            first_row[key] = row
    if clashes:
        a, b = clashes[0]
        spelled = f" (row {b} writes it {paths[b - 1]!r})" if paths[a - 1] != paths[b - 1] else ""
        more = f"; {len(clashes) - 1} more duplicate rows follow" if len(clashes) > 1 else ""
        raise UserError(f"{csv_name} data rows {a} and {b} (lines {a + 1} and {b + 1}) both name the image "
                        f"{paths[a - 1]!r}{spelled}{more}",
                        "keep one row per image: delete or correct the duplicate rows")
