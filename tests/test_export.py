"""Export round-trips: CSV columns, actions, final labels, formula escaping, ImageFolder and cleanlab files;
targets that would destroy the project or its data are refused; the files of one export land as a set."""

from __future__ import annotations

import csv
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from engine.cli import main
from engine.data.importing import import_csv, import_folder
from engine.errors import UserError
from engine.export import (
    ADDED_COLUMNS,
    ExportSet,
    csv_bytes,
    escape_cell,
    export_cleanlab,
    export_csv,
    export_image_folder,
    export_rows,
    export_set,
)
from engine.store import Project, atomic_write_bytes

NOTES = ["=SUM(A1:A2)", "+A1", "-A1", "@cmd", "\tx", "\rcr", "plain", "a=b"]


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


def fake_audit(project: Project, suggest: str = "dog") -> str:
    n = project.num_samples
    run = project.new_run("audit", {})
    scores = np.linspace(0.0, 1.0, n)
    suggested = np.full(n, project.resolve_class(suggest))
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
    for cell in [*NOTES[:6], "=SUM(A1)", "+A1", "-A1", "@x", "\t1", "\r1", "-1+1", "+1,5", "-inf", "- 1", "-1\n", "-\u0661"]:
        assert escape_cell(cell) == "'" + cell
    assert escape_cell("plain") == "plain" and escape_cell("a=b") == "a=b" and escape_cell(0.5) == 0.5


