#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into Fuzz/Corpus/TARGET/ (committed; a few KB each).

Run from the repository root: python3 Fuzz/make-corpus.py. Needs Python 3 with Pillow only: the PyTorch files are
written the way torch.save writes them (a zip of data.pkl, byteorder and data/KEY, the pickle made with stand-ins
for torch's storage class and _rebuild_tensor_v2), so torch itself is not needed. Small text fixtures of
Tests/Fixtures and models/ are taken as they are.
"""
import collections
import gzip
import io
import json
import os
import pickle
import struct
import sys
import tarfile
import types
import zipfile

from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "Fuzz", "Corpus")


def put(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def fixture(name):
    with open(os.path.join(ROOT, "Tests", "Fixtures", name), "rb") as f:
        return f.read()


# safetensors: an 8-byte little-endian header length, the JSON header, the data.
def safetensors(tensors, metadata=None, pad_to=8):
    header, data = {}, b""
    for name, (dtype, shape, payload) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(payload)]}
        data += payload
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % pad_to)
    return struct.pack("<Q", len(text)) + text + data


put("safetensors", "f32", safetensors({"w": ("F32", [2, 3], struct.pack("<6f", *range(6)))}))
put("safetensors", "mixed", safetensors({
    "a.weight": ("BF16", [4], b"\x80\x3f" * 4), "a.bias": ("F16", [2, 1], b"\x00\x3c" * 2),
    "ids": ("I64", [2], struct.pack("<2q", 1, -1)), "mask": ("BOOL", [3], b"\x01\x00\x01"),
    "empty": ("F32", [0, 5], b""), "scalar": ("F64", [], struct.pack("<d", 2.5)),
    "bytes": ("U8", [3], b"abc"), "small": ("I8", [1], b"\xff"),
}, metadata={"format": "pt", "note": "seed"}))
put("safetensors", "misaligned", safetensors({"x": ("U8", [1], b"\x01"), "y": ("F32", [2], struct.pack("<2f", 1, 2))},
                                             pad_to=1))
put("safetensors", "unsupported", safetensors({"q": ("F8_E4M3", [2], b"\x00\x01")}))

# Pickles as torch.save writes them: stand-in modules named torch and torch._utils make pickle emit the same
# GLOBAL opcodes, and persistent ids stand for the storages.
torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
sys.modules["torch"], sys.modules["torch._utils"] = torch, torch_utils


class Storage:
    def __init__(self, key, dtype_name, numel, payload):
        self.key, self.dtype_name, self.numel, self.payload = key, dtype_name, numel, payload


for storage_name in ("FloatStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "ByteStorage"):
    cls = type(storage_name, (), {})
    cls.__module__ = "torch"
    setattr(torch, storage_name, cls)


def _rebuild_tensor_v2(*args):
    raise AssertionError("never called: only pickled")


_rebuild_tensor_v2.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
torch._utils = torch_utils


class FakeTensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce_ex__(self, protocol):
        return (_rebuild_tensor_v2, self.args)


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", getattr(torch, obj.dtype_name), obj.key, "cpu", obj.numel)
        return None


def torch_pickle(obj):
    out = io.BytesIO()
    TorchPickler(out, protocol=2).dump(obj)
    return out.getvalue()


def state_dict():
    w = Storage("0", "FloatStorage", 6, struct.pack("<6f", *range(6)))
    h = Storage("1", "HalfStorage", 4, b"\x00\x3c" * 4)
    sd = collections.OrderedDict()
    sd["layer.weight"] = FakeTensor(w, 0, [2, 3], [3, 1])
    sd["layer.weight_t"] = FakeTensor(w, 0, [3, 2], [1, 3])
    sd["layer.bias"] = FakeTensor(w, 4, [2], [1])
    sd["half"] = FakeTensor(h, 1, [3], [1])
    return sd, [w, h]


def checkpoint(root, storages, compression=zipfile.ZIP_STORED, zip64=False, name="archive"):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as z:
        z.writestr(f"{name}/data.pkl", torch_pickle(root))
        z.writestr(f"{name}/byteorder", "little")
        for s in storages:
            with z.open(f"{name}/data/{s.key}", "w", force_zip64=zip64) as f:
                f.write(s.payload)
        z.writestr(f"{name}/version", "3\n")
    return out.getvalue()


sd, storages = state_dict()
put("pickle", "state_dict", torch_pickle(sd))
put("pickle", "lightning", torch_pickle({"epoch": 3, "global_step": 1200, "state_dict": sd,
                                         "hparams": {"lr": 1e-4, "name": "paella", "betas": (0.9, 0.95)}}))
put("pickle", "plain", pickle.dumps({"a": [1, 2.5, None, True, b"xy", "text"], "b": (1, (2, 3)), 10 ** 30: {1, 2}},
                                    protocol=2))
put("pickle", "protocol4", pickle.dumps([{"k": i, "v": str(i) * i} for i in range(8)], protocol=4))

put("checkpoint", "stored", checkpoint(sd, storages))
put("checkpoint", "deflated", checkpoint(sd, storages, zipfile.ZIP_DEFLATED))
put("checkpoint", "zip64", checkpoint({"epoch": 1, "state_dict": sd}, storages, zip64=True, name="model_600000"))

# Zip archives as other tools write them: stored, deflated, ZIP64 records, a comment.
out = io.BytesIO()
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("a.txt", "hello " * 40)
    z.writestr("dir/b.bin", bytes(range(256)), compress_type=zipfile.ZIP_STORED)
    z.comment = b"seed archive"
put("zip", "mixed", out.getvalue())
out = io.BytesIO()
with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
    with z.open("big", "w", force_zip64=True) as f:
        f.write(b"\x00\x01" * 64)
    with z.open("deflated64", "w", force_zip64=True) as f:
        f.write(b"x" * 100)
put("zip", "zip64", out.getvalue())
put("zip", "checkpoint", checkpoint(sd, storages, zipfile.ZIP_DEFLATED))


# Images: small PNGs of each colour type and bit depth Pillow writes, a text chunk; baseline and progressive JPEG.
def png(image, **options):
    out = io.BytesIO()
    image.save(out, "PNG", **options)
    return out.getvalue()


gradient = Image.new("RGB", (8, 6))
gradient.putdata([(x * 30, y * 40, (x + y) * 15) for y in range(6) for x in range(8)])
from PIL import PngImagePlugin
info = PngImagePlugin.PngInfo()
info.add_text("parameters", "prompt=a seed; steps=8")
info.add_itxt("comment", "zipped text", zip=True)
put("png", "rgb_text", png(gradient, pnginfo=info))
put("png", "rgba", png(gradient.convert("RGBA")))
put("png", "gray", png(gradient.convert("L")))
put("png", "gray16", png(gradient.convert("I;16")))
put("png", "palette", png(gradient.convert("P", palette=Image.ADAPTIVE, colors=4)))
put("png", "bilevel", png(gradient.convert("1")))
put("png", "gray_alpha", png(gradient.convert("LA")))


def jpeg(image, **options):
    out = io.BytesIO()
    image.save(out, "JPEG", **options)
    return out.getvalue()


put("jpeg", "baseline", jpeg(gradient, quality=80))
put("jpeg", "progressive", jpeg(gradient, quality=60, progressive=True))
put("jpeg", "gray", jpeg(gradient.convert("L")))
put("jpeg", "cmyk", jpeg(gradient.convert("CMYK")))
put("jpeg", "subsampled", jpeg(Image.new("RGB", (17, 9), (200, 10, 10)), subsampling=2, quality=30))

# gzip: one member, two members, an empty one, the start of the CLIP vocabulary.
put("gzip", "text", gzip.compress(b"#version: 0.2\ni n\nt h\na n\n" * 4))
put("gzip", "members", gzip.compress(b"first member\n") + gzip.compress(b"second member\n"))
put("gzip", "empty", gzip.compress(b""))
with gzip.open(os.path.join(ROOT, "vocab", "bpe_simple_vocab_16e6.txt.gz"), "rb") as f:
    put("gzip", "vocabulary_head", gzip.compress(f.read(1500), mtime=0))


# tar: WebDataset shards (key.png + key.txt) in ustar, GNU (long names) and pax formats.
def tar(members, format):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=format) as t:
        for name, data in members:
            if data is None:
                info = tarfile.TarInfo(name)
                info.type = tarfile.DIRTYPE
                t.addfile(info)
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


tiny_png = png(Image.new("RGB", (2, 2), (10, 200, 30)))
put("tar", "ustar", tar([("./000000.png", tiny_png), ("./000000.txt", b"a green square"),
                         ("./000001.png", tiny_png), ("./000001.txt", b"another")], tarfile.USTAR_FORMAT))
put("tar", "gnu_longname", tar([("shard/" + "k" * 120 + ".jpg", b"\xff\xd8\xff"), ("shard/", None),
                                ("shard/" + "k" * 120 + ".txt", b"caption")], tarfile.GNU_FORMAT))
put("tar", "pax", tar([("p/\u00e9t\u00e9.png", tiny_png), ("p/\u00e9t\u00e9.txt", "caf\u00e9".encode())],
                      tarfile.PAX_FORMAT))

# Tokenizer: the fixture's prompts, and text a prompt file or request may carry (accents, CJK, emoji, HTML
# entities, invalid UTF-8, the special tokens).
cases = json.loads(fixture("tokenizer_cases.json"))["cases"]
for i, case in enumerate(cases[:12]):
    put("tokenizer", f"case{i:02d}", case["text"])
put("tokenizer", "mixed", "Caf\u00e9 \u00fcber \u65e5\u672c\u8a9e \U0001F408\u200d\u2b1b &amp; <start_of_text>'s  don't\t\n!!")
put("tokenizer", "invalid_utf8", b"a \xff\xfe photo \xc3\x28 of \xe2\x82 a \xf0\x9f\x98 cat")
put("tokenizer", "long", "an oil painting of a lighthouse at dusk, " * 12)

# Model folder and configuration files: the first byte picks the reader (0 model.json, 1 denoiser, 2 VQGAN,
# 3 CLIP, 4 pipeline defaults), the rest is the file.
with open(os.path.join(ROOT, "models", "paella-small", "model.json"), "rb") as f:
    manifest = f.read()
put("config", "model_json", b"\x00" + manifest)
put("config", "denoiser", b"\x01" + fixture("denoiser_v1_tiny.json"))
put("config", "vqgan", b"\x02" + fixture("vqgan_tiny.json"))
put("config", "clip", b"\x03" + fixture("clip_tiny.json"))
put("config", "defaults", b"\x04" + json.dumps(json.loads(manifest)["defaults"], separators=(",", ":")).encode())
put("config", "vqgan_taming", b"\x02" + json.dumps({
    "embed_dim": 4, "n_embed": 16,
    "ddconfig": {"double_z": False, "z_channels": 4, "resolution": 32, "in_channels": 3, "out_ch": 3, "ch": 8,
                 "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}}).encode())

# Server JSON bodies: the first byte picks the body type (even: /v1/images/generations, odd: /api/jobs).
put("server-json", "generation", b"\x00" + json.dumps({
    "prompt": "a red fox", "n": 2, "size": "64x64", "response_format": "b64_json", "seed": 7, "steps": 8,
    "guidance": 4.5, "negative_prompt": "blurry", "model": "paella", "quality": "hd"}).encode())
put("server-json", "generation_minimal", b"\x00" + b'{"prompt":"x"}')
for i, job in enumerate([
    {"mode": "generate", "prompt": "a cat", "width": 64, "height": 64, "temperature": [0.8, 0.3]},
    {"mode": "interpolate", "from": "a cat", "to": "a dog", "frames": 4, "method": "slerp"},
    {"mode": "compose", "regions": [{"prompt": "sky", "axis": "rows", "start": 0, "end": 32}],
     "blend": {"from": "a", "to": "b", "axis": "columns"}},
    {"mode": "inpaint", "prompt": "a hat", "image": "data:image/png;base64,iVBORw0KGgo=", "rect": [1, 2, 3, 4],
     "size": 64},
    {"mode": "outpaint", "prompt": "more", "image": "iVBORw0KGgo=", "extend": {"left": 8, "top": 8}},
    {"mode": "edit", "prompt": "winter", "image": "", "strength": 0.5},
]):
    put("server-json", f"job{i}", b"\x01" + json.dumps(job).encode())


# Multipart uploads: the first line is the Content-Type header, the rest the body.
def multipart(fields, boundary="XyZ"):
    body = b""
    for name, value, filename in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename:
            body += b"Content-Type: image/png\r\n"
        body += b"\r\n" + value + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}\n".encode() + body


put("server-multipart", "edit", multipart([("image", tiny_png, "in.png"), ("prompt", b"make it blue", None),
                                           ("n", b"2", None), ("size", b"64x64", None), ("strength", b"0.4", None)]))
put("server-multipart", "inpaint", multipart([("image[]", tiny_png, "a.png"), ("mask", tiny_png, "m.png"),
                                              ("prompt", b"a hat", None), ("response_format", b"b64_json", None),
                                              ("seed", b"12", None), ("steps", b"6", None), ("guidance", b"3.5", None)],
                                             boundary="----WebKitFormBoundary7MA4YWxkTrZu0gW"))
put("server-multipart", "repeated", multipart([("prompt", b"one", None), ("prompt", b"two", None),
                                               ("image", b"\xff\xd8\xff", "x.jpg")]))
