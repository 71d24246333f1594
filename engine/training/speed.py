"""How fast this computer trains: measured in a few seconds, or read from the project's own runs.

An estimate of an audit's seconds (``python -m engine estimate``, the app's audit dialog) divides its
image-steps (:mod:`engine.workflows.budget`) by a rate in images per second. The rate comes from:

- the project's latest finished run that trained the same way on this computer: every run of
  plain training steps (an audit, a crossval, a ``ce`` retrain) records in its summary, as
  ``training_rate``, the median ``images_per_s`` of its epochs with what it depends on (model, image
  size, batch size, precision, device, host): :func:`record_training_rate`;
- else a measurement: :func:`measure_training_rate` times real training steps of the model as the
  loop takes them (the loop's own trainer: channels-last, the precision it resolves, augmentation).

Torch is imported by the functions that need it, not by this module.
"""

from __future__ import annotations

import json
import math
import os
import socket
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.store import Project, RunInfo

TRAINING_RATE = "training_rate"  # the summary key of a run's recorded rate
RATE_KEYS = ("model", "image_size", "batch_size", "precision", "device", "host")  # what a rate depends on
PLAIN_TRAINING_KINDS = ("audit", "crossval", "retrain")  # a retrain only with ce: robust methods cost more per step


def measure_training_rate(model_name: str, num_classes: int, image_size: int, batch_size: int, precision: str,
                          device: str, seconds: float = 2.0) -> float:
    """Images per second of real training steps of ``model_name`` here, over about ``seconds``.

    The loop's own :class:`~engine.training.loop.Trainer` builds the model (channels-last, the autocast
    dtype ``precision`` resolves to on ``device``, a grad scaler for fp16) and its method takes the steps
    on augmented batches of random images, as an epoch would. The first step (lazy initialisation, kernel
    choice) is a warm-up and not counted; then steps are taken until ``seconds`` have passed (at least two).
    """
    import numpy as np

    from engine.events import EventSink
    from engine.training.config import TrainConfig
    from engine.training.data import ImageBatches
    from engine.training.device import resolve_device
    from engine.training.loop import Trainer

    config = TrainConfig(model=model_name, epochs=1, batch_size=batch_size, image_size=image_size, device=device,
                         precision=precision, seed=0)
    torch_device = resolve_device(device)
    rng = np.random.default_rng(0)
    rows = max(batch_size, 2)
    images = rng.integers(0, 256, size=(rows, image_size, image_size, 3), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=rows).astype(np.int64)
    data = ImageBatches(images, labels, torch_device, channels_last=True)
    ids = np.arange(rows)
    trainer = Trainer(config, data, ids, num_classes=num_classes, events=EventSink())
    state = trainer.state
    state.model.train()

    def step() -> int:
        batch = next(data.batches(ids, batch_size, augment="flip-crop", generator=state.generator, drop_last=True))
        output = trainer.method.optimise(state, batch)
        float(output.loss.detach())  # wait for the device: the step is done when its loss is read
        return len(batch.y)

    step()  # warm-up, not counted
    images_done, steps = 0, 0
    started = time.perf_counter()
    while steps < 2 or time.perf_counter() - started < seconds:
        images_done += step()
        steps += 1
    elapsed = time.perf_counter() - started
    return images_done / elapsed if elapsed > 0 else math.nan


def median_epoch_rate(events_path: Path) -> tuple[float, int] | None:
    """(median ``images_per_s``, epochs) of the training epochs a run's events.jsonl reports; None: none."""
    rates: list[float] = []
    try:
        with open(events_path, encoding="utf-8") as lines:
            for line in lines:
                if '"images_per_s"' not in line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                values = event.get("values") if isinstance(event, dict) and event.get("type") == "metric" else None
                rate = values.get("images_per_s") if isinstance(values, dict) else None
                if isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0:
                    rates.append(float(rate))
    except OSError:
        return None
    return (statistics.median(rates), len(rates)) if rates else None


def trains_plainly(kind: str, spec: dict[str, Any]) -> bool:
    """Does a run of ``kind`` take the loop's plain steps (cross-entropy), so that its rate stands for an audit's?"""
    return kind in PLAIN_TRAINING_KINDS and (kind != "retrain" or str(spec.get("method", "ce")) == "ce")


def record_training_rate(run: RunInfo, summary: dict[str, Any]) -> dict[str, Any]:
    """``summary`` of a finished ``run`` with ``training_rate``: the median rate of its epochs and what it
    depends on. Unchanged for a run that trains no plain steps, reported no epoch, or has one already."""
    train = run.spec.get("train")
    if TRAINING_RATE in summary or not isinstance(train, dict) or not trains_plainly(run.kind, run.spec):
        return summary
    measured = median_epoch_rate(run.folder / "events.jsonl")
    if measured is None:
        return summary
    rate, epochs = measured
    from engine.training.device import resolve_device

    return {**summary, TRAINING_RATE: {
        "images_per_s": round(rate, 1), "epochs": epochs,
        "model": train.get("model"), "image_size": train.get("image_size"), "batch_size": train.get("batch_size"),
        "precision": run.spec.get("resolved_precision"), "device": resolve_device(str(train.get("device", "auto"))).type,
        "host": socket.gethostname(), "ranks": int(os.environ.get("WORLD_SIZE", "1")),
    }}


def rate_key(model: str, image_size: int, batch_size: int, precision: str, device: str) -> dict[str, Any]:
    """What a recorded rate must match to stand for a run here (:data:`RATE_KEYS`)."""
    return {"model": model, "image_size": int(image_size), "batch_size": int(batch_size), "precision": precision,
            "device": device, "host": socket.gethostname()}


def latest_matching_rate(project: Project, key: dict[str, Any]) -> tuple[float, str] | None:
    """(images/s, run id) of the project's latest finished run whose recorded rate matches ``key`` (one process)."""
    for run in reversed(project.runs()):
        record = run.summary.get(TRAINING_RATE) if run.status == "ok" and isinstance(run.summary, dict) else None
        if not isinstance(record, dict) or int(record.get("ranks", 1)) != 1:
            continue
        if all(record.get(name) == key[name] for name in RATE_KEYS):
            rate = record.get("images_per_s")
            if isinstance(rate, (int, float)) and rate > 0:
                return float(rate), run.id
    return None
