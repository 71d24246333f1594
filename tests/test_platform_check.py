"""Issue 19 item 13: before the first window, a missing xcb library is named with the apt-get line that fixes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor import platform_check
from auditor.platform_check import check_platform, debian_package, missing_libraries, uses_xcb

# What ldd printed for PySide6's libqxcb.so on a bare Debian with libxcb-cursor0 but without these two.
LDD_BARE_DEBIAN = """\
\tlinux-vdso.so.1 (0x00007ffd5d5f2000)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x00007f4bfe784000)
\tlibxkbcommon-x11.so.0 => /lib/x86_64-linux-gnu/libxkbcommon-x11.so.0 (0x00007f4bfe728000)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f4bfe721000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-image.so.0 => /lib/x86_64-linux-gnu/libxcb-image.so.0 (0x00007f4bfe713000)
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f4bfca1e000)
"""
ALL_THERE = "\tlibxcb-icccm.so.4 => /lib/x86_64-linux-gnu/libxcb-icccm.so.4 (0x00007f4bfe713000)\n"


def test_ldd_output_names_each_missing_library_once() -> None:
    assert missing_libraries(LDD_BARE_DEBIAN) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert missing_libraries(ALL_THERE) == []


@pytest.mark.parametrize(("soname", "package"), [
    ("libxcb-icccm.so.4", "libxcb-icccm4"), ("libxcb-keysyms.so.1", "libxcb-keysyms1"),
    ("libxcb-cursor.so.0", "libxcb-cursor0"), ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
    ("libxcb-render-util.so.0", "libxcb-render-util0"), ("libEGL.so.1", "libegl1"),
    ("libfontconfig.so.1", "libfontconfig1"), ("libdbus-1.so.3", "libdbus-1-3"),
    # Not in the table: Debian's naming rule.
    ("libxcb-xtest.so.0", "libxcb-xtest0"), ("libfoo2.so.1", "libfoo2-1")])
def test_sonames_map_to_debian_packages(soname: str, package: str) -> None:
    assert debian_package(soname) == package


def test_a_missing_library_gives_the_apt_get_line() -> None:
    message = check_platform({"DISPLAY": ":0"}, report=lambda plugin: LDD_BARE_DEBIAN)
    assert message is not None
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1\n" in message
    assert "libxcb-icccm.so.4, libxcb-keysyms.so.1" in message
    assert check_platform({"DISPLAY": ":0"}, report=lambda plugin: ALL_THERE) is None


def test_only_the_xcb_platform_is_checked() -> None:
    assert uses_xcb({"QT_QPA_PLATFORM": "xcb"}, "linux") and uses_xcb({}, "linux")
    assert uses_xcb({"QT_QPA_PLATFORM": "xcb;wayland"}, "linux")
    assert not uses_xcb({"QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert not uses_xcb({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert not uses_xcb({}, "darwin")
    assert check_platform({"QT_QPA_PLATFORM": "offscreen"}, report=lambda plugin: LDD_BARE_DEBIAN) is None


def test_the_check_looks_at_pyside6s_own_plugin() -> None:
    seen: list[Path] = []
    check_platform({"QT_QPA_PLATFORM": "xcb"}, report=lambda plugin: seen.append(plugin) or ALL_THERE)
    assert len(seen) == 1 and seen[0].name == "libqxcb.so" and seen[0].is_file()


def test_without_ldd_the_loader_names_the_missing_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: str) -> None:
        raise OSError("libxcb-keysyms.so.1: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(platform_check.ctypes, "CDLL", refuse)
    message = check_platform({"QT_QPA_PLATFORM": "xcb"}, report=lambda plugin: None)
    assert message is not None and "sudo apt-get install libxcb-keysyms1\n" in message


def test_the_app_stops_before_qt_with_the_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
                                                ) -> None:
    from auditor import __main__ as app_main

    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setattr(platform_check, "run_ldd", lambda plugin: LDD_BARE_DEBIAN)
    monkeypatch.setattr(app_main, "make_app", lambda: pytest.fail("Qt must not start"))
    assert app_main.main(["--demo"]) == 2
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in capsys.readouterr().err
