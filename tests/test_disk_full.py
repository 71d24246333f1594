"""A full disk: checked before the image cache is written, and a clear "the disk is full: free N MB
in FOLDER, then resume" wherever it strikes, with nothing saved harmed (issue 13, item 13)."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest
from conftest import RecordingSink

import engine.store.opening
from engine.cli import main
from engine.data.cache import ensure_cache
from engine.data.importing import import_folder
from engine.errors import DiskFullError, ensure_free_space, user_error_from_oserror
from engine.events import Error as ErrorEvent
from engine.jobs import run_job
from engine.store import DB_NAME, Project

Usage = namedtuple("Usage", "total used free")


def report_free(monkeypatch: pytest.MonkeyPatch, free: int) -> None:
    monkeypatch.setattr("engine.errors.shutil.disk_usage", lambda path: Usage(10**9, 10**9 - free, free))


def make_project(root: Path, n: int = 12) -> Path:
    with Project.create(root) as project:
        project.set_meta("source", {"kind": "folder", "image_root": str(root)})
        project.add_classes(["cat", "dog"])
        project.add_samples({"path": f"{i}.png", "split": "train", "label": i % 2} for i in range(n))
        project.decide(0, "remove")
    return root


def test_ensure_free_space_names_the_folder_and_the_megabytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report_free(monkeypatch, 2 * 1024 * 1024)
    ensure_free_space(tmp_path, 512 * 1024)  # room enough
    with pytest.raises(DiskFullError) as info:
        ensure_free_space(tmp_path / "cache", 10 * 1024 * 1024)
    assert info.value.message == f"the disk is full: free 9 MB in {tmp_path / 'cache'}, then resume"
    assert info.value.needed_mb == 9


def test_oserrors_become_clear_messages(tmp_path: Path) -> None:
    full = user_error_from_oserror(OSError(errno.ENOSPC, "No space left on device"), tmp_path)
    assert isinstance(full, DiskFullError) and f"free some space in {tmp_path}" in full.message
    read_only = user_error_from_oserror(OSError(errno.EROFS, "Read-only file system"), tmp_path)
    assert read_only is not None and "read-only" in read_only.message
    assert user_error_from_oserror(OSError(errno.ENOENT, "No such file"), tmp_path) is None


def test_the_image_cache_checks_free_space_before_writing(
        image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = import_folder(tmp_path / "proj", image_folder)
    needed = project.num_samples * 16 * 16 * 3
    report_free(monkeypatch, needed // 2)
    with pytest.raises(DiskFullError, match=r"the disk is full: free \d+ MB in .*cache, then resume"):
        ensure_cache(project, 16, workers=1)
    assert not any(project.cache_dir.glob("*.partial"))  # nothing half-made left behind
    monkeypatch.undo()
    assert ensure_cache(project, 16, workers=1).shape == (project.num_samples, 16, 16, 3)
    project.close()


def test_a_full_disk_in_a_job_ends_the_run_as_a_clear_error(tmp_path: Path) -> None:
    events = RecordingSink()

    def body(ctx: Any) -> dict[str, Any]:
        raise OSError(errno.ENOSPC, "No space left on device")

    with Project.open(make_project(tmp_path / "p")) as project:
        run, status = run_job(project, "audit", {"train": {}}, body, events)
        assert status == "error"
        assert project.run(run.id).status == "error"  # never left "running"
    errors = [event for event in events.events if isinstance(event, ErrorEvent)]
    assert errors and errors[-1].message.startswith("the disk is full: free some space in")
    assert "this is a bug" not in errors[-1].hint


class FullDiskConnection:
    """A connection whose writes fail as SQLite's do on a full disk; reads pass through."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Any = ()) -> Any:
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE", "COMMIT")):
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.mark.parametrize("command", [["decide", "--sample", "3", "--keep"], ["undo"], ["redo"]])
def test_decide_undo_redo_on_a_full_disk_say_so(
        command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_project(tmp_path / "p")
    with Project.open(root) as project:
        project.decide(1, "keep")
        project.undo()  # something to redo
    real_connect = engine.store.opening.connect
    monkeypatch.setattr("engine.store.opening.connect", lambda *a, **k: FullDiskConnection(real_connect(*a, **k)))
    code = main([command[0], str(root), *command[1:]])
    said = capsys.readouterr().err
    assert code == 1, said
    assert f"the disk is full: free some space in {root}, then resume" in said
    assert "Traceback" not in said
    monkeypatch.undo()
    with Project.open(root) as project:  # nothing already saved was harmed
        assert {d.sample_id: d.action for d in project.decisions().values()} == {0: "remove"}
        assert project.can_redo()


def test_decide_on_a_real_full_disk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A tiny tmpfs filled to the last byte (needs root to mount; skipped elsewhere)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        root = make_project(mount / "p")
        filler = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        for size in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    os.write(filler, b"\0" * size)
            except OSError:
                pass
        os.close(filler)
        code = main(["decide", str(root), "--sample", "2", "--keep"])
        said = capsys.readouterr().err
        assert code == 1 and "the disk is full: free" in said and "Traceback" not in said, said
        assert main(["decisions", str(root)]) == 0  # reading still works
        assert "1 decisions" in capsys.readouterr().out
        (mount / "filler").unlink()
        assert main(["decide", str(root), "--sample", "2", "--keep"]) == 0
        with Project.open(root) as project:
            assert {d.sample_id: d.action for d in project.decisions().values()} == {0: "remove", 2: "keep"}
        assert sqlite3.connect(root / DB_NAME).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
