#!/bin/sh
# Starts the real `paella serve` on loopback (the bundled model, an API key) and speaks AUTOMATIC1111's sdapi to it
# as its clients do:
# - Open WebUI's calls and body (verify the URL, list the models, post the options back with its choice, txt2img),
#   and SillyTavern's (ping, the menus it fills, set-model and its wait on progress, txt2img with the fields its
#   extension sends, url and auth included), both with HTTP Basic credentials whose password is the key, as each
#   builds them from its "user:password" setting; the bodies follow their sources (open-webui
#   backend/open_webui/routers/images.py, SillyTavern src/endpoints/stable-diffusion.js and the stable-diffusion
#   extension's generateAutoImage);
# - webuiapi from PyPI, a Python client of A1111's API: txt2img with batch_size and n_iter, img2img, inpainting with
#   a mask, the current model, and progress with a preview during a run that interrupt then stops;
# - a wrong type (422 in FastAPI's shape) and a wrong key (401).
# Every image is decoded and its size checked. webuiapi comes from PyPI into a virtual environment the script makes
# (in a temporary folder, removed after).
#   scripts/check-sdapi.sh [PORT]
set -eu
PORT=${1:-18081}
KEY=check-sdapi-key
swift build --product paella
P="$(swift build --show-bin-path)/paella"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q webuiapi
"$P" serve --port "$PORT" --api-key "$KEY" >"$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$PORT/healthz"; echo

PORT=$PORT KEY=$KEY "$WORK/venv/bin/python" - <<'EOF'
import base64, io, json, os, threading, time, urllib.error, urllib.request
from PIL import Image
import webuiapi

base = f"http://127.0.0.1:{os.environ['PORT']}"
key = os.environ["KEY"]
basic = "Basic " + base64.b64encode(f"paella:{key}".encode()).decode()

def call(method, path, body=None, auth=basic):
    request = urllib.request.Request(base + path, method=method, headers={"Authorization": auth, "Content-Type": "application/json"},
                                     data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())

def decoded(images, size, count):
    assert len(images) == count, f"{len(images)} images, expected {count}"
    for b64 in images:
        image = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert image.format == "PNG" and image.size == size, (image.format, image.size)

# Open WebUI (engine automatic1111, AUTOMATIC1111_API_AUTH "paella:KEY", image size 64x64, 8 steps).
status, options = call("GET", "/sdapi/v1/options")
assert status == 200, options
status, models = call("GET", "/sdapi/v1/sd-models")
assert status == 200 and models[0]["title"] == options["sd_model_checkpoint"], models
options["sd_model_checkpoint"] = models[0]["title"]
status, answer = call("POST", "/sdapi/v1/options", options)
assert status == 200, answer
status, r = call("POST", "/sdapi/v1/txt2img", {"prompt": "a red circle", "batch_size": 2, "width": 64, "height": 64, "steps": 8,
                                                "negative_prompt": "blue", "cfg_scale": 7.0, "sampler_name": "Euler a", "scheduler": "Karras"})
assert status == 200, r
decoded(r["images"], (64, 64), 2)
info = json.loads(r["info"])
print("Open WebUI: options, sd-models, set model, txt2img: 2 PNGs, seeds", info["all_seeds"])

# SillyTavern (Stable Diffusion extension, source "SD Web UI", auth "paella:KEY").
for path in ["options", "samplers", "schedulers", "sd-models", "upscalers", "latent-upscale-modes", "sd-vae"]:
    status, answer = call("GET", "/sdapi/v1/" + path)
    assert status == 200, (path, answer)
