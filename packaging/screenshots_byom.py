"""Screenshots of bring-your-own-model (issue 21) for packaging/screenshots.py: the import dialog with the problems
of a predictions file listed, the Duplicates view and the Outliers view. Quick: no audit is trained here; the
embeddings are computed by `engine embed` (the offline default backbone) on the open demo project."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


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
    """Save 10-import-dialog, 11-duplicates and 12-outliers of the project open in ``window``."""
    from auditor.views.import_dialog import ImportDialog

    session, page = window.session, window.page
    scratch = Path(tempfile.mkdtemp(prefix="auditor-byom-"))
    dialog = ImportDialog(session.root, parent=window)
    dialog.show()
    dialog.pred_probs.set_path(write_predictions_with_problems(session.project, scratch))
    wait_until(app, lambda: dialog.preview is not None, 60, "the import dialog's check")
    pump(0.3)
    dialog.grab().save(str(out / "10-import-dialog.png"))
    print(f"wrote {out / '10-import-dialog.png'}")
    dialog.close()

    finished: list[str] = []
    window.job_finished.connect(lambda command, status: finished.append(status))
    window.launcher.start_embed()
    wait_until(app, lambda: bool(finished), 900, "the embeddings")
    for view, name in ((page.duplicates, "11-duplicates"), (page.outliers, "12-outliers")):
        finished.clear()
        page.setCurrentWidget(view)
        view.find_button.click()
        wait_until(app, lambda: bool(finished), 600, name)
        page.thumbnails.wait_idle(30_000)
        pump(0.5)
        window.grab().save(str(out / f"{name}.png"))
        print(f"wrote {out / f'{name}.png'}")
