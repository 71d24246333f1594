"""GUI test fixtures: an isolated settings store and data folder, and small real projects."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PIL import Image  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402

from engine.store import Project  # noqa: E402

CLASSES = ("cat", "dog", "fox")


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own QSettings store and per-user data folder."""
    root = tmp_path_factory.mktemp("settings")
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(root / "ini"))
    monkeypatch.setenv("LABEL_AUDITOR_DATA_DIR", str(root / "data"))
    yield root


def make_image_project(root: Path, per_class: int = 8, *, scored: bool = True, seed: int = 0) -> Path:
    """A small ImageFolder-like project of coloured 24x24 PNGs, with a fake finished audit run.

    Every third image of each class carries the next class's label (known noise), and the
    fake audit scores exactly those highest, suggesting their true class.
    """
    rng = np.random.default_rng(seed)
    images = root / "images"
    rows = []
    palette = [(220, 60, 60), (60, 160, 60), (60, 90, 220)]
    for k, name in enumerate(CLASSES):
        (images / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(palette[k]) + rng.integers(-30, 30, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(images / name / f"{name}_{i:03d}.png")
            noisy = i % 3 == 0
            rows.append({"path": f"{name}/{name}_{i:03d}.png", "split": "test" if i == per_class - 1 else "train",
                         "label": (k + 1) % len(CLASSES) if noisy else k, "true_label": k})
    project = Project.create(root / "project")
    project.add_classes(list(CLASSES))
    project.add_samples(rows)
    project.set_meta("source", {"kind": "folder", "image_root": str(images)})
    if scored:
        add_fake_audit(project, np.array([r["true_label"] for r in rows]), np.array([r["label"] for r in rows]))
    project.close()
    return root / "project"


def add_fake_audit(project: Project, truth: np.ndarray, labels: np.ndarray) -> str:
    n = len(labels)
    noisy = truth != labels
    score = np.where(noisy, 0.7 + 0.29 * np.linspace(1, 0, n), 0.3 * np.linspace(0, 1, n))
    k = int(max(labels.max(), truth.max())) + 1
    run = project.new_run("audit", {"detectors": ["cl"], "epochs": 1})
    project.save_scores(run.id, "cl", score, np.where(noisy, truth, labels), score >= 0.5)
    joint = np.zeros((k, k))
    np.add.at(joint, (labels, truth), 1)
    np.save(run.folder / "confident_joint.npy", joint)
    np.save(run.folder / "noise_matrix.npy", joint / joint.sum(axis=0, keepdims=True))
    project.finish_run(run.id, "ok", {"flagged": int(noisy.sum())})
    return run.id


@pytest.fixture
def image_project(tmp_path: Path) -> Path:
    return make_image_project(tmp_path)


@pytest.fixture
def window(qtbot: object) -> Iterator[object]:
    """The real main window, shown, closed (with any engine job stopped) at the end."""
    from auditor.__main__ import make_app
    from auditor.main_window import MainWindow

    make_app()
    main = MainWindow()
    qtbot.addWidget(main)  # type: ignore[attr-defined]
    main.show()
    yield main
    main.jobs.shutdown(5000)
    main.close()


@pytest.fixture
def fake_audit() -> Callable[[Project, np.ndarray, np.ndarray], str]:
    """``fake_audit(project, truth, labels)`` saves a finished fake audit run; returns its id."""
    return add_fake_audit


@pytest.fixture
def make_project() -> Callable[..., Path]:
    """``make_project(root, per_class=8, scored=True)`` builds a generated project; returns its folder."""
    return make_image_project
