"""Turning a dataset on disk into a project: ImageFolder layouts and CSV label files.

Both importers work the same way: list the candidate images with their labels,
reject structural mistakes at once (each message names the file or CSV row and
the fix), probe every image in parallel, skip the unusable ones *with a reason*
(logged, and kept in project meta ``skipped``), split off a stratified, seeded
test set, and write the project.

A project is built in a hidden sibling folder and renamed into place only when
everything succeeded, so a failed import leaves nothing behind (and never
touches a folder that already held something).

CSV rows are named by their *data row* number: 1 is the first row after the
header, which is line 2 of the file. ``source_row`` stores that data row number.

The package's modules, one purpose each:

- ``names``: :class:`Candidate` (one image the dataset names) and how names and rows are shown;
- ``folders``: listing an ImageFolder tree (:func:`scan_folder`);
- ``csv_rows``: reading and validating a CSV label file (:func:`read_csv_candidates`);
- ``probing``: checking each file and decoding its header (:func:`probe_all`);
- ``populating``: the split, class sizes and the project's rows (:func:`populate`);
- ``staging``: building the project beside its place and renaming it in (:func:`build_project`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.data.importing.csv_rows import read_csv_candidates, warn_of_missing_value_labels
from engine.data.importing.folders import scan_folder
from engine.data.importing.names import Candidate
from engine.data.importing.populating import DEFAULT_FOLDS, check_options, populate
from engine.data.importing.staging import build_project
from engine.errors import UserError
from engine.events import EventSink
from engine.store import Project

__all__ = ["DEFAULT_FOLDS", "Candidate", "build_project", "import_csv", "import_folder", "import_summary", "populate",
           "read_csv_candidates", "scan_folder"]


def import_folder(
    project_root: Path | str,
    images_dir: Path | str,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    folds: int = DEFAULT_FOLDS,
    events: EventSink | None = None,
) -> Project:
    """Make a project from an ImageFolder dataset: ``root/<class>/<image>``.

    When ``root`` holds ``train/<class>/...`` and ``test/<class>/...`` that split is
    used as is; otherwise a stratified ``test_fraction`` of the images (seeded) is held
    out (so are ``Train/Test``, ``training/testing``, ``train/val``...: val and valid folders join
    the test split). Every class needs at least ``folds`` training images (K-fold cross-validation).
    Class ids follow the class names in natural order (``2`` before ``10``).
    """
    images_dir = Path(images_dir).absolute()
    check_options(test_fraction, folds, seed)
    candidates, layout = scan_folder(images_dir, events)
    source = {"kind": "folder", "image_root": str(images_dir), "layout": layout}
    return build_project(
        project_root,
        lambda project, _staging: populate(project, candidates, source, test_fraction=test_fraction, seed=seed,
                                           folds=folds, events=events, dataset=str(images_dir)),
    )


def import_csv(
    project_root: Path | str,
    csv_file: Path | str,
    image_root: Path | str,
    *,
    path_column: str,
    label_column: str,
    truth_column: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    folds: int = DEFAULT_FOLDS,
    events: EventSink | None = None,
) -> Project:
    """Make a project from a CSV of image paths (relative to ``image_root``) and labels.

    Columns other than the path, label and truth columns are kept per sample (``extra``)
    and their order is recorded, so that export can write the same columns back. A truth
    column, when named, gives each sample's true label (empty cells: truth unknown).
    """
    csv_file = Path(csv_file).absolute()
    image_root = Path(image_root).absolute()
    check_options(test_fraction, folds, seed)
    if not image_root.is_dir():
        raise UserError(f"image root {image_root} is not a folder",
                        "pass the folder that the CSV's paths are relative to with --image-root")
    candidates, columns = read_csv_candidates(csv_file, image_root, path_column=path_column,
                                              label_column=label_column, truth_column=truth_column)
    events = events or EventSink()
    warn_of_missing_value_labels(candidates, label_column, events)
    source = {
        "kind": "csv",
        "image_root": str(image_root),
        "csv": str(csv_file),
        "path_column": path_column,
        "label_column": label_column,
        "truth_column": truth_column,
        "columns": columns,
    }
    return build_project(
        project_root,
        lambda project, _staging: populate(project, candidates, source, test_fraction=test_fraction, seed=seed,
                                           folds=folds, events=events, dataset=csv_file.name),
    )


def import_summary(project: Project) -> dict[str, Any]:
    """Classes with train/test counts and the skipped images, for the CLI and the GUI."""
    table = project.sample_table()
    names = project.class_names()
    classes = [
        {
            "id": index,
            "name": name,
            "train": int(((table.split == "train") & (table.given_label == index)).sum()),
            "test": int(((table.split == "test") & (table.given_label == index)).sum()),
        }
        for index, name in enumerate(names)
    ]
    skipped = project.meta("skipped", [])
    return {
        "project": str(project.root),
        "source": project.source,
        "samples": project.num_samples,
        "train": int(len(table.train_ids)),
        "test": int(len(table.test_ids)),
        "classes": classes,
        "skipped": skipped,
    }
