"""Embedding speed: images/s of each backbone at a few input sizes, on this CPU.

    python bench/embed.py [--sizes 64,96,128,160,224] [--backbone efficientnet_lite0] [--batch-size N]
        [--seconds 8] [--rounds 3] [--threads N]

Each size runs ``--rounds`` times for ``--seconds`` each, interleaved with the other sizes, and the best
round counts (a busy machine slows a round, not the comparison). The model is the one ``embed`` runs
(EfficientNet-Lite0 with BatchNorm folded, channels-last, float32, inference mode) on random images
already decoded: the forward pass alone. Also printed: the unfolded model at the same size, to show
what folding buys. The batch: the embed job's at each size (``default_batch_size``: a fixed number of
pixels, so one pass's activations stay in the CPU's caches) unless ``--batch-size`` is given;
``--batch-sizes 4,16,64`` compares batches at each size instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.embeddings import efficientnet_lite as lite  # noqa: E402
from engine.embeddings.job import default_batch_size  # noqa: E402


def rate(model: torch.nn.Module, size: int, batch_size: int, seconds: float) -> float:
    x = torch.randn(batch_size, 3, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(x)  # warm-up: allocator and kernels
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            model(x)
            done += batch_size
    return done / (time.perf_counter() - started)


class _Embed(torch.nn.Module):
    def __init__(self, model: lite.EfficientNetLite0) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.embed(x)


def compare_batches(model: torch.nn.Module, sizes: list[int], batches: list[int], args: argparse.Namespace) -> int:
    """images/s of ``model`` at each size and batch, the rounds interleaved; the best round counts."""
    best = {(size, batch): 0.0 for size in sizes for batch in batches}
    for _ in range(args.rounds):
        for size, batch in best:
            best[size, batch] = max(best[size, batch], rate(model, size, batch, args.seconds))
    if args.json:
        print(json.dumps({f"{size}px batch {batch}": round(value, 1) for (size, batch), value in best.items()}))
        return 0
    print(f"EfficientNet-Lite0 forward (folded), {torch.get_num_threads()} threads, best of {args.rounds}; "
          "* the embed job's batch")
    print(f"{'size':>6} " + " ".join(f"{f'batch {batch}':>10}" for batch in batches))
    for size in sizes:
        cells = [f"{best[size, batch]:>9.1f}{'*' if batch == default_batch_size(size) else ' '}" for batch in batches]
        print(f"{size:>6} " + " ".join(cells))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64,96,128,160,224")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the embed job's at each size")
    parser.add_argument("--batch-sizes", default=None, help="compare these batches at each size (folded model only)")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(size) for size in args.sizes.split(",")]
    plain = lite.load_efficientnet_lite0()
    folded = _Embed(lite.fold_batchnorm(plain)).eval().to(memory_format=torch.channels_last)
    unfolded = _Embed(plain).eval().to(memory_format=torch.channels_last)
    if args.batch_sizes:
        return compare_batches(folded, sizes, [int(b) for b in args.batch_sizes.split(",")], args)
    batch = {size: args.batch_size or default_batch_size(size) for size in sizes}
    best: dict[int, float] = {size: 0.0 for size in sizes}
    best_unfolded: dict[int, float] = {size: 0.0 for size in sizes}
    for _ in range(args.rounds):
        for size in sizes:
            best[size] = max(best[size], rate(folded, size, batch[size], args.seconds))
            best_unfolded[size] = max(best_unfolded[size], rate(unfolded, size, batch[size], args.seconds / 2))
    result = {"threads": torch.get_num_threads(), "batch_size": batch,
              "images_per_s": {size: round(best[size], 1) for size in sizes},
              "images_per_s_unfolded": {size: round(best_unfolded[size], 1) for size in sizes}}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"EfficientNet-Lite0 forward, {result['threads']} threads, best of {args.rounds}")
        print(f"{'size':>6} {'batch':>6} {'images/s':>10} {'unfolded':>10} {'50k images':>12}")
        for size in sizes:
            print(f"{size:>6} {batch[size]:>6} {best[size]:>10.1f} {best_unfolded[size]:>10.1f} "
                  f"{50000 / best[size] / 60:>10.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
