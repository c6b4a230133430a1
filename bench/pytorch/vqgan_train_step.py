"""One VQGAN training step in PyTorch, for the Swift trainer's parity test (VQGANTrainerParityTests).

Builds a tiny taming-transformers Encoder/Decoder with ruDALL-E's quant_conv / quantize.proj / post_quant_conv
(the maths of taming/modules/diffusionmodules/model.py and taming/modules/vqvae/quantize.py, written here with
torch.nn.functional), initialises it randomly, runs the loss of one batch with each quantizer and saves the
weights, the inputs, the losses and every parameter's gradient:

    /work/venv-torch/bin/python bench/pytorch/vqgan_train_step.py /tmp/train-fixtures
    PAELLA_TRAIN_FIXTURES=/tmp/train-fixtures swift test --filter VQGANTrainerParity

Gumbel noise is g = -log(-log(u + 1e-20) + 1e-20) from saved uniforms u (the Swift trainer's formula; torch's
gumbel_softmax draws exponentials itself), so both sides see the same noise.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

CONFIG = dict(ch=32, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8], z_channels=4, embed_dim=4,
              n_embed=8, resolution=8, in_channels=3, out_ch=3)
RECIPE = dict(l1_weight=1.0, l2_weight=0.5, commitment=0.25, kl_weight=5e-4, temperature=1.0)


def parameter_shapes(c):
    """Every parameter of GumbelVQ for config c, with taming's names and shapes."""
    shapes = {}

    def conv(name, cin, cout, k):
        shapes[name + ".weight"] = [cout, cin, k, k]
        shapes[name + ".bias"] = [cout]

    def norm(name, ch):
        shapes[name + ".weight"] = [ch]
        shapes[name + ".bias"] = [ch]

    def block(name, cin, cout):
        norm(name + ".norm1", cin); conv(name + ".conv1", cin, cout, 3)
        norm(name + ".norm2", cout); conv(name + ".conv2", cout, cout, 3)
        if cin != cout:
            conv(name + ".nin_shortcut", cin, cout, 1)

    def attn(name, ch):
        norm(name + ".norm", ch)
        for m in ["q", "k", "v", "proj_out"]:
            conv(name + "." + m, ch, ch, 1)

    ch, mult, nrb = c["ch"], c["ch_mult"], c["num_res_blocks"]
    levels = len(mult)
    conv("encoder.conv_in", c["in_channels"], ch, 3)
    res, block_in = c["resolution"], ch
    in_mult = [1] + mult
    for i in range(levels):
        block_in = ch * in_mult[i]
        for j in range(nrb):
            block(f"encoder.down.{i}.block.{j}", block_in, ch * mult[i]); block_in = ch * mult[i]
            if res in c["attn_resolutions"]:
                attn(f"encoder.down.{i}.attn.{j}", block_in)
        if i != levels - 1:
            conv(f"encoder.down.{i}.downsample.conv", block_in, block_in, 3); res //= 2
    mid_attention = c.get("mid_attention", True)
    block("encoder.mid.block_1", block_in, block_in)
    if mid_attention:
        attn("encoder.mid.attn_1", block_in)
    block("encoder.mid.block_2", block_in, block_in)
    norm("encoder.norm_out", block_in); conv("encoder.conv_out", block_in, c["z_channels"], 3)
    block_in = ch * mult[-1]
    res = c["resolution"] // 2 ** (levels - 1)
    conv("decoder.conv_in", c["z_channels"], block_in, 3)
    block("decoder.mid.block_1", block_in, block_in)
    if mid_attention:
        attn("decoder.mid.attn_1", block_in)
    block("decoder.mid.block_2", block_in, block_in)
    for i in reversed(range(levels)):
        for j in range(nrb + 1):
            block(f"decoder.up.{i}.block.{j}", block_in, ch * mult[i]); block_in = ch * mult[i]
            if res in c["attn_resolutions"]:
                attn(f"decoder.up.{i}.attn.{j}", block_in)
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", block_in, block_in, 3); res *= 2
    norm("decoder.norm_out", block_in); conv("decoder.conv_out", block_in, c["out_ch"], 3)
    conv("quant_conv", c["z_channels"], c["embed_dim"], 1)
    conv("post_quant_conv", c["embed_dim"], c["z_channels"], 1)
    conv("quantize.proj", c["z_channels"], c["n_embed"], 1)
    shapes["quantize.embed.weight"] = [c["n_embed"], c["embed_dim"]]
    return shapes


