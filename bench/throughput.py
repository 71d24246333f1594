"""Training throughput: the engine's loop against a bare PyTorch loop, and the cache build rate.

    python bench/throughput.py [FOLDER] [--samples 4096] [--epochs 3] [--batch-size 128] [--image-size 32]

Both loops train the same model on the same uint8 images with the same batch size,
optimiser, schedule and augmentation; the bare loop has no hooks, events, metrics,
checkpoints or cancel checks. Each is run ``--rounds`` times, alternating, and the best
epoch rate of each counts (a busy machine slows one round, not the comparison).
With FOLDER (an ImageFolder dataset), it is imported into a temporary project first,
the decoded-image cache build rate is printed, and the loops train on its images.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.events import EventSink  # noqa: E402
from engine.models import build_model, default_learning_rate  # noqa: E402
from engine.training.config import TrainConfig  # noqa: E402
from engine.training.data import ImageBatches, augment_batch  # noqa: E402
from engine.training.loop import Trainer, steps_per_epoch  # noqa: E402


def synthetic_images(n: int, size: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return images, labels


def cache_from_folder(folder: Path, size: int, workdir: Path) -> tuple[np.ndarray, np.ndarray, int]:
    from engine.data.cache import ensure_cache
    from engine.data.importing import import_folder

    project = import_folder(workdir / "project", folder, test_fraction=0.2, seed=0)
    n = project.num_samples
    started = time.perf_counter()
    images = ensure_cache(project, size)
    elapsed = time.perf_counter() - started
    print(f"cache build: {n} images decoded at {size}px in {elapsed:.2f} s = {n / elapsed:,.0f} images/s")
    labels = project.sample_table().label
    classes = project.num_classes
    project.close()
    return np.asarray(images), labels, classes


def engine_rate(images: np.ndarray, labels: np.ndarray, classes: int, config: TrainConfig) -> float:
    data = ImageBatches(images, labels, torch.device("cpu"), channels_last=True)
    trainer = Trainer(config, data, np.arange(len(labels)), num_classes=classes, events=EventSink(),
                      augment="flip-crop")
    state = trainer.fit()
    return max(epoch["images_per_s"] for epoch in state.history[1:] or state.history)


def bare_rate(images: np.ndarray, labels: np.ndarray, classes: int, config: TrainConfig) -> float:
    """The loop a person would write by hand, on data already in memory."""
    torch.manual_seed(config.seed)
    model = build_model(config.model, classes, config.image_size).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    lr = default_learning_rate(config.model, False)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = steps_per_epoch(len(labels), config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=config.epochs * steps + 1)
    images_in_memory = np.array(images)  # (N, S, S, 3) uint8, as a hand-written loop would hold them
    y_all = torch.from_numpy(labels)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    generator = torch.Generator().manual_seed(config.seed)
    rates = []
    model.train()
    for _ in range(config.epochs):
        started = time.perf_counter()
        seen = 0
        order = torch.randperm(len(y_all), generator=generator)
        for start in range(0, len(order) - 1, config.batch_size):
            index = order[start:start + config.batch_size]
            # NHWC rows viewed as NCHW: the channels-last layout the model runs fastest on.
            x = torch.from_numpy(images_in_memory[index.numpy()]).permute(0, 3, 1, 2)
            x = augment_batch(x, "flip-crop", generator)
            x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(x), y_all[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            seen += len(index)
        rates.append(seen / (time.perf_counter() - started))
    return max(rates[1:] or rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, help="an ImageFolder dataset (optional)")
    parser.add_argument("--samples", type=int, default=4096, help="synthetic images when no folder is given")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--model", default="cnn7")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as workdir:
        if args.folder:
            images, labels, classes = cache_from_folder(args.folder, args.image_size, Path(workdir))
        else:
            images, labels = synthetic_images(args.samples, args.image_size, args.classes)
            classes = args.classes
        config = TrainConfig(model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                             image_size=args.image_size)
        print(f"{len(labels)} images at {args.image_size}px, {args.model}, batch {args.batch_size}, "
              f"{args.epochs} epochs, {torch.get_num_threads()} threads, device cpu")
        engine_best, bare_best = 0.0, 0.0
        for round_number in range(args.rounds):
            engine = engine_rate(images, labels, classes, config)
            bare = bare_rate(images, labels, classes, config)
            print(f"round {round_number + 1}: engine {engine:,.0f} images/s   bare {bare:,.0f} images/s")
            engine_best, bare_best = max(engine_best, engine), max(bare_best, bare)
    print(f"engine loop: {engine_best:,.0f} images/s")
    print(f"bare loop:   {bare_best:,.0f} images/s")
    print(f"ratio engine/bare: {engine_best / bare_best:.3f} (target >= 0.9)")


if __name__ == "__main__":
    main()
