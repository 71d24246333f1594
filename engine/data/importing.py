"""Turning a dataset on disk into a project: ImageFolder layouts and CSV label files.

Both importers work the same way: list the candidate images with their labels,
reject structural mistakes at once (each message names the file or CSV row and
the fix), probe every image in parallel, skip the unusable ones *with a reason*
(logged, and kept in project meta ``skipped``), split off a stratified, seeded
test set, and write the project.

A project is built in a hidden sibling folder and renamed into place only when
everything succeeded, so a failed import leaves nothing behind (and never
touches a folder that already held something).

CSV rows are named by their *data row* number: 1 is the first row after the
header, which is line 2 of the file. ``source_row`` stores that data row number.
"""

from __future__ import annotations

import errno
import os
import posixpath
import shutil
import stat
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np

from engine.data.classes import natural_sorted
from engine.data.images import BadImage, ImageInfo, probe
from engine.errors import UserError
from engine.events import EventSink
from engine.store import Project, is_project
from engine.words import plural

DEFAULT_FOLDS = 3
# Files that operating systems drop into folders; never images, never worth a warning.
_JUNK_NAMES = {"thumbs.db", "desktop.ini", "icon\r", "__macosx"}
_MAX_LOGGED_SKIPS = 20


@dataclass
class Candidate:
    """One image the dataset names, before probing."""

    path: str  # relative to the image root, forward slashes: what the project stores
    file: Path  # where it is read from now
    label: str
    split: str | None = None  # fixed by the dataset (train/ and test/ folders), else chosen here
    source_row: int | None = None  # CSV data row, 1-based
    truth: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    csv_name: str = ""
    problem: str | None = None  # found while listing: never probed, listed as skipped with this reason

    def where(self) -> str:
        if self.source_row is not None:
            return f"{_row_name(self.csv_name, self.source_row)} ({_quoted(self.path)})"
        return _quoted(self.path)


def _quoted(path: str) -> str:
    # repr would double the backslashes of a non-UTF-8 name's \\x escapes; it stays for control characters.
    return f"'{path}'" if path.isprintable() else repr(path)


# ------------------------------------------------------------------ public API
def import_folder(
    project_root: Path | str,
    images_dir: Path | str,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    folds: int = DEFAULT_FOLDS,
    events: EventSink | None = None,
) -> Project:
    """Make a project from an ImageFolder dataset: ``root/<class>/<image>``.

    When ``root`` holds ``train/<class>/...`` and ``test/<class>/...`` that split is
    used as is; otherwise a stratified ``test_fraction`` of the images (seeded) is held
    out (so are ``Train/Test``, ``training/testing``, ``train/val``...: val and valid folders join
    the test split). Every class needs at least ``folds`` training images (K-fold cross-validation).
    Class ids follow the class names in natural order (``2`` before ``10``).
    """
    images_dir = Path(images_dir).absolute()
    _check_options(test_fraction, folds, seed)
    candidates, layout = scan_folder(images_dir, events)
    source = {"kind": "folder", "image_root": str(images_dir), "layout": layout}
    return build_project(
        project_root,
        lambda project, _staging: populate(project, candidates, source, test_fraction=test_fraction, seed=seed,
                                           folds=folds, events=events, dataset=str(images_dir)),
    )


