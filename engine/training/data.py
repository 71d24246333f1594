"""Batches from the decoded-image cache, augmented on tensors where the model lives.

The cache is a (N, S, S, 3) uint8 array in sample-id order. A batch gathers its
rows, moves them to the device as uint8 (4x less traffic than float), and only
there converts, normalises and augments: no image decoding after the first epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Fixed normalisation: the cache is 0..255; mean/std of natural images are close enough for training from scratch.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_PADDING = 4  # pixels of reflection padding for random-crop translation (at 32 px; scaled with size)


@dataclass
class Batch:
    x: torch.Tensor  # (B, 3, S, S) float, normalised (and augmented when training)
    y: torch.Tensor  # (B,) int64 labels used for the loss
    ids: torch.Tensor  # (B,) int64 sample ids (rows of every per-sample array)


class ImageBatches:
    """Serves batches of cached images with their labels.

    Parameters
    ----------
    images : np.ndarray of shape (N, S, S, 3), uint8 — the cache, indexed by sample id.
    labels : np.ndarray of shape (N,), int64 — the label of every sample (only those in ``ids`` are used).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, device: torch.device, channels_last: bool = False) -> None:
        self.images = images
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.device = device
        self.channels_last = channels_last
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255

    def gather(self, ids: np.ndarray) -> torch.Tensor:
        """uint8 (B, 3, S, S) on the device. Sorted reads are kinder to a memory-mapped file."""
        order = np.argsort(ids, kind="stable")
        rows = np.empty((len(ids),) + self.images.shape[1:], dtype=np.uint8)
        rows[order] = self.images[ids[order]]
        tensor = torch.from_numpy(rows).to(self.device, non_blocking=True)
        return tensor.permute(0, 3, 1, 2)

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        x = (raw.float() - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()

    def batches(
        self,
        ids: np.ndarray,
        batch_size: int,
        *,
        augment: str = "none",
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """Batches of ``ids`` in the order given (the trainer shuffles: it must remember the order to resume).

        ``drop_last`` (training): a trailing batch of one sample, which BatchNorm cannot train on, joins the
        batch before it instead, so every sample is still trained on (and recorded) once per epoch.
        """
        ids = np.asarray(ids, dtype=np.int64)
        for chunk in batch_chunks(ids, batch_size, merge_single=drop_last):
            raw = self.gather(chunk)
            if augment != "none":
                raw = augment_batch(raw, augment, generator)
            ids_tensor = torch.from_numpy(chunk)
            yield Batch(self.normalise(raw), self.labels[ids_tensor].to(self.device), ids_tensor)


def batch_chunks(ids: np.ndarray, batch_size: int, *, merge_single: bool = False) -> Iterator[np.ndarray]:
    """``ids`` cut into consecutive batches; with ``merge_single`` a trailing one-sample batch joins the one before."""
    stop = len(ids)
    last_start = stop - stop % batch_size if stop % batch_size else stop - batch_size
    if merge_single and stop % batch_size == 1 and stop > batch_size:
        last_start -= batch_size  # the final batch holds batch_size + 1 samples
    for start in range(0, stop, batch_size):
        if start > last_start:
            return
        yield ids[start:] if start == last_start else ids[start:start + batch_size]


def augment_batch(raw: torch.Tensor, mode: str, generator: torch.Generator | None) -> torch.Tensor:
    """Random translation (reflect-padded crop) and, for flip-crop, horizontal flips; one vectorised op each.

    Random numbers come from ``generator`` on the CPU, so a seeded run is repeatable and resumable.
    """
    batch, _, height, width = raw.shape
    pad = max(1, round(CROP_PADDING * height / 32))
    padded = F.pad(raw.float(), (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (batch,), generator=generator).to(raw.device)
    dx = torch.randint(0, 2 * pad + 1, (batch,), generator=generator).to(raw.device)
    rows = (torch.arange(height, device=raw.device)[None, :] + dy[:, None])  # (B, H)
    cols = (torch.arange(width, device=raw.device)[None, :] + dx[:, None])  # (B, W)
    if mode == "flip-crop":
        flip = (torch.rand(batch, generator=generator) < 0.5).to(raw.device)
        cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch_index = torch.arange(batch, device=raw.device)[:, None, None]
    # (B, C, H+2p, W+2p) -> (B, H, W, C) by advanced indexing, then back to channels-first.
    cropped = padded.permute(0, 2, 3, 1)[batch_index, rows[:, :, None], cols[:, None, :]]
    return cropped.permute(0, 3, 1, 2)
