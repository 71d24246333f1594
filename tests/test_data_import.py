"""Importing datasets: ImageFolder and CSV layouts, every kind of bad input, odd image modes."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import IMAGE_FOLDER_CLASSES, IMAGE_FOLDER_PER_CLASS, RecordingSink, draw_class_image, make_image_folder
from PIL import Image

from engine.cli import main
from engine.data.images import MAX_PIXELS, BadImage, load_square_rgb, probe
from engine.data.importing import import_csv, import_folder
from engine.errors import UserError
from engine.store import UNKNOWN_TRUTH


# ----------------------------------------------------------------- helpers
def noise_image(size: int = 32, seed: int = 0) -> Image.Image:
    # Random pixels compress badly, so cutting the file really cuts image data.
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def png_claiming_size(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose header claims width x height (a decompression bomb, harmlessly)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:20] = width.to_bytes(4, "big")
    data[20:24] = height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    path.write_bytes(bytes(data))


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------- folder import
def test_import_folder_classes_split_and_source(image_folder: Path, tmp_path: Path) -> None:
    with import_folder(tmp_path / "proj", image_folder, test_fraction=0.25, seed=3) as project:
        assert project.class_names() == sorted(IMAGE_FOLDER_CLASSES)
        table = project.sample_table()
        assert project.num_samples == 3 * IMAGE_FOLDER_PER_CLASS
        assert table.paths == sorted(table.paths)
        assert all("/" in p and not p.startswith("/") for p in table.paths)
        assert table.paths[0] == "circle/circle_00.png"
        # Stratified: every class has 3 of its 12 images in the test split.
        for cls in range(3):
            assert ((table.split == "test") & (table.label == cls)).sum() == 3
        assert (table.true_label == UNKNOWN_TRUTH).all()
        source = project.source
        assert source["kind"] == "folder" and source["image_root"] == str(image_folder)
        assert source["layout"] == "imagefolder" and source["folds"] == 3
        assert project.meta("skipped") == []
        assert project.execute("SELECT width, height FROM samples WHERE id = 0") == [(16, 16)]
        first_split = list(table.split)
    with import_folder(tmp_path / "again", image_folder, test_fraction=0.25, seed=3) as again:
        assert list(again.sample_table().split) == first_split
    with import_folder(tmp_path / "other", image_folder, test_fraction=0.25, seed=4) as other:
        assert list(other.sample_table().split) != first_split


def test_train_test_folders_are_used_as_given(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "data" / "train", per_class=5)
    make_image_folder(tmp_path / "data" / "test", classes=("circle", "cross"), per_class=2)
    with import_folder(tmp_path / "proj", tmp_path / "data", test_fraction=0.5) as project:
        table = project.sample_table()
        assert project.source["layout"] == "train-test"
        assert (table.split == "test").sum() == 4
        assert all(p.startswith("test/") for p, s in zip(table.paths, table.split) if s == "test")
        assert all(p.startswith("train/") for p, s in zip(table.paths, table.split) if s == "train")


def test_files_outside_class_folders_are_reported(image_folder: Path, tmp_path: Path) -> None:
    (image_folder / "README.txt").write_text("about this dataset")
    (image_folder / "unused").mkdir()
    events = RecordingSink()
    with import_folder(tmp_path / "proj", image_folder, events=events) as project:
        assert project.num_classes == 3
    logged = "\n".join(events.messages())
    assert "ignored 1 file directly in" in logged and "'README.txt'" in logged
    assert "ignored empty class folder(s)" in logged and "unused" in logged


def test_test_class_missing_from_train_is_an_error(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "data" / "train", classes=("circle", "cross"), per_class=4)
    make_image_folder(tmp_path / "data" / "test", classes=("stripes",), per_class=2)
    with pytest.raises(UserError, match="stripes"):
        import_folder(tmp_path / "proj", tmp_path / "data")
    assert not (tmp_path / "proj").exists()


def test_unicode_and_spaces_in_paths(tmp_path: Path) -> None:
    root = tmp_path / "dåta sét"
    for name in ("chat noir", "狗"):
        (root / name).mkdir(parents=True)
        for index in range(5):
            draw_class_image("circle", index).save(root / name / f"café {index} ü.png")
    with import_folder(tmp_path / "prøject x", root, test_fraction=0) as project:
        assert project.class_names() == ["chat noir", "狗"]
        assert "狗/café 0 ü.png" in project.sample_table().paths
        assert project.sample_image_path(0).is_file()


def test_bad_images_are_skipped_listed_and_logged(image_folder: Path, tmp_path: Path) -> None:
    bad = image_folder / "circle"
    (bad / "empty.png").write_bytes(b"")
    (bad / "notes.txt").write_text("not an image")
    (bad / "fake.jpg").write_bytes(b"\xff\xd8 this is no jpeg" * 10)
    noise_image(64).save(bad / "cut.png")
    truncate(bad / "cut.png")
    noise_image(64).save(bad / "cut.jpg", quality=95)
    truncate(bad / "cut.jpg")
    png_claiming_size(bad / "bomb.png", 20_000, 20_000)
    (bad / ".DS_Store").write_bytes(b"junk")  # hidden: ignored, not an image of the dataset
    events = RecordingSink()
    with import_folder(tmp_path / "proj", image_folder, events=events) as project:
        skipped = {entry["path"]: entry["reason"] for entry in project.meta("skipped")}
        assert project.num_samples == 3 * IMAGE_FOLDER_PER_CLASS
    assert set(skipped) == {f"circle/{n}" for n in ("empty.png", "notes.txt", "fake.jpg", "cut.png", "cut.jpg",
                                                    "bomb.png")}
    assert "empty" in skipped["circle/empty.png"]
    assert "not an image" in skipped["circle/notes.txt"]
    assert "not an image" in skipped["circle/fake.jpg"]
    assert "truncated" in skipped["circle/cut.png"]
    assert "truncated" in skipped["circle/cut.jpg"]
    assert "too large" in skipped["circle/bomb.png"] and "megapixel" in skipped["circle/bomb.png"]
    logged = "\n".join(events.messages())
    assert "skipped 'circle/cut.png': truncated" in logged
    assert "skipped 6 of 42 images" in logged


def test_pixel_limit_is_clear_and_big_sane_images_pass(tmp_path: Path) -> None:
    png_claiming_size(tmp_path / "huge.png", 15_000, 15_000)
    limit = MAX_PIXELS // 10**6
    with pytest.raises(BadImage, match=f"too large: (15000x15000 = )?225 megapixels, over the {limit}-megapixel"):
        probe(tmp_path / "huge.png")
    # 100 megapixels: more than Pillow's default warning limit, still accepted (and no warning, which
    # the test settings would turn into an error).
    Image.new("1", (10_000, 10_000), 1).save(tmp_path / "big.png")
    info = probe(tmp_path / "big.png")
    assert (info.width, info.height) == (10_000, 10_000)


def test_odd_modes_are_converted_to_rgb_correctly(tmp_path: Path) -> None:
    cases: dict[str, tuple[Image.Image, tuple[int, int, int]]] = {
        "grey.png": (Image.new("L", (8, 8), 100), (100, 100, 100)),
        "bilevel.png": (Image.new("1", (8, 8), 1), (255, 255, 255)),
        "transparent.png": (Image.new("RGBA", (8, 8), (255, 0, 0, 0)), (255, 255, 255)),
        "opaque.png": (Image.new("RGBA", (8, 8), (0, 0, 255, 255)), (0, 0, 255)),
        "half.png": (Image.new("RGBA", (8, 8), (0, 0, 0, 128)), (127, 127, 127)),
        "grey_alpha.png": (Image.new("LA", (8, 8), (0, 0)), (255, 255, 255)),
        "cmyk.jpg": (Image.new("CMYK", (8, 8), (255, 0, 0, 0)), (0, 255, 255)),
        "cmyk.tif": (Image.new("CMYK", (8, 8), (0, 0, 0, 0)), (255, 255, 255)),
        "sixteen.png": (Image.new("I;16", (8, 8), 65535), (255, 255, 255)),
        "sixteen_mid.png": (Image.new("I;16", (8, 8), 32896), (128, 128, 128)),
    }
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 200, 10, 20] + [0] * 762)
    cases["palette.png"] = (palette, (200, 10, 20))
    keyed = palette.copy()
    keyed.info["transparency"] = 1
    cases["palette_keyed.png"] = (keyed, (255, 255, 255))
    for name, (image, _) in cases.items():
        if name == "palette_keyed.png":
            image.save(tmp_path / name, transparency=1)
        else:
            image.save(tmp_path / name)
    for name, (_, expected) in cases.items():
        probe(tmp_path / name)  # readable
        pixels = load_square_rgb(tmp_path / name, 4)
        assert pixels.shape == (4, 4, 3) and pixels.dtype == np.uint8, name
        assert np.abs(pixels.astype(int) - expected).max() <= 2, (name, pixels[0, 0], expected)
    with Image.open(tmp_path / "sixteen.png") as sixteen:
        assert sixteen.mode.startswith("I")  # really stored as 16-bit


def test_existing_project_or_non_empty_folder_is_refused_untouched(image_folder: Path, tmp_path: Path) -> None:
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        import_folder(occupied, image_folder)
    assert leftovers(occupied) == ["keep.txt"]
    import_folder(tmp_path / "proj", image_folder).close()
    with pytest.raises(UserError, match="already holds a project"):
        import_folder(tmp_path / "proj", image_folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    import_folder(empty, image_folder).close()
    assert (empty / "project.db").is_file()


@pytest.mark.parametrize("problem", ["one_class", "too_small", "all_bad", "no_classes"])
def test_failed_import_leaves_no_project_behind(problem: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    if problem == "one_class":
        make_image_folder(data, classes=("circle",))
        expected = r"only one class \('circle'\)"
    elif problem == "too_small":
        make_image_folder(data, classes=("circle", "cross"), per_class=10)
        make_image_folder(data, classes=("stripes",), per_class=2)
        expected = r"class 'stripes' .* has only \d training image"
    elif problem == "all_bad":
        for name in ("a", "b"):
            (data / name).mkdir(parents=True)
            (data / name / "x.png").write_text("text")
        expected = "none of the 2 images"
    else:
        data.mkdir()
        draw_class_image("circle", 0).save(data / "loose.png")
        expected = "1 file but no class sub-folders"
    parent = tmp_path / "deep" / "er"
    with pytest.raises(UserError, match=expected):
        import_folder(parent / "proj", data)
    assert not (tmp_path / "deep").exists()  # neither the project nor the parents made for it
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError):
        import_folder(empty, data)
    assert empty.is_dir() and leftovers(empty) == []
    assert leftovers(tmp_path) == ["data", "empty"]


def test_class_too_small_for_folds_names_the_class_and_folds(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "data", per_class=4)
    with pytest.raises(UserError, match=r"class 'circle' .*4-fold cross-validation needs at least 4") as info:
        import_folder(tmp_path / "proj", tmp_path / "data", folds=4, test_fraction=0.2)
    assert "--folds" in info.value.hint
    import_folder(tmp_path / "ok", tmp_path / "data", folds=4, test_fraction=0).close()


def test_bad_options_and_missing_folder(image_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="test fraction 1.5"):
        import_folder(tmp_path / "p", image_folder, test_fraction=1.5)
    with pytest.raises(UserError, match="folds"):
        import_folder(tmp_path / "p", image_folder, folds=1)
    with pytest.raises(UserError, match="does not exist"):
        import_folder(tmp_path / "p", tmp_path / "nowhere")


# --------------------------------------------------------------- CSV import
@pytest.fixture
def csv_images(tmp_path: Path) -> Path:
    root = tmp_path / "img root"
    make_image_folder(root, per_class=6)
    return root


def csv_rows(root: Path) -> list[tuple[str, str]]:
    return sorted((p.relative_to(root).as_posix(), p.parent.name) for p in root.rglob("*.png"))


def test_import_csv_keeps_columns_rows_and_truth(csv_images: Path, tmp_path: Path) -> None:
    lines = ["id,file,label,note,truth"]
    for row, (path, label) in enumerate(csv_rows(csv_images), 1):
        given = "cross" if row == 2 else label
        lines.append(f"{row},{path},{given},n{row},{label if row != 5 else ''}")
    csv_file = write_csv(tmp_path / "labels.csv", "\n".join(lines) + "\n")
    with import_csv(tmp_path / "proj", csv_file, csv_images, path_column="file", label_column="label",
                    truth_column="truth", test_fraction=0, seed=1) as project:
        source = project.source
        assert source["kind"] == "csv" and source["columns"] == ["id", "file", "label", "note", "truth"]
        assert (source["csv"], source["image_root"]) == (str(csv_file), str(csv_images))
        assert (source["path_column"], source["label_column"], source["truth_column"]) == ("file", "label", "truth")
        table = project.sample_table()
        assert table.paths == [path for path, _ in csv_rows(csv_images)]  # row order, as written
        assert project.sample_extras()[1] == {"id": "2", "note": "n2"}
        assert project.execute("SELECT source_row FROM samples WHERE id = 4") == [(5,)]
        names = project.class_names()
        assert names[table.given_label[1]] == "cross" and names[table.true_label[1]] == "circle"
        assert table.true_label[4] == UNKNOWN_TRUTH  # empty truth cell: unknown


def test_csv_backslash_paths_become_forward_slashes(csv_images: Path, tmp_path: Path) -> None:
    lines = ["path,label"] + [f"{p.replace('/', chr(92))},{lab}" for p, lab in csv_rows(csv_images)]
    csv_file = write_csv(tmp_path / "labels.csv", "\n".join(lines))
    with import_csv(tmp_path / "proj", csv_file, csv_images, path_column="path", label_column="label") as project:
        assert project.sample_table().paths[0] == "circle/circle_00.png"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ("missing_column", r"labels.csv has no column 'label' \(--label-column\); its columns are: 'path', 'klass'"),
        ("empty_label", r"labels.csv data row 3 \(line 4\) has an empty label"),
        ("duplicate", r"labels.csv data rows 1 and 4 \(lines 2 and 5\) both name the image 'circle/circle_00.png'"),
        ("dotdot", r"labels.csv data row 2 \(line 3\) has a path outside the image root"),
        ("absolute", r"labels.csv data row 2 \(line 3\) has an absolute path"),
        ("unknown_truth", r"labels.csv data row 1 \(line 2\) has a truth .* not one of the labels"),
        ("empty_path", r"labels.csv data row 2 \(line 3\) has an empty path"),
    ],
)
def test_csv_structural_errors_name_the_row(edit: str, expected: str, csv_images: Path, tmp_path: Path) -> None:
    rows = [[p, lab, lab] for p, lab in csv_rows(csv_images)]
    header = ["path", "label", "truth"]
    if edit == "missing_column":
        header = ["path", "klass", "truth"]
    elif edit == "empty_label":
        rows[2][1] = ""
    elif edit == "duplicate":
        rows[3][0] = "./" + rows[0][0]
    elif edit == "dotdot":
        rows[1][0] = "../outside.png"
    elif edit == "absolute":
        rows[1][0] = str(csv_images / rows[1][0])
    elif edit == "unknown_truth":
        rows[0][2] = "dinosaur"
    elif edit == "empty_path":
        rows[1][0] = ""
    text = "\n".join(",".join(r) for r in [header] + rows)
    csv_file = write_csv(tmp_path / "labels.csv", text)
    with pytest.raises(UserError, match=expected) as info:
        import_csv(tmp_path / "proj", csv_file, csv_images, path_column="path", label_column="label",
                   truth_column="truth")
    assert info.value.hint
    assert not (tmp_path / "proj").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".proj")]


def test_csv_missing_files_are_skipped_with_rows_unless_most_are_missing(csv_images: Path, tmp_path: Path) -> None:
    rows = csv_rows(csv_images) + [("circle/gone.png", "circle")]
    csv_file = write_csv(tmp_path / "a.csv", "\n".join(["path,label"] + [f"{p},{lab}" for p, lab in rows]))
    with import_csv(tmp_path / "proj", csv_file, csv_images, path_column="path", label_column="label") as project:
        assert project.meta("skipped") == [{"path": "circle/gone.png", "reason": "file not found", "row": 19}]
        assert project.num_samples == 18
    wrong_root = tmp_path / "elsewhere"
    wrong_root.mkdir()
    with pytest.raises(UserError, match=r"19 of the 19 images named in a.csv are not under the image root") as info:
        import_csv(tmp_path / "proj2", csv_file, wrong_root, path_column="path", label_column="label")
    assert "--image-root" in info.value.hint


def test_csv_unreadable_files(tmp_path: Path, csv_images: Path) -> None:
    with pytest.raises(UserError, match="is empty"):
        import_csv(tmp_path / "p", write_csv(tmp_path / "e.csv", ""), csv_images, path_column="path",
                   label_column="label")
    with pytest.raises(UserError, match="header but no data rows"):
        import_csv(tmp_path / "p", write_csv(tmp_path / "h.csv", "path,label\n"), csv_images, path_column="path",
                   label_column="label")
    (tmp_path / "latin.csv").write_bytes("path,label\ncircle/circle_00.png,caf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        import_csv(tmp_path / "p", tmp_path / "latin.csv", csv_images, path_column="path", label_column="label")
    with pytest.raises(UserError, match="does not exist"):
        import_csv(tmp_path / "p", tmp_path / "none.csv", csv_images, path_column="path", label_column="label")
    assert not (tmp_path / "p").exists()


# ---------------------------------------------------------------------- CLI
def test_cli_init_folder_and_csv(image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (image_folder / "cross" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert main(["init", str(tmp_path / "p1"), "--images", str(image_folder), "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "36 images" in out and "circle" in out and "cross/broken.png" in out and "skipped 1 image" in out

    lines = ["path,label,extra"] + [f"{p},{lab},x" for p, lab in csv_rows(image_folder)]
    csv_file = write_csv(tmp_path / "labels.csv", "\n".join(lines))
    # --json takes over the process's stdout for events, as the app's engine process does: run it as one.
    done = subprocess.run([sys.executable, "-u", "-m", "engine", "init", str(tmp_path / "p2"), "--csv", str(csv_file),
                           "--image-root", str(image_folder), "--json", "--test-fraction", "0.25"],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    # The import summary is the result event, and done comes last.
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[-1]["type"] == "done" and events[-1]["status"] == "ok"
    summary = next(event["data"] for event in events if event["type"] == "result")
    assert summary["samples"] == 36 and summary["test"] == 9
    assert [c["name"] for c in summary["classes"]] == ["circle", "cross", "stripes"]
    assert summary["source"]["columns"] == ["path", "label", "extra"]
    assert summary["skipped"][0]["row"] == 13


def test_cli_init_errors_exit_2_with_the_fix(image_folder: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "p"), "--csv", str(tmp_path / "x.csv")]) == 2
    assert "--image-root" in capsys.readouterr().err
    assert main(["init", str(tmp_path / "p"), "--images", str(image_folder), "--folds", "20"]) == 2
    err = capsys.readouterr().err
    assert "20-fold" in err and "fix:" in err
    assert not (tmp_path / "p").exists()


# ------------------------------------------- odd names, deep trees, links, special files (issue 13 items 15-16)
def tiff_declaring(path: Path, width: int, height: int) -> None:
    """A greyscale TIFF whose header promises width x height but whose one strip holds 16 bytes."""
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 0),
               (278, 4, height), (279, 4, 16)]
    strip_offset = 8 + 2 + len(entries) * 12 + 4
    data = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    for tag, kind, value in entries:
        value = strip_offset if tag == 273 else value
        data += struct.pack("<HHIHH", tag, kind, 1, value, 0) if kind == 3 else struct.pack("<HHII", tag, kind, 1, value)
    path.write_bytes(bytes(data + struct.pack("<I", 0) + bytes(16)))


def skipped_reasons(project_root: Path) -> dict[str, str]:
    from engine.store import Project

    with Project.open(project_root) as project:
        return {entry["path"]: entry["reason"] for entry in project.meta("skipped")}


def test_a_header_promising_more_pixels_than_the_file_holds_is_refused(image_folder: Path, tmp_path: Path) -> None:
    tiff_declaring(image_folder / "circle" / "promise.tif", 9000, 9000)  # 81 MP over 16 bytes of data
    with import_folder(tmp_path / "proj", image_folder) as project:
        assert "circle/promise.tif" not in project.sample_table().paths
    assert "truncated" in skipped_reasons(tmp_path / "proj")["circle/promise.tif"]


def test_non_utf8_file_and_folder_names_are_listed_not_fatal(image_folder: Path, tmp_path: Path) -> None:
    noise_image(16).save(image_folder / "circle" / os.fsdecode(b"bad\xff\xfe.png"))
    make_image_folder(image_folder / os.fsdecode(b"c\xfe"), classes=("cross",), per_class=4)
    events = RecordingSink()
    with import_folder(tmp_path / "proj", image_folder, events=events) as project:
        assert project.class_names() == list(IMAGE_FOLDER_CLASSES)
        assert project.num_samples == 3 * IMAGE_FOLDER_PER_CLASS
    skipped = skipped_reasons(tmp_path / "proj")
    assert "not valid UTF-8" in skipped["circle/bad\\xff\\xfe.png"]
    assert "not valid UTF-8" in skipped["c\\xfe/"]
    assert any("bad\\xff\\xfe.png" in message for message in events.messages())


def test_nul_byte_in_a_csv_path_refuses_that_row(csv_images: Path, tmp_path: Path) -> None:
    lines = ["path,label"] + [f"{path},{label}" for path, label in csv_rows(csv_images)]
    path, rest = lines[3].split(",", 1)
    lines[3] = path.replace(".png", "\x00.png") + "," + rest
    broken = write_csv(tmp_path / "nul.csv", "\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"nul.csv data row 3 \(line 4\) has a NUL character") as info:
        import_csv(tmp_path / "proj", broken, csv_images, path_column="path", label_column="label")
    assert "delete the row" in info.value.hint


def test_a_tree_1100_folders_deep_is_walked_without_recursion(image_folder: Path, tmp_path: Path) -> None:
    depth = 1100  # the old walk (Path.rglob) raised RecursionError from about 990
    folder = os.open(image_folder / "cross", os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=folder)
        deeper = os.open("d", os.O_RDONLY, dir_fd=folder)
        os.close(folder)
        folder = deeper
    with open(os.open("deep.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=folder), "wb") as out:
        noise_image(16).save(out, "PNG")
    os.close(folder)
    try:
        events = RecordingSink()
        with import_folder(tmp_path / "proj", image_folder, events=events) as project:
            assert project.num_samples == 3 * IMAGE_FOLDER_PER_CLASS
        skipped = skipped_reasons(tmp_path / "proj")
        [(where, reason)] = skipped.items()
        assert where == "cross/" + "d/" * 65 and "nested more than 64 folders deep" in reason
    finally:
        # shutil.rmtree recurses too: take the chain apart from the top, one level at a time.
        top = image_folder / "cross" / "d"
        while (top / "d").exists():
            (top / "d").rename(image_folder / "cross" / "next")
            for leftover in top.iterdir():
                leftover.unlink()
            top.rmdir()
            (image_folder / "cross" / "next").rename(top)
        shutil.rmtree(top)


def test_project_path_that_is_a_dangling_link_or_too_long_a_name_is_refused(image_folder: Path,
                                                                             tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UserError, match="is a link to .*nowhere, which does not exist"):
        import_folder(tmp_path / "link", image_folder)
    assert (tmp_path / "link").is_symlink() and not (tmp_path / "nowhere").exists()
    with pytest.raises(UserError, match="256 bytes long; file systems allow at most 255"):
        import_folder(tmp_path / ("p" * 256), image_folder)
    with import_folder(tmp_path / ("p" * 250), image_folder) as project:  # the staging name must fit too
        assert project.num_samples == 3 * IMAGE_FOLDER_PER_CLASS
    assert leftovers(tmp_path) == sorted(["images", "link", "p" * 250])


def test_links_out_of_the_root_loops_and_special_files_are_listed(image_folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    make_image_folder(outside, classes=("stripes",), per_class=3)
    circle = image_folder / "circle"
    (circle / "out.png").symlink_to(outside / "stripes" / "stripes_00.png")
    (circle / "rel.png").symlink_to(os.path.relpath(outside / "stripes" / "stripes_01.png", circle))
    (circle / "broken.png").symlink_to(tmp_path / "gone.png")
    (circle / "loop").symlink_to("..")  # a folder link back up: would import the dataset again
    (circle / "sibling").symlink_to("../cross")  # another class: its images would come twice
    (image_folder / "again").symlink_to(".")  # a class that is the whole dataset
    (image_folder / "external").symlink_to(outside / "stripes")  # a class that lives elsewhere
    os.mkfifo(circle / "pipe.png")
    with import_folder(tmp_path / "proj", image_folder) as project:
        table = project.sample_table()
        assert project.class_names() == list(IMAGE_FOLDER_CLASSES)
        real = [os.path.realpath(image_folder / path) for path in table.paths]
        assert len(real) == len(set(real)) == 3 * IMAGE_FOLDER_PER_CLASS
    skipped = skipped_reasons(tmp_path / "proj")
    assert "outside the image root" in skipped["circle/out.png"]
    assert "outside the image root" in skipped["circle/rel.png"]
    assert "broken link" in skipped["circle/broken.png"]
    assert "FIFO" in skipped["circle/pipe.png"]
    assert "not followed" in skipped["circle/loop/"] and "image folder itself" in skipped["circle/loop/"]
    assert "'cross' inside the image folder" in skipped["circle/sibling/"]
    assert "image folder itself" in skipped["again/"]
    assert "outside the image folder" in skipped["external/"]


def test_csv_row_naming_a_link_out_of_the_root_is_skipped(csv_images: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.png").write_bytes((csv_images / "circle" / "circle_00.png").read_bytes())
    text = "path,label\n" + "".join(f"{path},{label}\n" for path, label in csv_rows(csv_images))
    (csv_images / "link.png").symlink_to(tmp_path / "secret.png")
    labels = write_csv(tmp_path / "more.csv", text + "link.png,circle\n")
    with import_csv(tmp_path / "proj", labels, csv_images, path_column="path", label_column="label") as project:
        assert "link.png" not in project.sample_table().paths
        [entry] = [e for e in project.meta("skipped") if e["path"] == "link.png"]
    assert "outside the image root" in entry["reason"] and entry["row"] == len(text.splitlines())


def test_os_junk_and_hidden_folders_are_skipped_with_a_note(image_folder: Path, tmp_path: Path) -> None:
    (image_folder / "__MACOSX" / "circle").mkdir(parents=True)
    for index in range(4):
        noise_image(16, index).save(image_folder / "__MACOSX" / "circle" / f"._{index}.png")
        noise_image(16, index).save(image_folder / "__MACOSX" / "circle" / f"{index}.png")
    (image_folder / ".git").mkdir()
    (image_folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (image_folder / "cross" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    events = RecordingSink()
    with import_folder(tmp_path / "proj", image_folder, events=events) as project:
        assert project.class_names() == list(IMAGE_FOLDER_CLASSES)
        assert project.meta("skipped") == []
    note = next(m for m in events.messages() if "hidden or system" in m)
    assert "__MACOSX/" in note and ".git/" in note and "cross/.DS_Store" in note


@pytest.mark.parametrize(("train", "test"), [("train", "val"), ("Train", "Test"), ("training", "testing"),
                                             ("train", "valid")])
def test_split_folders_on_top_are_splits_not_classes(train: str, test: str, tmp_path: Path) -> None:
    make_image_folder(tmp_path / "data" / train, classes=("circle", "cross"), per_class=4)
    make_image_folder(tmp_path / "data" / test, classes=("circle", "cross"), per_class=2)
    with import_folder(tmp_path / "proj", tmp_path / "data") as project:
        assert project.class_names() == ["circle", "cross"]
        assert project.source["layout"] == "train-test"
        table = project.sample_table()
        assert {p.split("/")[0] for p, s in zip(table.paths, table.split) if s == "test"} == {test}
        assert (table.split == "test").sum() == 4


def test_train_and_val_and_test_folders_all_count_and_a_lone_train_folder_gets_a_test_split(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "data" / "train", classes=("circle", "cross"), per_class=4)
    make_image_folder(tmp_path / "data" / "val", classes=("circle", "cross"), per_class=1)
    make_image_folder(tmp_path / "data" / "test", classes=("circle", "cross"), per_class=1)
    with import_folder(tmp_path / "p1", tmp_path / "data") as project:
        assert project.class_names() == ["circle", "cross"] and (project.sample_table().split == "test").sum() == 4
    make_image_folder(tmp_path / "lone" / "train", classes=("circle", "cross"), per_class=6)
    with import_folder(tmp_path / "p2", tmp_path / "lone", test_fraction=0.25) as project:
        assert project.class_names() == ["circle", "cross"] and project.source["layout"] == "train-only"
        assert (project.sample_table().split == "test").sum() == 3


@pytest.mark.parametrize("token", ["NaN", "NA", "N/A", "None", "null", "#N/A", "<NA>"])
def test_a_missing_value_marker_as_a_class_is_imported_with_a_warning_naming_it(tmp_path: Path, token: str) -> None:
    # 'nan' may be a real class name; where it stands for an empty cell, the person is told which rows.
    root = tmp_path / "images"
    root.mkdir()
    rows = ["path,label"]
    for index in range(12):
        Image.new("RGB", (8, 8), (index * 20, 0, 0)).save(root / f"{index}.png")
        rows.append(f"{index}.png,{token if index < 6 else 'b'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    sink = RecordingSink()
    project = import_csv(tmp_path / "project", tmp_path / "labels.csv", root, path_column="path",
                         label_column="label", events=sink)
    assert sorted(project.class_names()) == sorted(["b", token])
    project.close()
    warnings = [e.message for e in sink.events if getattr(e, "level", "") == "warning" and token in e.message]
    assert len(warnings) == 1 and "data rows 1, 2, 3, 4, 5 and 1 more" in warnings[0]


@pytest.mark.parametrize("seed", ["-1", str(2**40)])
def test_a_seed_out_of_range_is_refused_naming_the_option(image_folder: Path, tmp_path: Path, seed: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:  # refused where it is parsed, naming the option and its range
        main(["init", str(tmp_path / "p"), "--images", str(image_folder), "--seed", seed])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --seed: {seed} is out of range: use a whole number from 0 to" in err
    assert not (tmp_path / "p").exists()
