"""Data-parallel jobs under torchrun: one process per device, rank 0 the only one that writes.

``torchrun --nproc-per-node N -m engine audit|retrain|compare|crossval PROJECT ...`` starts N
copies of the engine. torchrun sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``;
:func:`start` reads them and joins the process group once (gloo on the CPU, NCCL with
``cuda:LOCAL_RANK`` on GPUs); :func:`stop` leaves it at exit. Without them (or with one
process) every helper here is a no-op and the engine runs as it always does.

What each rank does:

- every rank runs the same job, reading the project (read-only on ranks other than 0) and
  the image cache (built by rank 0 first, see :func:`main_first`);
- training: every global batch (the same batches a single process trains on) is split into one
  part per rank and the gradients are averaged before each optimiser step, so the step is that of
  the whole batch (:mod:`engine.training.data_parallel`);
- prediction: each rank scores its contiguous shard of the ids and the shards are gathered
  in rank order: every sample once, in the order asked for (no sampler padding, nothing doubled);
- recorders gather each batch's ids, labels and logits from every rank and rank 0 writes them;
- rank 0 alone emits events, writes the run folder, checkpoints and the store; the other
  ranks' events go nowhere (:class:`SilentSink`) and their stdout goes to stderr, so a
  ``--json`` stream holds rank 0's events only.

A rank that stops (an error, a kill) ends the job on every rank: the others fail in their
next collective (or after ``LABEL_AUDITOR_DIST_TIMEOUT`` seconds, default 300, when a rank
hangs), and torchrun stops the group. Whatever stops, the person reads one message naming it
and the exact command that resumes, and no traceback:

- another rank stopped: rank 0 reports "rank R stopped: ..." (:func:`peer_failure`); a rank
  that failed with an exception leaves its message in the process group's store for that,
  and its run is an error; a rank that was killed leaves the run interrupted;
- rank 0 itself died: its run reads as interrupted (the store's dead-owner check); the other
  ranks stop without a word, and ``python -m engine.torchrun`` (engine/torchrun.py) names
  rank 0 and the resume command (plain ``torchrun`` prints its own report);
- the launcher died: every rank notices it is orphaned (:func:`watch_launcher`) and stops at
  once; rank 0 says so, with the resume command, and the run reads as interrupted.

This module imports torch only inside its functions: importing it costs nothing.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from engine.errors import UserError
from engine.events import Event, EventSink

if TYPE_CHECKING:
    import torch

    from engine.training.data import Batch

TIMEOUT_ENV = "LABEL_AUDITOR_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0
# The jobs that train; every other command runs in one process.
COMMANDS = ("audit", "retrain", "compare", "crossval")
_KEY = "label_auditor"
_WAIT_FOR_MAIN_S = 7 * 24 * 3600.0  # building the image cache may take hours; torchrun ends the wait if rank 0 dies

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    world_size: int
    rank: int
    local_rank: int
    backend: str = "gloo"


_context: DistContext | None = None
_main_first_calls = 0


@dataclass
class _Job:
    """The job under way on this rank: its run (once made) and, on rank 0, the events a person reads."""

    command: str
    run_id: str | None = None
    events: EventSink | None = None


_job: _Job | None = None
_launcher_argv: list[str] = []  # the torchrun command line that started this worker (Linux), for the resume line
LAUNCHER_POLL_S = 0.5


def from_environment() -> DistContext | None:
    """The torchrun worker this process is (WORLD_SIZE, RANK, LOCAL_RANK), or None outside torchrun / alone."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as exc:
        raise UserError(f"WORLD_SIZE, RANK or LOCAL_RANK is not a whole number ({exc})",
                        "start the engine with torchrun, which sets them, or unset them") from exc
    if world <= 1:
        return None
    return DistContext(world, rank, local)


def timeout_s() -> float:
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UserError(f"{TIMEOUT_ENV}={text!r} is not a positive number of seconds",
                        f"set it to e.g. {int(DEFAULT_TIMEOUT_S)}, or unset it")
    return value


def active() -> bool:
    return _context is not None


def rank() -> int:
    return 0 if _context is None else _context.rank


def world_size() -> int:
    return 1 if _context is None else _context.world_size


def is_main() -> bool:
    """True in a single process and on rank 0: the one process that writes and speaks."""
    return rank() == 0


