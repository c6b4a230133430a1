#!/bin/sh
# Drives Paella's MCP server with the official MCP Python SDK from PyPI, as agents do (scripts/check_mcp.py:
# initialize, tools/list, tools/call generate_image receiving a progress notification per step and a PNG that
# decodes, a tool error, resources/list and resources/read, a call abandoned mid-run that the server cancels):
#   1. `paella mcp` over stdio, started by the SDK's stdio client as a desktop agent starts it;
#   2. /mcp of the real `paella serve` on loopback with an API key, through the SDK's streamable HTTP client,
#      then SIGTERM and a clean exit.
# The SDK goes into a virtual environment in a temporary folder, removed afterwards.
#   scripts/check-mcp.sh [PORT]
set -eu
PORT=${1:-18090}
KEY=check-mcp-key
swift build --product paella
P="$(swift build --show-bin-path)/paella"
MODEL="$(pwd)/models/paella-small"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 -m venv "$WORK/venv"
# The version check_mcp.py was written against (the 2.x client API: streamable_http_client, snake_case fields).
"$WORK/venv/bin/pip" install -q "mcp==2.3.0"
PYTHON="$WORK/venv/bin/python"
CHECK="$(dirname "$0")/check_mcp.py"

"$PYTHON" "$CHECK" stdio "$WORK/mcp.log" "$P" "$MODEL" || { tail -20 "$WORK/mcp.log" >&2; exit 1; }

"$P" serve --model "$MODEL" --port "$PORT" --api-key "$KEY" >"$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
"$PYTHON" "$CHECK" http "$WORK/serve.log" "http://127.0.0.1:$PORT/mcp" "$KEY" || { tail -20 "$WORK/serve.log" >&2; exit 1; }
kill -TERM "$SERVER"
STATUS=0
wait "$SERVER" || STATUS=$?
[ "$STATUS" = 0 ] || { echo "check-mcp: paella serve exited with status $STATUS after SIGTERM" >&2; tail -20 "$WORK/serve.log" >&2; exit 1; }
echo "check-mcp: paella serve stopped cleanly on SIGTERM"
