"""Paired-seed comparisons: the interval math, retrain --method, compare, and a resumed compare."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cancel import CancelToken
from engine.cli import main
from engine.data.importing import import_folder
from engine.errors import UserError
from engine.events import Event, EventSink, Progress
from engine.methods import METHODS, MethodInfo
from engine.noise import inject_noise
from engine.stats import NO_MEASURABLE_CHANGE, describe_difference, paired_difference, spread
from engine.store import Project
from engine.training.config import TrainConfig
from engine.workflows.compare import options_for_methods, parse_method_list, run_compare

TRAIN = ["--epochs", "1", "--image-size", "16", "--batch-size", "8", "--device", "cpu"]
CONFIG = TrainConfig(epochs=1, image_size=16, batch_size=8, device="cpu", seed=0)


def tiny_project(root: Path, image_folder: Path) -> Path:
    """36 images of 3 classes (27 train, 9 held out), 20% symmetric noise: the truth is known."""
    import_folder(root, image_folder, test_fraction=0.25, folds=2).close()
    with Project.open(root) as project:
        inject_noise(project, "symmetric", 0.2, 0)
    return root


@pytest.fixture
def twin_method(monkeypatch: pytest.MonkeyPatch) -> str:
    """A second registered method (plain cross-entropy under another name) that needs no other helper's work."""
    monkeypatch.setitem(METHODS, "ce_twin", MethodInfo("ce_twin", "ce", "CrossEntropy", None, "ce again"))
    return "ce_twin"


def test_paired_interval_on_constructed_numbers() -> None:
    difference = paired_difference([0.80, 0.82, 0.84], [0.78, 0.79, 0.80])
    # Differences 0.02, 0.03, 0.04: mean 0.03, sd 0.01; t(0.975, 2) = 4.3027 -> half-width 0.02484.
    assert difference.mean == pytest.approx(0.03) and difference.std == pytest.approx(0.01) and difference.n == 3
    assert difference.low == pytest.approx(0.03 - 4.302653 * 0.01 / math.sqrt(3), abs=1e-6)
    assert difference.high == pytest.approx(0.03 + 4.302653 * 0.01 / math.sqrt(3), abs=1e-6)
    assert difference.measurable and difference.verdict == "gain"
    assert describe_difference(difference) == "+3.0 pts (95% interval +0.5 to +5.5, 3 paired seeds)"
    assert paired_difference([0.7, 0.7], [0.8, 0.81]).verdict == "loss"
    values = spread([0.80, 0.82, 0.84])
    assert values.mean == pytest.approx(0.82) and values.std == pytest.approx(0.02)
    assert spread([0.5]).std == 0.0


def test_an_interval_holding_zero_is_no_measurable_change() -> None:
    # Seed noise: +1, -1, +2 points. The mean is positive, the interval is not.
    difference = paired_difference([0.81, 0.79, 0.82], [0.80, 0.80, 0.80])
    assert difference.low is not None and difference.high is not None
    assert difference.low < 0 < difference.high
    assert not difference.measurable and difference.verdict == NO_MEASURABLE_CHANGE
    assert describe_difference(difference).startswith("no measurable change (+0.7 pts, 95% interval")
    one = paired_difference([0.9], [0.8])  # one seed: no spread, no interval, nothing can be told
    assert one.low is None and one.verdict == NO_MEASURABLE_CHANGE
    assert "no interval without a second seed" in describe_difference(one)
    with pytest.raises(ValueError):
        paired_difference([0.1, 0.2], [0.1])


def test_method_lists_and_options(twin_method: str) -> None:
    assert parse_method_list("ce, ce_twin") == ["ce", "ce_twin"]
    with pytest.raises(UserError, match="unknown method 'nope'"):
        parse_method_list("ce,nope")
    with pytest.raises(UserError, match="more than once"):
        parse_method_list("ce,ce")
    assert options_for_methods(["ce", twin_method], None) == [{"name": "ce", "options": {}},
                                                             {"name": "ce_twin", "options": {}}]
    with pytest.raises(UserError, match="has an option 'sigma'"):
        options_for_methods(["ce"], ["sigma=0.5"])
    with pytest.raises(UserError, match="method 'sln' is not compared here"):
        options_for_methods(["ce"], ["sln.sigma=0.5"])


