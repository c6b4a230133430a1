"""Writes a second CLIP fixture set with the layout of Tests/Fixtures (other strings, other tower sizes), to check
that the CLIP tokenizer and parity suites read everything from the fixtures:

    pip download open-clip-torch --no-deps && unzip open_clip_torch-*.whl -d /tmp/oc
    pip install --target /tmp/pyextra ftfy regex
    /work/venv-torch/bin/python bench/pytorch/clip_alt_fixtures.py --open-clip /tmp/oc --site /tmp/pyextra --out /tmp/altfix
    cp Tests/Fixtures/openclip_*.json /tmp/altfix/ && PAELLA_FIXTURES=/tmp/altfix swift test --filter CLIP

Token ids come from OpenCLIP's own SimpleTokenizer (with ftfy); embeddings from the PyTorch towers of
clip_bench.py (the same maths as OpenCLIP, proven on the bundled fixture) with random weights.
"""
import argparse
import importlib.util
import json
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
STRINGS = ["\u201cCurly\u201d quotes \u2018single\u2019 and \ufb01ne \ufb02ower", "ＦＵＬＬ　ｗｉｄｔｈ text", "ΟΔΟΣ ΣΟΦΟΣ Σ",
           "Cafe\u0301 combining", "&amp;amp; &#39;x&#39; &eacute;t&eacute; &hellip; &#x1F600;", "I'LL SHE'S WE'VE THEY'RE",
           "tab\tnew\nline\r\nend", "a_b-c.d,e;f:g!h?i", "🐶🐱🐭 emojis 👍🏽", "ﬁnal word", "x" * 400, "3.5 inch 1080p 16:9",
           "über straße", "<start_of_text>odd", "   ", "Mixed 中文 and English", "hello\u00a0world", "naïve résumé",
           "don’t won’t", "1/2 ½ ¼"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--open-clip", required=True, help="folder holding the unpacked open_clip package")
    p.add_argument("--site", help="extra folder on sys.path with ftfy and regex")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    if args.site:
        sys.path.insert(0, args.site)
    sys.path.insert(0, HERE)
    from clip_bench import CLIP
    spec = importlib.util.spec_from_file_location("oc_tokenizer", os.path.join(args.open_clip, "open_clip", "tokenizer.py"))
    tok = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tok)
    tokenizer = tok.SimpleTokenizer(os.path.join(HERE, "..", "..", "vocab", "bpe_simple_vocab_16e6.txt.gz"))
    os.makedirs(args.out, exist_ok=True)
    cases = [{"text": s, "bpe_ids": tokenizer.encode(s), "context_77": tokenizer([s])[0].tolist()} for s in STRINGS]
    with open(os.path.join(args.out, "tokenizer_cases.json"), "w") as f:
        json.dump({"sot": tokenizer.sot_token_id, "eot": tokenizer.eot_token_id, "cases": cases}, f, ensure_ascii=False)
    cfg = {"embed_dim": 24,
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 48, "heads": 6, "layers": 3, "mlp_ratio": 3.5},
           "vision_cfg": {"image_size": 42, "layers": 3, "width": 40, "head_width": 10, "mlp_ratio": 2.5, "patch_size": 14},
           "texts": ["Another set of prompts!", "ΣΟΦΟΣ", "a very long prompt " * 30]}
    with open(os.path.join(args.out, "clip_tiny.json"), "w") as f:
        json.dump(cfg, f, ensure_ascii=False)
    torch.manual_seed(5)
    model = CLIP(cfg).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.2)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(args.out, "clip_tiny.safetensors"))
    torch.save(state, os.path.join(args.out, "clip_tiny.bin"))
    tokens = tokenizer(cfg["texts"])
    images = torch.randn(3, 3, 42, 42)
    with torch.no_grad():
        save_file({"tokens": tokens, "text_embeddings": model.encode_text(tokens), "images": images,
                   "image_embeddings": model.encode_image(images)}, os.path.join(args.out, "clip_tiny_io.safetensors"))


if __name__ == "__main__":
    main()
