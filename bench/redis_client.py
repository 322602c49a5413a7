"""The quota store's Redis client vs redis-py's asyncio client, on the quota script itself.

Starts a redis-server on a free loopback port and runs the quota decision (``_ACQUIRE`` from
``nluserve.quota.redis``) through each client on uvloop, in interleaved blocks so a noisy
machine drifts on both alike:

- ``redis-py``: ``redis.asyncio`` with its connection pool and hiredis parser, as the quota store
  used it before (``register_script``, ``socket_timeout=0.5``);
- ``pipelined``: ``nluserve.quota.resp.PipelinedRedis``, one connection per process.

At concurrency 1 it reports the median wall time per call and the client's CPU per call; at
concurrency C (``--concurrency``, several coroutines in one process, as one worker's requests)
calls per second. Prints each ratio pipelined / redis-py.

    .venv/bin/python bench/redis_client.py [--calls 2000] [--blocks 4] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
import uvloop

from nluserve.quota.redis import _ACQUIRE
from nluserve.quota.resp import PipelinedRedis

KEYS = ["bench:b:t"]  # the bucket; the script builds the day key from the stem below
ARGS = [10**12, 10**9, 10**9, 1, "bench:q:t:", "bench:r:t"]

Call = Callable[[], Awaitable[Any]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def clients(url: str) -> tuple[dict[str, Call], Callable[[], Awaitable[None]]]:
    legacy = aioredis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    script = legacy.register_script(_ACQUIRE)
    pipelined = PipelinedRedis(url)

    async def close() -> None:
        await legacy.aclose()
        await pipelined.close()

    return {
        "redis-py": lambda: script(keys=KEYS, args=ARGS),
        "pipelined": lambda: pipelined.eval(_ACQUIRE, KEYS, ARGS),
    }, close


async def serial(call: Call, n: int) -> tuple[float, float]:
    """Median wall seconds per call, and mean process CPU seconds per call."""
    times = []
    cpu = time.process_time()
    for _ in range(n):
        t = time.perf_counter()
        await call()
        times.append(time.perf_counter() - t)
    return statistics.median(times), (time.process_time() - cpu) / n


async def concurrent(call: Call, n: int, concurrency: int) -> float:
    """Calls per second with ``concurrency`` coroutines sharing ``n`` calls."""
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - t)


async def run(url: str, calls: int, blocks: int, concurrency: int) -> dict[str, dict[str, list]]:
    found: dict[str, dict[str, list]] = {}
    calls_of, close = await clients(url)
    try:
        for call in calls_of.values():
            for _ in range(300):
                await call()
        for _ in range(blocks):
            for name, call in calls_of.items():
                wall, cpu = await serial(call, calls)
                rate = await concurrent(call, calls, concurrency)
                row = found.setdefault(name, {"wall": [], "cpu": [], "rate": []})
                row["wall"].append(wall)
                row["cpu"].append(cpu)
                row["rate"].append(rate)
    finally:
        await close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server is not installed: apt-get install -y redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            [server, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", data],
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit("redis-server did not start") from None
                    time.sleep(0.05)
            url = f"redis://127.0.0.1:{port}/0"
            found = uvloop.run(run(url, args.calls, args.blocks, args.concurrency))
        finally:
            proc.terminate()
            proc.wait(10)
    med = {n: {k: statistics.median(v) for k, v in row.items()} for n, row in found.items()}
    for name, row in med.items():
        print(
            f"{name:10} c=1: median {row['wall'] * 1e6:.0f} us/call, client CPU "
            f"{row['cpu'] * 1e6:.0f} us/call; c={args.concurrency}: {row['rate']:.0f} calls/s "
            f"(blocks: {', '.join(f'{v:.0f}' for v in found[name]['rate'])})"
        )
    old, new = med["redis-py"], med["pipelined"]
    print(
        f"pipelined / redis-py: c=1 wall {new['wall'] / old['wall']:.2f}, "
        f"CPU {new['cpu'] / old['cpu']:.2f}; c={args.concurrency} calls/s "
        f"{new['rate'] / old['rate']:.2f}"
    )


if __name__ == "__main__":
    main()
