"""Data-parallel steps: the engine's GradientAverager against torch's DistributedDataParallel, on gloo ranks.

    python bench/ddp_vs_averager.py [--ranks 2] [--model cnn7] [--batch-size 128] [--image-size 32] [--steps 20]

Each rank is a process with one thread; both variants train the same model (channels-last, nesterov SGD, as
the trainer does) on random images, every rank on its half of each global batch. ``averager``: the
engine's :class:`engine.training.data_parallel.GradientAverager` (one flat all-reduce before each
optimiser step); ``ddp``: ``torch.nn.parallel.DistributedDataParallel`` (bucketed all-reduces that overlap
the backward pass). The variants alternate for ``--rounds`` rounds and the best rate of each counts (a
busy machine slows one round, not the comparison); the median is printed beside it. Rank 0 prints.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.models import build_model  # noqa: E402
from engine.training import data_parallel, distributed  # noqa: E402

VARIANTS = ("averager", "ddp")


def steps_per_second(variant: str, args: argparse.Namespace, rank: int) -> float:
    torch.manual_seed(0)
    model = build_model(args.model, 10, args.image_size).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    averager = None
    if variant == "ddp":
        trained: torch.nn.Module = torch.nn.parallel.DistributedDataParallel(model)
    else:
        trained = model
        averager = data_parallel.GradientAverager(optimizer)
        averager.weight = 1.0 / args.ranks
    part = args.batch_size // args.ranks
    generator = torch.Generator().manual_seed(rank)
    images = torch.randn(part, 3, args.image_size, args.image_size, generator=generator)
    images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (part,), generator=generator)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(trained(images), labels).backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    dist.barrier()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    dist.barrier()
    elapsed = time.perf_counter() - started
    if averager is not None:
        averager.handle.remove()
    return args.steps / elapsed


def worker(rank: int, args: argparse.Namespace, port: int) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=args.ranks)
    distributed._context = distributed.DistContext(args.ranks, rank, rank, "gloo")  # what torchrun's start sets
    try:
        rates: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        for round_index in range(args.rounds):
            for variant in VARIANTS if round_index % 2 == 0 else reversed(VARIANTS):
                rates[variant].append(steps_per_second(variant, args, rank))
                if rank == 0:
                    print(f"round {round_index + 1} {variant:8s} {rates[variant][-1]:6.2f} steps/s", flush=True)
        if rank == 0:
            best = {variant: max(found) for variant, found in rates.items()}
            median = {variant: statistics.median(found) for variant, found in rates.items()}
            print(f"\n{args.model}, global batch {args.batch_size}, {args.ranks} gloo ranks of 1 thread, "
                  f"{args.rounds} rounds of {args.steps} steps:")
            for variant in VARIANTS:
                print(f"  {variant:8s} best {best[variant]:6.2f} steps/s ({best[variant] * args.batch_size:6.1f} "
                      f"images/s), median {median[variant]:6.2f} steps/s")
            print(f"  ddp / averager: best {best['ddp'] / best['averager']:.3f}, "
                  f"median {median['ddp'] / median['averager']:.3f}")
    finally:
        distributed._context = None
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--model", default="cnn7")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(worker, args=(args, port), nprocs=args.ranks, join=True)


if __name__ == "__main__":
    main()
