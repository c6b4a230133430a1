#!/usr/bin/env python3
"""Load run of `paella serve` on loopback: starts the real binary with the bundled model, sends REQUESTS
generation requests from CLIENTS concurrent clients (OpenAI's endpoint, b64_json), and reports latency
percentiles, 5xx and invalid images, and the server's memory: resident size after the first 20 requests and after
the run (the second must be within 10% of the first: no leak per request) and the peak.

    python3 scripts/load-server.py [--requests 200] [--clients 8] [--paella PATH] [--port 18180]

Bounded: every request has a timeout, and the run stops after --deadline seconds whatever happens. Exit status 1
when any request failed, any image is invalid or memory grew by more than 10%. Standard library only.
"""
import argparse
import base64
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib


def png_is_valid(data):
    """Whether `data` is a complete PNG whose pixel data inflates to the size its header promises."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return False
    offset, header, idat = 8, None, b""
    while offset + 12 <= len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind = data[offset + 4:offset + 8]
        body = data[offset + 8:offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length:offset + 12 + length])
        if zlib.crc32(kind + body) != crc:
            return False
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        offset += 12 + length
    if header is None:
        return False
    width, height, depth, colour = header[:4]
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
    if depth != 8 or channels is None:
        return False
    return len(zlib.decompress(idat)) == height * (1 + width * channels)


def memory_kib(pid):
    """(resident, peak resident) of the process, in KiB, from /proc."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--port", type=int, default=18180)
    parser.add_argument("--paella", default=None, help="the paella binary (default: swift build -c release's)")
    parser.add_argument("--deadline", type=float, default=900, help="seconds after which the run stops")
    arguments = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binary = arguments.paella
    if binary is None:
        subprocess.run(["swift", "build", "-c", "release", "--product", "paella"], cwd=root, check=True)
        folder = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=root, check=True,
                                capture_output=True, text=True).stdout.strip()
        binary = os.path.join(folder, "paella")
    # Room for every client's request in the queue: the run measures latency under load, not refusals. The log
    # goes to a file: a pipe nobody reads fills after a few hundred request lines and then blocks the server.
    log = tempfile.TemporaryFile()
    server = subprocess.Popen([binary, "serve", "--port", str(arguments.port), "--queue", str(arguments.clients)],
                              cwd=root, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{arguments.port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2).read()
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        else:
            log.seek(0)
            raise SystemExit("the server did not start: " + log.read()[-2000:].decode(errors="replace"))
        report = run(base, server.pid, arguments)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    print(json.dumps(report, indent=2))
    failed = report["server_errors"] + report["other_errors"] + report["invalid_images"]
    if failed or report["requests_done"] < arguments.requests or report["rss_growth"] > 0.10:
        print("load-server: FAILED", file=sys.stderr)
        sys.exit(1)
    print("load-server: ok")


def run(base, pid, arguments):
    prompts = ["a large red circle at the top left on a white background", "a small blue star on the right",
               "a green triangle at the bottom on a gray background", "a yellow square in the centre"]
    lock = threading.Lock()
    latencies, statuses, invalid = [], {}, [0]
    next_request, rss_after_20 = [0], [None]
    # Resident size every tenth of the run, to tell a warm-up that levels off from a leak that keeps growing.
    rss_curve = {}
    every = max(arguments.requests // 10, 1)
    stop = time.monotonic() + arguments.deadline

    def client():
        while time.monotonic() < stop:
            with lock:
                index = next_request[0]
                if index >= arguments.requests:
                    return
                next_request[0] += 1
            body = json.dumps({"prompt": prompts[index % len(prompts)], "n": 1, "size": "64x64",
                               "response_format": "b64_json", "seed": index}).encode()
            request = urllib.request.Request(base + "/v1/images/generations", data=body,
                                             headers={"Content-Type": "application/json"})
            started = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=120) as answer:
                    status, payload = answer.status, answer.read()
            except urllib.error.HTTPError as error:
                status, payload = error.code, b""
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                status, payload = 0, b""
            elapsed = time.monotonic() - started
            ok = status == 200 and all(png_is_valid(base64.b64decode(item["b64_json"]))
                                       for item in json.loads(payload)["data"])
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    latencies.append(elapsed)
                    if not ok:
                        invalid[0] += 1
                done = sum(statuses.values())
                if done == 20 and rss_after_20[0] is None:
                    rss_after_20[0] = memory_kib(pid)[0]
                if done % every == 0:
                    rss_curve[done] = round(memory_kib(pid)[0] / 1024, 1)

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(arguments.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    rss, peak = memory_kib(pid)
    latencies.sort()

    def percentile(p):
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))], 3) if latencies else None

    base_rss = rss_after_20[0] or rss
    return {
        "requests": arguments.requests, "clients": arguments.clients, "requests_done": sum(statuses.values()),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors": sum(v for k, v in statuses.items() if k >= 500),
        "other_errors": sum(v for k, v in statuses.items() if k != 200 and k < 500),
        "invalid_images": invalid[0], "wall_s": round(wall, 1),
        "throughput_per_s": round(len(latencies) / wall, 2) if wall else None,
        "latency_p50_s": percentile(50), "latency_p99_s": percentile(99), "latency_max_s": percentile(100),
        "rss_after_20_mib": round(base_rss / 1024, 1), "rss_after_run_mib": round(rss / 1024, 1),
        "rss_growth": round(rss / base_rss - 1, 3), "peak_rss_mib": round(peak / 1024, 1),
        "rss_mib_by_requests_done": {str(k): v for k, v in sorted(rss_curve.items())},
    }


if __name__ == "__main__":
    main()
