"""Class names: the natural order classes get their ids in, and how a typed class is read.

Classes are numbered at import in *natural* order: runs of ASCII digits compare as
numbers ("2" < "10", "img2" < "img10") and text compares case-insensitively. So
classes named ``0``..``N-1`` get the id equal to their name, and the two ways of
naming a class (its name, or its index) agree. :meth:`engine.store.Project.resolve_class`
is the one resolver for a typed class (CLI ``--relabel``, the app's digit keys and
picker): a string equal to a class name is that class, else a bare integer is its index.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_DIGIT_RUNS = re.compile(r"([0-9]+)")
_BARE_INTEGER = re.compile(r"[0-9]+")

# One chunk of a name: (0, number, "") for a digit run, (1, 0, folded text) for text.
# Numbers sort before text where a name has one and another name the other.
_Chunk = tuple[int, int, str]


def natural_key(name: str) -> tuple[tuple[_Chunk, ...], str]:
    """Sort key: (text, number) chunks compared naturally and case-insensitively.

    Ties ("07" and "7", "a" and "A") fall back to the exact name, so the order is total
    and the same on every machine.
    """
    chunks: list[_Chunk] = []
    for part in _DIGIT_RUNS.split(name):
        if not part:
            continue
        if _BARE_INTEGER.fullmatch(part):
            chunks.append((0, int(part), ""))
        else:
            chunks.append((1, 0, part.casefold()))
    return tuple(chunks), name


def natural_sorted(names: Iterable[str]) -> list[str]:
    """The distinct ``names`` in natural order: the order classes are numbered in at import."""
    return sorted(set(names), key=natural_key)


def bare_index(ref: str) -> int | None:
    """The integer a typed class reference spells (ASCII digits only), else None."""
    return int(ref) if _BARE_INTEGER.fullmatch(ref) else None
