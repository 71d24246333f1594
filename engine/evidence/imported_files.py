"""Reading a file of per-sample rows that a user brings (predictions or embeddings) and matching it to the samples.

Two layouts, the same checks:

- ``.csv``: a ``path`` column (the sample's path as the dataset names it, relative to the image
  root, as ``python -m engine export`` writes it) and numeric columns;
- ``.npy``: an (R, W) numeric array whose row ``r`` is the sample on line ``r`` of a paths file.

Rows are read in chunks (``CHUNK_ROWS``), so an embeddings file of a million rows never sits whole
in memory. Every problem found is collected in a :class:`Problems` log, one entry per kind of
problem with its count and first few rows, each naming the file, the row and the fix: a caller
validates everything before it writes anything.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PATH_COLUMN = "path"
CHUNK_ROWS = 100_000
SHOWN = 5  # rows (or paths) named per problem; the count says how many more
NAN_TEXTS = frozenset({"nan", "+nan", "-nan"})


@dataclass(frozen=True)
class ImportProblem:
    """One kind of problem in one file: where (the first ``rows``, 1-based), how many, and the fix."""

    file: str
    what: str
    fix: str
    rows: tuple[int, ...] = ()  # 1-based data rows of a CSV, rows of a .npy, lines of a paths file
    count: int = 0  # rows with this problem (0: about the whole file)
    row_word: str = "data row"
    examples: tuple[str, ...] = ()  # e.g. the unknown paths of those rows

    @property
    def message(self) -> str:
        where = ""
        if self.rows:
            words = self.row_word + ("s" if self.count > 1 else "")
            listed = ", ".join(str(row) for row in self.rows)
            more = f" and {self.count - len(self.rows):,} more" if self.count > len(self.rows) else ""
            where = f" ({words} {listed}{more})"
        shown = ""
        if self.examples:
            shown = ": " + ", ".join(self.examples) + (" ..." if self.count > len(self.examples) else "")
        return f"{self.file}: {self.what}{where}{shown}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "what": self.what, "rows": list(self.rows), "count": self.count,
                "row_word": self.row_word, "examples": list(self.examples), "message": self.message, "fix": self.fix}


@dataclass
class _Found:
    what: str
    fix: str
    row_word: str
    rows: list[int] = field(default_factory=list)
    count: int = 0
    examples: list[str] = field(default_factory=list)


class Problems:
    """Problems collected over a whole file (over all its chunks), grouped by file and kind."""

    def __init__(self) -> None:
        self._found: dict[tuple[str, str], _Found] = {}

    def whole(self, file: Path | str, what: str, fix: str) -> None:
        """A problem of the whole file (not of some rows)."""
        self._found.setdefault((str(file), what), _Found(what, fix, ""))

    def rows(self, file: Path | str, what: str, fix: str, rows: np.ndarray, *, row_word: str = "data row",
             examples: list[str] | None = None) -> None:
        """``rows`` (1-based, ascending) have the problem ``what``; ``examples`` describe the first of them."""
        if not len(rows):
            return
        found = self._found.setdefault((str(file), what), _Found(what, fix, row_word))
        room = SHOWN - len(found.rows)
        found.rows.extend(int(row) for row in rows[:max(room, 0)])
        if examples:
            found.examples.extend(examples[:max(SHOWN - len(found.examples), 0)])
        found.count += len(rows)

    def counted(self, file: Path | str, what: str, fix: str, count: int, examples: list[str]) -> None:
        """A problem of ``count`` things that are not rows of the file (samples it lacks), a few named."""
        self._found[(str(file), what)] = _Found(what, fix, "", [], count, examples[:SHOWN])

    def __bool__(self) -> bool:
        return bool(self._found)

    def list(self) -> list[ImportProblem]:
        return [ImportProblem(file, found.what, found.fix, tuple(found.rows), found.count, found.row_word,
                              tuple(found.examples)) for (file, _), found in self._found.items()]


def shown_path(path: str) -> str:
    """A path quoted for a message (repr when it holds characters a terminal would not show)."""
    return f"'{path}'" if path.isprintable() else repr(path)


def not_utf8(file: Path) -> str:
    """What a problem names about a file that is not UTF-8: where its first byte that is not UTF-8 is (the byte
    offset and line, counted from 1), read in blocks."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = lines = 0
    try:
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as exc:  # exc.object: the bytes the decoder held back, then the block
                    at = offset + exc.start - (len(exc.object) - len(block))
                    line = lines + block[:max(at - offset, 0)].count(b"\n") + 1
                    byte = exc.object[exc.start:exc.start + 1].hex().upper()
                    return f"is not UTF-8 text (byte {at + 1:,}, 0x{byte}, on line {line:,}: {exc.reason})"
                lines += block.count(b"\n")
                offset += len(block)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        return f"is not UTF-8 text (it ends inside a character: {exc.reason})"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return "is not UTF-8 text"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_record(path: Path) -> dict[str, Any]:
    """What a run records of a file it read: where, its sha256, size and modification time."""
    stat = path.stat()
    return {"file": str(path), "sha256": file_sha256(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


@dataclass(frozen=True)
class Chunk:
    """Consecutive rows of a file: ``first`` is the 1-based number of its first row."""

    first: int
    paths: list[str]
    values: np.ndarray  # (rows, width) of the dtype asked for
    unread: np.ndarray | None = None  # (rows,) bool: rows with empty or non-numeric cells, already reported


@dataclass
class RowFile:
    """A file opened for reading in chunks: its numeric columns, its row count (when known) and the reader."""

    file: Path
    columns: list[str]  # the numeric columns of a CSV in file order; [] for a .npy
    width: int
    row_word: str
    paths_file: Path | None
    chunks: Iterator[Chunk]
    stopped: bool = False  # the reading stopped at a row it could not read (reported): the rest was never seen


def open_rows(file: Path, paths_file: Path | None, problems: Problems, *, option: str,
              dtype: type = np.float64) -> RowFile | None:
    """Open ``file`` (.csv, or .npy with ``paths_file``) for reading in chunks; None (and problems) if it cannot be.

    ``option`` names the command-line option that gave the file, for the fixes.
    """
    if not file.is_file():
        problems.whole(file, "does not exist" if not file.exists() else "is not a file",
                       f"check the path given to {option}")
        return None
    suffix = file.suffix.lower()
    if suffix == ".csv":
        return _open_csv(file, problems, option=option, dtype=dtype)
    if suffix == ".npy":
        return _open_npy(file, paths_file, problems, option=option, dtype=dtype)
    problems.whole(file, f"has the extension {file.suffix or '(none)'!r}, neither .csv nor .npy",
                   f"give {option} a .csv file (a path column and one column per value) or a .npy array "
                   "with --paths")
    return None


def _open_csv(file: Path, problems: Problems, *, option: str, dtype: type) -> RowFile | None:
    import pandas as pd

    try:
        with open(file, encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle), None)
    except UnicodeDecodeError:
        problems.whole(file, not_utf8(file), "save it as UTF-8 CSV")
        return None
    if not header:
        problems.whole(file, "is empty", f"its first line must name the columns: {PATH_COLUMN} and one per value")
        return None
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        problems.whole(file, f"names the column(s) {', '.join(map(repr, repeated))} more than once",
                       "give each column its own name")
        return None
    if PATH_COLUMN not in header:
        problems.whole(file, f"has no {PATH_COLUMN!r} column (its columns: {', '.join(map(repr, header[:12]))}"
                       f"{' ...' if len(header) > 12 else ''})",
                       f"add a column named {PATH_COLUMN} holding each sample's path as the dataset names it "
                       "(as `python -m engine export` writes it)")
        return None
    columns = [name for name in header if name != PATH_COLUMN]
    if not columns:
        problems.whole(file, "has no column besides the path", "add one numeric column per value")
        return None

    def chunks() -> Iterator[Chunk]:
        first = 1
        reader = None
        opened.stopped = False
        try:
            # Paths are text as written ("NA" is a path, not a missing value); an empty numeric cell is missing.
            # Made in the try: making the reader already reads (and decodes) the first block of rows.
            reader = pd.read_csv(file, encoding="utf-8-sig", dtype={PATH_COLUMN: str}, keep_default_na=False,
                                 na_values=[""], chunksize=CHUNK_ROWS)
            for frame in reader:
                values, unread = _csv_numbers(frame, columns, file, first, problems, dtype)
                yield Chunk(first, _csv_paths(frame), values, unread)
                first += len(frame)
        except UnicodeDecodeError:  # past the header: the header itself decoded
            opened.stopped = True
            problems.whole(file, not_utf8(file), "save it as UTF-8 CSV")
        except (pd.errors.ParserError, ValueError) as exc:
            opened.stopped = True
            problems.whole(file, f"cannot be read as CSV after data row {first - 1}: {exc}",
                           "give every row as many cells as the header has columns; quote cells holding commas")
        finally:
            if reader is not None:
                reader.close()

    opened = RowFile(file, columns, len(columns), "data row", None, iter(()))
    opened.chunks = chunks()
    return opened


def _csv_paths(frame: Any) -> list[str]:
    values: list[Any] = frame[PATH_COLUMN].tolist()
    return ["" if not isinstance(value, str) else value.replace("\\", "/") for value in values]


def _csv_numbers(frame: Any, columns: list[str], file: Path, first: int, problems: Problems,
                 dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """The numeric cells of ``columns`` as (rows, width), and which rows had empty or non-numeric cells (reported
    here; their cells are NaN)."""
    import pandas as pd

    values: np.ndarray = np.empty((len(frame), len(columns)), dtype=dtype)
    empty = np.zeros(len(frame), dtype=bool)
    not_number = np.zeros(len(frame), dtype=bool)
    examples: list[str] = []
    for index, name in enumerate(columns):
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column.dtype):
            values[:, index] = column.to_numpy(dtype=dtype, na_value=np.nan)
            empty |= column.isna().to_numpy()
            continue
        # Text in a numeric column: "nan", "inf" and numbers in text form are read; anything else is not a number.
        numbers = pd.to_numeric(column, errors="coerce")
        missing = column.isna().to_numpy()
        text = column.astype("string").str.strip().str.lower()
        unread = numbers.isna().to_numpy() & ~missing & ~text.isin(NAN_TEXTS).fillna(False).to_numpy()
        if unread.any() and len(examples) < SHOWN:
            examples += [f"{name}={column.iloc[row]!r}" for row in np.flatnonzero(unread)[:SHOWN]]
        not_number |= unread
        empty |= missing
        values[:, index] = numbers.to_numpy(dtype=dtype, na_value=np.nan)
    problems.rows(file, "has empty cells", "fill in every cell (or leave the row out if its sample is held out)",
                  np.flatnonzero(empty) + first)
    problems.rows(file, "has cells that are not numbers", "write plain numbers such as 0.25 or 1e-3",
                  np.flatnonzero(not_number) + first, examples=examples)
    return values, empty | not_number


def _open_npy(file: Path, paths_file: Path | None, problems: Problems, *, option: str, dtype: type) -> RowFile | None:
    if paths_file is None:
        problems.whole(file, "is a .npy array, which does not say which sample each row is",
                       f"add --paths FILE: one sample path per line, line r naming the sample of row r of {option}")
        return None
    try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        problems.whole(file, f"is not a NumPy array file that can be read without pickle ({exc})",
                       "save it with numpy.save(FILE, array) from a numeric array")
        return None
    if array.ndim != 2 or array.dtype.kind not in "fiu":
        problems.whole(file, f"holds a {array.ndim}-dimensional array of {array.dtype}, not (rows, columns) of numbers",
                       "save a 2-dimensional float array: one row per sample, one column per value")
        return None
    paths = read_paths_file(paths_file, problems)
    if paths is None:
        return None
    if len(paths) != len(array):
        problems.whole(file, f"has {len(array):,} rows but {paths_file} has {len(paths):,} lines",
                       f"give one path per row: line r of {paths_file.name} names the sample of row r")
        return None

    def chunks() -> Iterator[Chunk]:
        for start in range(0, len(array), CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, len(array))
            yield Chunk(start + 1, paths[start:stop], np.asarray(array[start:stop], dtype=dtype))

    return RowFile(file, [], int(array.shape[1]), "row", paths_file, chunks())


def read_paths_file(paths_file: Path, problems: Problems) -> list[str] | None:
    """The paths of a ``--paths`` file, one a line (a final empty line ignored); None (and a problem) if unreadable."""
    if not paths_file.is_file():
        problems.whole(paths_file, "does not exist" if not paths_file.exists() else "is not a file",
                       "check the path given to --paths")
        return None
    try:
        text = paths_file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        problems.whole(paths_file, not_utf8(paths_file), "save it as UTF-8 text")
        return None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1].replace("\\", "/") if line.endswith("\r") else line.replace("\\", "/") for line in lines]


