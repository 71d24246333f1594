"""The training loop and cross-validation: repeatable, cancellable, resumable, clean on the wire."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cancel import CancelToken
from engine.data.importing import import_folder
from engine.errors import Cancelled, DiskFullError, UserError
from engine.events import Done, Error, Event, EventSink, Metric, parse_event, read_events
from engine.jobs import run_job
from engine.store import Project
from engine.training.checkpoints import CheckpointMismatch, CheckpointStateError
from engine.training.config import TrainConfig
from engine.training.data import Batch, ImageBatches
from engine.training.hooks import Callback, Method, StepOutput
from engine.training.loop import Trainer, TrainingDiverged, TrainState
from engine.workflows.crossval import PRED_PROBS_FILE, crossval_pred_probs

# small_cnn: it learns the tiny folder in two epochs; cnn7, the default, is deeper and needs more than a test's budget.
TINY = TrainConfig(model="small_cnn", epochs=2, batch_size=8, image_size=16, seed=3)
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
    assert other_seed is not None and not np.array_equal(first, other_seed)


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
    assert status == "ok" and resumed is not None and uninterrupted is not None
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
    resumed = trainer(tmp_path / "b.pt", [CancelAtStep(CancelToken(), 7)]).fit()  # the same callbacks, by name
    for name, value in uninterrupted.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=0, atol=1e-6, msg=name)
    def learning(history: list[dict[str, float]]) -> list[dict[str, float]]:
        return [{key: value for key, value in epoch.items() if key != "images_per_s"} for epoch in history]

    for resumed_epoch, uninterrupted_epoch in zip(learning(resumed.history), learning(uninterrupted.history), strict=True):
        assert resumed_epoch == pytest.approx(uninterrupted_epoch, rel=1e-5)  # the resumed epoch's sums carried over


def small_data(labels_changed: int = 0) -> ImageBatches:
    """96 random 16x16 images of 3 classes; ``labels_changed`` of the first ones get another label."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 96)
    images = (rng.integers(0, 60, (96, 16, 16, 3)) + labels[:, None, None, None] * 60).astype(np.uint8)
    labels[:labels_changed] = (labels[:labels_changed] + 1) % 3
    return ImageBatches(images, labels, torch.device("cpu"), channels_last=True)


SMALL = TrainConfig(epochs=3, batch_size=16, image_size=16, seed=1)


def small_trainer(checkpoint: Path, callbacks: list[Callback] | None = None, *, ids: np.ndarray | None = None,
                  data: ImageBatches | None = None, method: Method | None = None,
                  events: EventSink | None = None, fold: int | None = None) -> Trainer:
    return Trainer(SMALL, data or small_data(), np.arange(80) if ids is None else ids, num_classes=3,
                   events=events or EventSink(), callbacks=callbacks or [], method=method, fold=fold,
                   checkpoint_path=checkpoint)


def test_a_diverging_crossval_is_a_clear_error_with_its_fix(tiny_project: Path) -> None:
    config = TrainConfig(**{**TINY.to_dict(), "lr": 1e12})
    run_id, status, probs = run_crossval(tiny_project, config)
    assert status == "error" and probs is None
    with Project.open(tiny_project) as project:
        folder = project.run(run_id).folder
        error = project.run(run_id).summary["error"]
    assert re.fullmatch(r"training diverged: the (loss|model weights) became (nan|inf) at epoch [12] \(fold 1\)", error)
    checkpoint = folder / "checkpoint-fold0.pt"
    if checkpoint.exists():  # the epoch before the divergence, whole and loadable
        assert torch.load(checkpoint, weights_only=True)["epoch"] == int(error.split("epoch ")[1][0]) - 1
    events = list(read_events(folder / "events.jsonl"))
    errors = [event for event in events if isinstance(event, Error)]
    assert len(errors) == 1 and errors[0].hint == "lower the learning rate, e.g. --lr 1e+11"
    assert "bug" not in errors[0].hint
    metrics = [event for event in events if isinstance(event, Metric)]
    # The diverged epoch's metrics were written (its loss as null on the wire), and nothing after them.
    assert metrics and not math.isfinite(metrics[-1].values["loss"]) and metrics[-1].fold == 0
    assert isinstance(events[-1], Done) and events[-1].status == "error"


