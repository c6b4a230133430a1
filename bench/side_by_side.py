#!/usr/bin/env python3
"""Runs a Paella benchmark and its PyTorch twin one after the other on this machine and prints Swift / PyTorch
time ratios (below 1 means Paella is faster). Absolute times drift on shared machines; ratios of paired runs
are what to compare.

    swift build -c release
    python3 bench/side_by_side.py denoiser --threads 1 2
    python3 bench/side_by_side.py vqgan --threads 1 2 --repeats 3
    python3 bench/side_by_side.py clip --threads 1 2
    python3 bench/side_by_side.py train --threads 1 2
    python3 bench/side_by_side.py train-vqgan --threads 1 2
    python3 bench/side_by_side.py generate --threads 1 2 --repeats 1 --warmup 0
    python3 bench/side_by_side.py denoiser --threads 1 2 --precision bf16    # Paella's bfloat16 weights

The PyTorch scripts need torch (and numpy, safetensors): --python picks the interpreter (default: $PYTHON or
python3). Each PyTorch script first proves it builds the same network by reproducing the fixtures.
"""
import argparse
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def json_lines(command):
    out = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def key(row, model):
    name = re.sub(r" \(pytorch.*\)$", "", row.get("name", ""))
    extra = str(row.get("batch", row.get("size", "")))
    if model == "clip" and "text" in name:
        extra = str(row.get("positions", "77"))  # the PyTorch text tower always runs the full 77 positions
    return (name, int(row.get("threads", 0)), extra)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=["denoiser", "vqgan", "clip", "train", "train-vqgan", "generate"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, help="untimed runs before timing (default: each benchmark's own)")
    parser.add_argument("--python", default=os.environ.get("PYTHON", "python3"))
    parser.add_argument("--paella", default=os.path.join(ROOT, ".build", "release", "paella"))
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="Paella's weight precision (PyTorch always runs float32); not for the training rows")
    args = parser.parse_args()
    reps = ["--repeats", str(args.repeats)] + (["--warmup", str(args.warmup)] if args.warmup is not None else [])
    if args.precision != "fp32" and args.model in ("train", "train-vqgan"):
        parser.error("--precision is for inference benchmarks; training runs in float32")
    precision = ["--precision", args.precision]
    script = os.path.join(ROOT, "bench", "pytorch", f"{args.model.replace('-', '_')}_bench.py")

    swift, torch = [], []
    if args.model == "denoiser":
        for t in args.threads:
            swift += json_lines([args.paella, "bench", "denoiser", "--threads", str(t), "--json"] + reps + precision)
        torch += json_lines([args.python, script, "--threads", *map(str, args.threads), "--batch", "1", "2"] + reps)
    elif args.model in ("train", "train-vqgan"):
        for t in args.threads:
            swift += json_lines([args.paella, "bench", args.model, "--threads", str(t), "--json"] + reps)
        torch += json_lines([args.python, script, "--threads", *map(str, args.threads)] + reps)
    elif args.model in ("vqgan", "generate"):
        swift += json_lines([args.paella, "bench", args.model, "--json"] + sum((["--threads", str(t)] for t in args.threads), []) + reps
                            + precision)
        torch += json_lines([args.python, script, "--threads", *map(str, args.threads)] + reps)
    else:
        swift += json_lines([args.paella, "bench", "clip", "--parts", "text,vision", "--json"]
                            + sum((["--threads", str(t)] for t in args.threads), []) + reps + precision)
        for t in args.threads:
            torch += json_lines([args.python, script, "--threads", str(t)] + reps)

    reference = {key(r, args.model): r for r in torch if "median_ms" in r}
    print(f"{'benchmark':34} {'threads':>7} {'case':>12} {'Swift ms':>10} {'PyTorch ms':>11} {'ratio':>6}")
    for row in swift:
        other = reference.get(key(row, args.model))
        if other is None or "median_ms" not in row:
            continue
        name, threads, extra = key(row, args.model)
        ratio = row["median_ms"] / other["median_ms"]
        print(f"{name:34} {threads:>7} {extra:>12} {row['median_ms']:>10.1f} {other['median_ms']:>11.1f} {ratio:>6.2f}")


if __name__ == "__main__":
    sys.exit(main())
