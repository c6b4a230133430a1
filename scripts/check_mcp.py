"""Drives Paella's MCP server with the official MCP Python SDK (PyPI `mcp`), as an agent does: initialize,
tools/list, tools/call generate_image with a progress token, a bad argument, resources/list and resources/read,
then a long call abandoned after its first step (the SDK sends notifications/cancelled). Checks one progress
notification per sampling step, that the returned PNG decodes, and that the server's log (SERVER_LOG) says the
abandoned call was cancelled.

    python check_mcp.py stdio SERVER_LOG PAELLA_EXECUTABLE MODEL_FOLDER   # starts `paella mcp`, its stderr to SERVER_LOG
    python check_mcp.py http SERVER_LOG URL API_KEY                       # /mcp of a running `paella serve`
"""
import asyncio
import base64
import struct
import sys
import time
import zlib

import anyio

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
import httpx2


def decode_png(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG after checking every chunk's CRC and inflating its pixel rows in full."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), "not a PNG"
    position, idat, header = 8, b"", None
    while position < len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        kind = data[position + 4:position + 8]
        body = data[position + 8:position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length:position + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    width, height, depth, colour = header[:4]
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    rows = zlib.decompress(idat)
    assert depth == 8 and len(rows) == height * (1 + width * channels), "pixel data of the wrong size"
    return width, height


async def check(session: ClientSession, transport: str, server_log: str) -> None:
    hello = await session.initialize()
    print(f"{transport} initialize:", hello.server_info.name, hello.server_info.version, "protocol", hello.protocol_version)

    tools = sorted(tool.name for tool in (await session.list_tools()).tools)
    assert tools == ["edit_image", "generate_image", "interpolate", "vary_image"], tools
    print("tools/list:", ", ".join(tools))

    progress = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    result = await session.call_tool(
        "generate_image", {"prompt": "a large red circle at the top left on a white background", "seed": 3,
                           "steps": 4, "size": "64x64"}, progress_callback=on_progress)
    assert not result.is_error, result
    images = [item for item in result.content if item.type == "image"]
    texts = [item.text for item in result.content if item.type == "text"]
    assert len(images) == 1 and images[0].mime_type == "image/png", result.content
    width, height = decode_png(base64.b64decode(images[0].data))
    assert (width, height) == (64, 64), (width, height)
    assert '"seed":3' in texts[0], texts
    assert [done for done, _, _ in progress] == [1, 2, 3, 4] and all(total == 4 for _, total, _ in progress), progress
    print(f"tools/call generate_image: a {width}x{height} PNG that decodes; progress {[int(d) for d, _, _ in progress]} of 4;",
          texts[0].splitlines()[0])

    refused = await session.call_tool("generate_image", {"prompt": "x", "steps": 100000})
    assert refused.is_error and refused.content[0].text.startswith("The step count 100000 is out of range"), refused
    print("tools/call with steps 100000: tool error:", refused.content[0].text)

    resources = (await session.list_resources()).resources
    assert [str(r.uri) for r in resources] == ["paella://images/1.png"], resources
    contents = (await session.read_resource("paella://images/1.png")).contents
    assert base64.b64decode(contents[0].blob) == base64.b64decode(images[0].data)
    print("resources/list and resources/read: paella://images/1.png, the same PNG")

    # Abandoning a call makes the SDK send notifications/cancelled; the server stops before its next step.
    started = anyio.Event()

    async def first_step(done: float, total: float | None, message: str | None) -> None:
        started.set()

    async def long_call() -> None:
        await session.call_tool("generate_image", {"prompt": "a blue star", "steps": 100, "size": "256x256", "n": 4},
                                progress_callback=first_step)

    async with anyio.create_task_group() as calls:
        calls.start_soon(long_call)
        await started.wait()
        calls.cancel_scope.cancel()
    deadline = time.monotonic() + 30
    while "tool call cancelled" not in open(server_log).read():
        assert time.monotonic() < deadline, "the server did not report the abandoned call as cancelled"
        await asyncio.sleep(0.1)
    began = time.monotonic()
    after = await session.call_tool("generate_image", {"prompt": "a red circle", "steps": 2, "size": "64x64"})
    assert not after.is_error, after
    print(f"notifications/cancelled: the server cancelled the abandoned 100-step call; the next call took {time.monotonic() - began:.1f} s")


async def over_stdio(server_log: str, paella: str, model: str) -> None:
    server = StdioServerParameters(command=paella, args=["mcp", "--model", model])
    with open(server_log, "w") as log:
        async with stdio_client(server, errlog=log) as (read, write):
            async with ClientSession(read, write) as session:
                await check(session, "stdio", server_log)


async def over_http(server_log: str, url: str, key: str) -> None:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await check(session, "http", server_log)


if __name__ == "__main__":
    transport, *arguments = sys.argv[1:]
    asyncio.run({"stdio": over_stdio, "http": over_http}[transport](*arguments))
    print(f"check-mcp ({transport}): all checks passed")
