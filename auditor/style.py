"""Colours and small helpers shared by the views, so every view speaks the same visual language."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon
from PySide6.QtWidgets import QLabel, QLayout, QVBoxLayout, QWidget

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


def text_label(text: str = "", role: str = "muted", *, wrap: bool = True, selectable: bool = False) -> QLabel:
    """A label in one of the stylesheet's roles ("muted", "hint", "sectionTitle", ...)."""
    label = QLabel(text)
    label.setObjectName(role)
    label.setWordWrap(wrap)
    if selectable:  # a path, a command or a figure a person may copy
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


# A widget or a layout (with its stretch factor, if any), or a number of pixels of space.
ColumnPart = QWidget | QLayout | tuple[QWidget | QLayout, int] | int


def column_layout(parent: QWidget | None, parts: Sequence[ColumnPart], *, margins: tuple[int, int, int, int] = (0, 0, 0, 0),
           spacing: int = 8) -> QVBoxLayout:
    """A vertical layout of ``parts``, top to bottom (on ``parent`` when given)."""
    layout = QVBoxLayout() if parent is None else QVBoxLayout(parent)
    layout.setContentsMargins(*margins)
    layout.setSpacing(spacing)
    for part in parts:
        if isinstance(part, int):
            layout.addSpacing(part)
            continue
        item, stretch = part if isinstance(part, tuple) else (part, 0)
        if isinstance(item, QLayout):
            layout.addLayout(item, stretch)
        else:
            layout.addWidget(item, stretch)
    return layout
