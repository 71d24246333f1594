"""What a training checkpoint holds besides the model and optimiser, and how it is checked and written.

Checkpoints (format 2) keep the method's and each callback's state under their names as plain state
(:func:`checkpoint_state`: tensors, numbers, strings and containers of them, numpy arrays saved as tensors,
so they load with ``weights_only=True``) and the training samples they were made on
(:func:`training_samples_fingerprint`); a resume on anything else raises :class:`CheckpointMismatch`. The
trainer that saves and loads them is :class:`engine.training.loop.Trainer`.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.errors import UserError

# The audit's dynamics run keeps its model here (its penultimate layer is an embedding backbone too).
DYNAMICS_CHECKPOINT = "checkpoint-dynamics.pt"

CHECKPOINT_FORMAT = 2
START_A_NEW_RUN = "start a new run instead of resuming this one"


class CheckpointMismatch(UserError):
    """A checkpoint made on other training samples, or with another method or other callbacks."""


class CheckpointStateError(TypeError):
    """A method's or callback's ``state_dict`` holds something a checkpoint cannot keep."""


PLAIN_STATE = "tensors, numpy arrays, numbers, strings, None, and lists, tuples or dicts of those"


def checkpoint_state(state: Any, owner: str, key: str = "state") -> Any:
    """``state`` as it can be saved and loaded with ``weights_only=True``: numpy arrays become tensors.

    Raises CheckpointStateError naming ``owner`` and the key path of anything else.
    """
    if state is None or isinstance(state, (bool, int, float, str)):
        return state
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, np.ndarray):
        try:
            return torch.from_numpy(np.ascontiguousarray(state)).clone()
        except TypeError as exc:
            raise CheckpointStateError(f"{owner}: {key} is a numpy array of dtype {state.dtype}, which has no "
                                       f"tensor form; checkpoint state may hold only {PLAIN_STATE}") from exc
    if isinstance(state, np.generic):
        return checkpoint_state(state.item(), owner, key)
    if isinstance(state, (list, tuple)):
        items = [checkpoint_state(item, owner, f"{key}[{index}]") for index, item in enumerate(state)]
        return items if isinstance(state, list) else tuple(items)
    if isinstance(state, dict):
        plain = {}
        for name, value in state.items():
            if not isinstance(name, (str, int)) or isinstance(name, bool):
                raise CheckpointStateError(f"{owner}: {key} has a key of type {type(name).__name__}; "
                                           "checkpoint state keys must be strings or integers")
            plain[name] = checkpoint_state(value, owner, f"{key}[{name!r}]")
        return plain
    raise CheckpointStateError(f"{owner}: {key} holds a {type(state).__name__}; "
                               f"checkpoint state may hold only {PLAIN_STATE}")


def training_samples_fingerprint(ids: np.ndarray, labels: np.ndarray) -> str:
    """sha256 over the training sample ids (in order) and the labels they are trained on."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(ids, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return digest.hexdigest()


def describe_sample_change(old_ids: np.ndarray, old_labels: np.ndarray,
                           new_ids: np.ndarray, new_labels: np.ndarray) -> str:
    old = dict(zip(old_ids.tolist(), old_labels.tolist(), strict=True))
    new = dict(zip(new_ids.tolist(), new_labels.tolist(), strict=True))
    removed = len(old.keys() - new.keys())
    added = len(new.keys() - old.keys())
    relabeled = sum(1 for key in old.keys() & new.keys() if old[key] != new[key])
    parts = [f"{count} {what}" for count, what in ((removed, "removed"), (added, "added"), (relabeled, "relabeled"))
             if count]
    return ", ".join(parts) if parts else "the same samples in another order"


def remove_stale_temporaries(checkpoint: Path) -> None:
    """Temporary files of ``checkpoint`` that a killed save left behind (one engine works on a run)."""
    for stale in checkpoint.parent.glob(f".{glob.escape(checkpoint.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; some platforms (Windows) cannot open a folder."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
