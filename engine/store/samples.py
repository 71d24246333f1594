"""The dataset in a project: its classes, samples (paths, splits, labels, true labels) and noise history.

Sample ids are 0..N-1 and double as row numbers of every per-sample array; class ids are
0..C-1 (numbered in natural order at import).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import DamagedProjectError, UserError
from engine.store.database import DB_NAME, Database

UNKNOWN_TRUTH = -2  # true_label of a sample whose true class is not known
OUTSIDE_LABEL_SET = -1  # true_label of an open-set sample: its class is none of ours


@dataclass(frozen=True)
class SampleTable:
    """Every sample as parallel arrays, indexed by sample id."""

    paths: list[str]
    split: np.ndarray  # (N,) str: 'train' | 'test'
    given_label: np.ndarray  # (N,) int64
    label: np.ndarray  # (N,) int64, the observed (possibly noisy) label
    true_label: np.ndarray  # (N,) int64, -2 where unknown, -1 outside the label set
    image_override: list[str | None]

    @property
    def train_ids(self) -> np.ndarray:
        return np.flatnonzero(self.split == "train")

    @property
    def test_ids(self) -> np.ndarray:
        return np.flatnonzero(self.split == "test")

    @property
    def truth_known(self) -> bool:
        return bool((self.true_label != UNKNOWN_TRUTH).all())


class Samples(Database):
    """The classes and samples of a project, where their images are, and the noise injected into their labels."""

    @property
    def source(self) -> dict[str, Any]:
        """How the dataset was imported: kind, image_root, csv path and column names."""
        source = self.meta("source", {})
        if not isinstance(source, dict):
            raise DamagedProjectError(f"the record of the imported dataset (meta 'source' in {self.root / DB_NAME}) "
                                      "is not a mapping")
        return dict(source)

    @property
    def image_root(self) -> Path:
        """Where sample paths are relative to; a relative root lies inside the project (the demo), so it moves with it."""
        image_root = self.source.get("image_root")
        if not isinstance(image_root, str):
            raise DamagedProjectError(
                f"{self.root / DB_NAME} does not record where the project's images are (meta 'source' has no image_root)",
                "import the dataset again into a new project (`python -m engine init`)")
        root = Path(image_root)
        return root if root.is_absolute() else self.root / root

    # ------------------------------------------------------ classes/samples
    def add_classes(self, names: Sequence[str]) -> None:
        with self.transaction() as conn:
            conn.executemany("INSERT INTO classes(id, name) VALUES (?, ?)", list(enumerate(names)))

    def class_names(self) -> list[str]:
        return [row[0] for row in self._conn.execute("SELECT name FROM classes ORDER BY id")]

    @property
    def num_classes(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM classes").fetchone()[0])

    def add_samples(self, rows: Iterable[dict[str, Any]]) -> None:
        """Rows carry path, split, label, and optionally true_label, source_row, width, height, extra."""
        records = [
            (
                index,
                row["path"],
                row["split"],
                row["label"],
                row["label"],
                row.get("true_label"),
                row.get("source_row"),
                row.get("width"),
                row.get("height"),
                json.dumps(row["extra"], ensure_ascii=False) if row.get("extra") else None,
            )
            for index, row in enumerate(rows)
        ]
        with self.transaction() as conn:
            conn.executemany(
                "INSERT INTO samples(id, path, split, given_label, label, true_label, source_row, width, height, extra)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                records,
            )

    @property
    def num_samples(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0])

    def sample_table(self) -> SampleTable:
        rows = self._conn.execute(
            "SELECT path, split, given_label, label, true_label, image_override FROM samples ORDER BY id"
        ).fetchall()
        return SampleTable(
            paths=[row[0] for row in rows],
            split=np.array([row[1] for row in rows], dtype=object),
            given_label=np.array([row[2] for row in rows], dtype=np.int64),
            label=np.array([row[3] for row in rows], dtype=np.int64),
            true_label=np.array([UNKNOWN_TRUTH if row[4] is None else row[4] for row in rows], dtype=np.int64),
            image_override=[row[5] for row in rows],
        )

    def sample_extras(self) -> list[dict[str, Any]]:
        return [json.loads(row[0]) if row[0] else {} for row in self._conn.execute("SELECT extra FROM samples ORDER BY id")]

    def sample_image_path(self, sample_id: int) -> Path:
        row = self._conn.execute("SELECT path, image_override FROM samples WHERE id = ?", (sample_id,)).fetchone()
        if row is None:
            raise UserError(f"no sample with id {sample_id}", f"ids run from 0 to {self.num_samples - 1}")
        return self.root / row[1] if row[1] else self.image_root / row[0]

    def resolve_sample(self, ref: str | int) -> int:
        """A sample named by its integer id or by its path as written in the dataset."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            sample_id = int(ref)
            if 0 <= sample_id < self.num_samples:
                return sample_id
            if isinstance(ref, int):
                raise UserError(f"no sample with id {sample_id}", f"ids run from 0 to {self.num_samples - 1}")
        path = str(ref).replace("\\", "/")
        row = self._conn.execute("SELECT id FROM samples WHERE path = ?", (path,)).fetchone()
        if row is None:
            raise UserError(
                f"no sample {ref!r} in this project",
                f"name a sample by its id (0 to {self.num_samples - 1}) or its path relative to the image root, "
                "as `python -m engine export` writes it",
            )
        return int(row[0])

    def resolve_class(self, ref: str | int) -> int:
        """THE resolver of a class a person typed (CLI ``--relabel``, the app's digit keys and picker).

        A string equal to a class name is that class; otherwise a bare integer (ASCII digits)
        is the class index. Classes are numbered in natural order at import, so classes named
        ``0``..``N-1`` have id == name and both readings agree. An ``int`` is an index.
        """
        from engine.data.classes import bare_index

        names = self.class_names()
        if isinstance(ref, str):
            for text in (ref, ref.strip()):
                if text in names:
                    return names.index(text)
            index = bare_index(ref.strip())
        else:
            index = int(ref)
        if index is not None and 0 <= index < len(names):
            return index
        shown = ", ".join(names[:30]) + (f" and {len(names) - 30} more" if len(names) > 30 else "")
        why = f"no class is named {ref!r}" + (f" and there is no class number {index}" if index is not None else "")
        raise UserError(f"unknown class {ref!r}: {why}",
                        f"use one of: {shown} (or its number 0-{len(names) - 1})")

    def set_labels(self, labels: np.ndarray, true_labels: np.ndarray, overrides: dict[int, str] | None = None) -> None:
        """Replace the observed and true labels of every sample (used by noise synthesis)."""
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE samples SET label = ?, true_label = ? WHERE id = ?",
                [(int(lab), None if truth == UNKNOWN_TRUTH else int(truth), index)
                 for index, (lab, truth) in enumerate(zip(labels, true_labels))],
            )
            if overrides is not None:
                conn.execute("UPDATE samples SET image_override = NULL")
                conn.executemany("UPDATE samples SET image_override = ? WHERE id = ?",
                                 [(path, index) for index, path in overrides.items()])

    # --------------------------------------------------------------- noise
    def record_noise(self, mode: str, rate: float, seed: int, params: dict[str, Any], changed: int) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO noise(mode, rate, seed, params, changed, created) VALUES (?, ?, ?, ?, ?, ?)",
                (mode, rate, seed, json.dumps(params), changed, time.time()),
            )

    def noise_history(self) -> list[dict[str, Any]]:
        rows = self._conn.execute("SELECT mode, rate, seed, params, changed, created FROM noise ORDER BY id").fetchall()
        return [
            {"mode": m, "rate": r, "seed": s, "params": json.loads(p), "changed": c, "created": t}
            for m, r, s, p, c, t in rows
        ]
