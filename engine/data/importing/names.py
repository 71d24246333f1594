"""The dataset's items before probing (:class:`Candidate`) and how file names and CSV rows are shown in messages.

File names may hold bytes that are not UTF-8 (surrogate escapes); they are shown with ``\\xNN`` escapes,
and CSV rows are named by their data row number (1 is the line after the header).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


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
            return f"{row_name(self.csv_name, self.source_row)} ({quoted(self.path)})"
        return quoted(self.path)


def quoted(path: str) -> str:
    # repr would double the backslashes of a non-UTF-8 name's \\x escapes; it stays for control characters.
    return f"'{path}'" if path.isprintable() else repr(path)


def row_name(csv_name: str, row: int) -> str:
    return f"{csv_name} data row {row} (line {row + 1})"


def is_utf8(name: str) -> bool:
    """False for a name the file system handed over with undecodable bytes (surrogate escapes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown_name(text: str) -> str:
    """``text`` safe to print and store: undecodable bytes of a file name as \\xNN escapes."""
    return text if is_utf8(text) else os.fsencode(text).decode("utf-8", "backslashreplace")


def inside(real_path: str, real_root: str) -> bool:
    return real_path == real_root or real_path.startswith(real_root.rstrip(os.sep) + os.sep)
