#!/usr/bin/env python3
"""Times one forward of the full-size Paella v1 denoiser in PyTorch, for comparison with `paella bench denoiser`.

The network is written here from the description in docs/DESIGN.md section 5 (the upstream DenoiseUNet of
dome272/Paella modules.py, commit 3671515, with the same state-dict keys). Before timing, the script proves it
is the same network: it loads the tiny fixture weights and reproduces the fixture logits (global and spatial
conditioning) within the fixture README's tolerance.

    /work/venv-torch/bin/python bench/pytorch/denoiser_bench.py [--threads 1 2] [--batch 1 2] [--size 32]

Prints one JSON object per line, like `paella bench denoiser --json`.
"""
import argparse
import json
import math
import os
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file


class ModulatedLayerNorm(nn.Module):
    """LayerNorm(eps 1e-6) scaled and shifted by the mapped conditioning w: gamma * w * ln(x) + beta * w."""

    def __init__(self, c):
        super().__init__()
        self.ln = nn.LayerNorm(c, eps=1e-6)
        self.gamma = nn.Parameter(torch.randn(1, 1, 1))
        self.beta = nn.Parameter(torch.randn(1, 1, 1))

    def forward(self, x, w):  # x, w: [B, H, W, C]
        return self.gamma * w * self.ln(x) + self.beta * w


class ResBlock(nn.Module):
    def __init__(self, c, c_cond, c_skip=0):
        super().__init__()
        self.depthwise = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3, groups=c))
        self.ln = ModulatedLayerNorm(c)
        self.channelwise = nn.Sequential(nn.Linear(c + c_skip, 4 * c), nn.GELU(), nn.Linear(4 * c, c))
        self.gamma = nn.Parameter(torch.full((c,), 1e-6))
        self.cond_mapper = nn.Linear(c_cond, c)

    def forward(self, x, s, skip=None):  # x: [B, C, H, W]; s: [B, C_cond, 1, 1] or [B, C_cond, H', W']
        h = self.depthwise(x)
        if s.shape[2] == 1 and s.shape[3] == 1:
            s = s.expand(-1, -1, h.shape[2], h.shape[3])
        elif s.shape[2:] != h.shape[2:]:
            s = F.interpolate(s, size=h.shape[2:], mode="bilinear")
        w = self.cond_mapper(s.permute(0, 2, 3, 1))
        h = self.ln(h.permute(0, 2, 3, 1), w)
        if skip is not None:
            h = torch.cat([h, skip.permute(0, 2, 3, 1)], dim=-1)
        h = self.gamma * self.channelwise(h)
        return x + h.permute(0, 3, 1, 2)


class DenoiseUNet(nn.Module):
    def __init__(self, num_labels, c_hidden=1280, c_clip=1024, c_r=64, down_levels=(4, 8, 16), up_levels=(16, 8, 4)):
        super().__init__()
        self.num_labels, self.c_r = num_labels, c_r
        levels = len(down_levels)
        c = [c_hidden // 2 ** (levels - 1 - i) for i in range(levels)]
        cond = c_clip + c_r
        self.embedding = nn.Embedding(num_labels, c[0])
        self.down_blocks = nn.ModuleList()
        for i, n in enumerate(down_levels):
            layers = [nn.Conv2d(c[i - 1], c[i], 4, stride=2, padding=1)] if i > 0 else []
            layers += [ResBlock(c[i], cond) for _ in range(n)]
            self.down_blocks.append(nn.ModuleList(layers))
        self.up_blocks = nn.ModuleList()
        for i, n in enumerate(up_levels):
            ci = c[levels - 1 - i]
            layers = [ResBlock(ci, cond, ci if (i > 0 and j == 0) else 0) for j in range(n)]
            if i < len(up_levels) - 1:
                layers.append(nn.ConvTranspose2d(ci, c[levels - 2 - i], 4, stride=2, padding=1))
            self.up_blocks.append(nn.ModuleList(layers))
        self.clf = nn.Conv2d(c[0], num_labels, 1)

    def r_embedding(self, r, max_positions=10000):
        r = (r * torch.pi / 2).cos() * max_positions
        half = self.c_r // 2
        freqs = torch.arange(half).float().mul(-math.log(max_positions) / (half - 1)).exp()
        emb = r[:, None] * freqs[None, :]
        emb = torch.cat([emb.sin(), emb.cos()], dim=1)
        return F.pad(emb, (0, 1)) if self.c_r % 2 == 1 else emb

    def forward(self, x, c, r):
        r_emb = self.r_embedding(r)
        h = self.embedding(x).permute(0, 3, 1, 2)
        if c.dim() == 2:
            s = torch.cat([c, r_emb], dim=1)[:, :, None, None]
        else:
            s = torch.cat([c, r_emb[:, :, None, None].expand(-1, -1, c.shape[2], c.shape[3])], dim=1)
        outputs = []
        for layers in self.down_blocks:
            for layer in layers:
                h = layer(h, s) if isinstance(layer, ResBlock) else layer(h)
            outputs.insert(0, h)
        h = outputs[0]
        for i, layers in enumerate(self.up_blocks):
            for j, layer in enumerate(layers):
                if isinstance(layer, ResBlock):
                    h = layer(h, s, outputs[i] if (i > 0 and j == 0) else None)
                else:
                    h = layer(h)
        return self.clf(h)


def check_against_fixtures(fixtures):
    """Loads the tiny fixture model and reproduces the fixture logits; raises if it does not."""
    with open(os.path.join(fixtures, "denoiser_v1_tiny.json")) as f:
        cfg = json.load(f)
    model = DenoiseUNet(**cfg).eval()
    model.load_state_dict(load_file(os.path.join(fixtures, "denoiser_v1_tiny.safetensors")), strict=True)
    io = load_file(os.path.join(fixtures, "denoiser_v1_tiny_io.safetensors"))
    worst = 0.0
    with torch.inference_mode():
        for name in sorted(k[:-2] for k in io if k.endswith(".x")):
            for cond, ref in (("c", "logits"), ("c_spatial", "logits_spatial")):
                out = model(io[name + ".x"], io[name + "." + cond], io[name + ".r"])
                expected = io[name + "." + ref]
                rel = float((out - expected).abs().max() / expected.abs().max())
                worst = max(worst, rel)
                if rel > 1e-3:
                    raise SystemExit(f"{name} {ref}: relative difference {rel:.2e} > 1e-3; not the same network")
    return worst


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--fixtures", default=os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "Fixtures"))
    args = parser.parse_args()

    worst = check_against_fixtures(args.fixtures)
    print(json.dumps({"check": "fixture logits reproduced", "max_relative_difference": worst}))

    torch.manual_seed(1)
    model = DenoiseUNet(8192).eval()
    params = sum(p.numel() for p in model.parameters())
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in args.batch:
            g = torch.Generator().manual_seed(2)
            x = torch.randint(0, 8192, (batch, args.size, args.size), generator=g)
            c = torch.rand(batch, 1024, generator=g)
            r = torch.rand(batch, generator=g)
            times = []
            with torch.inference_mode():
                for _ in range(args.warmup):
                    model(x, c, r)
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    model(x, c, r)
                    times.append((time.perf_counter() - start) * 1e3)
            print(json.dumps({"name": f"denoiser v1 {args.size}x{args.size} (pytorch {torch.__version__})",
                              "median_ms": round(statistics.median(times), 3), "min_ms": round(min(times), 1),
                              "threads": threads, "batch": batch,
                              "parameters": params}), flush=True)
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
