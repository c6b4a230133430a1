#!/usr/bin/env python3
"""Times one VQGAN training step in PyTorch, for comparison with `paella bench train-vqgan`.

The tokenizer of the bundled model's recipe (scripts/train-paella-small.sh, stage 2): taming's Encoder/Decoder at
f4 (ch 32, ch_mult 1,1,2, one residual block a level, no attention even in the middle, a LayerNorm over each pixel's
channels in place of GroupNorm), 512 codes of 32 dimensions, a straight-through
nearest-neighbour quantizer with taming's VectorQuantizer loss, squared error on the [-1, 1] scale with object
pixels weighted 5x, clip_grad_norm_(1), AdamW (0.9, 0.99, no weight decay) and a cosine OneCycleLR. The network
and loss are vqgan_train_step.py's, whose gradients the Swift trainer's parity test checks. The images are random
(the work does not depend on them); a pixel counts as object where it differs from the top-left pixel.

    /work/venv-torch/bin/python bench/pytorch/train_vqgan_bench.py [--threads 1 2] [--batch 32]

Prints one JSON object per line, like `paella bench train-vqgan --json`.
"""
import argparse
import os
import sys

import torch

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_bench import print_step_times  # noqa: E402
from vqgan_train_step import forward, parameter_shapes  # noqa: E402

CONFIG = dict(ch=32, ch_mult=[1, 1, 2], num_res_blocks=1, attn_resolutions=[], z_channels=32, embed_dim=32,
              n_embed=512, resolution=64, in_channels=3, out_ch=3, mid_attention=False, normalization="pixel")
RECIPE = dict(l1_weight=0.0, l2_weight=1.0, commitment=0.25, object_weight=4.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()

    torch.manual_seed(1)
    c = CONFIG
    shapes = parameter_shapes(c)
    params = {}
    for name, shape in shapes.items():
        if name.startswith("quantize.proj"):
            continue  # the Gumbel quantizer's projection: not part of the nearest-neighbour model
        if name.endswith(".weight") and len(shape) == 1:
            params[name] = torch.ones(shape)
        elif name.endswith(".bias") and name[: -len(".bias")] + ".weight" in shapes and len(shapes[name[: -len(".bias")] + ".weight"]) == 1:
            params[name] = torch.zeros(shape)
        elif name == "quantize.embed.weight":
            params[name] = (torch.rand(shape) * 2 - 1) / c["n_embed"]
        else:
            weight = shapes[name[: -len(".bias")] + ".weight"] if name.endswith(".bias") else shape
            fan_in = 1
            for s in weight[1:]:
                fan_in *= s
            params[name] = (torch.rand(shape) * 2 - 1) / fan_in ** 0.5
    params = {k: v.requires_grad_(True) for k, v in params.items()}
    count = sum(v.numel() for v in params.values())
    optimizer = torch.optim.AdamW(params.values(), lr=2e-3, betas=(0.9, 0.99), weight_decay=0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=1500, pct_start=0.05,
                                                    div_factor=10, final_div_factor=100, anneal_strategy="cos",
                                                    cycle_momentum=False)
    g = torch.Generator().manual_seed(2)
    images = torch.rand(args.batch, 3, c["resolution"], c["resolution"], generator=g)
    name = f"vqgan ch{c['ch']} {c['resolution']}x{c['resolution']}"

    def loss():
        background = images[:, :, :1, :1]
        objects = (images - background).abs().amax(1, keepdim=True) > 8 / 255
        weights = 1 + RECIPE["object_weight"] * objects.float()
        return forward(params, images, None, "nearest", c, RECIPE, weights)[0]

    def step():
        loss().backward()
        torch.nn.utils.clip_grad_norm_(params.values(), 1)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()

    def forward_only():
        with torch.no_grad():
            loss()

    print_step_times(args, name, step, forward_only, count)

if __name__ == "__main__":
    sys.exit(main())
