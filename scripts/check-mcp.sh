#!/bin/sh
# Drives the real `paella mcp` (stdio, the bundled model) with the official MCP Python SDK from PyPI, as a desktop
# agent does: initialize, tools/list, tools/call generate_image receiving a progress notification per step and a
# PNG that decodes, a tool error, resources (scripts/check_mcp.py). The SDK is installed into a virtual
# environment in a temporary folder, removed afterwards.
#   scripts/check-mcp.sh
set -eu
swift build --product paella
P="$(swift build --show-bin-path)/paella"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q mcp
"$WORK/venv/bin/python" "$(dirname "$0")/check_mcp.py" "$P" "$(pwd)/models/paella-small"
