"""The offline demo: digits written as real PNGs, imported, with known symmetric noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.cli import main
from engine.data.cache import ensure_cache
from engine.noise import clean_labels
from engine.store import Project


def test_demo_project_is_complete_with_known_noise(demo_project: Path) -> None:
    with Project.open(demo_project) as project:
        assert project.class_names() == [str(d) for d in range(10)]
        assert project.num_samples == 1797
        source = project.source
        assert source["kind"] == "demo" and source["image_root"] == "images"  # relative: the project can move
        table = project.sample_table()
        assert table.truth_known
        train = table.train_ids
        assert len(table.test_ids) == round(0.2 * 1797)
        noisy = table.label != table.true_label
        assert noisy[train].sum() == round(0.2 * len(train)) and not noisy[table.test_ids].any()
        assert np.array_equal(table.true_label, clean_labels(project))
        noise = project.noise_history()
        assert [(n["mode"], n["rate"], n["seed"]) for n in noise] == [("symmetric", 0.2, 100)]
        assert project.meta("demo") == {"seed": 0, "noise_rate": 0.2, "noise_seed": 100}
        # Real PNG files in one flat folder: the path says nothing of the class (see the test below).
        first = project.sample_image_path(0)
        assert first.parent == project.image_root
        with Image.open(first) as image:
            assert image.format == "PNG" and image.size == (32, 32)
        cached = ensure_cache(project, 16)
        assert cached.shape == (1797, 16, 16, 3)
        assert cached.min() < 60 and cached.max() > 240  # dark ink on white


def test_demo_copy_is_independent(demo_project: Path, _demo_template: Path) -> None:
    with Project.open(demo_project) as project:
        assert project.image_root == demo_project / "images"
        assert project.sample_image_path(5).is_relative_to(demo_project)


def test_cli_demo_json_and_refusal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --json streams events (tests/test_progress_events.py); here the summary a person reads.
    assert main(["demo", str(tmp_path / "d"), "--seed", "4", "--noise-rate", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "1797 images:" in out and "(demo dataset," in out and "noise: symmetric at rate 0.1 (seed 104)" in out
    assert main(["demo", str(tmp_path / "d")]) == 2
    assert "already holds a project" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no staging folder left behind
    with pytest.raises(SystemExit) as refused:  # refused where it is parsed, naming the option and its range
        main(["demo", str(tmp_path / "e"), "--noise-rate", "-0.1"])
    assert refused.value.code == 2
    assert "--noise-rate: -0.1 is out of range" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_demo_looks_like_a_dataset_with_unknown_errors(demo_project: Path) -> None:
    """Its given labels are the noisy ones, its files are named by index only, the truth is its own column."""
    import pandas as pd

    from engine.export import export_rows

    with Project.open(demo_project) as project:
        table = project.sample_table()
        names = project.class_names()
        assert np.array_equal(table.given_label, table.label)  # the labels it comes with are the noisy ones
        assert (table.label != table.true_label).sum() == round(0.2 * len(table.train_ids))
        assert all("/" not in path and path.endswith(".png") for path in table.paths)
        assert len({Path(path).stem for path in table.paths}) == project.num_samples  # names: index, not class
        frame = pd.read_csv(demo_project / "labels.csv", dtype=str, keep_default_na=False)
        assert list(frame.columns) == ["path", "label", "true_label"]
        assert frame["path"].tolist() == table.paths
        assert frame["label"].tolist() == [names[i] for i in table.label]
        assert frame["true_label"].tolist() == [names[i] for i in table.true_label]
        # An export's input label and its original_label agree: both the noisy label the dataset came with.
        export = export_rows(project)
        label, original = export.columns.index("label"), export.columns.index("original_label")
        assert all(row[label] == row[original] for row in export.rows)


def test_the_demos_noise_is_a_draw_the_shipped_td_lstm_never_saw(demo_project: Path) -> None:
    """Scored on a draw it was trained on, td_lstm's figures on the demo would measure its training data."""
    from engine import resources_dir

    card = (resources_dir() / "td_lstm.md").read_text(encoding="utf-8")
    rows = [line.split("|") for line in card.splitlines() if line.startswith("| ") and " on digits " in line]
    trained_on = {(row[1].split(" on ")[0].strip(), int(row[2])) for row in rows}  # (mode rate, noise seed)
    assert ("symmetric 0.2", 0) in trained_on and len(trained_on) == 6  # the card names every draw
    with Project.open(demo_project) as project:
        (noise,) = project.noise_history()
        assert project.meta("demo")["seed"] == 0  # the split the weights were recorded on: only the noise is new
    assert (f"{noise['mode']} {noise['rate']:g}", noise["seed"]) not in trained_on
    assert noise["seed"] not in {seed for _, seed in trained_on}