status, _ = call("POST", "/sdapi/v1/options", {"sd_model_checkpoint": models[0]["title"]})
status, progress = call("GET", "/sdapi/v1/progress")
assert status == 200 and progress["progress"] == 0 and progress["state"]["job_count"] == 0, progress
status, r = call("POST", "/sdapi/v1/txt2img", {
    "url": base, "auth": f"paella:{key}", "prompt": "a blue square, best quality", "negative_prompt": "lowres, bad anatomy",
    "sampler_name": "DPM++ 2M", "scheduler": "Automatic", "steps": 8, "cfg_scale": 7, "width": 64, "height": 64,
    "restore_faces": False, "enable_hr": False, "hr_upscaler": "Latent", "hr_scale": 2, "denoising_strength": 0.7,
    "hr_second_pass_steps": 0, "save_images": True, "send_images": True, "do_not_save_grid": False, "do_not_save_samples": False,
    "seed": -1, "clip_skip": 1, "override_settings": {"CLIP_stop_at_last_layers": 1, "sd_vae": "Automatic"},
    "override_settings_restore_afterwards": True})
assert status == 200, r
decoded(r["images"], (64, 64), 1)
print("SillyTavern: ping, menus, set model, txt2img: 1 PNG, seed", json.loads(r["info"])["seed"])

# webuiapi, an A1111 client library.
api = webuiapi.WebUIApi(host="127.0.0.1", port=int(os.environ["PORT"]))
api.set_auth("paella", key)
assert api.util_get_current_model() == models[0]["title"]
result = api.txt2img(prompt="a green triangle", negative_prompt="red", seed=3, steps=8, cfg_scale=5, width=64, height=64,
                     batch_size=2, n_iter=2)
assert len(result.images) == 4 and all(i.size == (64, 64) for i in result.images), result.images
assert result.info["all_seeds"] == [3, 3, 4, 4], result.info
source = result.image.convert("RGB")
edited = api.img2img(images=[source], prompt="a yellow triangle", denoising_strength=0.5, seed=3, steps=8, width=64, height=64)
assert len(edited.images) == 1 and edited.images[0].size == (64, 64) and edited.info["denoising_strength"] == 0.5
mask = Image.new("L", (64, 64), 0)
mask.paste(255, (0, 0, 32, 64))
inpainted = api.img2img(images=[source], mask_image=mask, prompt="a yellow star", seed=3, steps=8, width=64, height=64)
assert len(inpainted.images) == 1 and inpainted.images[0].size == (64, 64)
print("webuiapi: txt2img 2 x 2, img2img, inpainting: ok")

# Progress and interrupt: a long run (4 batches of 128 x 128 pixels, 100 steps each) watched, then stopped.
answer = {}
run = threading.Thread(target=lambda: answer.update(r=call("POST", "/sdapi/v1/txt2img", {"prompt": "a cat", "steps": 100, "n_iter": 4,
                                                                                          "width": 128, "height": 128})))
run.start()
deadline = time.time() + 120
while time.time() < deadline:
    progress = api.get_progress()
    if progress["state"]["sampling_step"] >= 1 and progress["current_image"]:
        break
    time.sleep(0.05)
assert 0 < progress["progress"] < 1 and progress["state"]["job"] == "txt2img" and progress["state"]["job_count"] == 4, progress
Image.open(io.BytesIO(base64.b64decode(progress["current_image"]))).load()
api.interrupt()
run.join(120)
status, r = answer["r"]
assert status == 200 and 1 <= len(r["images"]) < 4, (status, len(r.get("images", [])))
decoded(r["images"], (128, 128), len(r["images"]))
print(f"progress {progress['progress']:.3f} at step {progress['state']['sampling_step']} with a preview; interrupt: "
      f"{len(r['images'])} image(s) back")

# Errors: FastAPI's shapes.
status, r = call("POST", "/sdapi/v1/txt2img", {"prompt": "a cat", "steps": "many"})
assert status == 422 and r["detail"][0]["loc"] == ["body", "steps"], r
print("wrong type: 422,", r["detail"])
status, r = call("POST", "/sdapi/v1/txt2img", {"prompt": "a cat", "steps": 0})
assert status == 422 and "step count 0" in r["detail"][0]["msg"], r
print("out of range: 422,", r["detail"][0]["msg"])
status, r = call("GET", "/sdapi/v1/options", auth="Basic " + base64.b64encode(b"paella:wrong").decode())
assert status == 401 and isinstance(r["detail"], str), r
print("wrong key: 401,", r["detail"])
EOF

kill -TERM "$SERVER"
wait "$SERVER"
echo "check-sdapi: ok"