def start(command: str, device: str = "auto") -> DistContext | None:
    """Join torchrun's process group when this process is one of several workers; None otherwise.

    Refuses (UserError) a command that does not train, which N copies would only repeat.
    """
    global _context
    found = from_environment()
    if found is None or _context is not None:
        return _context
    if command not in COMMANDS:
        raise UserError(f"`{command}` does not run under torchrun (only {', '.join(COMMANDS)} do)",
                        f"run it as `python -m engine {command} ...`, in one process")
    import torch
    import torch.distributed as dist

    backend = "nccl" if device != "cpu" and torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(found.local_rank)
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s()))
    _context = DistContext(found.world_size, found.rank, found.local_rank, backend)
    store = _store()
    if store is not None:
        store.set(f"{_KEY}/process/{found.rank}", f"{os.getpid()}@{socket.gethostname()}")
    if found.rank != 0:
        os.dup2(2, 1)  # whatever a library prints on this rank must not land in rank 0's event stream
    global _job
    _job = _Job(command)
    watch_launcher()
    return _context


def stop(finished: bool = False) -> None:
    """Leave the process group (at exit); ``finished``: this rank ended its job without an error.

    A rank that finished waits at a barrier for the others before it destroys its process group:
    destroyed while a peer still talks to it, gloo's receiving thread can abort the process
    ("terminate called without an active exception", SIGABRT) after the job itself went well.
    A peer that failed destroys its own group at once, which ends the barrier with an error.
    """
    global _context
    if _context is None:
        return
    _context = None
    import torch.distributed as dist

    if dist.is_initialized():
        if finished:
            with contextlib.suppress(Exception):  # a peer gone meanwhile: leave all the same
                dist.barrier()
        with contextlib.suppress(Exception):  # a peer already gone: nothing left to say goodbye to
            dist.destroy_process_group()


def device_for(device: torch.device) -> torch.device:
    """This rank's own GPU (cuda:LOCAL_RANK) where the job runs on CUDA."""
    if _context is not None and device.type == "cuda":
        import torch

        return torch.device("cuda", _context.local_rank)
    return device


def comm_device() -> torch.device:
    """Where collectives run: this rank's GPU under NCCL, the CPU under gloo."""
    import torch

    assert _context is not None
    return torch.device("cuda", _context.local_rank) if _context.backend == "nccl" else torch.device("cpu")


def _store() -> Any:
    import torch.distributed as dist

    try:
        return dist.distributed_c10d._get_default_store()
    except (RuntimeError, AttributeError, ValueError):
        return None


# ------------------------------------------------------------------ collectives
def broadcast_object(value: T) -> T:
    """Rank 0's ``value`` on every rank (a decision every rank must take alike)."""
    if _context is None:
        return value
    import torch.distributed as dist

    holder = [value]
    dist.broadcast_object_list(holder, src=0, device=comm_device())
    return holder[0]


def broadcast_tensor(tensor: torch.Tensor) -> torch.Tensor:
    if _context is None:
        return tensor
    import torch.distributed as dist

    moved = tensor.to(comm_device()).contiguous()
    dist.broadcast(moved, src=0)
    return moved.to(tensor.device)


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on some rank (one tiny all-reduce)."""
    if _context is None:
        return flag
    import torch
    import torch.distributed as dist

    value = torch.tensor([1 if flag else 0], dtype=torch.int64, device=comm_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def sum_over_ranks(*values: float) -> list[float]:
    """Each value summed over the ranks (float64)."""
    if _context is None:
        return list(values)
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=comm_device())
    dist.all_reduce(tensor)
    return [float(value) for value in tensor.cpu()]


def gather_rows(local: np.ndarray) -> np.ndarray:
    """Every rank's rows, concatenated in rank order, on every rank; ranks may hold different counts (or none)."""
    if _context is None:
        return local
    import torch
    import torch.distributed as dist

    shapes: list[Any] = [None] * _context.world_size
    dist.all_gather_object(shapes, (local.shape, local.dtype.str))
    counts = [shape[0] for shape, _ in shapes]
    filled = [(shape, dtype) for shape, dtype in shapes if shape[0]] or shapes
    trailing, dtype = tuple(filled[0][0][1:]), np.dtype(filled[0][1])
    padded = np.zeros((max(max(counts), 1), *trailing), dtype=dtype)
    if len(local):
        padded[: len(local)] = local
    tensor = torch.from_numpy(padded).to(comm_device())
    parts = [torch.empty_like(tensor) for _ in range(_context.world_size)]
    dist.all_gather(parts, tensor)
    return np.concatenate([part[:count].cpu().numpy() for part, count in zip(parts, counts, strict=True)])