def forward(p, images, uniforms, quantizer, c, r, weights=None):
    """The training loss of one batch (images NCHW in [0, 1]); returns (loss, reconstruction, quantizer loss).
    weights: optional per-pixel weights [B, 1, H, W] of the reconstruction terms (the Swift trainer's object weighting)."""
    def gn(x, name, swish):
        # taming's Normalize, or (c["normalization"] == "pixel", Paella's local tokenizer) a LayerNorm over each
        # pixel's channels with the same weight and bias, written as timm's LayerNorm2d writes it.
        if c.get("normalization", "group") == "pixel":
            y = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], p[name + ".weight"], p[name + ".bias"], eps=1e-6).permute(0, 3, 1, 2)
        else:
            y = F.group_norm(x, 32, p[name + ".weight"], p[name + ".bias"], eps=1e-6)
        return y * torch.sigmoid(y) if swish else y

    def mid(x, side):
        x = block(x, side + ".mid.block_1")
        if side + ".mid.attn_1.q.weight" in p:
            x = attn(x, side + ".mid.attn_1")
        return block(x, side + ".mid.block_2")

    def conv(x, name, **kw):
        return F.conv2d(x, p[name + ".weight"], p[name + ".bias"], **kw)

    def block(x, name):
        h = conv(gn(x, name + ".norm1", True), name + ".conv1", padding=1)
        h = conv(gn(h, name + ".norm2", True), name + ".conv2", padding=1)
        if name + ".nin_shortcut.weight" in p:
            x = conv(x, name + ".nin_shortcut")
        return x + h

    def attn(x, name):
        h = gn(x, name + ".norm", False)
        q, k, v = conv(h, name + ".q"), conv(h, name + ".k"), conv(h, name + ".v")
        b, ch, hh, ww = q.shape
        w_ = torch.bmm(q.reshape(b, ch, hh * ww).permute(0, 2, 1), k.reshape(b, ch, hh * ww)) * ch ** -0.5
        w_ = torch.softmax(w_, dim=2)
        h = torch.bmm(v.reshape(b, ch, hh * ww), w_.permute(0, 2, 1)).reshape(b, ch, hh, ww)
        return x + conv(h, name + ".proj_out")

    levels, nrb = len(c["ch_mult"]), c["num_res_blocks"]
    h = conv(images * 2 - 1, "encoder.conv_in", padding=1)
    for i in range(levels):
        for j in range(nrb):
            h = block(h, f"encoder.down.{i}.block.{j}")
            if f"encoder.down.{i}.attn.{j}.q.weight" in p:
                h = attn(h, f"encoder.down.{i}.attn.{j}")
        if i != levels - 1:
            h = conv(F.pad(h, (0, 1, 0, 1)), f"encoder.down.{i}.downsample.conv", stride=2)
    h = mid(h, "encoder")
    h = conv(gn(h, "encoder.norm_out", True), "encoder.conv_out", padding=1)
    z = conv(h, "quant_conv")                                              # [B, D, h, w]
    embed = p["quantize.embed.weight"]
    if quantizer == "nearest":                                             # taming VectorQuantizer
        zf = z.permute(0, 2, 3, 1).reshape(-1, c["embed_dim"])
        d = (zf ** 2).sum(1, keepdim=True) + (embed ** 2).sum(1) - 2 * zf @ embed.t()
        zq = embed[d.argmin(1)]
        qloss = r["commitment"] * ((zq.detach() - zf) ** 2).mean() + ((zq - zf.detach()) ** 2).mean()
        zq = zf + (zq - zf).detach()
        zq = zq.reshape(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
    else:                                                                  # taming GumbelQuantize, hard
        logits = conv(z, "quantize.proj")                                  # [B, K, h, w]
        g = -torch.log(-torch.log(uniforms.permute(0, 3, 1, 2) + 1e-20) + 1e-20)
        y_soft = torch.softmax((logits + g) / r["temperature"], dim=1)
        y_hard = F.one_hot(y_soft.argmax(1), c["n_embed"]).permute(0, 3, 1, 2).float()
        one_hot = y_hard - y_soft.detach() + y_soft
        zq = torch.einsum("bnhw,nd->bdhw", one_hot, embed)
        qy = torch.softmax(logits, dim=1)
        qloss = r["kl_weight"] * torch.sum(qy * torch.log(qy * c["n_embed"] + 1e-10), dim=1).mean()
    h = conv(zq, "post_quant_conv")
    h = conv(h, "decoder.conv_in", padding=1)
    h = mid(h, "decoder")
    for i in reversed(range(levels)):
        for j in range(nrb + 1):
            h = block(h, f"decoder.up.{i}.block.{j}")
            if f"decoder.up.{i}.attn.{j}.q.weight" in p:
                h = attn(h, f"decoder.up.{i}.attn.{j}")
        if i != 0:
            h = conv(F.interpolate(h, scale_factor=2.0, mode="nearest"), f"decoder.up.{i}.upsample.conv", padding=1)
    xrec = conv(gn(h, "decoder.norm_out", True), "decoder.conv_out", padding=1)
    target = images * 2 - 1
    w = 1 if weights is None else weights
    rec = r["l1_weight"] * (w * (xrec - target).abs()).mean() + r["l2_weight"] * (w * (xrec - target) ** 2).mean()
    return rec + qloss, rec, qloss


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "train-fixtures"
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    c = CONFIG
    shapes = parameter_shapes(c)
    params = {}
    for name, shape in shapes.items():
        if name.endswith(".weight") and len(shape) == 1:
            params[name] = 1 + 0.1 * torch.randn(shape)
        elif name == "quantize.embed.weight":
            params[name] = torch.randn(shape)
        else:
            fan_in = shapes[name[: -len(".bias")] + ".weight"][1:] if name.endswith(".bias") else shape[1:]
            n = 1
            for s in fan_in:
                n *= s
            params[name] = (torch.rand(shape) * 2 - 1) / n ** 0.5
    batch, side, f = 2, c["resolution"], 2 ** (len(c["ch_mult"]) - 1)
    images = torch.rand(batch, 3, side, side)
    uniforms = torch.rand(batch, side // f, side // f, c["n_embed"])
    tensors = {"input.images": images.permute(0, 2, 3, 1).contiguous(), "input.uniforms": uniforms}
    tensors.update({"weight." + k: v.contiguous() for k, v in params.items()})
    results = {}
    for quantizer in ["nearest", "gumbel"]:
        p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        loss, rec, qloss = forward(p, images, uniforms, quantizer, c, RECIPE)
        loss.backward()
        results[quantizer] = dict(loss=loss.item(), reconstruction_loss=rec.item(), quantizer_loss=qloss.item())
        for k, v in p.items():
            tensors[f"grad.{quantizer}.{k}"] = (v.grad if v.grad is not None else torch.zeros_like(v)).contiguous()
    save_file(tensors, os.path.join(out, "vqgan_train_step.safetensors"))
    with open(os.path.join(out, "vqgan_train_step.json"), "w") as fh:
        json.dump(dict(config=c, recipe=RECIPE, results=results, torch=torch.__version__), fh, indent=1)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
