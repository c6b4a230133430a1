"""One CLIP training step in PyTorch, for the Swift trainer's parity test (CLIPTrainerParityTests).

Builds tiny OpenCLIP text and vision towers (the maths of open_clip/model.py, open_clip/transformer.py and
nn.MultiheadAttention, written here with torch.nn.functional), initialises them randomly, runs ClipLoss on
one batch and saves the weights, the inputs, the loss and every parameter's gradient (logit_scale included):

    /work/venv-torch/bin/python bench/pytorch/clip_train_step.py /tmp/train-fixtures
    PAELLA_TRAIN_FIXTURES=/tmp/train-fixtures swift test --filter CLIPTrainerParity
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

CONFIG = {"embed_dim": 8,
          "text_cfg": {"context_length": 8, "vocab_size": 20, "width": 16, "heads": 2, "layers": 2},
          "vision_cfg": {"image_size": 8, "layers": 2, "width": 16, "head_width": 8, "patch_size": 4}}


def parameter_shapes(c):
    t, v, e = c["text_cfg"], c["vision_cfg"], c["embed_dim"]
    shapes = {}

    def blocks(prefix, width, layers):
        for i in range(layers):
            p = f"{prefix}.resblocks.{i}."
            shapes.update({p + "ln_1.weight": [width], p + "ln_1.bias": [width],
                           p + "attn.in_proj_weight": [3 * width, width], p + "attn.in_proj_bias": [3 * width],
                           p + "attn.out_proj.weight": [width, width], p + "attn.out_proj.bias": [width],
                           p + "ln_2.weight": [width], p + "ln_2.bias": [width],
                           p + "mlp.c_fc.weight": [4 * width, width], p + "mlp.c_fc.bias": [4 * width],
                           p + "mlp.c_proj.weight": [width, 4 * width], p + "mlp.c_proj.bias": [width]})

    grid = v["image_size"] // v["patch_size"]
    shapes["visual.class_embedding"] = [v["width"]]
    shapes["visual.positional_embedding"] = [grid * grid + 1, v["width"]]
    shapes["visual.proj"] = [v["width"], e]
    shapes["visual.conv1.weight"] = [v["width"], 3, v["patch_size"], v["patch_size"]]
    shapes["visual.ln_pre.weight"] = [v["width"]]; shapes["visual.ln_pre.bias"] = [v["width"]]
    shapes["visual.ln_post.weight"] = [v["width"]]; shapes["visual.ln_post.bias"] = [v["width"]]
    blocks("visual.transformer", v["width"], v["layers"])
    shapes["token_embedding.weight"] = [t["vocab_size"], t["width"]]
    shapes["positional_embedding"] = [t["context_length"], t["width"]]
    shapes["text_projection"] = [t["width"], e]
    shapes["ln_final.weight"] = [t["width"]]; shapes["ln_final.bias"] = [t["width"]]
    blocks("transformer", t["width"], t["layers"])
    shapes["logit_scale"] = []
    return shapes


def transformer(p, prefix, x, layers, heads, causal):
    """open_clip Transformer of ResidualAttentionBlocks over batch-first x [B, L, W]."""
    b, l, w = x.shape
    d = w // heads
    mask = torch.full((l, l), float("-inf")).triu(1) if causal else None
    for i in range(layers):
        q = f"{prefix}.resblocks.{i}."
        h = F.layer_norm(x, (w,), p[q + "ln_1.weight"], p[q + "ln_1.bias"], eps=1e-5)
        qkv = F.linear(h, p[q + "attn.in_proj_weight"], p[q + "attn.in_proj_bias"]).reshape(b, l, 3, heads, d)
        qh, kh, vh = qkv.permute(2, 0, 3, 1, 4)                          # [B, heads, L, D] each
        scores = qh @ kh.transpose(-1, -2) / math.sqrt(d)
        if mask is not None:
            scores = scores + mask
        a = (torch.softmax(scores, dim=-1) @ vh).permute(0, 2, 1, 3).reshape(b, l, w)
        x = x + F.linear(a, p[q + "attn.out_proj.weight"], p[q + "attn.out_proj.bias"])
        h = F.layer_norm(x, (w,), p[q + "ln_2.weight"], p[q + "ln_2.bias"], eps=1e-5)
        h = F.linear(F.gelu(F.linear(h, p[q + "mlp.c_fc.weight"], p[q + "mlp.c_fc.bias"])), p[q + "mlp.c_proj.weight"], p[q + "mlp.c_proj.bias"])
        x = x + h
    return x


def loss_of(p, images, tokens, c):
    t, v = c["text_cfg"], c["vision_cfg"]
    # Vision: patches, class token, positions, ln_pre, blocks, ln_post of the class token, proj.
    x = F.conv2d(images, p["visual.conv1.weight"], stride=v["patch_size"])   # [B, W, g, g]
    x = x.flatten(2).transpose(1, 2)                                         # [B, g², W]
    cls = p["visual.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + p["visual.positional_embedding"]
    x = F.layer_norm(x, (v["width"],), p["visual.ln_pre.weight"], p["visual.ln_pre.bias"], eps=1e-5)
    x = transformer(p, "visual.transformer", x, v["layers"], v["width"] // v["head_width"], False)
    x = F.layer_norm(x[:, 0], (v["width"],), p["visual.ln_post.weight"], p["visual.ln_post.bias"], eps=1e-5)
    image_features = x @ p["visual.proj"]
    # Text: embeddings, positions, causal blocks, ln_final, the end-of-text (argmax) position, projection.
    x = p["token_embedding.weight"][tokens] + p["positional_embedding"][: tokens.shape[1]]
    x = transformer(p, "transformer", x, t["layers"], t["heads"], True)
    x = F.layer_norm(x, (t["width"],), p["ln_final.weight"], p["ln_final.bias"], eps=1e-5)
    text_features = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ p["text_projection"]
    # ClipLoss.
    image_features = F.normalize(image_features, dim=-1)
    text_features = F.normalize(text_features, dim=-1)
    logits = p["logit_scale"].exp() * image_features @ text_features.t()
    labels = torch.arange(logits.shape[0])
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "train-fixtures"
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    params = {}
    for name, shape in parameter_shapes(CONFIG).items():
        if name == "logit_scale":
            params[name] = torch.tensor(math.log(1 / 0.07))
        elif "ln" in name and name.endswith(".weight"):
            params[name] = 1 + 0.1 * torch.randn(shape)
        else:
            params[name] = 0.3 * torch.randn(shape)
    batch = 4
    images = torch.randn(batch, 3, 8, 8)
    tokens = torch.zeros(batch, 8, dtype=torch.long)
    for b in range(batch):
        end = 2 + b
        tokens[b, :end] = torch.randint(1, 18, (end,))
        tokens[b, end] = 19
    p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    loss = loss_of(p, images, tokens, CONFIG)
    loss.backward()
    tensors = {"input.images": images.permute(0, 2, 3, 1).contiguous(), "input.tokens": tokens.to(torch.int32)}
    tensors.update({"weight." + k: v.contiguous() for k, v in params.items()})
    tensors.update({"grad." + k: v.grad.contiguous() for k, v in p.items()})
    save_file(tensors, os.path.join(out, "clip_train_step.safetensors"))
    with open(os.path.join(out, "clip_train_step.json"), "w") as fh:
        json.dump(dict(config=CONFIG, loss=loss.item(), torch=torch.__version__), fh, indent=1)
    print(loss.item())


if __name__ == "__main__":
    main()
