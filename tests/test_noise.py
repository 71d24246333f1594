"""Noise synthesis on the digits demo: rates, seeds, the clean test split, every mode."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.data.cache import cache_path, ensure_cache
from engine.errors import UserError
from engine.noise import MODES, clean_labels, inject_noise, parse_class_map
from engine.store import OUTSIDE_LABEL_SET, Project


def labels_after(project: Project, mode: str, rate: float, seed: int, **kwargs: object) -> np.ndarray:
    inject_noise(project, mode, rate, seed, **kwargs)  # type: ignore[arg-type]
    return project.sample_table().label


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_hits_the_rate_keeps_truth_and_spares_the_test_split(mode: str, demo_project: Path) -> None:
    with Project.open(demo_project) as project:
        clean = clean_labels(project)
        summary = inject_noise(project, mode, 0.3, seed=5, image_size=16)
        table = project.sample_table()
        train, test = table.train_ids, table.test_ids
        noisy = (table.label != clean) | (table.true_label == OUTSIDE_LABEL_SET)
        assert abs(noisy[train].mean() - 0.3) < 0.03, noisy[train].mean()
        assert summary["realised_rate"] == pytest.approx(noisy[train].mean())
        assert summary["changed"] == noisy.sum()
        assert not noisy[test].any()
        assert np.array_equal(table.label[test], clean[test])
        assert np.array_equal(table.true_label[test], clean[test])
        if mode != "openset":
            assert np.array_equal(table.true_label, clean)
        history = project.noise_history()[-1]
        assert (history["mode"], history["rate"], history["seed"]) == (mode, 0.3, 5)
        assert history["changed"] == summary["changed"]


@pytest.mark.parametrize("mode", ["symmetric", "asymmetric", "instance", "openset"])
def test_same_seed_same_noise_other_seed_other_noise(mode: str, demo_project: Path) -> None:
    with Project.open(demo_project) as project:
        first = labels_after(project, mode, 0.2, 1, image_size=16)
        truth_first = project.sample_table().true_label
        again = labels_after(project, mode, 0.2, 1, image_size=16)
        assert np.array_equal(first, again)
        assert np.array_equal(truth_first, project.sample_table().true_label)
        labels_after(project, mode, 0.2, 2, image_size=16)
        other = project.sample_table()
        assert not (np.array_equal(first, other.label) and np.array_equal(truth_first, other.true_label))


def test_injections_do_not_stack(demo_project: Path) -> None:
    with Project.open(demo_project) as project:
        clean = clean_labels(project)
        # The demo already carries 20% noise; 5% on top of the truth means 5%, not 25%.
        labels = labels_after(project, "symmetric", 0.05, 9)
        train = project.sample_table().train_ids
        assert (labels[train] != clean[train]).mean() == pytest.approx(round(0.05 * len(train)) / len(train))
        assert np.array_equal(labels_after(project, "symmetric", 0.0, 9), clean)


def test_symmetric_flips_go_to_other_classes_uniformly(demo_project: Path) -> None:
    with Project.open(demo_project) as project:
        clean = clean_labels(project)
        labels = labels_after(project, "symmetric", 0.5, 3)
        flipped = labels != clean
        offsets = (labels[flipped] - clean[flipped]) % 10
        assert offsets.min() >= 1
        assert len(np.unique(offsets)) == 9  # all nine other classes are reached


def test_asymmetric_follows_the_default_and_a_user_map(demo_project: Path) -> None:
    with Project.open(demo_project) as project:
        clean = clean_labels(project)
        labels = labels_after(project, "asymmetric", 0.4, 0)
        flipped = labels != clean
        assert np.array_equal(labels[flipped], (clean[flipped] + 1) % 10)
        by_name_and_id: dict[str | int, str | int] = {"3": "8", 7: 1}
        summary = inject_noise(project, "asymmetric", 0.4, 0, class_map=by_name_and_id)
        assert summary["params"]["class_map"] == {"3": "8", "7": "1"}
        table = project.sample_table()
        flipped = table.label != clean
        assert set(clean[flipped]) == {3, 7}
        assert set(zip(clean[flipped], table.label[flipped])) == {(3, 8), (7, 1)}
        for cls in (3, 7):
            members = table.train_ids[clean[table.train_ids] == cls]
            assert flipped[members].sum() == round(0.4 * len(members))


def test_bad_requests_are_user_errors(demo_project: Path) -> None:
    with Project.open(demo_project) as project:
        before = project.sample_table().label
        with pytest.raises(UserError, match="unknown class 'eleven'"):
            inject_noise(project, "asymmetric", 0.2, 0, class_map={"eleven": "1"})
        with pytest.raises(UserError, match="to itself"):
            inject_noise(project, "asymmetric", 0.2, 0, class_map={"2": "2"})
        with pytest.raises(UserError, match="outside"):
            inject_noise(project, "symmetric", 1.5, 0)
        with pytest.raises(UserError, match="unknown noise mode"):
            inject_noise(project, "gaussian", 0.2, 0)
        with pytest.raises(UserError, match="only applies to asymmetric"):
            inject_noise(project, "symmetric", 0.2, 0, class_map={"1": "2"})
        assert np.array_equal(project.sample_table().label, before)
    with pytest.raises(UserError, match="source:target"):
        parse_class_map("1:2,3")
    assert parse_class_map(" cat:dog , 1:0") == {"cat": "dog", "1": "0"}


def test_instance_noise_depends_on_the_image(demo_project: Path) -> None:
    with Project.open(demo_project) as project:
        clean = clean_labels(project)
        labels = labels_after(project, "instance", 0.3, 4, image_size=16)
        train = project.sample_table().train_ids
        flipped = train[labels[train] != clean[train]]
        # Targets vary within a class (they follow the image, not a fixed class map)...
        for cls in range(10):
            targets = labels[flipped[clean[flipped] == cls]]
            assert len(np.unique(targets)) >= 2
        # ... and the flip rate differs a lot between images: some classes flip far more than others.
        per_class = [np.mean(labels[train][clean[train] == c] != c) for c in range(10)]
        assert max(per_class) - min(per_class) > 0.1


def test_openset_writes_images_overrides_and_invalidates_the_cache(demo_project: Path) -> None:
    with Project.open(demo_project) as project:
        clean = clean_labels(project)
        clean_cache = ensure_cache(project, 16)
        clean_file = cache_path(project, 16)
        summary = inject_noise(project, "openset", 0.1, 2, image_size=16)
        table = project.sample_table()
        outside = np.flatnonzero(table.true_label == OUTSIDE_LABEL_SET)
        assert len(outside) == round(0.1 * len(table.train_ids)) == summary["changed"]
        assert set(outside) <= set(table.train_ids)
        assert np.array_equal(table.label, clean)  # observed labels unchanged
        assert all(table.image_override[i] == f"openset/{i}.png" for i in outside)
        assert sum(o is not None for o in table.image_override) == len(outside)
        assert all(project.sample_image_path(int(i)).is_file() for i in outside)
        assert summary["params"]["kinds"].keys() <= {"mosaic", "texture"}
        noisy_cache = ensure_cache(project, 16)
        assert cache_path(project, 16) != clean_file
        assert not np.array_equal(noisy_cache[outside], clean_cache[outside])
        others = np.setdiff1d(np.arange(len(clean)), outside)
        assert np.array_equal(noisy_cache[others], clean_cache[others])

        # Back to plain noise: overrides, open-set files and their cache go away.
        inject_noise(project, "symmetric", 0.1, 2)
        table = project.sample_table()
        assert all(o is None for o in table.image_override)
        assert (table.true_label >= 0).all()
        assert not list((project.root / "openset").glob("*.png"))
        assert not cache_path(project, 16).is_file() or cache_path(project, 16) == clean_file
        assert [p.name for p in project.cache_dir.glob("*.npy")] == [clean_file.name]


def test_cli_inject_noise(demo_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inject-noise", str(demo_project), "--mode", "asymmetric", "--rate", "0.25", "--seed", "3",
                 "--class-map", "1:7,7:1"]) == 0
    out = capsys.readouterr().out
    assert "asymmetric noise, rate 0.25, seed 3" in out and "1->7" in out and "test split untouched" in out
    # --json streams events (tests/test_progress_events.py); here the summary a person reads.
    assert main(["inject-noise", str(demo_project), "--mode", "symmetric", "--rate", "0.1"]) == 0
    counts = re.search(r"(\d+) of (\d+) training samples noisy", capsys.readouterr().out)
    assert counts is not None
    changed, train = map(int, counts.groups())
    assert changed == round(0.1 * train)
    assert main(["inject-noise", str(demo_project), "--mode", "asymmetric", "--rate", "0.2",
                 "--class-map", "1:ten"]) == 2
    assert "unknown class 'ten'" in capsys.readouterr().err
    assert main(["inject-noise", str(demo_project.parent / "nothing"), "--mode", "symmetric", "--rate", "0.1"]) == 2
