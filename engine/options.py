"""The accepted range of every numeric option: one table for the command line, the app and the README.

Torch-free and Qt-free: the CLI's parsers check a value where they parse it (:func:`ranged`,
an argparse ``type=``), the app's dialogs set their spin boxes from the same ranges
(:func:`spin_range`), and the README's options table is generated from them
(:func:`options_table_markdown`). A value outside its range is refused with one message
that names the option, the value and the range.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.errors import UserError

MAX_SEED = 2**31 - 1  # seeds are offset (seed + fold, seed + i) and must stay below NumPy's 2**32


@dataclass(frozen=True)
class NumberRange:
    """``low``..``high`` (each end included unless ``*_open``); whole numbers when ``integer``."""

    low: float
    high: float
    integer: bool = True
    low_open: bool = False
    high_open: bool = False
    words: tuple[str, ...] = ()  # words accepted besides numbers (``--auto-top-k flagged``)

    def contains(self, value: float) -> bool:
        if math.isnan(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        """``whole numbers from 1 to 1000``, ``numbers from 0 to 1 (1 excluded)``, ..."""
        kind = "a whole number" if self.integer else "a number"
        text = f"{kind} from {_number(self.low)} to {_number(self.high)}"
        excluded = [_number(end) for end, is_open in ((self.low, self.low_open), (self.high, self.high_open)) if is_open]
        if excluded:
            text += f" ({' and '.join(excluded)} excluded)"
        if self.words:
            text += ", or " + " or ".join(self.words)
        return text


def _number(value: float) -> str:
    value = float(value)
    if value.is_integer() and abs(value) >= 10_000:
        exponent = math.log2(value + 1)
        if exponent.is_integer():
            return f"2^{int(exponent)}-1"
        return f"{int(value):,}"
    return f"{value:g}"


EPOCHS = NumberRange(1, 1000)

#: Every numeric option of every command (by its flag; a flag means the same on every command).
OPTION_RANGES: dict[str, NumberRange] = {
    "--epochs": EPOCHS,
    "--dynamics-epochs": EPOCHS,
    "--lstm-epochs": EPOCHS,
    "--batch-size": NumberRange(2, 65536),
    "--lr": NumberRange(0, 10, integer=False, low_open=True),
    "--image-size": NumberRange(8, 1024),
    "--seed": NumberRange(0, MAX_SEED),
    "--workers": NumberRange(1, 1024),
    "--folds": NumberRange(2, 100),
    "--seeds": NumberRange(1, 100),
    "--trusted-per-class": NumberRange(1, 1_000_000),
    "--auto-top-k": NumberRange(1, 10**9, words=("flagged",)),
    "--trials": NumberRange(1, 100_000),
    "--val-fraction": NumberRange(0, 0.5, integer=False, low_open=True),
    "--test-fraction": NumberRange(0, 1, integer=False, high_open=True),
    "--noise-rate": NumberRange(0, 1, integer=False, high_open=True),
    "--rate": NumberRange(0, 1, integer=False, high_open=True),
    "--phash-distance": NumberRange(0, 64),  # bits of a 64-bit perceptual hash
    "--min-cosine": NumberRange(0.5, 1, integer=False),
    "--k": NumberRange(1, 1000),
    "--limit": NumberRange(1, 10**9),
    "--measure-seconds": NumberRange(0.1, 60, integer=False),  # estimate: training steps timed for the rate
}


def out_of_range(flag: str, value: object) -> str:
    """The one message for a refused value: the option, the value, the range."""
    return f"{flag} {value} is out of range: use {OPTION_RANGES[flag].describe()}"


def parse_value(flag: str, text: str) -> float | int | str:
    """``text`` as ``flag``'s number (or one of its words), or ValueError with the one message."""
    allowed = OPTION_RANGES[flag]
    stripped = text.strip()
    if stripped in allowed.words:
        return stripped
    try:
        value: float | int = int(stripped) if allowed.integer else float(stripped)
    except ValueError:
        raise ValueError(f"{flag} {text!r} is not {allowed.describe()}") from None
    if not allowed.contains(value):
        raise ValueError(out_of_range(flag, text))
    return value


def _argparse_message(flag: str, exc: ValueError) -> str:
    # argparse starts its message with "argument --flag: "; the flag need not be said twice.
    return str(exc).removeprefix(f"{flag} ")


def ranged(flag: str) -> Callable[[str], float | int | str]:
    """An argparse ``type=`` that parses ``flag``'s value and refuses one outside its range."""

    def parse(text: str) -> float | int | str:
        try:
            return parse_value(flag, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(_argparse_message(flag, exc)) from None

    parse.__name__ = flag.lstrip("-").replace("-", "_")  # argparse names the type in some messages
    return parse


def ranged_list(flag: str) -> Callable[[str], list[int]]:
    """An argparse ``type=`` for a comma-separated list of ``flag``'s whole numbers (``--epochs 6,12``)."""

    def parse(text: str) -> list[int]:
        pieces = [piece.strip() for piece in text.split(",")]
        try:
            values = [parse_value(flag, piece) for piece in pieces]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{_argparse_message(flag, exc)} (in {text!r})") from None
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"{text!r} names a value twice: name each once")
        return [int(value) for value in values]

    parse.__name__ = flag.lstrip("-").replace("-", "_")
    return parse


def check_option(flag: str, value: float | int | str | None) -> None:
    """Refuse (UserError) a value given through the engine's API rather than a parser; None passes."""
    if value is None or isinstance(value, str) and value in OPTION_RANGES[flag].words:
        return
    try:
        inside = OPTION_RANGES[flag].contains(float(value))
    except ValueError:
        inside = False
    if not inside:
        raise UserError(out_of_range(flag, value), f"pass {flag} with {OPTION_RANGES[flag].describe()}")


def spin_range(flag: str) -> tuple[float, float]:
    """(minimum, maximum) for a spin box of ``flag``; open ends are nudged inside."""
    allowed = OPTION_RANGES[flag]
    step = 1 if allowed.integer else 0.001
    return (allowed.low + step if allowed.low_open else allowed.low,
            allowed.high - step if allowed.high_open else allowed.high)


def refuse_duplicates(flag: str, names: Sequence[str], given: str | None = None) -> None:
    """A comma-separated list (``given``, as typed) that names something twice (``--detectors cl,cl``) is refused."""
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UserError(f"{flag} {given if given is not None else ','.join(names)} names {', '.join(twice)} "
                        "more than once",
                        f"name each once, e.g. {flag} {','.join(dict.fromkeys(names))}")


def option_rows() -> list[tuple[str, list[str], str]]:
    """(option, commands, accepted values) for every numeric or choice option of every command."""
    from engine.cli import build_parser

    rows: dict[tuple[str, str], list[str]] = {}
    for command, parser in subcommand_parsers(build_parser()).items():
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            flag = action.option_strings[0]
            if flag in OPTION_RANGES:
                values = OPTION_RANGES[flag].describe()
            elif action.choices is not None:
                values = "one of " + ", ".join(map(str, action.choices))
            else:
                continue
            rows.setdefault((flag, values), []).append(command)
    return [(flag, commands, values) for (flag, values), commands in sorted(rows.items())]


def subcommand_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each command's own parser, by name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options_table_markdown() -> str:
    """The README's options table (generated: ``python -m engine.options``)."""
    lines = ["| option | commands | accepted values |", "|---|---|---|"]
    for flag, commands, values in option_rows():
        lines.append(f"| `{flag}` | {', '.join(commands)} | {values} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(options_table_markdown(), end="")
