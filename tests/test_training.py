"""The training loop and cross-validation: repeatable, cancellable, resumable, clean on the wire."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.crossval import PRED_PROBS_FILE, crossval_pred_probs
from engine.data.importing import import_folder
from engine.errors import Cancelled, UserError
from engine.events import Done, Event, EventSink, Metric, parse_event, read_events
from engine.jobs import CancelToken, run_job
from engine.store import Project
from engine.training.config import TrainConfig
from engine.training.data import Batch, ImageBatches
from engine.training.hooks import Callback, StepOutput
from engine.training.loop import Trainer, TrainState

TINY = TrainConfig(epochs=2, batch_size=8, image_size=16, seed=3)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_project(image_folder: Path, tmp_path: Path) -> Path:
    import_folder(tmp_path / "project", image_folder, test_fraction=0.25, seed=0).close()
    return tmp_path / "project"


def run_crossval(root: Path, config: TrainConfig = TINY, folds: int = 2, events: EventSink | None = None,
                 cancel: CancelToken | None = None, resume: str | None = None) -> tuple[str, str, np.ndarray | None]:
    with Project.open(root) as project:
        spec = {"train": config.to_dict(), "folds": folds}
        run = project.run(resume) if resume else None
        info, status = run_job(project, "crossval", spec, lambda ctx: {"n": len(crossval_pred_probs(ctx, config, folds))},
                               events or EventSink(), cancel=cancel, run=run)
        path = info.folder / PRED_PROBS_FILE
        return info.id, status, np.load(path) if path.is_file() else None


def test_crossval_scores_every_sample_out_of_sample(tiny_project: Path) -> None:
    run_id, status, probs = run_crossval(tiny_project)
    assert status == "ok" and probs is not None
    with Project.open(tiny_project) as project:
        assert probs.shape == (project.num_samples, project.num_classes)
        folds = np.load(project.run(run_id).folder / "folds.npy")
        table = project.sample_table()
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert set(folds[table.train_ids]) == {0, 1} and (folds[table.test_ids] == -1).all()
    # The classes differ in colour and shape: even two epochs learn them out of sample.
    assert (probs.argmax(1) == table.label).mean() > 0.6


def test_training_is_repeatable_on_the_cpu(tiny_project: Path) -> None:
    _, _, first = run_crossval(tiny_project)
    _, _, second = run_crossval(tiny_project)
    assert first is not None and second is not None
    np.testing.assert_array_equal(first, second)
    _, _, other_seed = run_crossval(tiny_project, TrainConfig(**{**TINY.to_dict(), "seed": 4}))
    assert not np.array_equal(first, other_seed)


class CancelAfterFirstEpoch(EventSink):
    """Asks for a cancel as soon as the first epoch's metrics go out, as SIGINT from a user would."""

    def __init__(self, token: CancelToken) -> None:
        super().__init__()
        self.token = token
        self.seen: list[Event] = []

    def emit(self, event: Event) -> Event:
        stamped = super().emit(event)
        self.seen.append(stamped)
        if isinstance(event, Metric) and event.epoch == 0 and event.fold == 0:
            self.token.request("test cancel")
        return stamped


def test_a_cancelled_run_checkpoints_and_resumes_to_the_same_result(tiny_project: Path) -> None:
    config = TrainConfig(**{**TINY.to_dict(), "epochs": 3})
    _, _, uninterrupted = run_crossval(tiny_project, config)

    token = CancelToken()
    sink = CancelAfterFirstEpoch(token)
    run_id, status, probs = run_crossval(tiny_project, config, events=sink, cancel=token)
    assert status == "cancelled" and probs is None
    assert isinstance(sink.seen[-1], Done) and sink.seen[-1].status == "cancelled"
    with Project.open(tiny_project) as project:
        folder = project.run(run_id).folder
        assert project.run(run_id).status == "cancelled"
    assert (folder / "checkpoint-fold0.pt").is_file()

    _, status, resumed = run_crossval(tiny_project, config, resume=run_id)
    assert status == "ok" and resumed is not None
    np.testing.assert_allclose(resumed, uninterrupted, atol=1e-6)
    assert not (folder / "checkpoint-fold0.pt").exists()  # finished folds keep only their probabilities
    kinds = [type(event).__name__ for event in read_events(folder / "events.jsonl")]
    assert kinds.count("Done") == 2  # the cancelled attempt and the resumed one, in one record


