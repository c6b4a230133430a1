#!/usr/bin/env python3
"""Times one training step of a medium Paella denoiser in PyTorch, for comparison with `paella bench train`.

The step is upstream paella.py's (dome272/Paella, commit 3671515): forward, CrossEntropyLoss(label_smoothing=0.1),
backward, clip_grad_norm_(5), AdamW step, OneCycleLR step, zero_grad. The network is DenoiseUNet from
denoiser_bench.py (which first proves it reproduces the fixture logits) with v1's levels, 8192 labels, a 1024-wide
conditioning and --c-hidden channels at the deepest level.

    /work/venv-torch/bin/python bench/pytorch/train_bench.py [--threads 1 2] [--c-hidden 320] [--size 16] [--batch 8]

Prints one JSON object per line, like `paella bench train --json`.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from denoiser_bench import DenoiseUNet, check_against_fixtures  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--c-hidden", type=int, default=320)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--fixtures", default=os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "Fixtures"))
    args = parser.parse_args()
    print(json.dumps({"check": "fixture logits reproduced", "max_relative_difference": check_against_fixtures(args.fixtures)}))

    torch.manual_seed(1)
    model = DenoiseUNet(8192, c_hidden=args.c_hidden).train()
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, total_steps=1000, max_lr=3e-4, pct_start=0.1,
                                                    div_factor=25, final_div_factor=1 / 25, anneal_strategy="linear")
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    g = torch.Generator().manual_seed(2)
    target = torch.randint(0, 8192, (args.batch, args.size, args.size), generator=g)
    noised = torch.randint(0, 8192, (args.batch, args.size, args.size), generator=g)
    c = torch.rand(args.batch, 1024, generator=g)
    r = torch.rand(args.batch, generator=g)
    name = f"denoiser c{args.c_hidden} {args.size}x{args.size}"

    def step():
        loss = criterion(model(noised, c, r), target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()

    def forward():
        with torch.no_grad():
            model(noised, c, r)

    print_step_times(args, name, step, forward, params)


def print_step_times(args, name, step, forward, parameters):
    """Times `step` and `forward` at each of args.threads (args.warmup untimed runs, the median of args.repeats)
    and prints a JSON line for each, named like `paella bench train`'s rows."""
    for threads in args.threads:
        torch.set_num_threads(threads)
        for label, body in (("train step", step), ("train forward", forward)):
            for _ in range(args.warmup):
                body()
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                body()
                times.append((time.perf_counter() - start) * 1e3)
            print(json.dumps({"name": f"{label} {name} (pytorch {torch.__version__})",
                              "median_ms": round(statistics.median(times), 3), "threads": threads,
                              "batch": args.batch, "parameters": parameters}), flush=True)


if __name__ == "__main__":
    main()