class PoisonFromEpoch(Method):
    """Plain cross-entropy until ``epoch``, then a NaN loss, as a diverging run has."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def step(self, state: TrainState, batch: Batch) -> StepOutput:
        output = super().step(state, batch)
        if state.epoch >= self.epoch:
            output.loss = output.loss * math.nan
        return output


def test_divergence_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    sink = EventSink(run_id="r", log_path=tmp_path / "events.jsonl")
    with pytest.raises(TrainingDiverged, match=r"the loss became nan at epoch 2 \(fold 2\)") as caught:
        small_trainer(tmp_path / "c.pt", method=PoisonFromEpoch(1), events=sink, fold=1).fit()
    assert caught.value.hint.startswith("lower the learning rate, e.g. --lr ")
    sink.close()
    saved = torch.load(tmp_path / "c.pt", weights_only=True)
    assert saved["epoch"] == 1 and saved["position"] is None
    assert all(torch.isfinite(value).all() for value in saved["model"].values() if value.is_floating_point())
    losses = [event.values["loss"] for event in read_events(tmp_path / "events.jsonl") if isinstance(event, Metric)]
    assert len(losses) == 2 and math.isfinite(losses[0]) and math.isnan(losses[1])


class Counts(Callback):
    """Keeps numpy state, as a training-dynamics recorder would."""

    def __init__(self) -> None:
        self.counts = np.zeros(4)
        self.seen = np.int64(0)

    def on_epoch_end(self, state: TrainState) -> None:
        self.counts += np.arange(4)
        self.seen += 1

    def state_dict(self) -> dict[str, object]:
        return {"counts": self.counts, "seen": self.seen, "names": ["a", None, 1.5]}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.loaded = state


def test_numpy_state_in_a_callback_is_saved_as_tensors_and_resumes(tmp_path: Path) -> None:
    counts = Counts()
    counts.counts[:] = [0.5, 1.5, 2.5, 3.5]
    small_trainer(tmp_path / "c.pt", [counts]).save_checkpoint()
    resumed = Counts()
    assert small_trainer(tmp_path / "c.pt", [resumed]).load_checkpoint()
    counts_back = resumed.loaded["counts"]
    assert isinstance(counts_back, torch.Tensor)
    np.testing.assert_array_equal(counts_back.numpy(), [0.5, 1.5, 2.5, 3.5])
    assert resumed.loaded["seen"] == 0 and resumed.loaded["names"] == ["a", None, 1.5]


class Opaque(Callback):
    def state_dict(self) -> dict[str, object]:
        return {"table": {"rows": {1, 2}}}


def test_state_a_checkpoint_cannot_keep_fails_at_save_naming_callback_and_key(tmp_path: Path) -> None:
    with pytest.raises(CheckpointStateError, match=r"callback 'Opaque': state\['table'\]\['rows'\] holds a set"):
        small_trainer(tmp_path / "c.pt", [Opaque()]).save_checkpoint()
    assert not list(tmp_path.iterdir())  # nothing half-written


class Renamed(Counts):
    name = "counts-v2"


def test_a_missing_extra_or_renamed_callback_on_resume_is_an_error(tmp_path: Path) -> None:
    small_trainer(tmp_path / "c.pt", [Counts(), CancelAtStep(CancelToken(), 0)]).save_checkpoint()
    with pytest.raises(CheckpointMismatch, match="'Counts', not given now"):
        small_trainer(tmp_path / "c.pt", [CancelAtStep(CancelToken(), 0)]).load_checkpoint()
    with pytest.raises(CheckpointMismatch, match="it has none for 'counts-v2'"):
        small_trainer(tmp_path / "c.pt", [Renamed(), CancelAtStep(CancelToken(), 0)]).load_checkpoint()
    with pytest.raises(CheckpointMismatch, match="method 'ce', not 'PoisonFromEpoch'"):
        small_trainer(tmp_path / "c.pt", [Counts(), CancelAtStep(CancelToken(), 0)],
                      method=PoisonFromEpoch(9)).load_checkpoint()
    with pytest.raises(ValueError, match="more than one callback is named 'Counts'"):
        small_trainer(tmp_path / "d.pt", [Counts(), Counts()])


def test_resuming_on_changed_training_samples_is_refused(tmp_path: Path) -> None:
    small_trainer(tmp_path / "c.pt").save_checkpoint()
    with pytest.raises(CheckpointMismatch, match=r"samples changed since this run was cancelled \(3 removed;") as caught:
        small_trainer(tmp_path / "c.pt", ids=np.arange(3, 80)).load_checkpoint()
    assert "start a new run" in caught.value.hint
    with pytest.raises(CheckpointMismatch, match=r"\(2 relabeled;"):
        small_trainer(tmp_path / "c.pt", data=small_data(labels_changed=2)).load_checkpoint()
    assert small_trainer(tmp_path / "c.pt").load_checkpoint()  # the same samples resume


def test_a_checkpoint_write_never_follows_a_planted_temporary_name(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "c.pt.tmp").symlink_to(victim)
    small_trainer(tmp_path / "c.pt").save_checkpoint()
    assert victim.read_text() == "keep me"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["c.pt", "c.pt.tmp", "victim.txt"]
    (tmp_path / ".c.pt.x1y2.tmp").write_bytes(b"half a checkpoint, from a killed save")
    assert small_trainer(tmp_path / "c.pt").load_checkpoint()  # a resume clears what a killed save left
    assert sorted(path.name for path in tmp_path.iterdir()) == ["c.pt", "c.pt.tmp", "victim.txt"]


def test_a_full_disk_refuses_a_checkpoint_with_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1000))
    with pytest.raises(DiskFullError, match="the disk is full"):
        small_trainer(tmp_path / "c.pt").save_checkpoint()
    assert not list(tmp_path.iterdir())


def test_a_run_of_very_few_steps_trains(tmp_path: Path) -> None:
    # One epoch of one batch: the one-cycle schedule has no room for its warm-up phase.
    config = TrainConfig(epochs=1, batch_size=128, image_size=16, seed=1)
    trainer = Trainer(config, small_data(), np.arange(80), num_classes=3, events=EventSink())
    state = trainer.fit()
    assert state.step == 1 and state.epoch == 1
