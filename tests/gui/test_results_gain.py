"""The results view never shows seed noise as a green gain: only a paired difference whose interval excludes zero."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from auditor.session import ProjectSession
from auditor.views.results_view import ResultsView
from engine.stats import paired_difference


@pytest.fixture
def session(tmp_path: Path, make_project: Callable[..., Path]) -> Iterator[ProjectSession]:
    opened = ProjectSession.open(make_project(tmp_path, scored=False))
    yield opened
    opened.close()


def finish_retrain(session: ProjectSession, cleaned: list[float], original: list[float]) -> None:
    difference = paired_difference(cleaned, original)
    summary: dict[str, Any] = {
        "accuracy_cleaned": sum(cleaned) / len(cleaned), "accuracy_original": sum(original) / len(original),
        "accuracy_cleaned_std": 0.01, "accuracy_original_std": 0.02, "seeds": list(range(len(cleaned))),
        "difference": difference.to_dict(), "verdict": difference.verdict, "method": {"name": "ce", "options": {}},
        "n_train_cleaned": 20, "n_train_original": 21, "n_removed": 1, "n_eval": 3,
    }
    run = session.project.new_run("retrain", {})
    session.project.finish_run(run.id, "ok", summary)


def test_seed_noise_is_no_measurable_change_in_a_neutral_colour(qtbot: QtBot, session: ProjectSession) -> None:
    finish_retrain(session, [0.81, 0.79, 0.82], [0.80, 0.80, 0.80])  # +0.7 pts, the interval holds zero
    view = ResultsView(session)
    qtbot.addWidget(view)
    assert view.gain.value.text() == "No measurable change"
    assert view.gain.value.property("trend") == "flat"
    assert "95% interval" in view.gain.detail.text() and "3 paired seeds" in view.gain.detail.text()
    assert view.after.value.text() == "80.7%" and view.after.detail.text().startswith("± 1.0 pts over 3 seeds")
    cell = view.runs_table.item(0, 4)
    assert cell is not None and "no measurable change over 3 seeds" in cell.text()

    finish_retrain(session, [0.84, 0.85, 0.86], [0.80, 0.80, 0.81])  # a gain the seeds agree on
    view.refresh()
    assert view.gain.value.text() == "+4.7 pts" and view.gain.value.property("trend") == "up"


def test_an_older_one_seed_retrain_is_never_green(qtbot: QtBot, session: ProjectSession) -> None:
    run = session.project.new_run("retrain", {})
    session.project.finish_run(run.id, "ok", {"accuracy_cleaned": 0.83, "accuracy_original": 0.80})
    view = ResultsView(session)
    qtbot.addWidget(view)
    assert view.gain.value.text() == "+3.0 pts" and view.gain.value.property("trend") == "flat"
    assert "one seed, no interval" in view.gain.detail.text()