def import_csv(
    project_root: Path | str,
    csv_file: Path | str,
    image_root: Path | str,
    *,
    path_column: str,
    label_column: str,
    truth_column: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    folds: int = DEFAULT_FOLDS,
    events: EventSink | None = None,
) -> Project:
    """Make a project from a CSV of image paths (relative to ``image_root``) and labels.

    Columns other than the path, label and truth columns are kept per sample (``extra``)
    and their order is recorded, so that export can write the same columns back. A truth
    column, when named, gives each sample's true label (empty cells: truth unknown).
    """
    csv_file = Path(csv_file).absolute()
    image_root = Path(image_root).absolute()
    _check_options(test_fraction, folds, seed)
    if not image_root.is_dir():
        raise UserError(f"image root {image_root} is not a folder",
                        "pass the folder that the CSV's paths are relative to with --image-root")
    candidates, columns = read_csv_candidates(csv_file, image_root, path_column=path_column,
                                              label_column=label_column, truth_column=truth_column)
    events = events or EventSink()
    _warn_of_missing_value_labels(candidates, label_column, events)
    source = {
        "kind": "csv",
        "image_root": str(image_root),
        "csv": str(csv_file),
        "path_column": path_column,
        "label_column": label_column,
        "truth_column": truth_column,
        "columns": columns,
    }
    return build_project(
        project_root,
        lambda project, _staging: populate(project, candidates, source, test_fraction=test_fraction, seed=seed,
                                           folds=folds, events=events, dataset=csv_file.name),
    )


def import_summary(project: Project) -> dict[str, Any]:
    """Classes with train/test counts and the skipped images, for the CLI and the GUI."""
    table = project.sample_table()
    names = project.class_names()
    classes = [
        {
            "id": index,
            "name": name,
            "train": int(((table.split == "train") & (table.given_label == index)).sum()),
            "test": int(((table.split == "test") & (table.given_label == index)).sum()),
        }
        for index, name in enumerate(names)
    ]
    skipped = project.meta("skipped", [])
    return {
        "project": str(project.root),
        "source": project.source,
        "samples": project.num_samples,
        "train": int(len(table.train_ids)),
        "test": int(len(table.test_ids)),
        "classes": classes,
        "skipped": skipped,
    }


# ------------------------------------------------------------ project folder
def build_project(project_root: Path | str, fill: Callable[[Project, Path], None]) -> Project:
    """Make a project at ``project_root``: ``fill(project, staging_folder)`` writes it in a
    hidden sibling folder that is renamed into place when ``fill`` returns, and removed
    (with any parent folders made for it) when anything fails.
    """
    root = _usable_project_path(Path(project_root).absolute())
    try:
        if is_project(root):
            raise UserError(f"{root} already holds a project", "choose another folder, or open it instead")
        if root.exists() and not root.is_dir():
            raise UserError(f"{root} is a file, not a folder", "choose a new or empty folder for the project")
        if root.is_dir() and any(root.iterdir()):
            raise UserError(f"{root} is not empty", "choose a new or empty folder for the project")
        made_parents = [parent for parent in root.parents if not parent.exists()]  # deepest first
    except OSError as exc:
        raise UserError(f"cannot use {root} as the project folder: {exc.strerror or exc}",
                        "choose a new or empty folder you can write to") from None
    staging = root.parent / _staging_name(root.name)
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        project = Project.create(staging)
    except OSError as exc:
        raise UserError(f"cannot create the project folder {root}: {exc.strerror or exc}",
                        "choose a folder you can write to") from None
    removed_empty_root = False
    try:
        fill(project, staging)
        project.close()
        if root.is_dir():
            root.rmdir()  # it was empty (checked above); the rename needs the name free
            removed_empty_root = True
        try:
            staging.rename(root)
        except OSError as exc:
            raise UserError(f"cannot put the new project in place at {root}: {exc.strerror or exc}",
                            "choose a new or empty folder you can write to, and import again") from None
    except BaseException:
        project.close()
        shutil.rmtree(staging, ignore_errors=True)
        if removed_empty_root and not root.exists():
            root.mkdir()
        for parent in made_parents:
            try:
                parent.rmdir()
            except OSError:
                break
        raise
    return Project.open(root)


# The longest file or folder name most file systems allow, in bytes.
NAME_MAX_BYTES = 255


def _usable_project_path(root: Path) -> Path:
    """``root``, or where its link leads; a clear refusal for names too long or links to nothing."""
    for part in root.parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX_BYTES:
            raise UserError(f"the folder name {_shown(part[:40])}... in the project path is {size} bytes long; "
                            f"file systems allow at most {NAME_MAX_BYTES}",
                            "choose a shorter name for the project folder")
    if root.is_symlink():
        target = Path(os.path.realpath(root))
        if not target.exists():
            raise UserError(f"the project path {root} is a link to {target}, which does not exist",
                            f"create {target} first, remove the link, or choose another project folder")
        return target
    return root