def test_retrain_method_is_recorded_shown_and_exported(image_folder: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    root = str(tiny_project(tmp_path / "p", image_folder))
    assert main(["retrain", root, *TRAIN, "--method", "ce", "--seeds", "2"]) == 0
    with Project.open(root) as project:
        run = project.run(kind="retrain")
        assert run.spec["method"] == "ce" and run.spec["options"] == {} and run.spec["seeds"] == 2
        summary = run.summary
        assert summary["method"] == {"name": "ce", "options": {}} and summary["seeds"] == [0, 1]
        assert len(summary["accuracy_cleaned_per_seed"]) == len(summary["accuracy_original_per_seed"]) == 2
        assert summary["accuracy_cleaned"] == pytest.approx(np.mean(summary["accuracy_cleaned_per_seed"]))
        # No decisions: cleaned and original are the same training, seed by seed; nothing to report.
        assert summary["accuracy_cleaned_per_seed"] == summary["accuracy_original_per_seed"]
        assert summary["verdict"] == NO_MEASURABLE_CHANGE and summary["difference"]["n"] == 2
        model = json.loads((run.folder / "model.json").read_text())
        assert model["method"] == "ce" and model["seed"] == 0 and model["class_names"] == project.class_names()
        assert summary["model"]["method"] == "ce"
        state = torch.load(run.folder / "model.pt", weights_only=True)
        assert all(isinstance(value, torch.Tensor) for value in state.values())
        assert not list(run.folder.glob("checkpoint-*.pt"))
    capsys.readouterr()
    assert main(["status", root]) == 0
    out = capsys.readouterr().out
    assert "  method: ce" in out and "cleaned - original: no measurable change" in out
    assert main(["retrain", root, *TRAIN, "--method", "nope"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert main(["retrain", root, *TRAIN, "--option", "sigma=1"]) == 2
    assert "method ce has no option sigma" in capsys.readouterr().err


def test_retrain_help_lists_every_method_with_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["retrain", "--help"])
    out = capsys.readouterr().out
    for name in METHODS:
        assert f"  {name}: " in out
    from engine.methods import option_fields

    for name in METHODS:
        for field in option_fields(name):
            assert f"      {field.name}={field.default!r}" in out


class CancelAtModel(EventSink):
    """Requests a cancel after the first batch of the job's ``model``-th model (its progress names it first)."""

    def __init__(self, token: CancelToken, model: int, of: int) -> None:
        super().__init__()
        self.token, self.mark = token, f"({model} of {of})"
        self.start: int | None = None

    def emit(self, event: Event) -> Event:
        if isinstance(event, Progress):
            if self.mark in event.message:
                self.start = event.done
            elif self.start is not None and event.done > self.start:
                self.token.request("test")
        return event


def test_compare_two_methods_paired_and_a_resume_skips_finished_models(
        image_folder: Path, tmp_path: Path, twin_method: str, capsys: pytest.CaptureFixture[str]) -> None:
    root = tiny_project(tmp_path / "p", image_folder)
    methods = options_for_methods(["ce", twin_method], None)
    with Project.open(root) as project:
        whole, status = run_compare(project, CONFIG, methods=methods, seeds=2)
        assert status == "ok"
        summary = project.run(whole.id).summary
        assert summary["baseline"] == "ce" and summary["seeds"] == [0, 1]
        assert summary["measured_against"] == "truth" and summary["n_eval"] == 9
        ce, twin = summary["methods"]["ce"], summary["methods"][twin_method]
        # The same training under another name: paired by seed, the differences are exactly zero.
        assert ce["accuracy_per_seed"] == twin["accuracy_per_seed"]
        assert summary["differences"][twin_method]["verdict"] == NO_MEASURABLE_CHANGE
        assert sorted(p.name for p in (whole.folder / "models").iterdir()) == [
            "ce-seed0.json", "ce-seed1.json", "ce_twin-seed0.json", "ce_twin-seed1.json"]

        token = CancelToken()
        stopped, status = run_compare(project, CONFIG, methods=methods, seeds=2, cancel=token,
                                      events=CancelAtModel(token, 2, 4))
        assert status == "cancelled"
        assert [p.name for p in (stopped.folder / "models").iterdir()] == ["ce-seed0.json"]
        assert (stopped.folder / "checkpoint-ce_twin-seed0.pt").is_file()  # stopped inside the second model
        first = (stopped.folder / "models" / "ce-seed0.json").stat().st_mtime_ns
        resumed, status = run_compare(project, CONFIG, run=project.run(stopped.id))
        assert status == "ok" and resumed.id == stopped.id
        assert (stopped.folder / "models" / "ce-seed0.json").stat().st_mtime_ns == first  # not trained again
        again = project.run(stopped.id).summary
        # The continued run ends exactly where the uninterrupted one did.
        for name in ("ce", twin_method):
            assert again["methods"][name]["accuracy_per_seed"] == summary["methods"][name]["accuracy_per_seed"]

    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["compare", str(root), *TRAIN, "--methods", "ce", "--seeds", "0"])
    assert "argument --seeds: 0 is out of range: use a whole number from 1 to" in capsys.readouterr().err
