# Schemathesis hooks for scripts/check-server.sh: the spec allows what the server allows (1024 pixels a side, 100
# steps, 16 frames), but on a 2-core machine the run must stay short, so every generated body that would start
# model work is shrunk to a cheap one (one image, at most 2 steps, at most 32 pixels a side, 2 frames). Values
# the server refuses are left alone, so the refusals are still exercised.
import re
import schemathesis

SIDE = 32


def _small_size(value):
    if isinstance(value, str):
        m = re.fullmatch(r"([1-9][0-9]{0,3})x([1-9][0-9]{0,3})", value)
        if m:
            return f"{min(int(m.group(1)), SIDE)}x{min(int(m.group(2)), SIDE)}"
    return value


def _cap(value, top):
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():  # sdapi takes numbers as strings too, as A1111 does
        return str(min(int(value), top))
    return min(value, top) if isinstance(value, int) and not isinstance(value, bool) else value


@schemathesis.hook
def map_body(context, body):
    if not isinstance(body, dict):
        return body
    body = dict(body)
    for key, top in (("n", 1), ("batch_size", 1), ("n_iter", 1), ("steps", 2), ("width", SIDE), ("height", SIDE), ("frames", 2)):
        if key in body:
            body[key] = _cap(body[key], top)
    if "size" in body:
        body["size"] = _cap(_small_size(body["size"]), SIDE)
    if isinstance(body.get("extend"), dict):
        body["extend"] = {k: _cap(v, 8) for k, v in body["extend"].items()}
    if isinstance(body.get("regions"), list):
        body["regions"] = body["regions"][:2]
    return body