def _staging_name(project_name: str) -> str:
    """A hidden sibling name for building the project; the project's name is cut to keep it legal."""
    suffix = f".importing-{uuid.uuid4().hex[:8]}"
    room = NAME_MAX_BYTES - 1 - len(suffix)
    name = os.fsencode(project_name)[:room].decode("utf-8", "ignore") if _is_utf8(project_name) else "project"
    return f".{name}{suffix}"


# ---------------------------------------------------------------- listing
def scan_folder(images_dir: Path, events: EventSink | None = None) -> tuple[list[Candidate], str]:
    """Candidates of an ImageFolder dataset, sorted by path, and its layout name.

    The layout is ``<root>/<class>/...``, or split folders on top (``train/`` with ``test/``,
    ``val/``, ``valid/``, ``testing/``... in any case) with the classes below them. The walk
    never recurses (a tree 1,000 folders deep is fine), never follows a folder link (it
    either leads outside the dataset or to folders read anyway: loops and duplicates), and
    skips hidden and system folders (``.git``, ``__MACOSX``) with a note. What it cannot use
    (non-UTF-8 names, linked folders, folders nested too deep) comes back as candidates with
    a ``problem``: listed as skipped, like unreadable images. Files outside the class folders
    are not part of the dataset; ``events`` hears about them.
    """
    if not images_dir.is_dir():
        raise UserError(f"image folder {images_dir} does not exist" if not images_dir.exists()
                        else f"{images_dir} is a file, not a folder",
                        "pass a folder laid out as <folder>/<class>/<image>")
    walk = _Walk(images_dir)
    top = walk.folders(images_dir)
    train_dirs = [d for d in top if d.name.lower() in _TRAIN_SPLIT_NAMES]
    test_dirs = [d for d in top if d.name.lower() in _TEST_SPLIT_NAMES]
    split_dirs = train_dirs + test_dirs
    is_split_layout = bool(train_dirs) and (bool(test_dirs) or len(top) == len(train_dirs)) and all(
        walk.folders(folder, quiet=True) for folder in split_dirs)
    candidates: list[Candidate] = []
    class_dirs: list[Path] = []
    if is_split_layout:
        for split_dir in split_dirs:
            # Without a test folder the test split is chosen by --test-fraction, as for plain folders.
            split = None if not test_dirs else "train" if split_dir in train_dirs else "test"
            for class_dir in walk.folders(split_dir):
                class_dirs.append(class_dir)
                candidates += walk.class_files(class_dir, split)
        train_classes = {c.label for c in candidates if c.split != "test" and c.problem is None}
        unknown = natural_sorted({c.label for c in candidates if c.split == "test" and c.problem is None}
                                 - train_classes)
        if unknown:
            train = ", ".join(str(d) for d in train_dirs)
            test = ", ".join(str(d) for d in test_dirs)
            raise UserError(
                f"{test} has classes that {train} lacks: {', '.join(unknown)}",
                "every test class needs training images: add train/<class>/ folders or remove those test folders",
            )
        layout = "train-test" if test_dirs else "train-only"
        ignored = [folder.name for folder in top if folder not in split_dirs]
        if events:
            events.log(f"read {', '.join(d.name for d in split_dirs)} in {images_dir} as split folders "
                       f"({', '.join(d.name for d in test_dirs) or 'no'} test folder), with the classes below them")
            if ignored:
                events.log(f"using the split folders of {images_dir}; ignored the other folders: {', '.join(ignored)}",
                           "warning")
    else:
        class_dirs = top
        candidates = [item for class_dir in top for item in walk.class_files(class_dir, None)]
        layout = "imagefolder"
    candidates = walk.refused + candidates
    usable = [c for c in candidates if c.problem is None]
    empty = natural_sorted({folder.name for folder in class_dirs} - {c.label for c in usable})
    if empty and usable and events:
        events.log(f"ignored empty class folder(s) in {images_dir}: {', '.join(empty)}", "warning")
    loose = sorted(p for p in images_dir.iterdir() if p.is_file() and not _hidden(p.name))
    if loose and usable and events:
        events.log(f"ignored {plural(len(loose), 'file')} directly in {images_dir} (not in a class folder), "
                   f"e.g. {_shown(loose[0].name)!r}", "warning")
    if walk.hidden and events:
        shown = ", ".join(walk.hidden[:5]) + (f" and {len(walk.hidden) - 5} more" if len(walk.hidden) > 5 else "")
        events.log(f"skipped {len(walk.hidden)} hidden or system file(s)/folder(s) in {images_dir}: {shown}")
    if not usable:
        hint = "lay it out as <folder>/<class>/<image>: one sub-folder per class, named after the class"
        if candidates:
            reasons = "; ".join(f"{c.where()}: {c.problem}" for c in candidates[:3])
            raise UserError(f"no usable images found in {images_dir} ({reasons})", hint)
        if loose:
            raise UserError(f"{images_dir} has {plural(len(loose), 'file')} but no class sub-folders", hint)
        raise UserError(f"no images found in {images_dir}", hint)
    candidates.sort(key=lambda c: c.path)
    return candidates, layout


