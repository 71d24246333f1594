"""Class names: natural order at import, and one rule for reading a typed class (issue 13 item 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import draw_class_image

from engine.cli import main
from engine.data.classes import natural_key, natural_sorted
from engine.data.importing import import_csv, import_folder
from engine.errors import UserError
from engine.store import Project

NUMBERED = [str(number) for number in range(12)]  # "0".."11": sorted as text, "10" would be class 2


def numbered_folder(root: Path, names: list[str], per_class: int = 3) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            draw_class_image("circle", index, size=8).save(root / name / f"{index}.png")
    return root


def test_natural_key_orders_numbers_numerically_and_text_case_insensitively() -> None:
    assert natural_sorted(["10", "2", "1", "0", "11"]) == ["0", "1", "2", "10", "11"]
    assert natural_sorted(["img10", "Img2", "img1"]) == ["img1", "Img2", "img10"]
    assert natural_sorted(["b", "A", "a"]) == ["A", "a", "b"]  # case-insensitive, exact name breaks the tie
    assert natural_sorted(["class 10b", "class 10a", "class 9"]) == ["class 9", "class 10a", "class 10b"]
    assert natural_key("07") < natural_key("7") < natural_key("8")  # one number, two spellings: still a total order


def test_folder_import_numbers_classes_0_to_11_by_their_names(tmp_path: Path) -> None:
    images = numbered_folder(tmp_path / "images", NUMBERED)
    with import_folder(tmp_path / "proj", images, test_fraction=0) as project:
        assert project.class_names() == NUMBERED
        # The name and the index agree, so a digit means the same class in the app and the CLI.
        assert [project.resolve_class(name) for name in NUMBERED] == list(range(12))
        table = project.sample_table()
        assert all(path.split("/")[0] == NUMBERED[label] for path, label in zip(table.paths, table.label))


def test_csv_import_orders_labels_naturally(tmp_path: Path) -> None:
    images = numbered_folder(tmp_path / "images", NUMBERED)
    rows = [f"{name}/{index}.png,{name}" for name in reversed(NUMBERED) for index in range(3)]
    (tmp_path / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    with import_csv(tmp_path / "proj", tmp_path / "labels.csv", images, path_column="path", label_column="label",
                    test_fraction=0) as project:
        assert project.class_names() == NUMBERED


def test_resolve_class_prefers_a_name_then_reads_a_bare_integer_as_the_index(tmp_path: Path) -> None:
    with Project.create(tmp_path / "p") as project:
        project.add_classes(["1", "3", "x"])
        assert project.resolve_class("1") == 0  # the class named "1", not class number 1
        assert project.resolve_class("3") == 1  # named "3"
        assert project.resolve_class("2") == 2  # no class named "2": class number 2 ("x")
        assert project.resolve_class(" x ") == 2
        assert project.resolve_class(1) == 1  # an int from code is an index
        for bad in ("7", "-1", "²", "y"):
            with pytest.raises(UserError, match="unknown class") as info:
                project.resolve_class(bad)
            assert "1, 3, x" in info.value.hint and "0-2" in info.value.hint


def test_cli_relabel_by_digit_gives_the_class_of_that_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = numbered_folder(tmp_path / "images", NUMBERED)
    assert main(["init", str(tmp_path / "proj"), "--images", str(images), "--test-fraction", "0"]) == 0
    assert main(["decide", str(tmp_path / "proj"), "--sample", "0", "--relabel", "2"]) == 0
    assert main(["decide", str(tmp_path / "proj"), "--sample", "1", "--relabel", "10"]) == 0
    capsys.readouterr()
    with Project.open(tmp_path / "proj") as project:
        names = project.class_names()
        decided = {d.sample_id: d.new_label for d in project.decisions().values()}
    # The class named "2" is class number 2: the app's 2 key (an index) and the CLI's "2" (a name) agree.
    assert decided == {0: 2, 1: 10} and names[2] == "2" and names[10] == "10"
