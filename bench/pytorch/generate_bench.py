#!/usr/bin/env python3
"""PyTorch side of `paella bench generate`: one text-to-image generation at full v1 sizes with random weights, timed
part by part (CLIP text: tokenizer and text tower; the sampler's guided steps; the VQGAN decode) and whole.

    /work/venv-torch/bin/python bench/pytorch/generate_bench.py [--threads 1 2] [--size 256x256] [--steps 8] [-n 1]

The networks are the other twins' (denoiser_bench.py, vqgan_bench.py, clip_bench.py), proven here on the fixtures
by those scripts' own checks; the sampling loop below is written from upstream Paella's `sample` (dome272/Paella
utils.py, commit 3671515): classifier-free guidance as two forwards (conditional, then unconditional with a zero
conditioning) mixed by torch.lerp, the linear temperature schedule, typical filtering, Gumbel-max sampling and
renoising towards the next noise level with `add_noise` (modules.py). Its random draws go through a small object so
that the loop can also be replayed step by step on the recorded draws of Tests/Fixtures/sampler_v1_tiny*, which it
is before timing. Settings: PipelineDefaults.v1's generate settings (Sources/Paella/Pipeline/PipelineDefaults.swift),
as `paella bench generate` uses them. The tokenizer is a plain BPE over OpenCLIP's vocabulary (vocab/), checked on
Tests/Fixtures/tokenizer_cases.json.

Prints one JSON object per line with the names and keys of `paella bench generate --json`.
"""
import argparse
import gzip
import html
import json
import math
import os
import re
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

sys.dont_write_bytecode = True   # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from clip_bench import CLIP, VIT_G_14, median_ms, prove_on_fixture as check_clip  # noqa: E402
from denoiser_bench import DenoiseUNet, check_against_fixtures as check_denoiser  # noqa: E402
from denoiser_alt_fixtures import Draws                                       # noqa: E402
from vqgan_bench import GumbelVQ, RUDALLE_F8, check_fixture as check_vqgan, peak_rss_mb, reset_peak  # noqa: E402

ROOT = os.path.join(HERE, "..", "..")
FIXTURES = os.environ.get("PAELLA_FIXTURES") or os.path.join(ROOT, "Tests", "Fixtures")
VOCABULARY = os.path.join(ROOT, "vocab", "bpe_simple_vocab_16e6.txt.gz")

# PipelineDefaults.v1.generate: SamplingSettings(guidanceScale: 5) with SamplingSettings' defaults (typical mass 0.2,
# at least 1 token, temperature 1 to 1, renoising from the starting grid after every step but the last).
GENERATE_V1 = dict(classifier_free_scale=5.0, temp_range=(1.0, 1.0), typical_filtering=True, typical_mass=0.2,
                   typical_min_tokens=1, renoise_mode="start")
ROW_NAMES = ["generate: CLIP text", "generate: sampler", "generate: VQGAN decode", "generate: whole"]


# ---------------------------------------------------------------- CLIP tokenizer (OpenCLIP's BPE)