# Split folder names (compared case-insensitively): validation folders join the test split.
_TRAIN_SPLIT_NAMES = {"train", "training"}
_TEST_SPLIT_NAMES = {"test", "testing", "val", "valid", "validation"}
# Below a class folder, deeper than this is not a dataset layout but an accident (or an attack).
MAX_FOLDER_DEPTH = 64


class _Walk:
    """An iterative walk of an ImageFolder tree that remembers what it skipped and why."""

    def __init__(self, images_dir: Path) -> None:
        self.images_dir = images_dir
        self.real_root = os.path.realpath(images_dir)
        self.visited: set[str] = {self.real_root}
        self.hidden: list[str] = []  # hidden and system names skipped: noted, not listed as images
        self.refused: list[Candidate] = []  # folders that cannot be read as classes or split folders

    def folders(self, folder: Path, quiet: bool = False) -> list[Path]:
        """The sub-folders of ``folder`` that can hold images, sorted by name; the others are noted."""
        found: list[Path] = []
        for entry in self._entries(folder, None if quiet else self.refused):
            path = Path(entry.path)
            problem = self._folder_problem(entry, quiet)
            if problem == "":
                found.append(path)
            elif problem is not None and not quiet:
                self.refused.append(_refused_folder(self._relative(path), problem))
        return found

    def class_files(self, class_dir: Path, split: str | None) -> list[Candidate]:
        """Every file below ``class_dir`` (regular or not: the probe judges), labelled with its name."""
        label = class_dir.name
        found: list[Candidate] = []
        stack = [(class_dir, 0)]
        while stack:
            folder, depth = stack.pop()
            for entry in self._entries(folder, found):
                path = Path(entry.path)
                relative = self._relative(path)
                if _hidden(entry.name):
                    self.hidden.append(relative)
                    continue
                if not _is_utf8(entry.name):
                    found.append(Candidate(path=relative, file=path, label=label, split=split,
                                           problem=_NOT_UTF8))
                    continue
                try:
                    is_folder = entry.is_dir()  # follows a link: a linked folder is refused below
                except OSError:
                    is_folder = False
                if not is_folder:
                    # Files, links to files, broken links, FIFOs, sockets: the probe refuses the unusable ones.
                    found.append(Candidate(path=relative, file=path, label=label, split=split))
                    continue
                problem = self._folder_problem(entry, False)
                if problem is None:
                    continue
                if problem:
                    found.append(_refused_folder(relative, problem, label, split))
                elif depth + 1 > MAX_FOLDER_DEPTH:
                    found.append(_refused_folder(relative, f"nested more than {MAX_FOLDER_DEPTH} folders deep "
                                                 "inside its class folder; move its images up", label, split))
                else:
                    stack.append((path, depth + 1))
        return found

    def _entries(self, folder: Path, refusals: list[Candidate] | None) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(folder) as listing:
                return sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            if refusals is not None:
                refusals.append(_refused_folder(self._relative(folder), f"cannot be read ({exc.strerror or exc})"))
            return []

    def _folder_problem(self, entry: os.DirEntry[str], quiet: bool) -> str | None:
        """None: not a folder to read (a file, hidden or system); "": read it; else why it is refused."""
        try:
            if not entry.is_dir():
                return None
        except OSError:
            return None
        if _hidden(entry.name):
            if not quiet:
                self.hidden.append(self._relative(Path(entry.path)) + "/")
            return None
        if not _is_utf8(entry.name):
            return _NOT_UTF8
        real = os.path.realpath(entry.path)
        if entry.is_symlink():
            if _inside(real, self.real_root):
                where = os.path.relpath(real, self.real_root)
                target = "the image folder itself" if where == "." else f"the folder {where!r} inside the image folder"
                return (f"a link to {_shown(target)}: not followed, as its images are read there (or it loops) and "
                        "would be imported twice")
            return (f"a link to the folder {_shown(real)}, outside the image folder: not followed; copy that "
                    "folder into the dataset to import it")
        if real in self.visited:
            return f"the same folder as {_shown(real)}, already read"
        if not quiet:  # a quiet look (is this a split folder?) reads nothing yet
            self.visited.add(real)
        return ""

    def _relative(self, path: Path) -> str:
        return _shown(path.relative_to(self.images_dir).as_posix())


