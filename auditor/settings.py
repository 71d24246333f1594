"""What the app remembers between runs: window layout, last and recent projects.

All of it lives in one QSettings store; tests point it at a temporary folder
with ``QSettings.setPath`` (IniFormat, UserScope) before the app starts.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, QStandardPaths
from PySide6.QtWidgets import QMainWindow, QSplitter, QWidget

ORGANIZATION = "LabelAuditor"
APPLICATION = "Label Auditor"
MAX_RECENT = 10
DATA_DIR_ENV = "LABEL_AUDITOR_DATA_DIR"  # overrides the per-user data folder (tests, portable installs)


def app_settings() -> QSettings:
    # An INI file everywhere: readable, and relocatable for tests with QSettings.setPath.
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)


def data_dir() -> Path:
    """The per-user folder for app data (the demo project lives here)."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override)
    location = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(location) if location else Path.home() / ".label-auditor"


def demo_project_dir() -> Path:
    return data_dir() / "demo"


def recent_projects() -> list[str]:
    value = app_settings().value("recent_projects", [])
    if isinstance(value, str):  # QSettings returns a lone string for a one-item list
        value = [value]
    return [str(path) for path in value] if isinstance(value, list) else []


def add_recent_project(path: Path | str) -> None:
    path = str(Path(path).resolve())
    recent = [p for p in recent_projects() if p != path]
    settings = app_settings()
    settings.setValue("recent_projects", [path, *recent][:MAX_RECENT])
    settings.setValue("last_project", path)


def last_project() -> str | None:
    value = app_settings().value("last_project", None)
    return str(value) if value else None


def _named_splitters(window: QWidget) -> list[QSplitter]:
    """The splitters whose sizes are remembered: those with an object name."""
    return [splitter for splitter in window.findChildren(QSplitter) if splitter.objectName()]


def save_window_layout(window: QMainWindow) -> None:
    """The window's geometry and state, and every named splitter's sizes."""
    store = app_settings()
    store.setValue("window/geometry", window.saveGeometry())
    store.setValue("window/state", window.saveState())
    for splitter in _named_splitters(window):
        store.setValue(f"splitters/{splitter.objectName()}", splitter.saveState())
    store.sync()


def restore_window_layout(window: QMainWindow) -> None:
    store = app_settings()
    geometry = store.value("window/geometry")
    if isinstance(geometry, QByteArray):
        window.restoreGeometry(geometry)
    state = store.value("window/state")
    if isinstance(state, QByteArray):
        window.restoreState(state)


def restore_splitters(window: QWidget) -> None:
    """Each named splitter's remembered sizes (the views of a project just opened)."""
    store = app_settings()
    for splitter in _named_splitters(window):
        state = store.value(f"splitters/{splitter.objectName()}")
        if isinstance(state, QByteArray):
            splitter.restoreState(state)
