"""The noise detector of the td_lstm detector: a 2-layer LSTM (hidden 64) over training dynamics.

After "Learning from Training Dynamics: Identifying Mislabeled Data Beyond Manually
Designed Features" (seeds/training-dynamics-lstm-detector.md): the input is
the seed's ``td`` sequence of a sample, per epoch the probability of its given label
and of the strongest other classes; the output is the probability that the sample is
mislabeled. It is trained supervised on the dynamics of data with synthesized noise
(``python -m engine train-detector``) and applied to other datasets without retraining,
so it must not depend on the number of classes K nor on the number of epochs E:

- Width: :data:`INPUT_WIDTH` columns, the given label's probability and the
  ``INPUT_WIDTH - 1`` strongest other classes (ranked by mean probability over
  training, as the recorder orders ``td``). Beyond the few strongest, the other
  classes of a trained classifier hold almost no probability, so a small fixed
  width loses little and keeps the input alike across K; a dataset with fewer
  classes is padded with zeros (classes of probability 0), more classes are cut.
- Length: the E epochs are resampled by linear interpolation to :data:`SEQUENCE_LENGTH`
  points of training *progress* (epoch e is at progress (e + 0.5) / E). The trainer's
  learning-rate schedule (one-cycle) is stretched over however many epochs a run has,
  so the phases of learning (fitting the easy samples, then memorising the mislabeled
  ones late, at small learning rates) sit at the same progress whatever E is. Running
  the LSTM over the raw E steps and reading the last state would instead see a
  4-epoch run's memorisation phase at step 3 and a 20-epoch run's at step 15, a shift
  the detector never saw in training unless every E were trained on.

The weights are a plain state dict of tensors (:func:`save_weights`), loaded with
``torch.load(weights_only=True)`` (:func:`load_weights`): never pickled code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.errors import UserError

INPUT_WIDTH = 4  # the given label + the 3 strongest other classes
SEQUENCE_LENGTH = 16  # points of training progress the epochs are resampled to
HIDDEN_SIZE = 64
NUM_LAYERS = 2


class TdLstm(nn.Module):
    """Sequences (batch, SEQUENCE_LENGTH, INPUT_WIDTH) -> logits (batch,) of "mislabeled"."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(INPUT_WIDTH, HIDDEN_SIZE, num_layers=NUM_LAYERS, batch_first=True)
        self.head = nn.Linear(HIDDEN_SIZE, 1)

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.lstm(sequences)
        return self.head(outputs[:, -1]).squeeze(1)


def prepare_sequences(td: np.ndarray) -> np.ndarray:
    """(n, SEQUENCE_LENGTH, INPUT_WIDTH) float32 model inputs from a td array (n, W, E) of any W and E.

    Columns beyond :data:`INPUT_WIDTH` are dropped, missing ones padded with 0; the epochs
    are interpolated onto the progress grid (see the module docstring). Unrecorded
    (NaN) entries count as probability 0.
    """
    td = np.asarray(td, dtype=np.float32)
    if td.ndim != 3 or td.shape[1] < 1 or td.shape[2] < 1:
        raise ValueError(f"td must be (samples, classes, epochs) with at least one of each, not {td.shape}")
    n, width, epochs = td.shape
    columns = np.zeros((n, INPUT_WIDTH, epochs), dtype=np.float32)
    kept = min(width, INPUT_WIDTH)
    columns[:, :kept] = np.nan_to_num(td[:, :kept], nan=0.0)
    source = (np.arange(epochs) + 0.5) / epochs
    target = (np.arange(SEQUENCE_LENGTH) + 0.5) / SEQUENCE_LENGTH
    # Linear interpolation along the epochs, clamped at the first and last recorded epoch.
    position = np.clip(np.interp(target, source, np.arange(epochs, dtype=np.float64)), 0, epochs - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, epochs - 1)
    weight = (position - low).astype(np.float32)
    resampled = columns[:, :, low] * (1 - weight) + columns[:, :, high] * weight  # (n, INPUT_WIDTH, T)
    return np.ascontiguousarray(resampled.transpose(0, 2, 1))


def predict_mislabeled(model: TdLstm, sequences: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """(n,) float64 in [0, 1]: the model's probability that each sample is mislabeled."""
    model.eval()
    chunks = []
    with torch.no_grad():
        for start in range(0, len(sequences), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(sequences[start:start + batch_size], dtype=np.float32))
            chunks.append(torch.sigmoid(model(batch)).double().numpy())
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float64)


def train_lstm(
    sequences: np.ndarray,
    targets: np.ndarray,
    *,
    epochs: int = 20,
    batch_size: int = 512,
    lr: float = 3e-3,
    seed: int = 0,
    start_from: TdLstm | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> TdLstm:
    """Train (or, with ``start_from``, fine-tune a copy of) the detector on (sequences, 0/1 targets).

    Plain binary cross-entropy, no class weighting: the output stays a probability of
    "mislabeled" at the noise rates trained on, so its sum estimates how many are.
    ``progress(epoch, mean_loss)`` is called after every epoch.
    """
    targets = np.asarray(targets, dtype=np.float32)
    if len(sequences) != len(targets) or len(targets) == 0:
        raise ValueError(f"{len(sequences)} sequences and {len(targets)} targets: need as many, at least one")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = TdLstm()
    if start_from is not None:
        model.load_state_dict(start_from.state_dict())
    inputs = torch.from_numpy(np.ascontiguousarray(sequences, dtype=np.float32))
    labels = torch.from_numpy(targets)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(labels) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(steps, 1))
    loss_fn = nn.BCEWithLogitsLoss()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(labels), generator=generator)
        total = 0.0
        for start in range(0, len(labels), batch_size):
            index = order[start:start + batch_size]
            loss = loss_fn(model(inputs[index]), labels[index])
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
        if progress is not None:
            progress(epoch + 1, total / len(labels))
    model.eval()
    return model


def save_weights(model: TdLstm, path: Path) -> None:
    """The model's state dict (tensors only, float32) at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}, path)


def load_weights(path: Path) -> TdLstm:
    """A detector with the weights at ``path`` (read with ``weights_only=True``); a UserError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"the LSTM detector's weights are missing: {path}",
                        "reinstall Label Auditor, or make them with `python -m engine train-detector`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = TdLstm()
        model.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - any unreadable or mismatched file is the same problem
        raise UserError(f"the LSTM detector's weights in {path} cannot be read ({type(exc).__name__}: {exc})",
                        "replace the file with one written by `python -m engine train-detector`") from exc
    model.eval()
    return model
