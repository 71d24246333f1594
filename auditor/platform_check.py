"""Before the first window: can Qt's X11 (xcb) platform plugin load on this machine?

Qt answers a missing system library with "xcb-cursor0 is needed", whichever library is missing.
Here ``ldd`` lists every library of the plugin that is not found, and the person gets the one
``apt-get install`` line that fixes it. Qt-free, so it runs before Qt loads anything.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

# Sonames that Qt's xcb plugin (and the libraries it pulls in) needs -> the Debian/Ubuntu package with it.
DEBIAN_PACKAGES: dict[str, str] = {
    "libxcb.so.1": "libxcb1",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
    "libGLX.so.0": "libglx0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
}
NOT_FOUND = re.compile(r"^\s*(\S+)\s*=>\s*not found", re.MULTILINE)
CANNOT_OPEN = re.compile(r"(\S+\.so[.\d]*): cannot open shared object file")


def debian_package(soname: str) -> str:
    """The Debian package that ships a library: from the table, else by Debian's naming rule
    (libfoo-bar.so.4 -> libfoo-bar4; a name ending in a digit takes a dash: libfoo2.so.1 -> libfoo2-1)."""
    if soname in DEBIAN_PACKAGES:
        return DEBIAN_PACKAGES[soname]
    name, _, version = soname.partition(".so.")
    name = name.lower()
    if not version:
        return name
    major = version.split(".")[0]
    return f"{name}-{major}" if name[-1:].isdigit() else f"{name}{major}"


def missing_libraries(ldd_output: str) -> list[str]:
    """The sonames ``ldd`` reports as "not found", each once, in its order."""
    return list(dict.fromkeys(NOT_FOUND.findall(ldd_output)))


def xcb_plugin() -> Path | None:
    """PySide6's xcb platform plugin, found without importing Qt's libraries."""
    import importlib.util

    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        plugin = Path(root) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        if plugin.is_file():
            return plugin
    return None


def run_ldd(library: Path) -> str | None:
    """``ldd``'s report on a library; None when there is no ldd (then :func:`try_loading` is used)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return None
    try:
        done = subprocess.run([ldd, str(library)], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout + done.stderr


def try_loading(library: Path) -> str:
    """Without ldd: load the plugin; the loader names the first library it could not open, as ldd would."""
    try:
        ctypes.CDLL(str(library))
    except OSError as exc:
        match = CANNOT_OPEN.search(str(exc))
        if match:
            return f"\t{match.group(1)} => not found\n"
    return ""


def uses_xcb(environ: Mapping[str, str], platform: str = sys.platform) -> bool:
    """Whether Qt will start its xcb plugin: on Linux, asked for, or by default outside a Wayland session."""
    if not platform.startswith("linux"):
        return False
    chosen = environ.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        return chosen.split(";")[0].split(":")[0] == "xcb"  # "xcb", "xcb:option", "xcb;wayland"
    return not environ.get("WAYLAND_DISPLAY")


def install_hint(missing: list[str]) -> str:
    """What to tell the person: which libraries are missing, and the one command that installs them."""
    packages = " ".join(dict.fromkeys(debian_package(name) for name in missing))
    return (f"The app cannot start its window: Qt's X11 platform plugin (xcb) needs system libraries that this "
            f"machine lacks: {', '.join(missing)}.\n"
            f"On Debian or Ubuntu, install them with:\n"
            f"  sudo apt-get install {packages}\n"
            f"(Qt itself would only say \"xcb-cursor0 is needed\", whichever library is missing.)")


def check_platform(environ: Mapping[str, str] | None = None,
                   report: Callable[[Path], str | None] | None = None) -> str | None:
    """None when the window can start (or the platform is not xcb); else the message that says how to fix it.

    ``report`` gives ldd's output for a library (default :func:`run_ldd`; tests pass a fake one).
    """
    if not uses_xcb(os.environ if environ is None else environ):
        return None
    plugin = xcb_plugin()
    if plugin is None:
        return None  # not this PySide6 layout: leave the diagnosis to Qt
    output = (report or run_ldd)(plugin)
    missing = missing_libraries(output if output is not None else try_loading(plugin))
    return install_hint(missing) if missing else None
