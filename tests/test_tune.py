"""tune: an Optuna study over sln's sigma, pruning, resuming a stopped study, sigma=best, the missing extra."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna  # the hpo extra; the dev extra installs it
import pytest

from engine.cancel import CancelToken
from engine.cli import main
from engine.commands.status import run_status
from engine.data.importing import import_folder
from engine.errors import UserError
from engine.events import Event, EventSink, Result
from engine.noise import inject_noise
from engine.store import Project
from engine.training.config import TrainConfig
from engine.workflows.retrain import resolve_best_options as retrain_best
from engine.workflows.tune import STUDY_FILE, open_study, resolve_best_options, run_tune, tune_spec

CONFIG = TrainConfig(epochs=2, image_size=16, batch_size=8, device="cpu", seed=0)
SEARCH: dict[str, Any] = {"method": "sln", "params": ["sigma=0.1,0.5,1.0"], "val_fraction": 0.2}


def tiny_project(root: Path, image_folder: Path) -> Path:
    """36 images of 3 classes (27 train, 9 held out), 20% symmetric noise."""
    import_folder(root, image_folder, test_fraction=0.25, folds=2).close()
    with Project.open(root) as project:
        inject_noise(project, "symmetric", 0.2, 0)
    return root


class Recorder(EventSink):
    """Keeps every event; optionally asks to stop when a trial result matching ``stop_when`` arrives."""

    def __init__(self, cancel: CancelToken | None = None, stop_when: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.events: list[Event] = []
        self.cancel, self.stop_when = cancel, stop_when

    def emit(self, event: Event) -> Event:
        self.events.append(event)
        if (self.cancel is not None and self.stop_when is not None and isinstance(event, Result)
                and event.kind == "tune_trial"
                and all(event.data.get(key) == value for key, value in self.stop_when.items())):
            self.cancel.request("test: stopped mid-study")
        return event

    def trial_results(self) -> list[dict[str, Any]]:
        return [event.data for event in self.events
                if isinstance(event, Result) and event.kind == "tune_trial" and event.data["state"] != "running"]


def finished_trials(project: Project, run_id: str) -> list[Any]:
    run = project.run(run_id)
    study = open_study(run, run.spec, CONFIG.seed)
    return study.get_trials(states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))


def test_a_study_runs_every_grid_point_and_stores_the_best(image_folder: Path, tmp_path: Path) -> None:
    root = tiny_project(tmp_path / "p", image_folder)
    events = Recorder()
    with Project.open(root) as project:
        run, status = run_tune(project, CONFIG, events=events, **SEARCH)
        assert status == "ok"
        summary = project.run(run.id).summary
        assert (run.folder / STUDY_FILE).is_file()
        trials = finished_trials(project, run.id)
    assert sorted(trial.params["sigma"] for trial in trials) == [0.1, 0.5, 1.0]
    complete = [trial for trial in trials if trial.state == optuna.trial.TrialState.COMPLETE]
    best = max(complete, key=lambda trial: (trial.value, -trial.number))
    assert summary["best_params"] == {"sigma": best.params["sigma"]} and summary["best_value"] == best.value
    assert summary["n_val"] == 5 and summary["n_train"] == 22  # 27 train samples, a fifth scores the trials
    assert len(events.trial_results()) == 3
    assert any(isinstance(event, Result) and event.kind == "tune" for event in events.events)
    # Its checkpoints are gone once each trial is over.
    assert not list(run.folder.glob("checkpoint-*.pt"))


class PruneAfterFirst(optuna.pruners.BasePruner):
    """Prunes every trial but the first one at its first report."""

    def prune(self, study: Any, trial: Any) -> bool:
        return bool(trial.number >= 1)


def test_a_pruned_trial_is_an_outcome_recorded_as_pruned(image_folder: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.workflows.tune.make_pruner", PruneAfterFirst)
    root = tiny_project(tmp_path / "p", image_folder)
    events = Recorder()
    with Project.open(root) as project:
        run, status = run_tune(project, CONFIG, events=events, **SEARCH)
        summary = project.run(run.id).summary
    assert status == "ok"
    assert summary["n_pruned"] == 2 and summary["n_complete"] == 1
    assert [trial["state"] for trial in summary["trials"]] == ["complete", "pruned", "pruned"]
    assert [trial["epochs_reported"] for trial in summary["trials"]][1:] == [1, 1]  # stopped after one epoch
    assert summary["best_trial"] == 0
    assert [result["state"] for result in events.trial_results()] == ["complete", "pruned", "pruned"]


class PruneAtSecondEpoch(optuna.pruners.BasePruner):
    """Prunes every trial but the first one at its second report: its first epoch's checkpoint is on disk."""

    def prune(self, study: Any, trial: Any) -> bool:
        return bool(trial.number >= 1 and len(trial.intermediate_values) >= 2)


