"""Shipping, the fast checks: the wheel carries resources/ and the app finds it there; the desktop entry.

The full proofs are scripts (they install torch into fresh environments and take minutes):
packaging/build_wheel_smoke.sh and packaging/build_bundle.sh + packaging/pyinstaller_smoke.sh.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGING = REPO / "packaging"
# What a wheel is built from (setup.py names the packages and maps resources/ into engine/).
BUILD_INPUTS = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE", "engine", "auditor", "resources")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built (without build isolation, so offline and in seconds) from a copy of its sources."""
    setuptools_version = tuple(int(part) for part in version("setuptools").split(".")[:2])
    if setuptools_version < (77, 0):  # what pyproject.toml's build-system asks for (torch brings a newer one)
        pytest.skip(f"setuptools {version('setuptools')} here; building the wheel needs 77 or newer")
    source = tmp_path_factory.mktemp("source")
    for name in BUILD_INPUTS:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(out), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = out.glob("label_auditor-*.whl")
    return built


def test_the_wheel_carries_every_resource(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    resources = sorted(p.relative_to(REPO / "resources").as_posix() for p in (REPO / "resources").rglob("*")
                       if p.is_file() and "__pycache__" not in p.parts)
    assert "style.qss" in resources and "icons/app.svg" in resources
    assert [name for name in resources if f"engine/resources/{name}" not in names] == []
    assert {"engine/cli.py", "engine/commands/demo.py", "auditor/__main__.py", "auditor/smoke.py"} <= names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "auditor = auditor.__main__:main" in entry_points
    assert "label-auditor-engine = engine.__main__:main" in entry_points


def test_an_installed_wheel_finds_its_resources(wheel: Path, tmp_path: Path) -> None:
    """Unpacked as site-packages would hold it, the engine's resources_dir() is the copy inside the package."""
    site = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(site)
    code = "import engine; print(engine.resources_dir())"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(site)}, check=True).stdout.strip()
    assert Path(found) == site / "engine" / "resources"
    assert (Path(found) / "style.qss").read_text(encoding="utf-8") == (REPO / "resources" / "style.qss").read_text(
        encoding="utf-8")


def test_a_checkout_finds_resources_at_the_root() -> None:
    from engine import resources_dir

    assert resources_dir() == REPO / "resources"


def read_desktop_entry(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(path, encoding="utf-8")
    return dict(parser["Desktop Entry"])


def test_the_desktop_entry_installs_with_its_icon(tmp_path: Path) -> None:
    entry = read_desktop_entry(PACKAGING / "label-auditor.desktop")
    assert entry["Type"] == "Application" and entry["Name"] == "Label Auditor" and entry["Terminal"] == "false"
    assert entry["Exec"].split()[0] == "auditor" and entry["Icon"] == "label-auditor"
    assert entry["Categories"].endswith(";")

    app = tmp_path / "my env" / "bin" / "auditor"  # a space: refused, an Exec line would need quoting
    app.parent.mkdir(parents=True)
    app.write_text("#!/bin/sh\n")
    app.chmod(0o755)
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "share")}
    refused = subprocess.run(["bash", str(PACKAGING / "install_desktop_entry.sh"), str(app)], capture_output=True,
                             text=True, env=env, timeout=60)
    assert refused.returncode == 2 and "without spaces" in refused.stderr

    plain = tmp_path / "env" / "bin" / "auditor"
    plain.parent.mkdir(parents=True)
    shutil.copy2(app, plain)
    subprocess.run(["bash", str(PACKAGING / "install_desktop_entry.sh"), str(plain)], check=True, capture_output=True,
                   env=env, timeout=60)
    installed = read_desktop_entry(tmp_path / "share" / "applications" / "label-auditor.desktop")
    assert installed["Exec"] == f"{plain} %f" and installed["Icon"] == "label-auditor"
    icon = tmp_path / "share" / "icons" / "hicolor" / "scalable" / "apps" / "label-auditor.svg"
    assert icon.read_bytes() == (REPO / "resources" / "icons" / "app.svg").read_bytes()

    subprocess.run(["bash", str(PACKAGING / "install_desktop_entry.sh"), "--uninstall"], check=True,
                   capture_output=True, env=env, timeout=60)
    assert not icon.exists() and not (tmp_path / "share" / "applications" / "label-auditor.desktop").exists()
