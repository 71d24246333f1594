"""Bring your own predictions at CIFAR-10N scale: init, import and evaluate 50,000 predictions, timed.

    python bench/import_predictions.py DATA_DIR [--label-column worse_label] [--size 16] [--folds 5] [--keep DIR]

DATA_DIR holds ``cifar10n-train.csv`` and ``cifar10/`` (see /work/shared/data/README.md). The predictions
are honest out-of-fold probabilities made outside the product, as a user's own model's would be: linear
discriminant analysis on the pixels downsampled to SIZE x SIZE, trained on the noisy labels with
scikit-learn's ``cross_val_predict`` (K folds, seeded), one row per training image. They are weak (a linear
model on raw pixels), which is not what is measured: the timings of the product's path are.

Each product step runs as a person runs it, ``python -m engine ...`` in a fresh process (so the times include
starting Python and importing cleanlab):

- ``init``: the 50,000-image CSV dataset into a new project (20% held out, the default);
- ``import (.csv)``: ``import-predictions --pred-probs preds.csv`` (path + one column per class): every row
  checked, the run recorded, ``cl`` scored;
- ``import (.npy)``: ``import-predictions --pred-probs preds.npy --paths paths.txt``;
- ``evaluate``: ``evaluate --json`` of the imported run.

The table also gives each import's own stages from its run summary, and checks that ``cl``'s flagged set is
plain cleanlab's ``find_label_issues`` on the same arrays.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def engine(*args: str) -> tuple[float, str]:
    """Run ``python -m engine ARGS`` as a person would; (wall seconds, stdout). Fails loudly on an error."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"python -m engine {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def pixel_features(image_root: Path, paths: list[str], size: int) -> np.ndarray:
    """(N, size*size*3) float32: each image downsampled (box filter), scaled to [0, 1]."""
    from PIL import Image

    features = np.empty((len(paths), size * size * 3), dtype=np.float32)
    for index, path in enumerate(paths):
        with Image.open(image_root / path) as image:
            small = image.convert("RGB").resize((size, size), Image.Resampling.BOX)
        features[index] = np.asarray(small, dtype=np.float32).reshape(-1) / 255.0
    return features


def honest_predictions(features: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold class probabilities of a linear discriminant, trained on ``labels`` (the noisy ones)."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    model = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    probs = cross_val_predict(model, features, labels, cv=splitter, method="predict_proba")
    return np.asarray(probs, dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="holds cifar10n-train.csv and cifar10/")
    parser.add_argument("--label-column", default="worse_label", help="the noisy labels (default worse_label)")
    parser.add_argument("--size", type=int, default=16, help="downsampled image side for the features (default 16)")
    parser.add_argument("--folds", type=int, default=5, help="folds of cross_val_predict (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="work here and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)

    import pandas as pd

    csv_file, image_root = args.data_dir / "cifar10n-train.csv", args.data_dir / "cifar10"
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-import-"))
    work.mkdir(parents=True, exist_ok=True)
    project = work / "project"
    times: dict[str, float] = {}

    times["init (50,000 images)"], _ = engine("init", str(project), "--csv", str(csv_file), "--image-root",
                                              str(image_root), "--label-column", args.label_column,
                                              "--truth-column", "clean_label")
    table = pd.read_csv(csv_file)
    paths, labels = table["path"].tolist(), table[args.label_column].to_numpy()
    started = time.perf_counter()
    features = pixel_features(image_root, paths, args.size)
    times["(outside) features: decode + downsample"] = time.perf_counter() - started
    started = time.perf_counter()
    probs = honest_predictions(features, labels, args.folds, args.seed)
    times[f"(outside) {args.folds}-fold LDA predictions"] = time.perf_counter() - started
    classes = sorted(set(labels))  # cross_val_predict's columns: the sorted class names

    frame = pd.DataFrame(probs, columns=classes)
    frame.insert(0, "path", paths)
    frame.to_csv(work / "preds.csv", index=False, float_format="%.7g")
    from engine.store import Project

    with Project.open(project) as opened:
        order = [classes.index(name) for name in opened.class_names()]  # a .npy's columns: the project's order
    np.save(work / "preds.npy", probs[:, order])
    (work / "paths.txt").write_text("".join(f"{path}\n" for path in paths))

    times["import-predictions (.csv)"], _ = engine("import-predictions", str(project), "--pred-probs",
                                                   str(work / "preds.csv"), "--name", "csv")
    times["import-predictions (.npy + paths)"], _ = engine("import-predictions", str(project), "--pred-probs",
                                                           str(work / "preds.npy"), "--paths",
                                                           str(work / "paths.txt"), "--name", "npy")
    times["evaluate --json"], out = engine("evaluate", str(project), "--json")
    report = json.loads(out)

    with Project.open(project) as opened:
        runs = [run for run in opened.runs("audit") if run.status == "ok"]
        stages = {run.spec["name"]: run.summary["timings_s"] for run in runs}
        run = runs[-1]
        flagged = opened.scores(run.id, "cl")["flagged"]
        train = opened.sample_table().train_ids
        stored = np.load(run.folder / "pred_probs.npy")
        used = np.load(run.folder / "labels_used.npy")
    from cleanlab.filter import find_label_issues

    plain = find_label_issues(used[train], stored[train])
    agrees = bool(np.array_equal(plain, flagged[train]))

    print(f"\nBring your own predictions, CIFAR-10N ({args.label_column}), {len(paths):,} predictions; "
          f"work folder {work}")
    print(f"{'step':<44} {'seconds':>8}")
    for step, seconds in times.items():
        print(f"{step:<44} {seconds:8.1f}")
    for name, timing in stages.items():
        inside = ", ".join(f"{key} {value:.1f} s" for key, value in timing.items())
        print(f"  inside import ({name}): {inside}")
    product = times["import-predictions (.csv)"] + times["evaluate --json"]
    print(f"{'import (.csv) + evaluate':<44} {product:8.1f}")
    cl = report["detectors"]["cl"]
    print(f"cl on these predictions: ROC-AUC {cl['roc_auc']:.3f}, F1 {cl['f1']:.3f}, flagged {cl['n_flagged']:,} of "
          f"{report['n_evaluated']:,} (true noise rate {report['true_noise_rate']:.3f}); plain cleanlab "
          f"find_label_issues agrees: {agrees}")
    summary: dict[str, Any] = {"times_s": times, "stages_s": stages, "cl": cl, "cleanlab_agrees": agrees}
    (work / "bench.json").write_text(json.dumps(summary, indent=2, default=str))
    return 0 if agrees else 1


if __name__ == "__main__":
    sys.exit(main())
