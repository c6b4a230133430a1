#!/bin/sh
# Runs docs/nginx-paella.conf as written: two `paella serve` replicas (a on 8081, b on 8082, the bundled model)
# behind nginx on 127.0.0.1:8080, then checks through the proxy that new work reaches both replicas and that
# every job's state, events and images come back from the replica that holds them (they would be 404s half the
# time otherwise). Installs nginx from Debian if it is missing (as root). About 30 seconds here.
#   scripts/check-replicas.sh
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v nginx >/dev/null 2>&1 && ! [ -x /usr/sbin/nginx ]; then
    apt-get install -y -q nginx-light >/dev/null 2>&1 || apt-get install -y -q nginx >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
swift build --product paella
P="$(swift build --show-bin-path)/paella"
WORK=$(mktemp -d)
PIDS=""
trap 'kill $PIDS 2>/dev/null || true; rm -rf "$WORK"' EXIT
"$P" serve --port 8081 --replica a >"$WORK/a.log" 2>&1 & PIDS="$PIDS $!"
"$P" serve --port 8082 --replica b >"$WORK/b.log" 2>&1 & PIDS="$PIDS $!"
mkdir -p "$WORK/temp"
cat >"$WORK/nginx.conf" <<CONF
pid $WORK/nginx.pid;
error_log $WORK/error.log;
events {}
http {
    access_log $WORK/access.log;
    client_body_temp_path $WORK/temp/body;
    proxy_temp_path $WORK/temp/proxy;
    fastcgi_temp_path $WORK/temp/fastcgi;
    uwsgi_temp_path $WORK/temp/uwsgi;
    scgi_temp_path $WORK/temp/scgi;
    include $ROOT/docs/nginx-paella.conf;
}
CONF
chmod -R a+rwx "$WORK"
"$NGINX" -p "$WORK" -c "$WORK/nginx.conf" -g 'daemon off;' 2>>"$WORK/error.log" & PIDS="$PIDS $!"
for port in 8081 8082 8080; do
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || { echo "nothing answers on port $port:"; cat "$WORK"/*.log; exit 1; }
done

python3 - <<'PY'
import json, time, urllib.request
BASE = "http://127.0.0.1:8080"

def call(path, body=None, method=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(BASE + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return answer.status, answer.read()

# New work: answered by both replicas, and every image link (which names the replica) works through the proxy.
replicas = set()
for i in range(6):
    _, body = call("/v1/images/generations", {"prompt": "a small blue star on the left", "steps": 4, "seed": i})
    url = json.loads(body)["data"][0]["url"]
    assert url.startswith(BASE + "/api/images/"), url
    replicas.add(url.rsplit("/", 1)[1][0])
    with urllib.request.urlopen(url) as image:
        assert image.read().startswith(b"\x89PNG"), url
assert replicas == {"a", "b"}, f"new work reached only replica(s) {sorted(replicas)}"
print("generations: 6 answered by replicas a and b, every image link read back through the proxy")

# Jobs: each job's state is polled through the proxy until it ends, then its events and images are read.
ids = []
for i in range(4):
    status, body = call("/api/jobs", {"mode": "generate", "prompt": "a large red circle", "steps": 4, "seed": i})
    assert status == 202, status
    ids.append(json.loads(body)["id"])
assert {i[0] for i in ids} == {"a", "b"}, ids
for job in ids:
    # A deadline in seconds, not a count of polls: a debug build on a loaded CI machine decodes slowly.
    state, deadline = {}, time.monotonic() + 300
    while time.monotonic() < deadline:
        state = json.loads(call(f"/api/jobs/{job}")[1])
        if state["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.2)
    assert state["state"] == "succeeded", state
    events = call(f"/api/jobs/{job}/events")[1].decode()
    # A stream opened after the job ended carries its final state.
    assert events.startswith("event: ") and '"state":"succeeded"' in events, events[-300:]
    for link in state["images"]:
        assert call(link)[1].startswith(b"\x89PNG"), link
print(f"jobs: 4 on replicas {sorted({i[0] for i in ids})}, every state, event stream and image found through the proxy")
PY
echo "check-replicas: ok"
