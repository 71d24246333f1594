"""Screenshots of bring-your-own-model (issue 21) for packaging/screenshots.py: the import dialog with a valid
predictions file and embeddings chosen (the class columns and paths it matched), the same dialog with a file's
problems listed, the Duplicates view and the Outliers view. Quick: no audit is trained here. The predictions are
a real model's (scikit-learn's logistic regression on the demo's pixels, out of fold); the embeddings that the
Duplicates and Outliers views read are computed by `engine embed` (the offline default backbone) on the open
demo project, and the groups and the ranking by the engine's `duplicates` and `outliers` commands."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SHOTS = ("10-import-dialog", "10-import-dialog-errors", "11-duplicates", "12-outliers")


def demo_pixels(project: Any) -> np.ndarray:
    """(N, H*W) grey pixels of every sample, in sample-id order."""
    from PIL import Image

    table = project.sample_table()
    return np.stack([np.asarray(Image.open(project.image_root / path).convert("L"), dtype=np.float32).ravel() / 255.0
                     for path in table.paths])


def write_valid_files(project: Any, folder: Path) -> tuple[Path, Path, Path]:
    """A model's out-of-fold class probabilities (.csv, its class columns in another order than the project's)
    and its embeddings (.npy, rows in another order, with the paths file that names each row's sample)."""
    import pandas as pd
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    table = project.sample_table()
    names = project.class_names()
    pixels = demo_pixels(project)
    probs = cross_val_predict(LogisticRegression(max_iter=500), pixels, table.label, cv=5, method="predict_proba")
    frame = pd.DataFrame(probs, columns=names)
    frame.insert(0, "path", table.paths)
    predictions = folder / "digits_logreg_oof.csv"
    frame[["path", *names[::-1]]].to_csv(predictions, index=False)
    order = np.random.default_rng(0).permutation(len(table.paths))
    embeddings = folder / "digits_logreg_features.npy"
    np.save(embeddings, PCA(32, random_state=0).fit_transform(pixels)[order].astype(np.float32))
    paths = folder / "digits_paths.txt"
    paths.write_text("".join(f"{table.paths[index]}\n" for index in order))
    return predictions, embeddings, paths


def write_predictions_with_problems(project: Any, folder: Path) -> Path:
    """A predictions CSV for the project, its class columns in another order, with three bad rows."""
    import pandas as pd

    table = project.sample_table()
    names = project.class_names()
    probs = np.full((len(table.paths), len(names)), 0.1 / max(len(names) - 1, 1))
    probs[np.arange(len(table.paths)), table.label] = 0.9
    frame = pd.DataFrame(probs, columns=names)
    frame.insert(0, "path", table.paths)
    frame = frame[["path", *names[::-1]]]
    frame.iloc[2, 1] = -0.25  # a negative probability
    frame.iloc[4, 2] = 0.6  # a row that does not sum to 1
    frame.iloc[6, 0] = "images/missing.png"  # a path the project does not have
    path = folder / "my_model_oof.csv"
    frame.to_csv(path, index=False)
    return path


def byom_screenshots(app: Any, window: Any, out: Path, pump: Callable[[float], None],
                     wait_until: Callable[..., None]) -> None:
    """Save 10-import-dialog, 10-import-dialog-errors, 11-duplicates and 12-outliers of the project open in ``window``."""
    from auditor.views.import_dialog import ImportDialog

    session, page = window.session, window.page
    scratch = Path(tempfile.mkdtemp(prefix="auditor-byom-"))
    predictions, embeddings, paths = write_valid_files(session.project, scratch)
    with_problems = write_predictions_with_problems(session.project, scratch)
    for name, chosen in (("10-import-dialog", {"pred_probs": predictions, "embeddings": embeddings, "paths": paths}),
                         ("10-import-dialog-errors", {"pred_probs": with_problems})):
        dialog = ImportDialog(session.root, parent=window)
        dialog.show()
        for field, path in chosen.items():
            getattr(dialog, field).set_path(path)
        wait_until(app, lambda dialog=dialog: dialog.preview is not None, 60, "the import dialog's check")
        if name == "10-import-dialog" and not dialog.preview.ok:
            raise RuntimeError(f"the valid files were refused: {dialog.preview.problems}")
        pump(0.3)
        dialog.grab().save(str(out / f"{name}.png"))
        print(f"wrote {out / f'{name}.png'}")
        dialog.close()

    finished: list[str] = []
    window.job_finished.connect(lambda command, status: finished.append(status))
    window.launcher.start_embed()
    wait_until(app, lambda: bool(finished), 900, "the embeddings")
    if finished[-1] != "ok":
        raise RuntimeError(f"engine embed ended with {finished[-1]}")
    for view, name in ((page.duplicates, "11-duplicates"), (page.outliers, "12-outliers")):
        finished.clear()
        page.setCurrentWidget(view)
        view.find_button.click()
        wait_until(app, lambda: bool(finished), 600, name)
        if finished[-1] != "ok":
            raise RuntimeError(f"{name}: the engine's search ended with {finished[-1]}")
        page.thumbnails.wait_idle(30_000)
        pump(0.5)
        window.grab().save(str(out / f"{name}.png"))
        print(f"wrote {out / f'{name}.png'}")
