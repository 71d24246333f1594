"""Export round-trips: CSV columns, actions, final labels, formula escaping, ImageFolder and cleanlab files."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from engine.cli import main
from engine.data.importing import import_csv, import_folder
from engine.errors import UserError
from engine.export import ADDED_COLUMNS, escape_cell, export_cleanlab, export_csv, export_image_folder
from engine.store import Project

NOTES = ["=SUM(A1:A2)", "+1", "-2", "@cmd", "\tx", "\rcr", "plain", "a=b"]


def write_image(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, 255 - value, 0)).save(path)


@pytest.fixture
def csv_project(tmp_path: Path) -> Iterator[Project]:
    """24 images of 3 classes (one named like a formula), two sharing a file name, from a CSV with extra columns."""
    images = tmp_path / "images"
    rows = []
    for index in range(24):
        label = ["cat", "dog", "@at"][index % 3]
        # Images 0 and 3 (both "cat") share the file name a.png in different folders.
        path = {0: "x/a.png", 3: "y/a.png"}.get(index, f"{label.strip('@')}/{index}.png")
        write_image(images / path, index * 10)
        rows.append({"note": NOTES[index % len(NOTES)], "file": path, "animal": label,
                     "truth": "dog" if index == 6 else label, "id": str(index)})
    csv_file = tmp_path / "labels.csv"
    pd.DataFrame(rows).to_csv(csv_file, index=False, quoting=csv.QUOTE_ALL)  # quoted: a bare CR would split a row
    project = import_csv(tmp_path / "project", csv_file, images, path_column="file", label_column="animal",
                         truth_column="truth", test_fraction=0.25, folds=2)
    yield project
    project.close()


def fake_audit(project: Project) -> str:
    n = project.num_samples
    run = project.new_run("audit", {})
    scores = np.linspace(0.0, 1.0, n)
    suggested = np.full(n, project.resolve_class("dog"))
    project.save_scores(run.id, "cl", scores, suggested, scores > 0.8)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(project.num_classes), n)
    np.save(run.folder / "pred_probs.npy", probs)
    np.save(run.folder / "noise_matrix.npy", np.eye(project.num_classes))
    project.finish_run(run.id, "ok", {})
    return run.id


def sample_id(project: Project, path: str) -> int:
    return project.resolve_sample(path)


def test_escape_cell_follows_owasp() -> None:
    for cell in NOTES[:6]:
        assert escape_cell(cell) == "'" + cell
    assert escape_cell("plain") == "plain" and escape_cell("a=b") == "a=b" and escape_cell(0.5) == 0.5


def test_csv_round_trip(csv_project: Project, tmp_path: Path) -> None:
    project = csv_project
    run_id = fake_audit(project)
    relabeled, removed, kept = sample_id(project, "cat/9.png"), sample_id(project, "dog/1.png"), \
        sample_id(project, "x/a.png")
    project.decide(relabeled, "relabel", "dog")
    project.decide(removed, "remove")
    project.decide(kept, "keep")
    out = tmp_path / "corrected.csv"
    report = export_csv(project, out)
    assert report["run_id"] == run_id and report["rows"] == project.num_samples
    assert not list(tmp_path.glob("*.tmp"))

    frame = pd.read_csv(out, dtype=str, keep_default_na=False)
    # The input's columns in their order (the truth column included), then ours.
    assert list(frame.columns) == ["note", "file", "animal", "truth", "id", *ADDED_COLUMNS]
    frame = frame.set_index("file")
    assert frame.loc["cat/9.png", "action"] == "relabeled" and frame.loc["cat/9.png", "final_label"] == "dog"
    assert frame.loc["cat/9.png", "original_label"] == "cat"
    assert frame.loc["dog/1.png", "action"] == "removed" and frame.loc["dog/1.png", "final_label"] == ""
    assert frame.loc["x/a.png", "action"] == "kept" and frame.loc["x/a.png", "final_label"] == "cat"
    assert (frame["action"] == "unreviewed").sum() == project.num_samples - 3
    assert frame.loc["cat/6.png", "truth"] == "dog" and frame.loc["cat/6.png", "animal"] == "cat"
    assert frame.loc["at/2.png", "animal"] == "'@at" and frame.loc["at/2.png", "truth"] == "'@at"
    assert set(frame["detector"]) == {"cl"} and set(frame["suggested_label"]) == {"dog"}
    # Scores in sample-id order, as stored.
    scores = project.scores(run_id, "cl")["score"]
    paths = project.sample_table().paths
    np.testing.assert_allclose(frame.loc[paths, "score"].astype(float), scores, atol=1e-6)
    # Formula-like cells come back with the leading quote; the rest exactly as written.
    by_id = frame.set_index("id")
    for index in range(24):
        note = NOTES[index % len(NOTES)]
        assert by_id.loc[str(index), "note"] == (note if note in ("plain", "a=b") else "'" + note)
    assert set(frame["animal"]) == {"cat", "dog", "'@at"}
    assert "'@at" in set(frame["original_label"])


def test_csv_before_any_audit_has_empty_score_columns(csv_project: Project, tmp_path: Path) -> None:
    export_csv(csv_project, tmp_path / "out.csv")
    frame = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert set(frame["score"]) == {""} and set(frame["action"]) == {"unreviewed"}
    with pytest.raises(UserError, match="no run 'nope'"):
        export_csv(csv_project, tmp_path / "out2.csv", run_id="nope")
    with pytest.raises(UserError, match="does not exist"):
        export_csv(csv_project, tmp_path / "missing" / "out.csv")


def test_image_folder_layout(csv_project: Project, tmp_path: Path) -> None:
    project = csv_project
    project.decide("y/a.png", "keep")
    project.decide("dog/1.png", "remove")
    project.decide("cat/9.png", "relabel", "dog")
    out = tmp_path / "clean"
    report = export_image_folder(project, out)
    assert report["images"] == project.num_samples - 1 and report["mode"] == "symlink"
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if not p.is_dir())
    assert len(files) == project.num_samples - 1
    assert sorted(p.name for p in out.iterdir()) == ["@at", "cat", "dog"]
    assert "cat/a.png" in files and "cat/a_1.png" in files  # the name clash resolved
    assert "dog/9.png" in files and "cat/9.png" not in files
    assert not any(name.endswith("/1.png") for name in files)
    link = out / "dog" / "9.png"
    assert link.is_symlink() and link.resolve() == project.sample_image_path(sample_id(project, "cat/9.png")).resolve()
    assert not list(tmp_path.glob(".clean.tmp-*"))

    with pytest.raises(UserError, match="not an empty folder"):
        export_image_folder(project, out)
    copied = export_image_folder(project, tmp_path / "copied", copy=True)
    assert copied["mode"] == "copy"
    one = tmp_path / "copied" / "dog" / "9.png"
    assert one.is_file() and not one.is_symlink()
    assert one.read_bytes() == project.sample_image_path(sample_id(project, "cat/9.png")).read_bytes()


def test_cleanlab_arrays(csv_project: Project, tmp_path: Path) -> None:
    project = csv_project
    with pytest.raises(UserError, match="no finished audit run"):
        export_cleanlab(project, tmp_path / "cl")
    run_id = fake_audit(project)
    project.decide(2, "remove")
    project.decide(4, "relabel", 0)
    report = export_cleanlab(project, tmp_path / "cl")
    assert report["run_id"] == run_id
    n, k = project.num_samples, project.num_classes
    assert np.load(tmp_path / "cl" / "pred_probs.npy").shape == (n, k)
    assert np.load(tmp_path / "cl" / "noise_matrix.npy").shape == (k, k)
    np.testing.assert_array_equal(np.load(tmp_path / "cl" / "labels.npy"), project.sample_table().label)
    final = np.load(tmp_path / "cl" / "final_labels.npy")
    assert final[2] == -1 and final[4] == 0
    assert (tmp_path / "cl" / "classes.txt").read_text().splitlines() == project.class_names()


def test_folder_source_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "images"
    for index in range(12):
        write_image(images / ["ant", "bee"][index % 2] / f"{index}.png", index * 20)
    import_folder(tmp_path / "project", images, test_fraction=0.25, folds=2).close()
    root = str(tmp_path / "project")
    assert main(["decide", root, "--sample", "ant/0.png", "--relabel", "bee"]) == 0
    capsys.readouterr()
    out = tmp_path / "out.csv"
    assert main(["export", root, "--out", str(out), "--folder", str(tmp_path / "clean"), "--copy",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["csv"]["actions"] == {"relabeled": 1, "unreviewed": 11}
    frame = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(frame.columns) == ["path", "label", *ADDED_COLUMNS]
    row = frame.set_index("path").loc["ant/0.png"]
    assert row["label"] == "ant" and row["final_label"] == "bee" and row["action"] == "relabeled"
    assert (tmp_path / "clean" / "bee" / "0.png").is_file()
    # --cleanlab needs an audit; --copy alone needs --folder.
    assert main(["export", root, "--out", str(out), "--cleanlab", str(tmp_path / "cl")]) == 2
    assert "no finished audit run" in capsys.readouterr().err
    assert main(["export", root, "--out", str(out), "--copy"]) == 2
    assert "--copy needs --folder" in capsys.readouterr().err
