"""Counts in words: never "1 files" (issue 19 item 17)."""

from engine.words import plural


def test_plural() -> None:
    assert plural(1, "file") == "1 file"
    assert plural(0, "file") == "0 files"
    assert plural(1438, "audited sample") == "1,438 audited samples"
    assert plural(2, "entry", "entries") == "2 entries"
