"""torchrun: 2 gloo ranks on the CPU do the jobs of one process (engine/training/distributed.py).

The 2-rank runs are real ``python -m torch.distributed.run`` processes on a tiny generated project
(33 images of 16 px, 25 of them training samples: an odd count, so shards and batches are uneven).
Their model has no BatchNorm (``tiny_model`` below), whose per-rank batch statistics would differ
from one process's; with it, 2 ranks train the same steps as 1 process up to float rounding.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from engine.events import Done, Error, parse_event, read_events
from engine.store import Project
from engine.training import data_parallel, distributed

TESTS = Path(__file__).resolve().parent
MODEL = "test_distributed:tiny_model"
# float32: bf16 rounds the two ranks' half-batches differently from one whole batch.
TRAIN = ["--epochs", "2", "--batch-size", "4", "--image-size", "16", "--device", "cpu", "--precision", "fp32",
         "--model", MODEL]


def tiny_model(num_classes: int) -> nn.Module:
    """A convolution and a linear head, no BatchNorm: data-parallel steps equal one process's."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, num_classes))


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import make_image_folder

    from engine.data.importing import import_folder

    base = tmp_path_factory.mktemp("ddp")
    images = make_image_folder(base / "images", per_class=11)
    import_folder(base / "project", images, test_fraction=0.25, folds=2).close()
    return base / "project"


def copy_project(template: Path, target: Path) -> Path:
    shutil.copytree(template, target)
    return target


def torchrun_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           distributed.TIMEOUT_ENV: "30", "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-u", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "engine", *args]


def only_run(project: Path) -> Path:
    with Project.open(project) as opened:
        runs = opened.runs()
    assert len(runs) == 1, [run.id for run in runs]
    return runs[0].folder


# Batch size 4: every fold's last batch is whole or one sample (merged). Batch size 5: the folds' 12 and
# 13 samples end in batches of 2 and 3, steps of their own in one process, under 2 per rank here.
@pytest.mark.parametrize("batch_size", [4, 5])
def test_two_gloo_ranks_match_one_process(tiny_project: Path, tmp_path: Path, batch_size: int) -> None:
    one = copy_project(tiny_project, tmp_path / "one")
    two = copy_project(tiny_project, tmp_path / "two")
    from engine.training.config import TrainConfig
    from engine.workflows.audit import run_audit

    # The reference: one process, in this one (the same job as `python -m engine audit`).
    config = TrainConfig(epochs=2, batch_size=batch_size, image_size=16, device="cpu", precision="fp32", model=MODEL)
    with Project.open(one) as opened:
        assert run_audit(opened, config, folds=2, detectors=["cl", "aum", "ocl"], dynamics_epochs=2)[1] == "ok"
    result = subprocess.run(torchrun("audit", str(two), "--folds", "2", "--detectors", "cl,aum,ocl", *TRAIN,
                                     "--batch-size", str(batch_size), "--json"),
                            env=torchrun_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]

    # One events stream (rank 0's): every stdout line an event, numbered once, ending in one done.
    events = [parse_event(line) for line in result.stdout.splitlines()]
    assert [event.seq for event in events] == list(range(1, len(events) + 1))
    assert [type(event) for event in events].count(Done) == 1 and isinstance(events[-1], Done)
    assert events[-1].status == "ok"
    folder_one, folder_two = only_run(one), only_run(two)  # one run row, none from rank 1
    assert [event.seq for event in read_events(folder_two / "events.jsonl")] == [event.seq for event in events]

    with Project.open(two) as project:
        n, train_ids = project.num_samples, project.sample_table().train_ids
    probs_one, probs_two = np.load(folder_one / "pred_probs.npy"), np.load(folder_two / "pred_probs.npy")
    assert probs_two.shape == (n, 3) and np.allclose(probs_two.sum(axis=1), 1, atol=1e-5)  # every sample, once
    np.testing.assert_allclose(probs_two, probs_one, atol=1e-5)
    dynamics_one, dynamics_two = folder_one / "dynamics", folder_two / "dynamics"
    np.testing.assert_array_equal(np.load(dynamics_two / "ids.npy"), np.sort(train_ids))
    for name in ("margin.npy", "td.npy", "mean_probs.npy"):
        recorded = np.load(dynamics_two / name).astype(np.float32)
        assert not np.isnan(recorded).any(), name  # NaN marks a sample no rank recorded
        np.testing.assert_allclose(recorded, np.load(dynamics_one / name).astype(np.float32), atol=2e-3)
    confident = np.load(dynamics_two / "confident_class.npy")
    assert (confident >= -1).all()  # -2: never recorded
    np.testing.assert_array_equal(confident, np.load(dynamics_one / "confident_class.npy"))
    flagged_two = json.loads((folder_two / "summary.json").read_text())["n_flagged"]
    flagged_one = json.loads((folder_one / "summary.json").read_text())["n_flagged"]
    # aum's count is confident learning's estimate on these 2 epochs' near-uniform probabilities, which the
    # float16 rounding of the recorded td (compared above, to 2e-3) can move; the rest must agree exactly.
    assert {k: v for k, v in flagged_two.items() if k != "aum"} == {k: v for k, v in flagged_one.items() if k != "aum"}


