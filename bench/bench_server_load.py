"""Load test of ``emoreason serve`` on loopback: N requests at concurrency C on the engine backend, then the
perception cache cold vs warm, in ONE run against ONE server process.

    python bench/bench_server_load.py                    # 200 requests at concurrency 16, 16 distinct clips cold/warm
    python bench/bench_server_load.py --requests 50 --concurrency 8 --clips 8 --time-limit 120

**load**: every request sends the same 2 s 512x512 clip (base64 data URL) with a question, so after the first
request perception comes from the cache; prints errors, p50/p95 latency and throughput. **cold vs warm**: ``--clips``
distinct clips (one pixel differs, so the content hashes differ) sent once each (perception runs: cold), then the same
clips again (cache hits: warm); prints both throughputs and the ratio. The server runs in a subprocess bound to
127.0.0.1; nothing leaves the machine. ``--time-limit`` bounds the whole run (seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_clips(folder: Path, n: int) -> list[str]:
    """``n`` distinct 2 s still clips of the astronaut as data URLs."""
    from tests import media_factory as mf

    urls = []
    for i in range(n):
        img = mf.astronaut().copy()
        img[0, 0] = (i * 7 % 256, i * 13 % 256, 255 - i % 256)  # a different first pixel, a different clip hash
        p = mf.write_clip(folder / f"clip{i}.mp4", img, seconds=2.0, fps=25)
        urls.append("data:video/mp4;base64," + base64.b64encode(p.read_bytes()).decode())
    return urls


def body(url: str) -> dict:
    content = [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": "Is the smile genuine?"}]
    return {"model": "emoreason", "messages": [{"role": "user", "content": content}]}


async def run_batch(base: str, bodies: list[dict], concurrency: int, deadline: float) -> dict:
    import httpx

    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def one(client: httpx.AsyncClient, b: dict) -> None:
        async with sem:
            t = time.perf_counter()
            timeout = max(1.0, deadline - time.monotonic())
            try:
                r = await client.post(f"{base}/v1/chat/completions", json=b, timeout=timeout)
                status = r.status_code
                if status == 200 and not r.json()["emoreason"]["qa"]["answer"]:
                    status = -1  # an empty answer counts as an error
            except httpx.HTTPError:
                status = 0
            latencies.append(time.perf_counter() - t)
            statuses[status] = statuses.get(status, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    t0 = time.perf_counter()
    async with httpx.AsyncClient(limits=limits) as client:
        await asyncio.gather(*(one(client, b) for b in bodies))
    wall = time.perf_counter() - t0
    xs = sorted(latencies)
    return {
        "requests": len(bodies),
        "errors": sum(v for k, v in statuses.items() if k != 200),
        "statuses": statuses,
        "p50_ms": round(1000 * statistics.median(xs), 1),
        "p95_ms": round(1000 * xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))], 1),
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(bodies) / wall, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--clips", type=int, default=16, help="distinct clips for the cold/warm comparison")
    ap.add_argument("--server-concurrency", type=int, default=2, help="the server's --max-concurrency")
    ap.add_argument("--time-limit", type=float, default=300.0, help="seconds for the whole run")
    args = ap.parse_args()
    deadline = time.monotonic() + args.time_limit
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "emoreason", "-q", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--max-concurrency", str(args.server_concurrency), "--queue-size", str(4 * args.concurrency),
           "--cache-size", str(args.clips + 4), "--timeout", str(args.time_limit)]  # fmt: skip
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        urls = make_clips(Path(tmp), args.clips + 1)
        server = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            while True:
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    print("the server did not start", file=sys.stderr)
                    return 1
                time.sleep(0.2)
            load = asyncio.run(run_batch(base, [body(urls[-1])] * args.requests, args.concurrency, deadline))
            cold = asyncio.run(run_batch(base, [body(u) for u in urls[:-1]], args.concurrency, deadline))
            warm = asyncio.run(run_batch(base, [body(u) for u in urls[:-1]], args.concurrency, deadline))
            metrics = httpx.get(f"{base}/metrics", timeout=5).json()
        finally:
            server.terminate()
            server.wait(10)
    print(f"load  {args.requests} requests, concurrency {args.concurrency}, one clip (cache warm after the first):")
    print(f"      errors {load['errors']}  p50 {load['p50_ms']} ms  p95 {load['p95_ms']} ms  "
          f"throughput {load['throughput_rps']} req/s  ({load['wall_s']} s)")  # fmt: skip
    print(f"cold  {args.clips} distinct clips: p50 {cold['p50_ms']} ms  throughput {cold['throughput_rps']} req/s  "
          f"errors {cold['errors']}")  # fmt: skip
    print(f"warm  same clips again:   p50 {warm['p50_ms']} ms  throughput {warm['throughput_rps']} req/s  "
          f"errors {warm['errors']}")  # fmt: skip
    print(f"warm/cold throughput ratio: {warm['throughput_rps'] / cold['throughput_rps']:.1f}x")
    print("server /metrics:", json.dumps({k: metrics[k] for k in ("requests", "errors", "latency_ms", "cache")}))
    return 0 if load["errors"] == cold["errors"] == warm["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
