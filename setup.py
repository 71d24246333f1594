"""Package layout that pyproject.toml cannot say: resources/ ships inside the engine package.

resources/ (stylesheet, icons, model weights) sits at the repository root, where a checkout and a
PyInstaller bundle read it; site-packages has no shared root, so a wheel installs it as
``engine/resources`` and :func:`engine.resources_dir` finds it there. Everything else is in pyproject.toml.
"""

from pathlib import Path

from setuptools import find_packages, setup

RESOURCES = Path("resources")
# Each folder of resources/ is named as a (data-only) package, so setuptools ships the whole tree.
resource_packages = ["engine.resources", *(
    "engine.resources." + ".".join(folder.relative_to(RESOURCES).parts)
    for folder in sorted(RESOURCES.rglob("*")) if folder.is_dir() and folder.name != "__pycache__"
)]

setup(
    packages=[*find_packages(include=["engine", "engine.*", "auditor", "auditor.*"]), *resource_packages],
    package_dir={"engine.resources": str(RESOURCES)},
    package_data={name: ["*"] for name in resource_packages},
)