def rank_pid(parent: int, rank: int, deadline: float) -> int:
    """The pid of torchrun worker ``rank`` among ``parent``'s children (Linux /proc)."""
    while time.monotonic() < deadline:
        for task in Path(f"/proc/{parent}/task").iterdir():
            for child in (task / "children").read_text().split():
                try:
                    environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
                except OSError:
                    continue
                if f"RANK={rank}".encode() in environ:
                    return int(child)
        time.sleep(0.2)
    raise AssertionError(f"no rank {rank} worker under process {parent}")


def engine_torchrun(*args: str) -> list[str]:
    """``python -m engine.torchrun``: torchrun with the engine's one message when something stops."""
    return [sys.executable, "-u", "-m", "engine.torchrun", "--standalone", "--nproc-per-node", "2", *args]


def kill_during_training(project: Path, command: str, victim: str) -> tuple[int, list[str], str]:
    """Start a long 2-rank job, SIGKILL ``victim`` (rank0, rank1 or launcher) once training is under way.

    Returns the exit status, the stdout lines (rank 0's events) and stderr.
    """
    extra = ["--folds", "2"] if command == "audit" else ["--seeds", "1", "--no-baseline"]
    process = subprocess.Popen(engine_torchrun(command, str(project), *extra, *TRAIN, "--epochs", "300", "--json"),
                               env=torchrun_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:  # training is under way once a training metric arrives
            lines.append(line)
            if '"type": "metric"' in line:
                break
        if victim == "launcher":
            os.kill(process.pid, signal.SIGKILL)
        else:
            os.kill(rank_pid(process.pid, int(victim[-1]), time.monotonic() + 30), signal.SIGKILL)
        rest, stderr = process.communicate(timeout=90)  # the ranks hold the pipes: they too have ended
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, [line for line in lines + rest.splitlines() if line.strip()], stderr


def the_one_message(stdout: list[str], stderr: str) -> str:
    """What the person reads about the stop: rank 0's error event, else the launcher's error line; only one."""
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [event.message + "\n  fix: " + event.hint for event in map(parse_event, stdout) if isinstance(event, Error)]
    printed = [line + "\n" + following for line, following in zip(stderr.splitlines(), [*stderr.splitlines()[1:], ""])
               if line.startswith("error: ")]
    assert len(errors) + len(printed) == 1, (errors, printed, stderr[-3000:])
    return (errors or printed)[0]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the worker through /proc")
@pytest.mark.parametrize(("victim", "command", "named"), [
    ("rank1", "audit", "rank 1 stopped"),
    ("rank0", "audit", "rank 0 stopped (killed by SIGKILL)"),
    ("launcher", "retrain", "the torchrun launcher"),
])
def test_whatever_is_killed_one_message_names_it_and_the_resume_command(
        tiny_project: Path, tmp_path: Path, victim: str, command: str, named: str) -> None:
    project = copy_project(tiny_project, tmp_path / "killed")
    returncode, stdout, stderr = kill_during_training(project, command, victim)
    if victim != "launcher":
        assert returncode != 0, stderr[-2000:]
    message = the_one_message(stdout, stderr)
    with Project.open(project) as opened:  # the store is whole; the run reads as interrupted: resumable
        (run,) = opened.runs()
        assert run.status == "interrupted", (run.status, run.summary)
        assert opened.sample_table().train_ids.size == 25
    assert named in message and f"run {run.id} is interrupted" in message
    found = re.search(r"resume (?:it|the run) with: ([^;\n]+)", message)
    assert found is not None, message
    resume = found.group(1).strip()
    assert resume.endswith(f"-m engine.torchrun --standalone --nproc-per-node 2 {command} {project} --model {MODEL} "
                           f"--json --resume {run.id}"), resume
    if victim != "rank0":  # rank 0 lived to say it: its events end in one done
        events = [parse_event(line) for line in stdout]
        assert isinstance(events[-1], Done) and events[-1].status == "error"


def test_retrain_under_torchrun_records_its_method(tiny_project: Path, tmp_path: Path) -> None:
    project = copy_project(tiny_project, tmp_path / "retrain")
    result = subprocess.run(torchrun("retrain", str(project), "--method", "sln", "--no-baseline", "--seeds", "1",
                                     *TRAIN, "--json"),
                            env=torchrun_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = only_run(project)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["method"]["name"] == "sln"
    assert json.loads((folder / "model.json").read_text())["method"] == "sln"
    assert 0.0 <= summary["accuracy_cleaned"] <= 1.0
    assert sum(1 for line in result.stdout.splitlines() if '"type": "done"' in line) == 1


@pytest.fixture
def two_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 1 of 2, without a process group: for the checks that need no collective."""
    monkeypatch.setattr(distributed, "_context", distributed.DistContext(2, 1, 1))


def test_methods_that_own_their_step_and_tiny_batches_are_refused(two_ranks: None) -> None:
    from engine.errors import UserError
    from engine.methods.l2rw import LearningToReweight
    from engine.training.hooks import Method

    with pytest.raises(UserError, match="one process") as refused:
        data_parallel.check_trainable(LearningToReweight.__new__(LearningToReweight), 128)
    assert "l2rw" in refused.value.message.lower()
    with pytest.raises(UserError, match="--batch-size 4"):
        data_parallel.check_trainable(Method(), 3)
    data_parallel.check_trainable(Method(), 4)


def test_global_batches_are_one_process_batches_split_whole_and_uneven(two_ranks: None) -> None:
    from engine.training.data import batch_chunks
    from engine.training.loop import steps_per_epoch

    chunks = data_parallel.train_chunks(np.arange(13), 4)
    assert [len(chunk) for chunk in chunks] == [4, 4, 5]  # a tail of 1 joins the batch before, as in one process
    # A tail of 2 or more is a step of its own, as in one process, however many ranks share it.
    for n in range(2, 40):
        for batch_size in (4, 5, 8):
            lengths = [len(chunk) for chunk in data_parallel.train_chunks(np.arange(n), batch_size)]
            assert lengths == [len(chunk) for chunk in batch_chunks(np.arange(n), batch_size, merge_single=True)]
            assert len(lengths) == steps_per_epoch(n, batch_size), (n, batch_size)  # the schedule's count
    assert [len(chunk) for chunk in data_parallel.train_chunks(np.arange(11), 4)] == [4, 4, 3]
    assert [data_parallel.part_bounds(5, 2, rank) for rank in (0, 1)] == [(0, 3), (3, 5)]
    # Under 2 samples per rank: fewer parts of 2 or more; the rank left over takes the step with none.
    assert [data_parallel.part_bounds(3, 2, rank) for rank in (0, 1)] == [(0, 3), (3, 3)]
    assert [data_parallel.part_bounds(5, 4, rank) for rank in range(4)] == [(0, 3), (3, 5), (5, 5), (5, 5)]
    assert distributed.shard(np.arange(5)).tolist() == [3, 4]  # rank 1's contiguous share


def test_commands_that_do_not_train_are_refused_under_torchrun(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str],
                                                                tiny_project: Path) -> None:
    from engine.cli import main

    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    assert main(["status", str(tiny_project)]) != 0
    assert "does not run under torchrun" in capsys.readouterr().err
    assert not distributed.active()


class FakeStore:
    """The process group's key-value store, as a dict."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def check(self, keys: list[str]) -> bool:
        return all(key in self.values for key in keys)

    def get(self, key: str) -> bytes:
        return self.values[key].encode()


def test_rank_zero_names_the_rank_that_failed_and_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "_context", distributed.DistContext(3, 0, 0))
    alive = f"{os.getpid()}@{__import__('socket').gethostname()}"
    store = FakeStore({"label_auditor/failed/2": "ValueError: boom", "label_auditor/process/1": alive})
    monkeypatch.setattr(distributed, "_store", lambda: store)
    monkeypatch.setattr(distributed, "_job", distributed._Job("audit", run_id="R1"))
    monkeypatch.setattr(distributed, "_launcher_argv", ["torchrun", "--nproc-per-node", "3", "-m", "engine", "audit",
                                                        "my project", "--epochs", "5"])
    monkeypatch.setattr(sys, "argv", ["engine", "audit", "my project", "--epochs", "5"])
    failure = distributed.peer_failure(RuntimeError("[gloo] Connection closed by peer [127.0.0.1]:1234"))
    assert failure is not None and failure.message == "rank 2 stopped: ValueError: boom"  # rank 1 is alive
    assert not failure.killed  # a rank that failed with an error: the run is an error
    assert "resume the run with: torchrun --nproc-per-node 3 -m engine audit 'my project' --resume R1" in failure.hint
    dead = "999999999@" + alive.split("@")[1]
    store.values = {"label_auditor/process/1": alive, "label_auditor/process/2": dead}
    # Gone is exactly the dead record: this test's own pid may start with any digit.
    monkeypatch.setattr(distributed, "_process_gone", lambda record: record == dead)
    killed = distributed.peer_failure(RuntimeError("Connection closed by peer"))
    assert killed is not None and killed.killed  # killed: the run is interrupted, resumable
    assert killed.message.startswith("rank 2 stopped: its process ended") and "run R1 is interrupted" in killed.message
    assert distributed.peer_failure(ValueError("not a collective")) is None
    monkeypatch.setattr(distributed, "_context", distributed.DistContext(3, 1, 1))
    assert distributed.peer_failure(RuntimeError("Connection closed by peer")) is None  # only rank 0 reports


def _overflow_on_rank_one(rank: int, init_file: str, results: str) -> None:
    """One of 2 gloo ranks: float16-style loss scaling where rank 1's own gradients overflow in the first step."""
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=20))
    distributed._context = distributed.DistContext(2, rank, rank, "gloo")
    try:
        torch.manual_seed(0)
        model = nn.Linear(3, 2)
        unused = nn.Parameter(torch.ones(2))  # no rank computes a gradient for it: it must keep none
        optimizer = torch.optim.SGD([*model.parameters(), unused], lr=0.1)
        averager = data_parallel.GradientAverager(optimizer)
        scaler = data_parallel.grad_scaler("cpu", averager)
        steps = []
        for step in range(2):
            x = torch.full((2, 3), float(rank + 1 + step))
            loss = model(x).pow(2).mean()
            if step == 0 and rank == 1:
                loss = loss * float("inf")  # this rank's part overflows; rank 0's does not
            averager.weight = 0.5
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            steps.append({"scale": float(scaler.get_scale()), "weight": model.weight.detach().tolist()})
        torch.save({"steps": steps, "unused_grad": unused.grad}, f"{results}.{rank}")
    finally:
        distributed._context = None
        dist.destroy_process_group()


