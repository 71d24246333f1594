"""Training rate of a model on this CPU: real SGD steps on random images, by input size and layout.

    python bench/train_rate.py [--model cnn7] [--sizes 16,24,32] [--batch-sizes 128,256] [--seconds 6] [--rounds 2]

Each configuration runs ``--rounds`` times for ``--seconds`` after two warm-up steps; the best round
counts (a busy machine slows a round, not the comparison). float32 unless ``--bf16`` (autocast), so
the figure is the one a CPU without AMX gets. Also printed: the 32 px rate without channels-last.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.models import build_model  # noqa: E402


def rate(model_name: str, size: int, batch_size: int, *, channels_last: bool, bf16: bool, seconds: float,
         rounds: int) -> float:
    torch.manual_seed(0)
    model = build_model(model_name, 10, size)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randn(batch_size, 3, size, size).contiguous(memory_format=layout)
    y = torch.randint(0, 10, (batch_size,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    step()
    step()
    best = 0.0
    for _ in range(rounds):
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            step()
            done += batch_size
        best = max(best, done / (time.perf_counter() - started))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cnn7")
    parser.add_argument("--sizes", default="16,24,32")
    parser.add_argument("--batch-sizes", default="128,256")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (fast only on CPUs with AMX)")
    args = parser.parse_args(argv)
    rows = []
    for size in (int(value) for value in args.sizes.split(",")):
        for batch_size in (int(value) for value in args.batch_sizes.split(",")):
            rows.append({"size": size, "batch_size": batch_size, "channels_last": True,
                         "images_per_s": round(rate(args.model, size, batch_size, channels_last=True, bf16=args.bf16,
                                                    seconds=args.seconds, rounds=args.rounds))})
            print(json.dumps(rows[-1]), flush=True)
    plain = rate(args.model, 32, 128, channels_last=False, bf16=args.bf16, seconds=args.seconds, rounds=args.rounds)
    print(json.dumps({"size": 32, "batch_size": 128, "channels_last": False, "images_per_s": round(plain)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