def shard(ids: np.ndarray) -> np.ndarray:
    """This rank's contiguous share of ``ids`` (gathered back in rank order, the shards are ``ids``)."""
    if _context is None:
        return ids
    return np.array_split(np.asarray(ids), _context.world_size)[_context.rank]


def gather_batch(batch: Batch, logits: torch.Tensor) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """(ids, labels, logits) of the whole global batch, every rank's part in order, on every rank.

    One process: the batch's own. What a recorder sees is then the batch one process trains on.
    """
    ids = batch.ids.cpu().numpy()
    if _context is None:
        return ids, batch.y, logits
    import torch

    packed = np.concatenate([ids[:, None].astype(np.float64), batch.y.cpu().numpy()[:, None].astype(np.float64),
                             logits.detach().float().cpu().numpy().astype(np.float64)], axis=1)
    whole = gather_rows(packed)
    return (whole[:, 0].astype(np.int64), torch.from_numpy(whole[:, 1].astype(np.int64)),
            torch.from_numpy(whole[:, 2:].astype(np.float32)))


# ------------------------------------------------------------------ rank 0 first, failures
def main_first(work: Callable[[], T], what: str) -> T:
    """Rank 0 does ``work`` (which may write, e.g. build the image cache), then the others do it (and find it done).

    The others wait on the process group's store, not a collective, so a long build is no timeout.
    """
    global _main_first_calls
    if _context is None:
        return work()
    _main_first_calls += 1
    key = f"{_KEY}/main_first/{_main_first_calls}"
    store = _store()
    if store is None:  # no store to wait on: a barrier (bounded by the process-group timeout)
        import torch.distributed as dist

        result = work() if is_main() else None
        dist.barrier()
        return work() if not is_main() else result  # type: ignore[return-value]
    if is_main():
        try:
            result = work()
        except BaseException:
            store.set(key, "failed")
            raise
        store.set(key, "ok")
        return result
    store.wait([key], timedelta(seconds=_WAIT_FOR_MAIN_S))
    if store.get(key) != b"ok":
        raise UserError(f"rank 0 could not prepare {what}", "see rank 0's error")
    return work()


def record_failure(message: str) -> None:
    """Leave this rank's error where rank 0 finds it (:func:`peer_failure`)."""
    if _context is None:
        return
    store = _store()
    if store is not None:
        with contextlib.suppress(Exception):
            store.set(f"{_KEY}/failed/{_context.rank}", message)


def is_collective_failure(exc: BaseException) -> bool:
    import torch.distributed as dist

    if isinstance(exc, dist.DistError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        mark in text for mark in ("gloo", "Gloo", "NCCL", "Connection closed", "Connection reset", "timed out",
                                  "Timed out", "Socket Timeout"))


def peer_failure(exc: BaseException) -> PeerStopped | None:
    """On rank 0: a collective that failed because another rank stopped, as "rank R stopped: ..."; else None."""
    if _context is None or not is_main() or not is_collective_failure(exc):
        return None
    time.sleep(0.5)  # a failing rank writes its message as it goes; give it the moment
    stopped = stopped_peers()
    killed = not any(": its process ended" not in line for line in stopped)
    if not stopped:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        stopped.append(f"another rank stopped or stopped answering within {timeout_s():g} s ({first})")
    run_id = _job.run_id if _job is not None else None
    resume = f"resume the run with: {resume_command(run_id)}" if run_id else \
        f"start the job again: {resume_command(None)}"
    if killed:
        return PeerStopped("; ".join(stopped) + (f"; run {run_id} is interrupted" if run_id else ""),
                           f"{resume}; a rank that is only slow needs a longer {TIMEOUT_ENV}", killed=True)
    return PeerStopped("; ".join(stopped), f"fix what stopped it (its output is above), then {resume}", killed=False)


def _store_get(store: Any, key: str) -> str | None:
    if store is None:
        return None
    try:
        if not store.check([key]):
            return None
        return bytes(store.get(key)).decode(errors="replace")
    except Exception:  # noqa: BLE001 - the store went away with the group: nothing to learn from it
        return None