def test_an_overflow_on_one_rank_skips_the_step_on_every_rank(tmp_path: Path) -> None:
    """float16 under torchrun: the gradients are averaged before the scaler's inf check, so all ranks agree."""
    import torch
    import torch.multiprocessing as mp

    results = str(tmp_path / "steps")
    mp.start_processes(_overflow_on_rank_one, args=(str(tmp_path / "init"), results), nprocs=2,
                       start_method="spawn", join=True)
    zero, one = (torch.load(f"{results}.{rank}", weights_only=True) for rank in (0, 1))
    torch.manual_seed(0)
    initial = nn.Linear(3, 2).weight.detach().tolist()
    assert zero["steps"][0] == one["steps"][0]  # both skipped the first step and halved the scale
    assert zero["steps"][0]["weight"] == initial and zero["steps"][0]["scale"] == 2.0 ** 15
    assert zero["steps"][1] == one["steps"][1] and zero["steps"][1]["weight"] != initial  # both took the second
    assert zero["unused_grad"] is None and one["unused_grad"] is None


def test_engine_torchrun_splits_its_options_from_the_engine_command() -> None:
    from engine.errors import UserError
    from engine.torchrun import split_argv

    assert split_argv(["--nproc-per-node", "2", "audit", "P", "--epochs", "1"]) == (
        ["--nproc-per-node", "2"], ["audit", "P", "--epochs", "1"])
    assert split_argv(["--rdzv-id", "audit", "retrain", "P"]) == (["--rdzv-id", "audit"], ["retrain", "P"])
    with pytest.raises(UserError, match="no engine command"):
        split_argv(["--nproc-per-node", "2", "status", "P"])


def test_engine_torchrun_is_silent_when_rank_zero_spoke_and_names_rank_zero_when_it_died(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    from engine.torchrun import report_failure

    def failure(rank: int, exitcode: int, when: float) -> ProcessFailure:
        made = ProcessFailure(local_rank=rank, pid=4242 + rank, exitcode=exitcode, error_file="<N/A>")
        made.timestamp = int(when)
        return made

    assert report_failure({1: failure(1, -9, 1), 0: failure(0, 1, 2)}, ["audit", str(tmp_path)], []) == 1
    assert capsys.readouterr().err == ""  # rank 0 reported "rank 1 stopped" itself
    assert report_failure({0: failure(0, -9, 1), 1: failure(1, 1, 2)}, ["audit", str(tmp_path), "--epochs", "3"],
                          ["--nproc-per-node", "2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: rank 0 stopped (killed by SIGKILL) before a run was recorded")
    assert "start it again: " in err and err.rstrip().endswith(
        f"-m engine.torchrun --nproc-per-node 2 audit {tmp_path} --epochs 3")
