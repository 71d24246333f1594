"""Every numeric option of every command has a range, checked where it is parsed (engine/options.py)."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import pytest

from engine.cli import build_parser, main
from engine.data.importing import import_folder
from engine.errors import UserError
from engine.noise import inject_noise
from engine.options import OPTION_RANGES, NumberRange, check_option, option_rows, options_table_markdown, subcommand_parsers
from engine.store import Project

README = Path(__file__).resolve().parents[1] / "README.md"
TRAIN = ["--epochs", "1", "--image-size", "16", "--batch-size", "8", "--device", "cpu"]
# What each command needs besides the option tried, so that only that option can be wrong.
REQUIRED = {"init": ["--images", "DIR"], "inject-noise": ["--mode", "symmetric", "--rate", "0.1"],
            "export": ["--out", "x.csv"], "decide": ["--sample", "1", "--keep"]}


def every_option() -> list[tuple[str, argparse.Action]]:
    return [(command, action) for command, parser in subcommand_parsers(build_parser()).items()
            for action in parser._actions if action.option_strings]


def test_no_numeric_option_is_parsed_without_a_range() -> None:
    unchecked = [f"{command} {action.option_strings[0]}" for command, action in every_option()
                 if action.type in (int, float)]
    assert not unchecked, f"give these a range in engine.options.OPTION_RANGES and type=ranged(...): {unchecked}"


def outside(allowed: NumberRange) -> list[str]:
    """Values just outside each end, and values no range holds."""
    step = 1 if allowed.integer else 0.01
    values = [allowed.low if allowed.low_open else allowed.low - step,
              allowed.high if allowed.high_open else allowed.high + step]
    values += [10 * allowed.high + 1e9, -1e9]
    texts = [str(int(value)) if allowed.integer else f"{value:g}" for value in values]
    return texts + ["nan", "x"] if not allowed.integer else texts + ["1.5", "x"]


def ranged_cases() -> list[tuple[str, str, str]]:
    return [(command, action.option_strings[0], value) for command, action in every_option()
            if action.option_strings[0] in OPTION_RANGES for value in outside(OPTION_RANGES[action.option_strings[0]])]


@pytest.mark.parametrize(("command", "flag", "value"), ranged_cases())
def test_a_value_out_of_range_is_refused_naming_option_value_and_range(
        command: str, flag: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    positional = ["out.pt"] if command == "train-detector" else ["PROJECT"]
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args([command, *positional, *REQUIRED.get(command, []), f"{flag}={value}"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: " in err and value in err
    assert OPTION_RANGES[flag].describe() in err


@pytest.mark.parametrize("flag", sorted(OPTION_RANGES))
def test_each_end_of_each_range_is_accepted(flag: str) -> None:
    allowed = OPTION_RANGES[flag]
    command = next(command for command, action in every_option() if action.option_strings[0] == flag)
    positional = ["out.pt"] if command == "train-detector" else ["PROJECT"]
    step = 1 if allowed.integer else 0.001
    for end in (allowed.low + step if allowed.low_open else allowed.low,
                allowed.high - step if allowed.high_open else allowed.high):
        text = str(int(end)) if allowed.integer else repr(end)
        args = build_parser().parse_args([command, *positional, *REQUIRED.get(command, []), flag, text])
        parsed = getattr(args, flag.lstrip("-").replace("-", "_"))
        assert math.isclose(parsed[0] if isinstance(parsed, list) else parsed, end)


def test_the_api_refuses_with_the_same_words() -> None:
    with pytest.raises(UserError, match=re.escape("--dynamics-epochs 0 is out of range: use a whole number from 1 to")):
        check_option("--dynamics-epochs", 0)
    check_option("--auto-top-k", "flagged")
    check_option("--seeds", None)


def test_dynamics_epochs_zero_or_huge_is_refused_not_replaced(capsys: pytest.CaptureFixture[str]) -> None:
    from engine.workflows.audit import resolve_dynamics_epochs

    with pytest.raises(UserError, match="--dynamics-epochs 0 is out of range"):
        resolve_dynamics_epochs(0, 38)  # before: 0 fell through to --epochs
    for value in ("0", "1000000000"):
        with pytest.raises(SystemExit):
            main(["audit", "PROJECT", "--dynamics-epochs", value])
        assert f"argument --dynamics-epochs: {value} is out of range" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1"])
def test_train_detector_lstm_epochs_below_one_is_refused(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train-detector", "out.pt", "--project", "P", "--lstm-epochs", value])
    assert f"argument --lstm-epochs: {value} is out of range" in capsys.readouterr().err


def test_train_detector_epochs_list_is_checked_item_by_item(capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().parse_args(["train-detector", "o.pt", "--epochs", "6,12"]).epochs == [6, 12]
    for text in ("6,0", "6,6", "6,"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["train-detector", "o.pt", "--epochs", text])
        assert "argument --epochs" in capsys.readouterr().err


@pytest.fixture
def project_with_truth(image_folder: Path, tmp_path: Path) -> Path:
    import_folder(tmp_path / "p", image_folder, test_fraction=0.25, folds=2).close()
    with Project.open(tmp_path / "p") as project:
        inject_noise(project, "symmetric", 0.2, 0)
    return tmp_path / "p"


@pytest.mark.parametrize("detectors", ["cl,cl", "all,all", "all,cl", "aum, aum,cl"])
def test_a_detector_named_twice_is_refused(detectors: str, project_with_truth: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(project_with_truth), *TRAIN, "--detectors", detectors]) == 2
    err = capsys.readouterr().err
    assert f"--detectors {detectors}" in err
    with Project.open(project_with_truth) as project:
        assert not project.runs()  # refused before a run was made


def test_trusted_per_class_above_the_smallest_class_is_refused(project_with_truth: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    with Project.open(project_with_truth) as project:
        table = project.sample_table()
        counts = {name: int(((table.true_label[table.train_ids]) == k).sum())
                  for k, name in enumerate(project.class_names())}
    smallest = min(counts.values())
    for command in ("compare", "retrain"):
        assert main([command, str(project_with_truth), *TRAIN, "--seeds", "1",
                     "--trusted-per-class", str(smallest + 1)]) == 2
        err = capsys.readouterr().err
        assert f"--trusted-per-class {smallest + 1}" in err and f"has {smallest} training samples" in err
        assert any(f"class {name!r}" in err for name, count in counts.items() if count == smallest)
    with Project.open(project_with_truth) as project:
        assert not project.runs()
        from engine.workflows import trusted

        chosen = trusted.choose(project, trusted.trusted_spec(per_class=smallest), seed=0)
        assert len(chosen.ids) == smallest * len(counts)  # the smallest class's count itself is fine


def test_the_readme_options_table_is_the_generated_one() -> None:
    text = README.read_text(encoding="utf-8")
    start, end = "<!-- options table: python -m engine.options -->\n", "<!-- end of options table -->"
    assert start in text and end in text, "the README's options table is marked for regeneration"
    table = text.split(start, 1)[1].split(end, 1)[0]
    assert table == options_table_markdown(), "regenerate it: python -m engine.options"
    assert {flag for flag, _, _ in option_rows()} >= set(OPTION_RANGES)
