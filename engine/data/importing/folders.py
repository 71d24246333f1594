"""Listing an ImageFolder dataset: class folders (with optional split folders on top), walked without
recursion, links and hidden or system entries judged on the way (:func:`scan_folder`)."""

from __future__ import annotations

import os
from pathlib import Path

from engine.data.classes import natural_sorted
from engine.data.importing.names import Candidate, inside, is_utf8, shown_name
from engine.errors import UserError
from engine.events import EventSink
from engine.words import plural

# Files that operating systems drop into folders; never images, never worth a warning.
_JUNK_NAMES = {"thumbs.db", "desktop.ini", "icon\r", "__macosx"}


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
                   f"e.g. {shown_name(loose[0].name)!r}", "warning")
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
                if not is_utf8(entry.name):
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
        if not is_utf8(entry.name):
            return _NOT_UTF8
        real = os.path.realpath(entry.path)
        if entry.is_symlink():
            if inside(real, self.real_root):
                where = os.path.relpath(real, self.real_root)
                target = "the image folder itself" if where == "." else f"the folder {where!r} inside the image folder"
                return (f"a link to {shown_name(target)}: not followed, as its images are read there (or it loops) and "
                        "would be imported twice")
            return (f"a link to the folder {shown_name(real)}, outside the image folder: not followed; copy that "
                    "folder into the dataset to import it")
        if real in self.visited:
            return f"the same folder as {shown_name(real)}, already read"
        if not quiet:  # a quiet look (is this a split folder?) reads nothing yet
            self.visited.add(real)
        return ""

    def _relative(self, path: Path) -> str:
        return shown_name(path.relative_to(self.images_dir).as_posix())


_NOT_UTF8 = ("its name is not valid UTF-8 text (shown with \\x escapes); rename it, e.g. with `convmv`, "
             "to import it")


def _refused_folder(relative: str, problem: str, label: str = "", split: str | None = None) -> Candidate:
    return Candidate(path=relative + "/", file=Path("."), label=label, split=split, problem=problem)


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in _JUNK_NAMES