class Tokenizer:
    """OpenCLIP's byte-level BPE over its vocabulary file, with its cleaning (HTML unescaped twice, whitespace
    collapsed, lower case); ftfy's repairs are left out, which changes nothing for ordinary ASCII prompts."""

    SPLIT = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+", re.IGNORECASE)

    def __init__(self, path=VOCABULARY):
        printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
        self.byte_char, extra = {}, 0
        for b in range(256):   # bytes that print stand for themselves, the others for characters from 256 on
            self.byte_char[b] = chr(b) if b in printable else chr(256 + extra)
            extra += b not in printable
        with gzip.open(path, "rt", encoding="utf-8") as f:
            merges = [tuple(line.split()) for line in f.read().split("\n")[1:49152 - 256 - 2 + 1]]
        # The vocabulary lists the printable bytes first, then the others (as their stand-in characters).
        symbols = [self.byte_char[b] for b in printable + [b for b in range(256) if b not in printable]]
        symbols += [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + ["<start_of_text>", "<end_of_text>"]
        self.ids = {s: i for i, s in enumerate(symbols)}
        self.rank = {m: i for i, m in enumerate(merges)}
        self.sot, self.eot = self.ids["<start_of_text>"], self.ids["<end_of_text>"]

    def bpe(self, word):
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            rank, pair = min((self.rank.get(p, math.inf), p) for p in zip(parts, parts[1:]))
            if rank == math.inf:
                break
            merged, k = [], 0
            while k < len(parts):   # merge every occurrence of the best pair, left to right
                if k + 1 < len(parts) and (parts[k], parts[k + 1]) == pair:
                    merged.append(parts[k] + parts[k + 1])
                    k += 2
                else:
                    merged.append(parts[k])
                    k += 1
            parts = merged
        return [self.ids[p] for p in parts]

    def encode(self, text):
        text = " ".join(html.unescape(html.unescape(text)).split()).lower()
        ids = []
        for word in self.SPLIT.findall(text):
            ids += self.bpe("".join(self.byte_char[b] for b in word.encode("utf-8")))
        return ids

    def context(self, texts, length=77):
        """[N, length] int64: start, up to length - 2 ids, end, zero padding."""
        out = torch.zeros(len(texts), length, dtype=torch.long)
        for n, text in enumerate(texts):
            ids = [self.sot] + self.encode(text)[:length - 2] + [self.eot]
            out[n, :len(ids)] = torch.tensor(ids)
        return out


def check_tokenizer(tokenizer):
    """Reproduces the ASCII cases of tokenizer_cases.json (the others need ftfy's repairs)."""
    with open(os.path.join(FIXTURES, "tokenizer_cases.json")) as f:
        cases = [c for c in json.load(f)["cases"] if c["text"].isascii()]
    for case in cases:
        got = tokenizer.context([case["text"]])[0].tolist()
        assert got == case["context_77"], f"tokenizer differs on {case['text']!r}"
    return len(cases)


# ---------------------------------------------------------------- upstream `sample`, step by step

class TorchDraws:
    """The loop's random draws straight from torch's default generator (upstream draws them the same way)."""

    @staticmethod
    def uniform(shape):
        return torch.rand(shape)

    @staticmethod
    def randint(high, shape):
        return torch.randint(0, high, shape)


def typical_filter(flat, mass, min_tokens):
    """Upstream's typical filtering of [N, V] logits: keep the tokens whose surprise is closest to the entropy until
    their probability mass reaches `mass` (never fewer than `min_tokens`); the others become -inf."""
    logp = F.log_softmax(flat, dim=-1)
    entropy = -(logp * logp.exp()).nansum(-1, keepdim=True)
    distance, order = torch.sort((-logp - entropy).abs(), descending=False)
    cumulative = flat.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
    last = (cumulative < mass).sum(dim=-1)
    drop = distance > distance.gather(1, last.view(-1, 1))
    if min_tokens > 1:
        drop[..., :min_tokens] = False
    return flat.masked_fill(drop.scatter(1, order, drop), -math.inf)


def add_noise(x, r, replacements, draws, num_labels):
    """Upstream `add_noise`: each token becomes, with probability gamma(r) = cos(r pi / 2), the one at its position
    in `replacements` (random tokens when None). The Bernoulli draw is a uniform u < gamma, as the fixtures record."""
    noised = (draws.uniform(x.shape) < torch.cos(r * math.pi / 2)[:, None, None]).long()
    if replacements is None:
        replacements = draws.randint(num_labels, x.shape)
    return x * (1 - noised) + replacements * noised


def guided_logits(model, x, c, r, scale):
    logits = model(x, c, r)
    if scale >= 0:   # classifier-free guidance, two forwards as upstream runs them
        logits = torch.lerp(model(x, torch.zeros_like(c), r), logits, scale)
    return logits


def sample_step(model, x, init_x, c, i, steps, s, draws, renoise_steps):
    """Step i of upstream's loop on tokens x [B, H, W]: guided logits, typical filter, Gumbel-max at the step's
    temperature, then renoising towards the next noise level while i < renoise_steps."""
    noise_levels = torch.linspace(0, 1, steps + 1)[:-1]
    temperature = torch.linspace(s["temp_range"][0], s["temp_range"][1], steps)[i]
    r = noise_levels[i].expand(c.shape[0])
    logits = guided_logits(model, x, c, r, s["classifier_free_scale"])
    flat = logits.permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
    if s["typical_filtering"]:
        flat = typical_filter(flat, s["typical_mass"], s["typical_min_tokens"])
    gumbel = -torch.log(-torch.log(draws.uniform(flat.shape) + 1e-20) + 1e-20)
    out = (flat / max(float(temperature), 1e-10) + gumbel).argmax(dim=-1).view(x.shape)
    if i < renoise_steps:
        source = {"start": init_x, "prev": x, "rand": None}[s["renoise_mode"]]
        out = add_noise(out, noise_levels[i + 1].expand(c.shape[0]), source, draws, model.num_labels)
    return out


def sample(model, c, steps, size, s, draws):
    """Upstream `sample` from a random grid (text to image): tokens [B, H, W]."""
    x = draws.randint(model.num_labels, (c.shape[0], *size))
    init_x = x.clone()
    for i in range(steps):
        x = sample_step(model, x, init_x, c, i, steps, s, draws, renoise_steps=steps - 1)
    return x


def check_sampler():
    """Replays every step of the text-to-image cases of sampler_v1_tiny on the tiny denoiser with the recorded
    draws: the tokens must equal the recorded ones wherever the fixture does not flag the decision as fragile."""
    with open(os.path.join(FIXTURES, "denoiser_v1_tiny.json")) as f:
        model = DenoiseUNet(**json.load(f)).eval()
    model.load_state_dict(load_file(os.path.join(FIXTURES, "denoiser_v1_tiny.safetensors")), strict=True)
    st = load_file(os.path.join(FIXTURES, "sampler_v1_tiny.safetensors"))
    with open(os.path.join(FIXTURES, "sampler_v1_tiny.json")) as f:
        cases = {k: v for k, v in json.load(f).items() if not v["x_given"] and v.get("starting_t", 0) == 0}
    checked = 0
    with torch.inference_mode():
        for name, args in cases.items():
            s = dict(classifier_free_scale=args.get("classifier_free_scale", -1),
                     temp_range=args.get("temp_range", [1.0, 1.0]), typical_filtering=args.get("typical_filtering", True),
                     typical_mass=args.get("typical_mass", 0.2), typical_min_tokens=args.get("typical_min_tokens", 1),
                     renoise_mode=args.get("renoise_mode", "start"))
            for k in range(args["T"]):
                p = f"{name}.step{k}"
                replay = [("uniform", st[f"{p}.gumbel_u"])]
                replay += [("uniform", st[f"{p}.renoise_u"])] if f"{p}.renoise_u" in st else []
                replay += [("randint", st[f"{p}.renoise_x"])] if f"{p}.renoise_x" in st else []
                draws = Draws(replay=replay)
                out = sample_step(model, st[f"{p}.x_in"], st[f"{name}.x0"], st[f"{name}.c"], k, args["T"], s, draws,
                                  args["renoise_steps"])
                solid = st[f"{p}.fragile"] == 0
                assert draws.exhausted() and torch.equal(out[solid], st[f"{p}.x_out"][solid]), f"sampler differs at {p}"
                checked += 1
    return checked


# ---------------------------------------------------------------- the benchmark

def random_(model, scale):
    """Uniform random weights in [-scale, scale], as `paella bench generate` makes them."""
    with torch.no_grad():
        for prm in model.parameters():
            prm.uniform_(-scale, scale)
    return model.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    ap.add_argument("--size", default="256x256", help="WIDTHxHEIGHT or N, multiples of 32")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("-n", "--count", type=int, default=1)
    ap.add_argument("--prompt", default="a photo of a cat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    width, height = (int(v) for v in (args.size.split("x") * 2)[:2])
    if width % 32 or height % 32 or min(width, height) < 64 or args.steps < 1 or args.count < 1:
        ap.error("need --size in multiples of 32 pixels (at least 64), --steps and --count at least 1")

    check_denoiser(FIXTURES)
    check_vqgan()
    check_clip()
    tokenizer = Tokenizer()
    print(json.dumps({"check": "networks, tokenizer and sampler reproduce the fixtures", "tokenizer_cases":
                      check_tokenizer(tokenizer), "sampler_steps": check_sampler()}), flush=True)

    torch.manual_seed(0)
    denoiser = random_(DenoiseUNet(8192), 0.02)
    vqgan = random_(GumbelVQ(RUDALLE_F8), 0.05)
    clip = random_(CLIP(VIT_G_14, towers=("text",)), 0.02)
    s, steps, count, grid = GENERATE_V1, args.steps, args.count, (height // 8, width // 8)

    def text():
        return clip.encode_text(tokenizer.context([args.prompt]))

    def tokens_from(embedding):
        return sample(denoiser, embedding.expand(count, -1), steps, grid, s, TorchDraws)

    def decode(tokens):
        return [vqgan.decode(tokens[i:i + 1]) for i in range(count)]   # one at a time, as Paella's pipeline does

    def generate():
        images = decode(tokens_from(text()))
        return [(img * 255).round().to(torch.uint8) for img in images]

    for threads in args.threads:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            embedding = text()
            tokens = tokens_from(embedding)
            parts = [median_ms(text, args.repeats, args.warmup),
                     median_ms(lambda: tokens_from(embedding), args.repeats, args.warmup),
                     median_ms(lambda: decode(tokens), args.repeats, args.warmup)]
            reset_peak()
            parts.append(median_ms(generate, args.repeats, args.warmup))
            peak = peak_rss_mb()
        for k, (name, ms) in enumerate(zip(ROW_NAMES, parts)):
            print(json.dumps({"name": name, "median_ms": round(ms, 3), "backend": "pytorch " + torch.__version__,
                              "threads": threads, "size": f"{width}x{height}", "steps": str(steps), "count": str(count),
                              "per_step_ms": f"{ms / steps:.1f}" if k == 1 else "-",
                              "peak_rss_mb": f"{peak:.1f}" if k == 3 else "-"}), flush=True)


if __name__ == "__main__":
    main()