def test_too_few_samples_for_the_folds_is_a_clear_error(tiny_project: Path) -> None:
    _, status, _ = run_crossval(tiny_project, folds=20)
    assert status == "error"
    with Project.open(tiny_project) as project:
        assert "too few training samples for 20 folds" in project.runs()[-1].summary["error"]


NOISY_MODEL = '''
import os, sys
import torch.nn as nn
from engine.models import SmallCNN

def build(num_classes):
    print("a library printing on stdout")
    os.write(1, b"raw bytes written to fd 1\\n")
    return SmallCNN(num_classes)
'''


def engine_process(*args: str, extra_path: Path | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), str(extra_path or "")]))}
    return subprocess.Popen([sys.executable, "-u", "-m", "engine", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def test_sigint_cancels_cleanly_and_stdout_carries_only_events(tiny_project: Path, tmp_path: Path) -> None:
    (tmp_path / "noisy_model.py").write_text(NOISY_MODEL)
    events = []
    with engine_process("crossval", str(tiny_project), "--json", "--epochs", "30", "--batch-size", "8",
                        "--image-size", "16", "--folds", "2", "--model", "noisy_model:build",
                        extra_path=tmp_path) as process:
        assert process.stdout is not None and process.stderr is not None
        for line in process.stdout:
            event = parse_event(line)  # raises if anything but an event reached stdout
            events.append(event)
            if isinstance(event, Metric) and len([e for e in events if isinstance(e, Metric)]) == 1:
                process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
        stderr = process.stderr.read()
    assert isinstance(events[-1], Done) and events[-1].status == "cancelled"
    assert "a library printing on stdout" in stderr and "raw bytes written to fd 1" in stderr
    run_id = events[-1].run_id
    with Project.open(tiny_project) as project:
        assert project.run(run_id).status == "cancelled"
        assert list(project.run(run_id).folder.glob("checkpoint-fold*.pt"))


def test_errors_before_a_run_starts_still_reach_a_json_consumer(tmp_path: Path) -> None:
    with engine_process("crossval", str(tmp_path / "missing"), "--json") as process:
        out, _ = process.communicate(timeout=60)
    events = [parse_event(line) for line in out.splitlines()]
    assert process.returncode == 2
    assert "not a Label Auditor project" in events[0].message  # type: ignore[attr-defined]
    assert isinstance(events[-1], Done) and events[-1].status == "error"


def test_config_rejects_nonsense_with_a_fix() -> None:
    with pytest.raises(UserError, match="--epochs must be at least 1"):
        TrainConfig(epochs=0)


class CancelAtStep(Callback):
    """Asks for a cancel after a given optimiser step, in the middle of an epoch."""

    def __init__(self, token: CancelToken, step: int) -> None:
        self.token, self.step = token, step

    def on_batch_end(self, state: TrainState, batch: Batch, output: StepOutput) -> None:
        if state.step == self.step:
            self.token.request("test cancel mid-epoch")


def test_a_cancel_inside_an_epoch_resumes_from_that_batch_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 96)
    images = (rng.integers(0, 60, (96, 16, 16, 3)) + labels[:, None, None, None] * 60).astype(np.uint8)
    data = ImageBatches(images, labels, torch.device("cpu"), channels_last=True)
    config = TrainConfig(epochs=2, batch_size=16, image_size=16, seed=1)
    ids = np.arange(80)

    def trainer(checkpoint: Path, callbacks: list[Callback], cancel: CancelToken | None = None) -> Trainer:
        return Trainer(config, data, ids, num_classes=3, events=EventSink(), cancel=cancel, callbacks=callbacks,
                       checkpoint_path=checkpoint, augment="flip-crop")

    uninterrupted = trainer(tmp_path / "a.pt", []).fit()
    token = CancelToken()
    with pytest.raises(Cancelled):
        trainer(tmp_path / "b.pt", [CancelAtStep(token, 7)], token).fit()  # epoch 2, batch 2 of 5
    saved = torch.load(tmp_path / "b.pt", weights_only=True)
    assert saved["epoch"] == 1 and saved["position"]["next_batch"] == 2
    resumed = trainer(tmp_path / "b.pt", []).fit()
    for name, value in uninterrupted.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=0, atol=1e-6, msg=name)
    def learning(history: list[dict[str, float]]) -> list[dict[str, float]]:
        return [{key: value for key, value in epoch.items() if key != "images_per_s"} for epoch in history]

    for resumed_epoch, uninterrupted_epoch in zip(learning(resumed.history), learning(uninterrupted.history), strict=True):
        assert resumed_epoch == pytest.approx(uninterrupted_epoch, rel=1e-5)  # the resumed epoch's sums carried over
