"""Label Auditor's engine: data, training, detectors, methods, the project store and the CLI (Qt-free)."""

from __future__ import annotations

from pathlib import Path


def resources_dir() -> Path:
    """The resources folder: stylesheet, icons, model weights.

    A wheel installs it inside this package (``engine/resources``, see setup.py); a checkout and a
    PyInstaller bundle keep it beside the packages (``<root>/resources``).
    """
    package = Path(__file__).resolve().parent
    installed = package / "resources"
    return installed if installed.is_dir() else package.parent / "resources"
