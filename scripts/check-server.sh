#!/bin/sh
# Starts the real `paella serve` on loopback (with an API key, the bundled model) and talks to it as clients do:
# the official `openai` Python package (models, generation in b64_json and url, edit, inpainting, variations, a
# bad request, a wrong key), schemathesis against docs/openapi.yaml (every endpoint, generated requests, no failures),
# the jobs API's server-sent events with curl, the web page in headless Chromium (scripts/check_page.py: generate,
# paint a mask and inpaint, a phone-width window; it saves a screenshot, into docs/server-page.png, the README's,
# when SCREENSHOT=docs/server-page.png is set, else into the temporary folder), then SIGTERM and a clean exit.
# openai, schemathesis and selenium come from PyPI into a virtual environment the script makes (in a temporary
# folder, removed after); Debian's chromium and chromium-driver are installed with apt-get when missing (as root).
#   scripts/check-server.sh [PORT]
set -eu
PORT=${1:-18080}
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "installing Debian's chromium and chromium-driver for the page check"
    apt-get update -qq || { echo "check-server: apt-get update failed; the page check needs chromium and chromium-driver" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null ||
        { echo "check-server: apt-get install chromium chromium-driver failed (see above); the page check needs them" >&2; exit 1; }
fi
KEY=check-server-key
swift build --product paella
P="$(swift build --show-bin-path)/paella"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q openai schemathesis selenium
PYTHON="$WORK/venv/bin/python"
"$P" serve --port "$PORT" --api-key "$KEY" >"$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$WORK"' EXIT
# The model loads in a few seconds; /healthz needs no key.
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$PORT/healthz"; echo

PORT=$PORT KEY=$KEY WORK=$WORK "$PYTHON" - <<'EOF'
import base64, os, urllib.request
import openai
from openai import OpenAI

base = f"http://127.0.0.1:{os.environ['PORT']}/v1"
client = OpenAI(base_url=base, api_key=os.environ["KEY"])
print("models:", [m.id for m in client.models.list()])

r = client.images.generate(prompt="a large red circle at the top left on a white background", n=2, size="64x64",
                           response_format="b64_json", extra_body={"seed": 1, "steps": 8})
png = base64.b64decode(r.data[0].b64_json)
assert len(r.data) == 2 and png.startswith(b"\x89PNG"), r
path = os.path.join(os.environ["WORK"], "circle.png")
open(path, "wb").write(png)
print("generate b64_json: 2 PNGs")

r = client.images.generate(prompt="a blue star", size="64x64")
assert urllib.request.urlopen(r.data[0].url).read().startswith(b"\x89PNG")
print("generate url:", r.data[0].url)

r = client.images.edit(image=open(path, "rb"), prompt="a green square", response_format="b64_json", extra_body={"strength": 0.5})
assert base64.b64decode(r.data[0].b64_json).startswith(b"\x89PNG")
print("edit (structural): ok")
r = client.images.edit(image=open(path, "rb"), mask=open(path, "rb"), prompt="a green square", response_format="url")
assert urllib.request.urlopen(r.data[0].url).read().startswith(b"\x89PNG")
print("edit (inpainting): ok")
r = client.images.create_variation(image=open(path, "rb"), n=1, response_format="b64_json")
assert len(r.data) == 1
print("variations: ok")

try:
    client.images.generate(prompt="a cat", n=99)
    raise SystemExit("n=99 was accepted")
except openai.BadRequestError as e:
    assert e.body["param"] == "n", e.body
    print("bad request: 400,", e.body["message"])
try:
    OpenAI(base_url=base, api_key="wrong").models.list()
    raise SystemExit("a wrong key was accepted")
except openai.AuthenticationError as e:
    print("wrong key: 401,", e.body["message"])
EOF

# The spec: schemathesis generates requests for every operation in docs/openapi.yaml, valid ones and broken ones
# (boundary values, random ones, and sequences that follow the spec's links from a created job to its state, events
# and cancellation), and checks that no answer is a 5xx, that each status, content type, header and body is what the
# spec says, that requests the spec forbids are refused, and that the key is really required. The hooks shrink
# generated work to 1 image, 2 steps and 32 pixels a side, so the run takes under a minute.
SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH=scripts "$WORK/venv/bin/schemathesis" --no-color run docs/openapi.yaml \
    --url "http://127.0.0.1:$PORT" -H "Authorization: Bearer $KEY" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,ignored_auth \
    --phases examples,coverage,fuzzing,stateful --max-examples 25 --workers 1 --seed 18 --request-timeout 120 \
    --generation-database none

# The jobs API: the events stream ends with the job's final state.
AUTH="Authorization: Bearer $KEY"
ID=$(curl -sf "http://127.0.0.1:$PORT/api/jobs" -H "$AUTH" -H 'Content-Type: application/json' \
    -d '{"mode": "generate", "prompt": "a yellow triangle", "seed": 2}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
curl -sfN --max-time 120 "http://127.0.0.1:$PORT/api/jobs/$ID/events" -H "$AUTH" >"$WORK/events.txt"
grep -c '^event: progress' "$WORK/events.txt" | sed 's/^/job events: progress x/'
tail -n 2 "$WORK/events.txt" | grep -q '^data: .*"state":"succeeded"'
echo "job: succeeded"

# The web page in headless Chromium. Its screenshot replaces the README's only when asked (a check leaves the
# checkout as it found it).
SHOT=${SCREENSHOT:-$WORK/server-page.png}
"$PYTHON" scripts/check_page.py "http://127.0.0.1:$PORT" "$KEY" "$WORK/circle.png" "$SHOT"
ls -l "$SHOT" | awk '{ print "page screenshot: " $5 " bytes" }'

# Graceful shutdown: SIGTERM, then the process ends by itself with status 0.
kill -TERM "$SERVER"
wait "$SERVER"
echo "shutdown: clean"
