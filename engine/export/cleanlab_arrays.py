"""Arrays for cleanlab users, from an audit run: ``pred_probs.npy``, the labels it trained on, the final labels,
class names and sample paths, replaced as a set (:func:`stage_cleanlab`)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import UserError, ensure_free_space
from engine.evidence.run_labels import labels_for_grading
from engine.export.staging import ExportSet
from engine.export.targets import check_target
from engine.store import Project, fsync_folder

CLEANLAB_FILES = ("pred_probs.npy", "noise_matrix.npy", "confident_joint.npy", "labels.npy", "final_labels.npy",
                  "classes.txt", "paths.txt")


def check_cleanlab_target(project: Project, folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file, not a folder", "name a folder for --cleanlab (new or existing)")
    check_target(project, folder, "--cleanlab", CLEANLAB_FILES)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def stage_cleanlab(project: Project, staged: ExportSet, folder: Path, run_id: str | None) -> dict[str, Any]:
    run = project.run(run_id, kind=None if run_id else "audit")
    if not (run.folder / "pred_probs.npy").is_file():
        raise UserError(f"run {run.id} ({run.kind}) has no pred_probs.npy", "name a finished audit run with --run")
    table = project.sample_table()
    final, keep = project.labels_with_decisions()
    contents: dict[str, bytes] = {}
    for name in ("pred_probs.npy", "noise_matrix.npy", "confident_joint.npy"):
        if (run.folder / name).is_file():
            contents[name] = (run.folder / name).read_bytes()
    # The labels the run's probabilities go with (cleanlab's ``labels``): the ones it trained on.
    contents["labels.npy"] = _npy_bytes(labels_for_grading(project, run, table.label).labels)
    contents["final_labels.npy"] = _npy_bytes(np.where(keep, final, -1).astype(np.int64))
    contents["classes.txt"] = "".join(f"{name}\n" for name in project.class_names()).encode()
    # Each row's sample, one path a line: `import-predictions --pred-probs pred_probs.npy --paths paths.txt` reads
    # the arrays back. Left out when a path holds a line break (one a line could not name it).
    if not any("\n" in path or "\r" in path for path in table.paths):
        contents["paths.txt"] = "".join(f"{path}\n" for path in table.paths).encode()
    folder.parent.mkdir(parents=True, exist_ok=True)
    ensure_free_space(folder.parent, sum(len(data) for data in contents.values()), reserve_bytes=0)
    staging = staged.staging_folder(folder)
    for name, data in contents.items():
        with open(staging / name, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    fsync_folder(staging)

    def move() -> None:
        if not folder.exists():
            os.replace(staging, folder)
        else:
            for name in contents:
                os.replace(staging / name, folder / name)
            # A file of the previous set this one lacks (noise_matrix.npy of another run) would not match it.
            for name in CLEANLAB_FILES:
                if name not in contents:
                    (folder / name).unlink(missing_ok=True)
            fsync_folder(folder)
        fsync_folder(folder.parent)

    staged.on_commit(move)
    return {"folder": str(folder), "files": list(contents), "run_id": run.id}