class RowMatcher:
    """Matches the rows of one file to sample ids, chunk by chunk: unknown and repeated paths are problems."""

    def __init__(self, paths: list[str], problems: Problems, file: Path, row_word: str,
                 paths_file: Path | None) -> None:
        self.index = {path: sample_id for sample_id, path in enumerate(paths)}
        self.sample_paths = paths
        self.first_row = np.full(len(paths), -1, dtype=np.int64)  # 1-based row of each sample, -1: none
        self.problems = problems
        # A .npy's paths are in its paths file: that file and its line numbers are where to fix them.
        self.where, self.word = (paths_file, "line") if paths_file is not None else (file, row_word)
        self.rows = 0

    def match(self, chunk: Chunk) -> np.ndarray:
        """The sample id of each row of ``chunk`` (-1 for an unknown or repeated path)."""
        get = self.index.get
        ids = np.fromiter((get(path, -1) for path in chunk.paths), dtype=np.int64, count=len(chunk.paths))
        row_numbers = np.arange(chunk.first, chunk.first + len(ids))
        unknown = np.flatnonzero(ids < 0)
        self.problems.rows(self.where, "names paths that are not samples of this project",
                           "use each sample's path relative to the image root, as `python -m engine export` "
                           "writes it, and leave out rows of images not in the project",
                           row_numbers[unknown], row_word=self.word,
                           examples=[shown_path(chunk.paths[row]) for row in unknown[:SHOWN]])
        known = np.flatnonzero(ids >= 0)
        # A repeat within the chunk or of an earlier chunk: the later row is the duplicate.
        _, first_in_chunk = np.unique(ids[known], return_index=True)
        repeated_here = np.ones(len(known), dtype=bool)
        repeated_here[first_in_chunk] = False
        repeated = repeated_here | (self.first_row[ids[known]] >= 0)
        duplicate_rows = known[repeated]
        self.problems.rows(self.where, "repeats paths named on an earlier row",
                           "give each sample one row", row_numbers[duplicate_rows], row_word=self.word,
                           examples=[shown_path(chunk.paths[row]) for row in duplicate_rows[:SHOWN]])
        fresh = known[~repeated]
        self.first_row[ids[fresh]] = row_numbers[fresh]
        ids[duplicate_rows] = -1
        self.rows += len(ids)
        return ids

    def check_train_covered(self, train_ids: np.ndarray, file: Path) -> None:
        """Every training sample needs a row (held-out ones may be left out)."""
        self._check_covered(train_ids, file, "training samples",
                            "add a row for every training sample (held-out samples may be left out)")

    def check_all_covered(self, file: Path) -> None:
        """Every sample needs a row, held-out ones too (embeddings: the neighbour index spans both splits)."""
        self._check_covered(np.arange(len(self.sample_paths)), file, "samples",
                            "add a row for every sample, held-out ones too: duplicates across the splits are "
                            "found through them")

    def _check_covered(self, ids: np.ndarray, file: Path, what: str, fix: str) -> None:
        missing = ids[self.first_row[ids] < 0]
        if len(missing):
            self.problems.counted(
                file, f"has no row for {len(missing):,} of the {len(ids):,} {what}",
                f"{fix}; `python -m engine export PROJECT --out FILE` lists every sample's path",
                len(missing), [shown_path(self.sample_paths[sample]) for sample in missing[:SHOWN]])

    @property
    def matched_ids(self) -> np.ndarray:
        return np.flatnonzero(self.first_row >= 0)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()
