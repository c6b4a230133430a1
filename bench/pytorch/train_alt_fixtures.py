#!/usr/bin/env python3
"""Writes another `train_v1_tiny` fixture set (same file names and key layout as Tests/Fixtures, another model
size, other batches, other schedule settings) by running the Paella v1 training recipe in PyTorch, to prove that
the training parity suite reads everything from the fixtures.

    /work/venv-torch/bin/python bench/pytorch/train_alt_fixtures.py OUTDIR [--seed 3] [--accum 1] [--clip 5]
    /work/venv-torch/bin/python bench/pytorch/train_alt_fixtures.py --check [--fixtures DIR]

The first form writes train_v1_tiny.{json,safetensors} into OUTDIR and copies every other file of Tests/Fixtures
unchanged, so `PAELLA_FIXTURES=OUTDIR swift test` runs the whole suite. `--accum N` records a run with gradient
accumulation over N batches (the JSON then has `accum_grad`; clipping after every batch and one optimizer and
scheduler step per window, as upstream paella.py does); `--clip 0.5` makes the clipping bite.

`--check` replays a fixture set's initial weights and batches through this script's recipe and requires it to
reproduce the recorded losses, gradient norms, learning rates, step-0 gradients and final weights within the
fixture README's tolerances: evidence that the recipe below is the one that produced the set.

The recipe is written here from upstream paella.py (dome272/Paella, commit 3671515): AdamW(lr, PyTorch defaults:
betas 0.9/0.999, eps 1e-8, weight decay 0.01); OneCycleLR(total_steps, max_lr, pct_start, div_factor=25,
final_div_factor=1/25, anneal_strategy='linear'), whose default cycle_momentum=True cycles AdamW's beta1 between
0.95 and 0.85; CrossEntropyLoss(label_smoothing=0.1) on logits [B, num_labels, H, W]; loss / accum_grad backward;
clip_grad_norm_(5) after every batch; optimizer and scheduler step every accum_grad batches. The noising is
DenoiseUNet.add_noise (bernoulli mask with probability cos(r pi/2), uniform random tokens), and a batch is
unconditional (zero conditioning) with probability 0.1; this script forces one unconditional batch (step 2) so
every set exercises it. The network is DenoiseUNet from denoiser_bench.py.
"""
import argparse
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from denoiser_bench import DenoiseUNet  # noqa: E402

BUNDLED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures")
GENERATED = {"train_v1_tiny.json", "train_v1_tiny.safetensors"}


def parse_call(text):
    """`name=value` pairs of 'F(a=1, b=(2,3), c=1/25 (note))' as strings."""
    inner = text[text.index("(") + 1:text.rindex(")")]
    pairs, depth, current = {}, 0, ""
    for ch in inner + ",":
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            if "=" in current:
                key, value = current.split("=", 1)
                pairs[key.strip()] = value.strip().split(" ")[0]
            current = ""
        else:
            current += ch
    return pairs


def number(text):
    parts = [float(p) for p in text.split("/")]
    value = parts[0]
    for p in parts[1:]:
        value /= p
    return value


def run(cfg, init, batches, settings):
    """Trains from `init` on `batches`; returns losses, grad norms, lrs, step-0 gradients, final weights."""
    model = DenoiseUNet(**cfg)
    model.load_state_dict(init, strict=True)
    opt = torch.optim.AdamW(model.parameters(), lr=settings["max_lr"])
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, total_steps=settings["total_steps"], max_lr=settings["max_lr"], pct_start=settings["pct_start"],
        div_factor=settings["div_factor"], final_div_factor=settings["final_div_factor"], anneal_strategy="linear")
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=settings["label_smoothing"])
    accum = settings["accum"]
    losses, norms, lrs, grad0 = [], [], [], None
    model.train()
    for step, (target, noised, r, c) in enumerate(batches):
        lrs.append(opt.param_groups[0]["lr"])
        pred = model(noised, c, r)
        loss = criterion(pred, target)
        (loss / accum).backward()
        if step == 0:
            grad0 = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
        norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), settings["clip"]).item())
        if (step + 1) % accum == 0:
            opt.step()
            sched.step()
            opt.zero_grad()
        losses.append(loss.item())
    final = {n: p.detach().clone() for n, p in model.named_parameters()}
    return losses, norms, lrs, grad0, final


def settings_of(meta):
    schedule, optimizer, loss = (parse_call(meta[k]) for k in ("schedule", "optimizer", "loss"))
    return {"max_lr": number(schedule["max_lr"]), "total_steps": int(number(schedule["total_steps"])),
            "pct_start": number(schedule["pct_start"]), "div_factor": number(schedule["div_factor"]),
            "final_div_factor": number(schedule["final_div_factor"]),
            "label_smoothing": number(loss["label_smoothing"]), "clip": float(meta["grad_clip_norm"]),
            "accum": int(meta.get("accum_grad", 1))}