def test_a_pruned_trial_leaves_no_checkpoint(image_folder: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.workflows.tune.make_pruner", PruneAtSecondEpoch)
    root = tiny_project(tmp_path / "p", image_folder)
    with Project.open(root) as project:
        run, status = run_tune(project, dataclasses.replace(CONFIG, epochs=3), events=Recorder(), **SEARCH)
        summary = project.run(run.id).summary
    assert status == "ok"
    assert [trial["epochs_reported"] for trial in summary["trials"]] == [3, 2, 2]
    assert summary["n_pruned"] == 2
    assert not list(run.folder.glob("checkpoint-*.pt"))  # a pruned trial will never continue: its checkpoint goes


def test_a_study_stopped_mid_trial_resumes_and_finishes_its_trials(image_folder: Path, tmp_path: Path) -> None:
    root = tiny_project(tmp_path / "p", image_folder)
    cancel = CancelToken()
    with Project.open(root) as project:
        # Stop as trial 1 starts: it is cut off inside its training, after trial 0 finished.
        run, status = run_tune(project, CONFIG, events=Recorder(cancel, {"number": 1, "state": "running"}),
                               cancel=cancel, **SEARCH)
        assert status == "cancelled"
        assert len(finished_trials(project, run.id)) == 1
        run, status = run_tune(project, CONFIG, events=Recorder(), run=project.run(run.id))
        assert status == "ok"
        trials = finished_trials(project, run.id)
        summary = project.run(run.id).summary
    assert len(trials) == 3
    assert sorted(trial.params["sigma"] for trial in trials) == [0.1, 0.5, 1.0]  # the stopped point was redone
    assert summary["best_params"] is not None


def test_a_trial_a_killed_worker_left_running_is_queued_again(image_folder: Path, tmp_path: Path) -> None:
    root = tiny_project(tmp_path / "p", image_folder)
    cancel = CancelToken()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with Project.open(root) as project:
        run, status = run_tune(project, CONFIG, events=Recorder(cancel, {"number": 0, "state": "complete"}),
                               cancel=cancel, **SEARCH)
        assert status == "cancelled"
        # What a SIGKILLed worker leaves behind: a trial "running" in the study, owned by a process that is gone.
        study = open_study(run, run.spec, CONFIG.seed)
        orphan = study.ask()
        orphan.suggest_categorical("sigma", [0.1, 0.5, 1.0])
        orphan.set_user_attr("worker", {"pid": dead.pid, "host": socket.gethostname(), "started": None})
        events = Recorder()
        run, status = run_tune(project, CONFIG, events=events, run=project.run(run.id))
        assert status == "ok"
        trials = finished_trials(project, run.id)
        states = {trial.number: trial.state for trial in study.get_trials()}
    assert states[orphan.number] == optuna.trial.TrialState.FAIL
    assert sorted(trial.params["sigma"] for trial in trials) == [0.1, 0.5, 1.0]
    assert any("queued again" in getattr(event, "message", "") for event in events.events)


def test_sigma_best_takes_the_latest_tunes_winner(image_folder: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    root = tiny_project(tmp_path / "p", image_folder)
    with Project.open(root) as project, pytest.raises(UserError, match="no finished tune of method sln"):
        resolve_best_options(project, "sln", {"sigma": "best"})
    train = ["--epochs", "1", "--image-size", "16", "--batch-size", "8", "--device", "cpu", "--seeds", "1"]
    assert main(["retrain", str(root), "--method", "sln", "--option", "sigma=best", *train]) == 2
    assert "python -m engine tune" in capsys.readouterr().err
    with Project.open(root) as project:
        run, _ = run_tune(project, CONFIG, **SEARCH)
        best = project.run(run.id).summary["best_params"]["sigma"]
        assert resolve_best_options(project, "sln", {"sigma": "best"}) == {"sigma": best}
    assert retrain_best(root, "sln", {"sigma": "best"}) == {"sigma": best}
    assert main(["retrain", str(root), "--method", "sln", "--option", "sigma=best", "--no-baseline", *train]) == 0
    with Project.open(root) as project:
        assert project.run(kind="retrain").spec["options"]["sigma"] == best


def test_without_optuna_the_message_names_the_extra(image_folder: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    with pytest.raises(UserError) as caught:
        tune_spec(**SEARCH)
    assert "label-auditor[hpo]" in caught.value.hint
    root = tiny_project(tmp_path / "p", image_folder)
    assert main(["tune", str(root), "--param", "sigma=0.1,0.5", "--epochs", "1", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "needs Optuna" in err and "pip install 'label-auditor[hpo]'" in err
    with Project.open(root) as project:
        assert project.runs("tune") == []  # refused before a run was made


def test_bad_params_are_refused_with_the_fix() -> None:
    with pytest.raises(UserError, match="no option 'sgima'"):
        tune_spec(method="sln", params=["sgima=0.1"])
    with pytest.raises(UserError, match="not name=value"):
        tune_spec(method="sln", params=["sigma"])
    with pytest.raises(UserError, match="not a valid float"):
        tune_spec(method="sln", params=["sigma=abc"])
    with pytest.raises(UserError, match="trusted set"):
        tune_spec(method="mlc", params=["sigma=0.1"])
    assert tune_spec(method="sln", params=["sigma=0.1,0.5"], trials=9)["trials"] == 2  # at most the grid


def test_a_tune_killed_with_sigkill_resumes_and_finishes_its_trials(image_folder: Path, tmp_path: Path) -> None:
    root = tiny_project(tmp_path / "p", image_folder)
    command = [sys.executable, "-m", "engine", "tune", str(root), "--param", "sigma=0.1,0.5,1.0", "--epochs", "20",
               "--image-size", "16", "--batch-size", "8", "--device", "cpu", "--val-fraction", "0.2", "--json"]
    worker = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert worker.stdout is not None
    for line in worker.stdout:  # kill it inside trial 1's training, after trial 0 finished
        if '"type": "metric"' in line and '"stage": "trial 1"' in line:
            worker.kill()
            break
    worker.wait(timeout=60)
    worker.stdout.close()
    with Project.open(root) as project:
        (stopped,) = project.runs("tune")
        assert stopped.status == "interrupted"
        assert f"tune {root} --resume {stopped.id}" in str(run_status(project, stopped)["resume"])
        assert len(finished_trials(project, stopped.id)) == 1
    assert main(["tune", str(root), "--resume", stopped.id]) == 0
    with Project.open(root) as project:
        trials = finished_trials(project, stopped.id)
        assert project.run(stopped.id).status == "ok"
        lines = (stopped.folder / "events.jsonl").read_text().splitlines()
        messages = [json.loads(line).get("message", "") for line in lines]
    assert sorted(trial.params["sigma"] for trial in trials) == [0.1, 0.5, 1.0]
    assert any("killed worker: queued again" in message for message in messages)


def test_workers_sharing_one_storage_run_one_study_together(image_folder: Path, tmp_path: Path) -> None:
    root = tiny_project(tmp_path / "p", image_folder)
    shared = {**SEARCH, "storage": f"sqlite:///{tmp_path / 'shared.db'}"}
    cancel = CancelToken()
    with Project.open(root) as project:
        first, status = run_tune(project, CONFIG, events=Recorder(cancel, {"number": 0, "state": "complete"}),
                                 cancel=cancel, **shared)
        assert status == "cancelled"
        second, status = run_tune(project, CONFIG, events=Recorder(), **shared)  # another worker, the same study
        assert status == "ok"
        summary = project.run(second.id).summary
    assert first.spec["study_name"] == second.spec["study_name"]
    assert not (second.folder / STUDY_FILE).exists()
    assert sorted(trial["params"]["sigma"] for trial in summary["trials"]) == [0.1, 0.5, 1.0]
    assert summary["n_complete"] + summary["n_pruned"] == 3
