"""OpenCLIP's text and vision towers in plain PyTorch (written for this project, same state-dict keys and maths as
open_clip 3.3.0's CLIP with VisionTransformer), proven against the tiny fixture, then timed on ViT-g-14 with random
weights: one prompt through the text tower, one 224x224 image through the vision tower. Prints one JSON line per
measurement, like `paella bench clip --json`.

    /work/venv-torch/bin/python bench/pytorch/clip_bench.py --threads 1 --threads 2
"""
import argparse
import json
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.environ.get("PAELLA_FIXTURES", os.path.join(HERE, "..", "..", "Tests", "Fixtures"))

VIT_G_14 = {"embed_dim": 1024,
            "vision_cfg": {"image_size": 224, "layers": 40, "width": 1408, "head_width": 88, "mlp_ratio": 4.3637,
                           "patch_size": 14},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1024, "heads": 16, "layers": 24}}


class Block(nn.Module):
    """Pre-LayerNorm residual block: x + attn(ln_1(x)), x + mlp(ln_2(x))."""

    def __init__(self, width, heads, mlp_width):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=1e-5)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width, eps=1e-5)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, mlp_width))
        self.mlp.add_module("gelu", nn.GELU())
        self.mlp.add_module("c_proj", nn.Linear(mlp_width, width))

    def forward(self, x, mask=None):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, mlp_width):
        super().__init__()
        self.resblocks = nn.ModuleList([Block(width, heads, mlp_width) for _ in range(layers)])

    def forward(self, x, mask=None):
        for block in self.resblocks:
            x = block(x, mask)
        return x


class Visual(nn.Module):
    def __init__(self, cfg, embed_dim):
        super().__init__()
        width, patch, grid = cfg["width"], cfg["patch_size"], cfg["image_size"] // cfg["patch_size"]
        self.conv1 = nn.Conv2d(3, width, patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width, eps=1e-5)
        self.transformer = Transformer(width, cfg["layers"], width // cfg["head_width"],
                                       int(width * cfg.get("mlp_ratio", 4.0)))
        self.ln_post = nn.LayerNorm(width, eps=1e-5)
        self.proj = nn.Parameter(torch.zeros(width, embed_dim))

    def forward(self, images):                                   # [B, 3, S, S], normalized
        x = self.conv1(images).flatten(2).transpose(1, 2)        # [B, grid^2, W]
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


class CLIP(nn.Module):
    def __init__(self, cfg, towers=("text", "vision")):
        super().__init__()
        t, embed_dim = cfg["text_cfg"], cfg["embed_dim"]
        if "text" in towers:
            self.token_embedding = nn.Embedding(t["vocab_size"], t["width"])
            self.positional_embedding = nn.Parameter(torch.zeros(t["context_length"], t["width"]))
            self.transformer = Transformer(t["width"], t["layers"], t["heads"], int(t["width"] * t.get("mlp_ratio", 4.0)))
            self.ln_final = nn.LayerNorm(t["width"], eps=1e-5)
            self.text_projection = nn.Parameter(torch.zeros(t["width"], embed_dim))
            n = t["context_length"]
            self.register_buffer("attn_mask", torch.full((n, n), float("-inf")).triu(1), persistent=False)
        if "vision" in towers:
            self.visual = Visual(cfg["vision_cfg"], embed_dim)
        self.logit_scale = nn.Parameter(torch.zeros([]))

    def encode_text(self, tokens):                               # [B, 77]
        x = self.token_embedding(tokens) + self.positional_embedding
        x = self.ln_final(self.transformer(x, self.attn_mask))
        return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ self.text_projection

    def encode_image(self, images):
        return self.visual(images)


def prove_on_fixture():
    cfg = json.load(open(os.path.join(FIXTURES, "clip_tiny.json")))
    model = CLIP(cfg).eval()
    model.load_state_dict(load_file(os.path.join(FIXTURES, "clip_tiny.safetensors")), strict=True)
    io = load_file(os.path.join(FIXTURES, "clip_tiny_io.safetensors"))
    with torch.no_grad():
        for got, want in [(model.encode_text(io["tokens"]), io["text_embeddings"]),
                          (model.encode_image(io["images"]), io["image_embeddings"])]:
            err = (got - want).abs().max().item() / want.abs().max().item()
            assert err <= 1e-4, f"the PyTorch towers do not match the fixture (relative error {err})"


def median_ms(fn, repeats, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, action="append")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--towers", default="text,vision")
    args = p.parse_args()
    prove_on_fixture()
    torch.manual_seed(0)
    towers = args.towers.split(",")
    # A real prompt's tokens (CLIP BPE of "a photo of a cat", then end-of-text and zero padding).
    tokens = torch.zeros(1, 77, dtype=torch.long)
    tokens[0, :7] = torch.tensor([49406, 320, 1125, 539, 320, 2368, 49407])
    image = torch.randn(1, 3, 224, 224)
    for tower in towers:
        model = CLIP(VIT_G_14, towers=(tower,)).eval()
        with torch.no_grad():
            for param in model.parameters():
                param.uniform_(-0.02, 0.02)
        for threads in args.threads or [torch.get_num_threads()]:
            torch.set_num_threads(threads)
            with torch.inference_mode():
                if tower == "text":
                    ms = median_ms(lambda: model.encode_text(tokens), args.repeats, args.warmup)
                    name = "ViT-g-14 text, 1 prompt"
                else:
                    ms = median_ms(lambda: model.encode_image(image), args.repeats, args.warmup)
                    name = "ViT-g-14 vision, 1 image"
            print(json.dumps({"name": name, "median_ms": round(ms, 3), "backend": "pytorch " + torch.__version__,
                              "threads": threads}), flush=True)
        del model


if __name__ == "__main__":
    main()
