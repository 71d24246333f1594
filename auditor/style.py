"""Colours and small helpers shared by the views, so every view speaks the same visual language."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QColor, QIcon

from engine import resources_dir

RESOURCES: Path = resources_dir()

ACTION_COLORS: dict[str, QColor] = {
    "relabel": QColor("#2f6fde"),
    "remove": QColor("#d64541"),
    "keep": QColor("#2e9d5b"),
}
ACTION_TEXT: dict[str, str] = {"relabel": "relabelled", "remove": "removed", "keep": "kept"}
ACCENT = QColor("#2f6fde")
MUTED = QColor("#6b7280")
FLAG = QColor("#e07b00")
CURVE_COLORS = ["#2f6fde", "#e07b00", "#2e9d5b", "#d64541", "#8e44ad", "#16a085", "#7f8c8d", "#c0392b"]


def icon(name: str) -> QIcon:
    path = RESOURCES / "icons" / f"{name}.svg"
    return QIcon(str(path)) if path.is_file() else QIcon()


def stylesheet() -> str:
    path = RESOURCES / "style.qss"
    return path.read_text(encoding="utf-8") if path.is_file() else ""