_NOT_UTF8 = ("its name is not valid UTF-8 text (shown with \\x escapes); rename it, e.g. with `convmv`, "
             "to import it")


def _refused_folder(relative: str, problem: str, label: str = "", split: str | None = None) -> Candidate:
    return Candidate(path=relative + "/", file=Path("."), label=label, split=split, problem=problem)


def _is_utf8(name: str) -> bool:
    """False for a name the file system handed over with undecodable bytes (surrogate escapes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(text: str) -> str:
    """``text`` safe to print and store: undecodable bytes of a file name as \\xNN escapes."""
    return text if _is_utf8(text) else os.fsencode(text).decode("utf-8", "backslashreplace")


def _inside(real_path: str, real_root: str) -> bool:
    return real_path == real_root or real_path.startswith(real_root.rstrip(os.sep) + os.sep)


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in _JUNK_NAMES


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


def _warn_of_missing_value_labels(candidates: Sequence[Candidate], label_column: str, events: EventSink) -> None:
    # 'nan' or 'NULL' may be a real class name, so it is imported; but where a spreadsheet or pandas wrote an
    # empty cell so, the person should know before auditing a class of unlabeled images.
    markers = sorted({c.label for c in candidates if c.label.lower() in MISSING_LABEL_TOKENS})
    for marker in markers:
        rows = [c.source_row for c in candidates if c.label == marker]
        shown = ", ".join(str(row) for row in rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
        events.log(f"class {marker!r} (column {label_column!r}, data rows {shown}) is how spreadsheets and pandas "
                   "write an empty cell: if these images have no label, fill the labels in or delete the rows "
                   "and import again", "warning")


def _row_name(csv_name: str, row: int) -> str:
    return f"{csv_name} data row {row} (line {row + 1})"


def _reject_rows(csv_name: str, rows: Sequence[int], problem: str, fix: str) -> None:
    if not rows:
        return
    shown = ", ".join(str(r) for r in rows[:10]) + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")
    first = _row_name(csv_name, rows[0])
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


# ---------------------------------------------------------------- populating
def populate(
    project: Project,
    candidates: list[Candidate],
    source: dict[str, Any],
    *,
    test_fraction: float,
    seed: int,
    folds: int,
    events: EventSink | None,
    dataset: str,
) -> None:
    """Probe the candidates, split, validate class sizes, and write classes, samples and meta."""
    events = events or EventSink()
    _check_options(test_fraction, folds, seed)
    real_root = os.path.realpath(source["image_root"]) if Path(source["image_root"]).is_absolute() else None
    infos = _probe_all(candidates, events, real_root)
    good = [(c, info) for c, info in zip(candidates, infos) if isinstance(info, ImageInfo)]
    bad = [(c, info) for c, info in zip(candidates, infos) if isinstance(info, BadImage)]
    skipped = [
        {"path": c.path, "reason": info.reason, **({"row": c.source_row} if c.source_row is not None else {})}
        for c, info in bad
    ]
    for c, info in bad[:_MAX_LOGGED_SKIPS]:
        events.log(f"skipped {c.where()}: {info.reason}", "warning")
    if bad:
        events.log(f"skipped {len(bad)} of {len(candidates)} images (listed in the import summary)", "warning")

    missing = [c for c, info in bad if info.reason == "file not found"]
    if source["kind"] == "csv" and len(missing) * 2 > len(candidates):
        raise UserError(
            f"{len(missing)} of the {len(candidates)} images named in {dataset} are not under the image root "
            f"{source['image_root']} (first: {missing[0].where()})",
            "check --image-root: the CSV's paths are relative to it",
        )
    if not good:
        reasons = "; ".join(f"{c.where()}: {info.reason}" for c, info in bad[:3])
        raise UserError(f"none of the {len(candidates)} images in {dataset} could be read ({reasons})",
                        "check that the files are images (PNG, JPEG, ...) and not damaged")

    # Classes come from the files that could be images (not from refused folders or special files),
    # in natural order: classes named 0..N-1 get id == name.
    listed = [c for c in candidates if c.problem is None]
    class_names = natural_sorted(c.label for c in listed)
    if len(class_names) < 2:
        raise UserError(f"{dataset} has only one class ({class_names[0]!r})",
                        "a classifier needs at least two classes: add images of another class")
    class_id = {name: index for index, name in enumerate(class_names)}
    labels = np.array([class_id[c.label] for c, _ in good], dtype=np.int64)
    split = _choose_split([c for c, _ in good], labels, len(class_names), test_fraction, seed)
    _check_class_sizes(class_names, labels, split, listed, folds, test_fraction, dataset)

    rows = [
        {
            "path": c.path,
            "split": str(s),
            "label": int(label),
            "true_label": class_id[c.truth] if c.truth else None,
            "source_row": c.source_row,
            "width": info.width,
            "height": info.height,
            "extra": c.extra or None,
        }
        for (c, info), label, s in zip(good, labels, split)
    ]
    project.add_classes(class_names)
    project.add_samples(rows)
    fixed_split = all(c.split is not None for c, _ in good)  # train/ and test/ folders: no fraction applied
    project.set_meta("source", {**source, "test_fraction": None if fixed_split else test_fraction, "seed": seed,
                                "folds": folds})
    project.set_meta("skipped", skipped)
    events.log(f"imported {len(rows)} images of {len(class_names)} classes "
               f"({int((split == 'train').sum())} train, {int((split == 'test').sum())} test)")


def _probe_all(candidates: list[Candidate], events: EventSink, real_root: str | None) -> list[ImageInfo | BadImage]:
    def one(candidate: Candidate) -> ImageInfo | BadImage:
        problem = candidate.problem or _file_problem(candidate.file, real_root)
        if problem:
            return BadImage(problem)
        try:
            return probe(candidate.file)
        except BadImage as exc:
            return exc

    total = len(candidates)
    results: list[ImageInfo | BadImage] = []
    # Probing is file I/O plus decoders that release the GIL: threads overlap both.
    workers = min(32, 2 * (os.cpu_count() or 1))
    last = time.monotonic()
    events.progress("import", 0, total)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for result in pool.map(one, candidates):
            results.append(result)
            now = time.monotonic()
            if now - last > 0.5:
                last = now
                events.progress("import", len(results), total)
    events.progress("import", total, total)
    return results


def _file_problem(file: Path, real_root: str | None) -> str | None:
    """Why ``file`` is not an image file inside the image root, before any decoder sees it; None if it is.

    Judged on the real path (links resolved), never lexically: a link that leads out of the
    image root is refused, as are broken links, link loops, folders, FIFOs, sockets and devices
    (opening a FIFO would wait forever).
    """
    try:
        info = file.stat()
    except FileNotFoundError:
        if file.is_symlink():
            return f"a broken link (it points to {_shown(os.readlink(file))!r}, which does not exist)"
        return "file not found"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a link that loops back on itself"
        if exc.errno == errno.ENAMETOOLONG:
            return "its path is longer than the file system allows"
        return f"cannot be read ({exc.strerror or exc})"
    except ValueError as exc:  # an embedded NUL, should one get here
        return f"not a usable path ({exc})"
    if real_root is not None:
        real = os.path.realpath(file)
        if not _inside(real, real_root):
            return (f"a link to {_shown(real)}, outside the image root {_shown(real_root)}: refused; copy the file "
                    "into the image root to import it")
    if stat.S_ISDIR(info.st_mode):
        return "is a folder, not an image"
    if not stat.S_ISREG(info.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode)
                else "a device")
        return f"not a regular file but {kind}; only image files can be imported"
    return None


def _choose_split(good: list[Candidate], labels: np.ndarray, num_classes: int, test_fraction: float,
                  seed: int) -> np.ndarray:
    if good and all(c.split is not None for c in good):
        return np.array([c.split for c in good], dtype=object)
    split = np.full(len(good), "train", dtype=object)
    if test_fraction == 0:
        return split
    counts = np.bincount(labels, minlength=num_classes)
    if counts.min() < 2:
        return split  # a class this small fails the size check below, with a better message
    from sklearn.model_selection import train_test_split  # heavy: only at import time

    # At least one test image per class, which a stratified split requires.
    n_test = max(num_classes, int(round(test_fraction * len(good))))
    try:
        _, test_index = train_test_split(np.arange(len(good)), test_size=n_test, stratify=labels,
                                         random_state=seed)
    except ValueError as exc:
        raise UserError(f"cannot hold out {test_fraction:.0%} of {len(good)} images for testing: {exc}",
                        "lower --test-fraction or add images") from None
    split[test_index] = "test"
    return split


def _check_class_sizes(class_names: list[str], labels: np.ndarray, split: np.ndarray, candidates: list[Candidate],
                       folds: int, test_fraction: float, dataset: str) -> None:
    named = Counter(c.label for c in candidates)
    usable = np.bincount(labels, minlength=len(class_names))
    train = np.bincount(labels[split == "train"], minlength=len(class_names))
    for index, name in enumerate(class_names):
        if train[index] >= folds:
            continue
        lost = named[name] - usable[index]
        skipped = f", {lost} of its {named[name]} images were skipped as unreadable" if lost else ""
        held_out = usable[index] - train[index]
        test = f" after {held_out} went to the test split" if held_out else ""
        raise UserError(
            f"class {name!r} of {dataset} has only {train[index]} training image(s){test}{skipped}; "
            f"{folds}-fold cross-validation needs at least {folds} per class",
            f"add images of class {name!r}, lower --folds, or lower --test-fraction (now {test_fraction:g})",
        )


MAX_SEED = 2**32 - 1  # what NumPy's and scikit-learn's seeded generators take


def _check_options(test_fraction: float, folds: int, seed: int = 0) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed {seed} is outside 0..{MAX_SEED}", "use a seed such as --seed 0 (the default)")
    if not 0 <= test_fraction < 1:
        raise UserError(f"test fraction {test_fraction} is outside [0, 1)",
                        "use e.g. --test-fraction 0.2 to hold out 20% (0 for no test split)")
    if folds < 2:
        raise UserError(f"{folds} folds is too few for cross-validation", "use --folds 2 or more (default 3)")