def _process_gone(record: str | None) -> bool:
    """The rank's process (``pid@host``, recorded at start) has ended; only answerable on this host."""
    if record is None or "@" not in record:
        return False
    pid_text, host = record.split("@", 1)
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    # A killed child of torchrun stays a zombie until torchrun reaps it.
    try:
        stat = Path(f"/proc/{pid_text}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


class PeerStopped(UserError):
    """Another rank stopped; ``killed``: its process ended without a message (a kill, a crash), so the run is
    interrupted, resumable, as a killed single process leaves it."""

    exit_code = 1

    def __init__(self, message: str, hint: str, killed: bool) -> None:
        super().__init__(message, hint)
        self.killed = killed


def stopped_peers() -> list[str]:
    """On rank 0: "rank R stopped: ..." for every other rank that failed or whose process ended."""
    if _context is None or not is_main():
        return []
    store = _store()
    stopped: list[str] = []
    for other in range(1, _context.world_size):
        message = _store_get(store, f"{_KEY}/failed/{other}")
        if message is not None:
            stopped.append(f"rank {other} stopped: {message}")
        elif _process_gone(_store_get(store, f"{_KEY}/process/{other}")):
            stopped.append(f"rank {other} stopped: its process ended (killed, or it crashed) before the job finished")
    return stopped


def set_job(run_id: str, events: EventSink | None) -> None:
    """The run this rank works on (every rank knows it), and rank 0's events: what a stop reports."""
    if _job is not None:
        _job.run_id, _job.events = run_id, events


def resume_command(run_id: str | None) -> str:
    """The exact command that continues ``run_id`` under the same launcher (or starts the job again)."""
    engine_args = sys.argv[1:]
    prefix = _launcher_prefix(engine_args)
    if run_id is None:
        return shlex.join([*prefix, *engine_args])
    kept = engine_args[:2]  # the command and its project
    for flag in ("--model",):  # a custom model resumes only when named again (check_resumed_model)
        if flag in engine_args[:-1] and ":" in engine_args[engine_args.index(flag) + 1]:
            kept += [flag, engine_args[engine_args.index(flag) + 1]]
    kept += ["--json"] if "--json" in engine_args else []
    return shlex.join([*prefix, *kept, "--resume", run_id])


def _launcher_prefix(engine_args: list[str]) -> list[str]:
    """The launcher's command line up to the engine's own arguments (``torchrun ... -m engine``)."""
    launcher = _launcher_argv
    for start in range(len(launcher) - len(engine_args), -1, -1):
        if engine_args and launcher[start:start + len(engine_args)] == engine_args:
            return launcher[:start]
    size = os.environ.get("LOCAL_WORLD_SIZE", str(world_size()))
    return ["torchrun", "--nproc-per-node", size, "-m", "engine"]


def watch_launcher() -> None:
    """Stop this rank as soon as the torchrun launcher that started it dies (orphaned workers run on otherwise).

    Rank 0 first says which run is interrupted and the command that resumes it; its run's row
    names rank 0's process, so once that is gone the run reads as interrupted.
    """
    global _launcher_argv
    launcher = os.getppid()
    with contextlib.suppress(OSError):
        _launcher_argv = [part.decode(errors="replace") for part in
                          Path(f"/proc/{launcher}/cmdline").read_bytes().split(b"\0") if part]
    if launcher <= 1:
        return  # already orphaned (started by hand): nothing to watch

    def watch() -> None:
        while os.getppid() == launcher:
            time.sleep(LAUNCHER_POLL_S)
        launcher_gone(launcher)

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()


def launcher_gone(launcher: int) -> None:
    """The launcher died: rank 0 reports it (one message, as an event where there is a stream); every rank exits."""
    try:
        if is_main():
            job = _job
            run_id = job.run_id if job is not None else None
            message = f"the torchrun launcher (process {launcher}) stopped, so every rank of this job stopped"
            if run_id is not None:
                message += f"; run {run_id} is interrupted"
            hint = (f"resume it with: {resume_command(run_id)}" if run_id is not None
                    else f"nothing was recorded yet; start it again: {resume_command(None)}")
            if job is not None and job.events is not None:
                job.events.error(message, hint)
                job.events.done("error", message)
            else:
                print(f"error: {message}\n  fix: {hint}", file=sys.stderr, flush=True)
    finally:
        os._exit(1)


class SilentSink(EventSink):
    """The events of a rank other than 0: stamped for the code that reads them back, written nowhere."""

    def set_log_path(self, run_id: str, log_path: Any) -> None:
        self.run_id = run_id

    def emit(self, event: Event) -> Event:
        return event
