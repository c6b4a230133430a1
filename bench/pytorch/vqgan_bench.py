#!/usr/bin/env python3
"""PyTorch side of `paella bench vqgan`: ruDALL-E's Gumbel-VQGAN (taming Encoder/Decoder) written out here,
proven against the fixtures (vqgan_tiny*), then timed with random weights of the full f8/8192 preset.

    /work/venv-torch/bin/python bench/pytorch/vqgan_bench.py [--threads 1 2] [--size 256x256] [--repeats 5]

Prints one JSON object per line (name, median_ms, threads, size, cpu_ms, peak_rss_mb), like `paella bench vqgan --json`.
Peak memory: the process's resident-set high-water mark (VmHWM), reset before each measurement through
/proc/self/clear_refs, so it covers one encode or decode (weights included).
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

FIXTURES = os.environ.get("PAELLA_FIXTURES") or os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "Fixtures")

# ruDALL-E vqgan.gumbelf8-sber.config.yml, model.params
RUDALLE_F8 = dict(ch=128, ch_mult=[1, 1, 2, 4], num_res_blocks=2, attn_resolutions=[32], z_channels=256,
                  resolution=256, in_channels=3, out_ch=3, n_embed=8192, embed_dim=256)


def norm(c):
    return nn.GroupNorm(32, c, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1, self.conv1 = norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class Attn(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = norm(c)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
        b, c, h, w = x.shape
        n = self.norm(x)
        q, k, v = (m(n).reshape(b, c, h * w).transpose(1, 2) for m in (self.q, self.k, self.v))
        a = torch.softmax(q @ k.transpose(1, 2) * c ** -0.5, dim=-1) @ v  # [b, hw, c]
        return x + self.proj_out(a.transpose(1, 2).reshape(b, c, h, w))


class Level(nn.Module):
    pass


class Encoder(nn.Module):
    def __init__(self, p):
        super().__init__()
        ch, mult = p["ch"], p["ch_mult"]
        self.conv_in = nn.Conv2d(p["in_channels"], ch, 3, padding=1)
        res, cin, self.down = p["resolution"], ch, nn.ModuleList()
        for i, m in enumerate(mult):
            lvl = Level()
            lvl.block, lvl.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(p["num_res_blocks"]):
                lvl.block.append(ResBlock(cin, ch * m))
                cin = ch * m
                if res in p["attn_resolutions"]:
                    lvl.attn.append(Attn(cin))
            if i != len(mult) - 1:
                lvl.downsample = Level()
                lvl.downsample.conv = nn.Conv2d(cin, cin, 3, stride=2)
                res //= 2
            self.down.append(lvl)
        self.mid = Level()
        self.mid.block_1, self.mid.attn_1, self.mid.block_2 = ResBlock(cin, cin), Attn(cin), ResBlock(cin, cin)
        self.norm_out, self.conv_out = norm(cin), nn.Conv2d(cin, p["z_channels"], 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for lvl in self.down:
            for i, blk in enumerate(lvl.block):
                h = blk(h)
                if len(lvl.attn):
                    h = lvl.attn[i](h)
            if hasattr(lvl, "downsample"):
                h = lvl.downsample.conv(F.pad(h, (0, 1, 0, 1)))
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, p):
        super().__init__()
        ch, mult = p["ch"], p["ch_mult"]
        cin, res = ch * mult[-1], p["resolution"] // 2 ** (len(mult) - 1)
        self.conv_in = nn.Conv2d(p["z_channels"], cin, 3, padding=1)
        self.mid = Level()
        self.mid.block_1, self.mid.attn_1, self.mid.block_2 = ResBlock(cin, cin), Attn(cin), ResBlock(cin, cin)
        ups = []
        for i in reversed(range(len(mult))):
            lvl = Level()
            lvl.block, lvl.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(p["num_res_blocks"] + 1):
                lvl.block.append(ResBlock(cin, ch * mult[i]))
                cin = ch * mult[i]
                if res in p["attn_resolutions"]:
                    lvl.attn.append(Attn(cin))
            if i != 0:
                lvl.upsample = Level()
                lvl.upsample.conv = nn.Conv2d(cin, cin, 3, padding=1)
                res *= 2
            ups.insert(0, lvl)
        self.up = nn.ModuleList(ups)
        self.norm_out, self.conv_out = norm(cin), nn.Conv2d(cin, p["out_ch"], 3, padding=1)

    def forward(self, z):
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for lvl in reversed(self.up):
            for i, blk in enumerate(lvl.block):
                h = blk(h)
                if len(lvl.attn):
                    h = lvl.attn[i](h)
            if hasattr(lvl, "upsample"):
                h = lvl.upsample.conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


class GumbelVQ(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.encoder, self.decoder = Encoder(p), Decoder(p)
        self.quant_conv = nn.Conv2d(p["z_channels"], p["embed_dim"], 1)
        self.post_quant_conv = nn.Conv2d(p["embed_dim"], p["z_channels"], 1)
        self.quantize = Level()
        self.quantize.proj = nn.Conv2d(p["z_channels"], p["n_embed"], 1)
        self.quantize.embed = nn.Embedding(p["n_embed"], p["embed_dim"])

    def logits(self, img):  # img [B, 3, H, W] in [0, 1]
        return self.quantize.proj(self.quant_conv(self.encoder(2 * img - 1)))

    def encode(self, img):
        return self.logits(img).argmax(dim=1)

    def decode(self, tokens):  # [B, h, w]
        z = self.quantize.embed(tokens).permute(0, 3, 1, 2)
        return (self.decoder(self.post_quant_conv(z)).clamp(-1, 1) + 1) * 0.5


def check_fixture():
    cfg = json.load(open(os.path.join(FIXTURES, "vqgan_tiny.json")))
    p = dict(cfg["ddconfig"], n_embed=cfg["n_embed"], embed_dim=cfg["embed_dim"])
    model = GumbelVQ(p).eval()
    model.load_state_dict(load_file(os.path.join(FIXTURES, "vqgan_tiny.safetensors")), strict=True)
    io = load_file(os.path.join(FIXTURES, "vqgan_tiny_io.safetensors"))
    with torch.no_grad():
        logits = model.logits(io["image"])
        decoded = model.decode(io["indices"])
    rel = lambda a, b: float((a - b).abs().max() / b.abs().max())
    assert rel(logits, io["proj_logits"]) <= 1e-4, "proj_logits differ"
    assert torch.equal(logits.argmax(dim=1), io["indices"]), "indices differ"
    assert rel(decoded, io["decoded"]) <= 1e-4, "decoded differs"
    print(json.dumps({"fixture": "vqgan_tiny", "proj_logits_rel": rel(logits, io["proj_logits"]),
                      "decoded_rel": rel(decoded, io["decoded"]), "indices": "exact"}))


def write_fixtures(directory):
    """Writes a fixture set of the vqgan_tiny* layout with other sizes (non-square image, 2 levels, 2 blocks per
    level, attention at both levels), to check that the Swift parity tests read every size from the files:
    PAELLA_FIXTURES=DIR swift test --filter VQGANParity. The reference is this file's network, which
    check_fixture() has just proven against the upstream fixtures."""
    from safetensors.torch import save_file
    os.makedirs(directory, exist_ok=True)
    p = dict(ch=64, ch_mult=[1, 2], num_res_blocks=2, attn_resolutions=[16, 8], z_channels=32, resolution=16,
             in_channels=3, out_ch=3, dropout=0.0, double_z=False)
    cfg = {"ddconfig": p, "n_embed": 70, "embed_dim": 32}
    torch.manual_seed(42)
    model = GumbelVQ(dict(p, n_embed=70, embed_dim=32)).eval()
    with torch.no_grad():
        for prm in model.parameters():
            prm.uniform_(-0.3, 0.3)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    json.dump(cfg, open(os.path.join(directory, "vqgan_tiny.json"), "w"), indent=1)
    save_file(sd, os.path.join(directory, "vqgan_tiny.safetensors"))
    ckpt = dict(sd, **{"loss.discriminator.main.0.weight": torch.zeros(4, 3, 3, 3), "loss.logvar": torch.zeros(())})
    torch.save({"epoch": 1, "global_step": 10, "state_dict": ckpt}, os.path.join(directory, "vqgan_tiny.ckpt"))
    image = torch.rand(3, 3, 24, 40)
    with torch.no_grad():
        logits = model.logits(image)
        indices = logits.argmax(dim=1)
        decoded = model.decode(indices)
    save_file({k: v.contiguous() for k, v in dict(image=image, proj_logits=logits, indices=indices, decoded=decoded).items()},
              os.path.join(directory, "vqgan_tiny_io.safetensors"))
    print(json.dumps({"wrote": directory, "indices_shape": list(indices.shape)}))


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    reset_peak()
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return statistics.median(wall), statistics.median(cpu), peak_rss_mb()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--size", nargs="+", default=["256x256"], help="WIDTHxHEIGHT")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--write-fixtures", metavar="DIR", help="write an alternative vqgan_tiny* fixture set and exit")
    args = ap.parse_args()
    check_fixture()
    if args.write_fixtures:
        write_fixtures(args.write_fixtures)
        return
    torch.manual_seed(0)
    model = GumbelVQ(RUDALLE_F8).eval()
    with torch.no_grad():
        for prm in model.parameters():
            prm.uniform_(-0.05, 0.05)
    for threads in args.threads:
        torch.set_num_threads(threads)
        for size in args.size:
            w, h = (int(v) for v in size.split("x"))
            img = torch.rand(1, 3, h, w)
            with torch.no_grad():
                tokens = model.encode(img)
                for name, fn in (("encode", lambda: model.encode(img)), ("decode", lambda: model.decode(tokens))):
                    ms, cpu, peak = timed(fn, args.warmup, args.repeats)
                    print(json.dumps({"name": f"vqgan {name}", "median_ms": round(ms, 2), "backend": "pytorch "
                                      + torch.__version__, "threads": threads, "size": size,
                                      "cpu_ms": round(cpu, 1), "peak_rss_mb": round(peak, 1)}), flush=True)


if __name__ == "__main__":
    main()
