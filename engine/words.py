"""Counts in words for people: "1 file", "3 files", "1,438 samples" (never "1 files")."""

from __future__ import annotations


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """``count`` with ``noun``, in the plural unless it is exactly one; thousands separated."""
    return f"{count:,} {noun if count == 1 else plural_noun or noun + 's'}"
