"""Damaged and read-only projects: a clear "this project is damaged/read-only" message, never a
traceback, and nothing written into a file that is not a project (issue 13, item 14)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.cli import main
from engine.errors import DamagedProjectError, ReadOnlyError
from engine.store import DB_NAME, SCHEMA_VERSION, Project


def make_project(root: Path) -> Path:
    with Project.create(root) as project:
        project.set_meta("source", {"kind": "folder", "image_root": str(root / "images")})
        project.add_classes(["cat", "dog"])
        project.add_samples({"path": f"{i}.png", "split": "train", "label": i % 2} for i in range(6))
        project.decide(0, "remove")
        run = project.new_run("audit", {"train": {}})
        project.finish_run(run.id, "ok", {"accuracy": 0.5})
    return root


def damage_sql(root: Path, *statements: str) -> None:
    conn = sqlite3.connect(root / DB_NAME, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=OFF")
    for statement in statements:
        conn.execute(statement)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


DAMAGE: dict[str, Callable[[Path], object]] = {
    "garbage": lambda root: (root / DB_NAME).write_bytes(bytes(range(256)) * 32),
    "half": lambda root: (root / DB_NAME).write_bytes((root / DB_NAME).read_bytes()[:12288]),
    "bad-json-meta": lambda root: damage_sql(root, "UPDATE meta SET value = '{not json' WHERE key = 'source'"),
    "bad-json-run-spec": lambda root: damage_sql(root, "UPDATE runs SET spec = 'nope'"),
    "decision-unknown-sample": lambda root: damage_sql(
        root, "INSERT INTO decisions(sample_id, action, new_label, history_id) VALUES (9999, 'keep', NULL, 1)"),
    "decision-unknown-class": lambda root: damage_sql(
        root, "INSERT INTO decisions(sample_id, action, new_label, history_id) VALUES (1, 'relabel', 77, 1)"),
    "classes-emptied": lambda root: damage_sql(root, "DELETE FROM classes"),
}


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_every_command_says_the_project_is_damaged_without_a_traceback(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project(tmp_path / "p")
    DAMAGE[name](root)
    for argv in (["status", str(root)], ["export", str(root), "--out", str(tmp_path / "out.csv")]):
        code, said = cli(capsys, *argv)
        assert code == 1, said
        assert "this project is damaged" in said and "fix:" in said, said
        assert "Traceback" not in said and "this is a bug" not in said


def test_a_zero_byte_database_is_refused_and_left_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project(tmp_path / "p")
    (root / DB_NAME).write_bytes(b"")
    with pytest.raises(DamagedProjectError, match="empty"):
        Project.open(root)
    code, said = cli(capsys, "decide", str(root), "--sample", "0", "--keep")
    assert code == 1 and "this project is damaged" in said
    assert (root / DB_NAME).stat().st_size == 0  # no schema written into it


def test_a_database_that_is_not_a_project_is_never_written(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    foreign = sqlite3.connect(root / DB_NAME)
    foreign.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    foreign.commit()
    foreign.close()
    before = (root / DB_NAME).read_bytes()
    with pytest.raises(DamagedProjectError, match="not a Label Auditor project"):
        Project.open(root)
    assert (root / DB_NAME).read_bytes() == before
    assert not (root / f"{DB_NAME}-wal").exists()

    (root / DB_NAME).unlink()
    sqlite3.connect(root / DB_NAME).close()  # a valid but empty SQLite file (0 bytes on disk)
    with pytest.raises(DamagedProjectError):
        Project.open(root)


def test_a_lost_schema_version_with_our_tables_is_restored(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    damage_sql(root, "PRAGMA user_version=0")
    with Project.open(root) as project:
        assert set(project.decisions()) == {0}
    conn = sqlite3.connect(root / DB_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_a_missing_table_is_named(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    damage_sql(root, "DROP TABLE scores")
    with pytest.raises(DamagedProjectError, match="scores"):
        Project.open(root)


def test_a_read_only_project_is_viewable_and_refuses_writes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_project(tmp_path / "p")
    with Project.open(root, read_only=True) as project:
        assert project.read_only and set(project.decisions()) == {0}
        with pytest.raises(ReadOnlyError, match="this project is read-only"):
            project.decide(1, "keep")
    # A folder this user may not write (root ignores file modes, so pretend): opened read-only by itself.
    monkeypatch.setattr("engine.store.project.may_write", lambda root, db_path: False)
    code, said = cli(capsys, "status", str(root))
    assert code == 0, said
    code, said = cli(capsys, "export", str(root), "--out", str(tmp_path / "out.csv"))
    assert code == 0 and (tmp_path / "out.csv").is_file(), said
    code, said = cli(capsys, "decide", str(root), "--sample", "1", "--keep")
    assert code == 1 and f"this project is read-only: {root}" in said and "copy it somewhere writable" in said
    assert "Traceback" not in said
    monkeypatch.undo()
    with Project.open(root) as project:
        assert set(project.decisions()) == {0}


def test_a_project_on_a_read_only_mount(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A real read-only file system (needs root to bind-mount; skipped elsewhere)."""
    root = make_project(tmp_path / "p")
    mount = tmp_path / "ro"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "--bind", str(root), str(mount)],
                                                       capture_output=True).returncode != 0:
        pytest.skip("bind mounts are not permitted here")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], capture_output=True).returncode != 0:
            pytest.skip("read-only remounts are not permitted here")
        code, said = cli(capsys, "decisions", str(mount))
        assert code == 0 and "1 decisions" in said, said
        code, said = cli(capsys, "status", "--json", str(mount))
        assert code == 0 and json.loads(said)["decisions"]["remove"] == 1
        code, said = cli(capsys, "undo", str(mount))
        assert code == 1 and "this project is read-only" in said and "Traceback" not in said
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_genuine_bug_still_shows_its_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_project(tmp_path / "p")

    def broken(project: Project) -> dict[str, object]:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr("engine.commands.status.project_status", broken)
    code, said = cli(capsys, "status", str(root))
    assert code == 1 and "Traceback" in said and "this is a bug in Label Auditor" in said
