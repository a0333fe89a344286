"""Peak memory of ``emoreason serve`` under N concurrent maximum-size uploads, and how long a slow client keeps a
connection, against ONE server process on 127.0.0.1.

    python bench/bench_server_memory.py                          # 8 uploads of 80 MB at once
    python bench/bench_server_memory.py --uploads 8 --mb 80 --source /tmp/old   # the same against another checkout

**memory**: ``--uploads`` clients each send a chat completion whose clip is a ``--mb`` MB file of random bytes (the
largest the server accepts: it runs with ``--max-upload-mb`` equal to it) as a base64 data URL, all at once. Random
bytes are not a video, so every request that gets through ends in 422 after its upload was read, decoded, hashed and
written; the server's resident memory is sampled from ``/proc/PID/status`` (VmRSS every 20 ms, and VmHWM, the kernel's
high-water mark) and printed before, at the peak and after. **slow client**: one connection sends a request header a
byte a second; prints how long the server kept it (bounded by ``--slow-limit``). ``--source`` runs the server from
another checkout (e.g. ``git archive`` of an older commit) for a before/after comparison. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def request_bytes(port: int, body: bytes) -> bytes:
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()  # fmt: skip
    return head + body


def post(port: int, payload: bytes, out: list, deadline: float) -> None:
    """Send ``payload`` on a fresh connection; append (status line, seconds) to ``out``."""
    t0 = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=max(1.0, deadline - time.monotonic())) as s:
            s.sendall(payload)
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        out.append((reply.split(b"\r\n", 1)[0].decode(errors="replace"), time.monotonic() - t0))
    except OSError as e:
        out.append((f"error: {e}", time.monotonic() - t0))


def slow_client(port: int, limit_s: float) -> str:
    """Trickle a request header a byte a second; how long the server kept the connection."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(1.0)
        line = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000
        for b in line:
            if time.monotonic() - t0 > limit_s:
                return f"still open after {limit_s:g} s (gave up)"
            try:
                s.sendall(bytes([b]))
                got = s.recv(4096)
                if not got or got.startswith(b"HTTP/1.1 408"):
                    return f"closed by the server after {time.monotonic() - t0:.1f} s ({got[:25]!r})"
            except TimeoutError:
                pass
            except OSError:
                return f"closed by the server after {time.monotonic() - t0:.1f} s"
    return "the whole header was sent"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--uploads", type=int, default=8, help="concurrent uploads")
    ap.add_argument("--mb", type=float, default=80.0, help="size of each clip, and the server's --max-upload-mb")
    ap.add_argument("--source", type=Path, default=ROOT, help="checkout to run the server from")
    ap.add_argument("--slow-limit", type=float, default=30.0, help="seconds the slow client tries at most")
    ap.add_argument("--time-limit", type=float, default=300.0, help="seconds for the upload phase")
    args = ap.parse_args()
    port = free_port()
    cmd = [sys.executable, "-m", "emoreason", "-q", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--max-upload-mb", str(args.mb), "--no-asr", "--timeout", str(args.time_limit)]  # fmt: skip
    source = args.source.resolve()
    server = subprocess.Popen(cmd, cwd=source, env={**os.environ, "PYTHONPATH": str(source)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(100).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                print("the server did not start", file=sys.stderr)
                return 1
            time.sleep(0.2)
        clip = os.urandom(int(args.mb * 1024 * 1024))
        url = "data:video/mp4;base64," + base64.b64encode(clip).decode()
        del clip
        body = json.dumps({"model": "emoreason", "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": url}}]}]}).encode()  # fmt: skip
        del url
        payload = request_bytes(port, body)
        del body
        idle, _ = rss_mb(server.pid)
        results: list = []
        end = time.monotonic() + args.time_limit
        threads = [threading.Thread(target=post, args=(port, payload, results, end)) for _ in range(args.uploads)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        peak = idle
        while any(t.is_alive() for t in threads) and time.monotonic() < end:
            peak = max(peak, rss_mb(server.pid)[0])
            time.sleep(0.02)
        for t in threads:
            t.join(max(0.0, end - time.monotonic()))
        wall = time.monotonic() - t0
        after, hwm = rss_mb(server.pid)
        slow = slow_client(port, args.slow_limit)
    finally:
        server.terminate()
        server.wait(10)
    statuses: dict[str, int] = {}
    for line, _ in results:
        statuses[line] = statuses.get(line, 0) + 1
    print(f"server from {source}: {args.uploads} concurrent uploads of {args.mb:g} MB "
          f"({len(payload) / 1e6:.0f} MB request each), {wall:.1f} s")  # fmt: skip
    print(f"  RSS idle {idle:.0f} MB, peak {max(peak, hwm):.0f} MB (sampled {peak:.0f}, VmHWM {hwm:.0f}), "
          f"after {after:.0f} MB")  # fmt: skip
    print(f"  answers: {json.dumps(statuses)}")
    print(f"  slow client (a header byte a second): {slow}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