def check(fixtures):
    meta = json.load(open(os.path.join(fixtures, "train_v1_tiny.json")))
    data = load_file(os.path.join(fixtures, "train_v1_tiny.safetensors"))
    init = {k[5:]: v for k, v in data.items() if k.startswith("init.")}
    batches = [(data[f"step{i}.target"], data[f"step{i}.noised"], data[f"step{i}.r"], data[f"step{i}.c"])
               for i in range(meta["steps"])]
    losses, norms, lrs, grad0, final = run(meta["model"], init, batches, settings_of(meta))
    largest = max(float(data["grad0." + n].abs().max()) for n in grad0)
    worst = {
        "loss": max(abs(a - b) / abs(b) for a, b in zip(losses, meta["losses"])),
        "grad_norm": max(abs(a - b) / abs(b) for a, b in zip(norms, meta["grad_norms"])),
        "lr": max(abs(a - b) for a, b in zip(lrs, meta["lrs"])),
        "grad0": max(float((g - data["grad0." + n]).abs().max()) for n, g in grad0.items()) / largest,
        "final": max(float((w - data["final." + n]).abs().max() / data["final." + n].abs().max()) for n, w in final.items()),
    }
    limits = {"loss": 1e-4, "grad_norm": 1e-3, "lr": 1e-9, "grad0": 1e-3, "final": 1e-3}
    print(json.dumps(worst))
    bad = [k for k in limits if worst[k] > limits[k]]
    if bad:
        raise SystemExit(f"not reproduced: {bad}")


def write(out, seed, accum, clip):
    torch.manual_seed(seed)
    cfg = {"num_labels": 50, "c_hidden": 48, "c_clip": 20, "c_r": 6, "down_levels": [2, 1], "up_levels": [1, 2]}
    steps, batch, latent = 12, 3, [6, 10]
    schedule = ("OneCycleLR(total_steps=30 (first 12 steps run), max_lr=2e-3, pct_start=0.2, div_factor=25, "
                "final_div_factor=1/25, anneal_strategy=linear)")
    meta = {"model": cfg, "steps": steps, "batch": batch, "latent": latent,
            "optimizer": "AdamW(lr=max_lr, betas=(0.9,0.999), eps=1e-8, weight_decay=0.01)",
            "schedule": schedule,
            "loss": "CrossEntropyLoss(label_smoothing=0.1) over logits [B, num_labels, H, W]",
            "grad_clip_norm": clip}
    if accum > 1:
        meta["accum_grad"] = accum
    model = DenoiseUNet(**cfg)
    init = {}
    for name, p in model.named_parameters():   # random values everywhere, so every scale and modulation matters
        scale = 1.0 if name.endswith(("ln.gamma", "ln.beta")) or name == "embedding.weight" else 0.08
        init[name] = (torch.randn(p.shape) * scale).contiguous()
    batches = []
    for step in range(steps):
        target = torch.randint(0, cfg["num_labels"], (batch, *latent))
        r = torch.rand(batch)
        keep = torch.cos(r * torch.pi / 2)[:, None, None]
        mask = torch.bernoulli(keep * torch.ones_like(target, dtype=torch.float)).round().long()
        noised = target * (1 - mask) + torch.randint_like(target, 0, cfg["num_labels"]) * mask
        unconditional = step == 2 or (step > 2 and float(torch.rand(())) < 0.1)
        c = torch.zeros(batch, cfg["c_clip"]) if unconditional else torch.randn(batch, cfg["c_clip"])
        batches.append((target, noised, r, c))
    losses, norms, lrs, grad0, final = run(cfg, init, batches, settings_of(meta))
    meta.update({"losses": losses, "grad_norms": norms, "lrs": lrs})
    tensors = {"init." + n: t for n, t in init.items()}
    for i, (target, noised, r, c) in enumerate(batches):
        tensors.update({f"step{i}.target": target, f"step{i}.noised": noised, f"step{i}.r": r, f"step{i}.c": c})
    tensors.update({"grad0." + n: g for n, g in grad0.items()})
    tensors.update({"final." + n: w for n, w in final.items()})
    tensors.update({k: torch.tensor(meta[k], dtype=torch.float64) for k in ("losses", "grad_norms", "lrs")})
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(BUNDLED):
        if name not in GENERATED and os.path.isfile(os.path.join(BUNDLED, name)):
            shutil.copy(os.path.join(BUNDLED, name), os.path.join(out, name))
    save_file(tensors, os.path.join(out, "train_v1_tiny.safetensors"))
    with open(os.path.join(out, "train_v1_tiny.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"wrote {out}: {steps} steps, losses {losses[0]:.4f} -> {losses[-1]:.4f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--accum", type=int, default=1)
    parser.add_argument("--clip", type=float, default=5.0, help="gradient-norm bound (upstream: 5)")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--fixtures", default=BUNDLED)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.check:
        check(args.fixtures)
    elif args.out:
        write(args.out, args.seed, args.accum, args.clip)
    else:
        parser.error("give OUTDIR or --check")


if __name__ == "__main__":
    main()