def test_escape_cell_leaves_plain_numbers() -> None:
    # A spreadsheet reads these as numbers, never runs them: a pipeline must get them back as written.
    for cell in ["-1", "+1", "-0.0", "1e-3", "+.5", "-1e-3", "-12.5E+3", "+007", "-3."]:
        assert escape_cell(cell) == cell


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
    # Scores in sample-id order, as stored, for the train samples an audit scores; held-out ones are empty.
    table = project.sample_table()
    train = [table.paths[i] for i in table.train_ids]
    test = [table.paths[i] for i in table.test_ids]
    assert set(frame.loc[train, "detector"]) == {"cl"} and set(frame.loc[train, "suggested_label"]) == {"dog"}
    assert len(test) and {""} == set(frame.loc[test, "score"]) == set(frame.loc[test, "suggested_label"]) \
        == set(frame.loc[test, "detector"])
    scores = project.scores(run_id, "cl")["score"]
    np.testing.assert_allclose(frame.loc[train, "score"].astype(float), scores[table.train_ids], atol=1e-6)
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
    with import_folder(tmp_path / "project", images, test_fraction=0.25, folds=2) as project:
        table = project.sample_table()
        # A training sample: held-out ones are not edited from the review.
        ant = next(path for path, split in zip(table.paths, table.split) if path.startswith("ant/") and split == "train")
    root = str(tmp_path / "project")
    assert main(["decide", root, "--sample", ant, "--relabel", "bee"]) == 0
    capsys.readouterr()
    out = tmp_path / "out.csv"
    assert main(["export", root, "--out", str(out), "--folder", str(tmp_path / "clean"), "--copy",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["csv"]["actions"] == {"relabeled": 1, "unreviewed": 11}
    frame = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(frame.columns) == ["path", "label", *ADDED_COLUMNS]
    row = frame.set_index("path").loc[ant]
    assert row["label"] == "ant" and row["final_label"] == "bee" and row["action"] == "relabeled"
    assert (tmp_path / "clean" / "bee" / ant.split("/")[1]).is_file()
    # --cleanlab needs an audit; --copy alone needs --folder.
    assert main(["export", root, "--out", str(out), "--cleanlab", str(tmp_path / "cl")]) == 2
    assert "no finished audit run" in capsys.readouterr().err
    assert main(["export", root, "--out", str(out), "--copy"]) == 2
    assert "--copy needs --folder" in capsys.readouterr().err


NUMBERS = ["-0.0", "1e-3", "+.5", "-1", "+1", "-12.5E+3", "007"]
FORMULAS = ["=SUM(A1)", "+A1", "-A1", "@x", "-1+1", "\tz"]


def test_numeric_cells_round_trip(tmp_path: Path) -> None:
    """Labels -1/+1 and numeric columns come back from the exported CSV exactly as in the source CSV."""
    images = tmp_path / "images"
    rows = []
    for index in range(18):
        write_image(images / f"{index}.png", index * 10)
        rows.append({"path": f"{index}.png", "label": ["-1", "+1", "@x"][index % 3],
                     "offset": NUMBERS[index % len(NUMBERS)], "note": FORMULAS[index % len(FORMULAS)]})
    source = pd.DataFrame(rows)
    csv_file = tmp_path / "labels.csv"
    source.to_csv(csv_file, index=False, quoting=csv.QUOTE_ALL)
    with import_csv(tmp_path / "project", csv_file, images, path_column="path", label_column="label",
                    test_fraction=0.0, folds=2) as project:
        fake_audit(project, suggest="-1")
        project.decide(1, "relabel", "-1")
        export_csv(project, tmp_path / "out.csv")
        expected = export_rows(project)
    exported = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    # The input's columns: numbers as written, formulas with the leading quote.
    for column in ("path", "label", "offset"):
        want = [value if value != "@x" else "'@x" for value in source[column]]
        assert list(exported[column]) == want, column
    assert list(exported["note"]) == ["'" + value for value in source["note"]]
    assert exported.loc[1, "final_label"] == "-1" and exported.loc[1, "original_label"] == "+1"
    # Every column: a numeric-looking value comes back unchanged (no quote), a formula quoted.
    for index, row in enumerate(expected.rows):
        for column, value in zip(expected.columns, row):
            text = str(value)
            back = exported.loc[index, column]
            if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
                assert back == text, (column, text)
            elif text[:1] in ("=", "+", "-", "@", "\t", "\r"):
                assert back == "'" + text, (column, text)
    # Read as numbers, the numeric column is the source's numbers.
    numeric = pd.read_csv(tmp_path / "out.csv")
    np.testing.assert_array_equal(numeric["offset"].to_numpy(float), source["offset"].astype(float).to_numpy())
    assert csv_bytes(expected) == (tmp_path / "out.csv").read_bytes()


# ------------------------------------------------ targets that must be refused (issue 13, item 6)
def test_export_refuses_its_import_source(csv_project: Project, tmp_path: Path) -> None:
    source = tmp_path / "labels.csv"
    before = source.read_bytes()
    with pytest.raises(UserError, match="imported from") as raised:
        export_csv(csv_project, source)
    assert str(source) in raised.value.message and "corrected.csv" in raised.value.hint
    # The same file under another name: a symlink, a hard link, a path with "..".
    (tmp_path / "link.csv").symlink_to(source)
    os.link(source, tmp_path / "hard.csv")
    for alias in (tmp_path / "link.csv", tmp_path / "hard.csv", tmp_path / "images" / ".." / "labels.csv"):
        with pytest.raises(UserError, match="imported from"):
            export_csv(csv_project, alias)
    assert source.read_bytes() == before


def test_export_refuses_the_project_store(csv_project: Project, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    project = csv_project
    run_id = fake_audit(project)
    root = project.root
    db = root / "project.db"
    db_before = db.read_bytes()
    (tmp_path / "db-link.csv").symlink_to(db)
    (root / "cache").mkdir(exist_ok=True)
    for target in (db, root / "project.db-wal", root / "project.db-shm", root / "runs" / run_id / "x.csv",
                   root / "cache" / "x.csv", tmp_path / "db-link.csv"):
        with pytest.raises(UserError, match="project's store") as raised:
            export_csv(project, target)
        assert str(target) in raised.value.message
    assert db.read_bytes() == db_before
    # --cleanlab into a run folder would overwrite that run's own pred_probs.npy.
    probs = (root / "runs" / run_id / "pred_probs.npy").read_bytes()
    with pytest.raises(UserError, match="project's store"):
        export_cleanlab(project, root / "runs" / run_id)
    assert (root / "runs" / run_id / "pred_probs.npy").read_bytes() == probs
    # From the command line: a clear refusal, and the project still opens with its samples.
    assert main(["export", str(root), "--out", str(db)]) == 2
    err = capsys.readouterr().err
    assert "project's store" in err and "fix:" in err
    with Project.open(root) as again:
        assert again.num_samples == project.num_samples


def test_export_refuses_to_overwrite_an_image(csv_project: Project, tmp_path: Path) -> None:
    image = tmp_path / "images" / "x" / "a.png"
    before = image.read_bytes()
    (tmp_path / "images-link").symlink_to(tmp_path / "images")
    for target in (image, tmp_path / "images-link" / "x" / "a.png"):
        with pytest.raises(UserError, match="image of sample 'x/a.png'"):
            export_csv(csv_project, target)
    assert image.read_bytes() == before
    # A new file beside the images is fine.
    export_csv(csv_project, tmp_path / "images" / "corrected.csv")
    assert (tmp_path / "images" / "corrected.csv").is_file()


# ------------------------------------------------ atomic writes and exports as a set (items 12, 18)
def test_atomic_write_never_follows_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious data\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "labels.csv.tmp").symlink_to(victim)
    atomic_write_bytes(shared / "labels.csv", b"new\n")
    assert victim.read_text() == "precious data\n"
    assert (shared / "labels.csv").read_bytes() == b"new\n" and not (shared / "labels.csv").is_symlink()
    assert sorted(p.name for p in shared.iterdir()) == ["labels.csv", "labels.csv.tmp"]


def test_atomic_write_syncs_file_and_folder_keeps_mode_and_cleans_up(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "summary.json"
    target.write_bytes(b"old")
    target.chmod(0o640)
    synced: list[bool] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert False in synced and True in synced  # the file, then the folder holding the rename
    # A failed rename (the target is a folder) leaves no temporary file behind.
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "inside").write_text("x")
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "busy", b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "summary.json"]


def exported_set(where: Path) -> dict[str, bytes]:
    """Every file under ``where`` (relative name -> bytes), staging included."""
    return {str(path.relative_to(where)): path.read_bytes() for path in sorted(where.rglob("*")) if path.is_file()}


def test_export_set_is_all_or_nothing(csv_project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = csv_project
    fake_audit(project)
    root = str(project.root)
    out = tmp_path / "out"
    out.mkdir()
    args = ["export", root, "--out", str(out / "out.csv"), "--cleanlab", str(out / "cl")]
    assert main(args) == 0
    before = exported_set(out)
    assert "out.csv" in before and "cl/final_labels.npy" in before
    project.decide(0, "remove")  # the next export differs in the CSV and final_labels.npy

    # Interrupted (Ctrl-C) while copying images, after the CSV and arrays were made: nothing changes.
    import shutil as shutil_module
    copied: list[Path] = []
    real_copy = shutil_module.copy2

    def copy_then_interrupt(source: Path, target: Path) -> None:
        if len(copied) == 3:
            raise KeyboardInterrupt
        copied.append(Path(target))
        real_copy(source, target)

    monkeypatch.setattr(shutil_module, "copy2", copy_then_interrupt)
    assert main([*args, "--folder", str(out / "clean"), "--copy"]) == 130  # the CLI's "interrupted"
    assert exported_set(out) == before
    assert sorted(p.name for p in out.iterdir()) == ["cl", "out.csv"]  # no staging left, no half folder
    monkeypatch.undo()

    # Complete: the whole new set, and a file of the previous set the new one lacks is gone.
    (out / "cl" / "confident_joint.npy").write_bytes(b"from an earlier export")
    assert main([*args, "--folder", str(out / "clean"), "--copy"]) == 0
    after = exported_set(out)
    assert after["out.csv"] != before["out.csv"] and after["cl/final_labels.npy"] != before["cl/final_labels.npy"]
    assert np.load(out / "cl" / "final_labels.npy")[0] == -1
    assert "cl/confident_joint.npy" not in after
    assert not [name for name in after if ".tmp" in name]


def dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    return int(child.stdout)


def test_stale_staging_of_a_killed_export_is_removed(csv_project: Project, tmp_path: Path) -> None:
    project = csv_project
    fake_audit(project)
    out = tmp_path / "out"
    out.mkdir()
    gone = dead_pid()
    stale = [out / f".out.csv.tmp-{gone}-k1l2m3", out / f".clean.tmp-{gone}-abcd", out / ".clean.tmp-1a2b3c4d",
             out / f".cl.tmp-{gone}-xyz"]
    stale[0].write_bytes(b"half a csv")
    for folder in stale[1:]:
        (folder / "cat").mkdir(parents=True)
        (folder / "cat" / "1.png").write_bytes(b"half an image")
    alive = out / f".out.csv.tmp-{os.getppid()}-busy"  # a running export's: left alone
    alive.write_bytes(b"being written")
    assert main(["export", str(project.root), "--out", str(out / "out.csv"), "--folder", str(out / "clean"),
                 "--cleanlab", str(out / "cl")]) == 0
    assert not any(path.exists() for path in stale)
    assert alive.exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([alive.name, "cl", "clean", "out.csv"])


def test_long_class_names_get_short_unique_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "images"
    long_a, long_b = "L" * 300, "L" * 299 + "M"  # the same first 299 characters
    rows = []
    for index in range(12):
        write_image(images / f"{index:03d}.png", index * 20)
        rows.append({"path": f"{index:03d}.png", "label": [long_a, long_b, "b"][index % 3]})
    pd.DataFrame(rows).to_csv(tmp_path / "labels.csv", index=False)
    import_csv(tmp_path / "project", tmp_path / "labels.csv", images, path_column="path", label_column="label",
               test_fraction=0.0, folds=2).close()
    folder = tmp_path / "cleaned"
    assert main(["export", str(tmp_path / "project"), "--out", str(tmp_path / "x.csv"), "--folder", str(folder),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["folder"]
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 3 and "b" in names
    assert all(len(name.encode()) <= 255 for name in names)
    renamed = report["renamed_classes"]
    assert set(renamed) == {long_a, long_b} and renamed[long_a] != renamed[long_b]
    assert renamed[long_a].startswith("L" * 100) and set(renamed.values()) <= set(names)
    assert len(list((folder / renamed[long_a]).iterdir())) == 4
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    # The plain output says so.
    assert main(["export", str(tmp_path / "project"), "--out", str(tmp_path / "x.csv"), "--folder",
                 str(tmp_path / "again")]) == 0
    assert "is in folder" in capsys.readouterr().out


def test_a_set_is_staged_in_the_project_so_a_killed_export_leaves_nothing_beside_it(
        csv_project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = csv_project
    fake_audit(project)
    out = tmp_path / "out"
    out.mkdir()
    seen: dict[str, list[str]] = {}
    commit = ExportSet.commit

    def look_then_commit(self: ExportSet) -> None:
        # The moment a SIGKILL would leave the most behind: everything written, nothing moved yet.
        seen["beside"] = sorted(p.name for p in out.iterdir())
        seen["staged"] = sorted(p.name for p in (project.root / "staging").iterdir())
        commit(self)

    monkeypatch.setattr(ExportSet, "commit", look_then_commit)
    export_set(project, out=out / "out.csv", folder=out / "clean", cleanlab=out / "cl")
    assert seen["beside"] == [] and len(seen["staged"]) == 1 and seen["staged"][0].startswith("export-")
    assert sorted(p.name for p in out.iterdir()) == ["cl", "clean", "out.csv"]
    assert not any((project.root / "staging").iterdir())  # the staging area is emptied again

    killed = project.root / "staging" / f"export-{dead_pid()}-abc123"  # a killed export's staging
    (killed / "x").mkdir(parents=True)
    export_set(project, out=out / "out.csv")
    assert not killed.exists()


def scored_audit(project: Project, detectors: dict[str, str]) -> str:
    """An audit of the train split (as a real one: audited_ids.npy) whose detectors suggest a class each."""
    from engine.evidence.run_labels import AUDITED_IDS_FILE

    n = project.num_samples
    train = project.sample_table().train_ids
    run = project.new_run("audit", {})
    for offset, (name, suggest) in enumerate(detectors.items()):
        scores = np.zeros(n)
        scores[train] = np.linspace(0.1, 1.0, len(train))[::-1] if offset else np.linspace(0.1, 1.0, len(train))
        suggested = np.full(n, -1)
        suggested[train] = project.resolve_class(suggest)
        project.save_scores(run.id, name, scores, suggested, scores > 0.8)
    np.save(run.folder / AUDITED_IDS_FILE, train)
    project.finish_run(run.id, "ok", {})
    return run.id


def test_the_export_carries_the_detector_the_review_ranks_by(csv_project: Project, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from engine.detectors import review_detector

    project = csv_project
    run_id = scored_audit(project, {"cl": "dog", "ensemble": "cat", "aum": "@at"})
    assert review_detector(project.detectors(run_id)) == "ensemble"  # the review's (auditor.audit_scores.load_audit)
    report = export_csv(project, tmp_path / "out.csv")
    frame = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    table = project.sample_table()
    assert report["detector"] == "ensemble" and report["stale"] is None
    assert set(frame["detector"].iloc[table.train_ids]) == {"ensemble"}
    assert set(frame["suggested_label"].iloc[table.train_ids]) == {"cat"}
    ensemble = project.scores(run_id, "ensemble")["score"]
    np.testing.assert_allclose(frame["score"].iloc[table.train_ids].astype(float), ensemble[table.train_ids],
                               atol=1e-6)
    # Held-out rows were never audited: empty, not a score of 0 that reads as "surely clean".
    assert {""} == set(frame["score"].iloc[table.test_ids]) == set(frame["detector"].iloc[table.test_ids])

    root = str(project.root)
    assert main(["export", root, "--out", str(tmp_path / "cl.csv"), "--detector", "cl"]) == 0
    assert "scores from cl of run" in capsys.readouterr().out
    assert set(pd.read_csv(tmp_path / "cl.csv", dtype=str, keep_default_na=False)["detector"]) == {"cl", ""}


def test_the_export_says_when_its_scores_are_stale(csv_project: Project, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from engine.evidence.run_labels import record_run_labels

    project = csv_project
    run_id = scored_audit(project, {"cl": "dog"})
    labels, keep = project.labels_with_decisions()
    project.finish_run(run_id, "ok", {"labels_used": record_run_labels(project.run(run_id).folder, labels, keep)})
    root = str(project.root)
    assert main(["export", root, "--out", str(tmp_path / "fresh.csv")]) == 0
    assert "warning" not in capsys.readouterr().err

    project.decide(int(project.sample_table().train_ids[0]), "relabel", "@at")  # the audit saw its old label
    assert main(["export", root, "--out", str(tmp_path / "stale.csv")]) == 0
    err = capsys.readouterr().err
    assert f"warning: the score, suggested_label and detector columns come from run {run_id}, which is stale" in err
    assert "1 samples are relabeled or removed differently" in err
    assert main(["export", root, "--out", str(tmp_path / "stale2.csv"), "--json"]) == 0
    captured = capsys.readouterr()
    assert "which is stale" in captured.err
    assert "1 samples are relabeled" in json.loads(captured.out)["csv"]["stale"]


def test_cleanlab_labels_are_the_ones_the_audit_trained_on(csv_project: Project, tmp_path: Path) -> None:
    from engine.evidence.run_labels import record_run_labels

    project = csv_project
    relabeled = sample_id(project, "cat/9.png")
    project.decide(relabeled, "relabel", "dog")  # before the audit: it trains on "dog"
    run_id = fake_audit(project)
    labels, keep = project.labels_with_decisions()
    project.finish_run(run_id, "ok", {"labels_used": record_run_labels(project.run(run_id).folder, labels, keep)})
    export_cleanlab(project, tmp_path / "cl")
    saved = np.load(tmp_path / "cl" / "labels.npy")  # cleanlab's ``labels``: those pred_probs go with
    assert saved[relabeled] == project.resolve_class("dog") and np.array_equal(saved, labels)
