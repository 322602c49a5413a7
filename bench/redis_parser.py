"""redis-py's reply parsers side by side: hiredis (C) vs pure Python, on a quota-like script.

Starts a redis-server on a free loopback port and times one ``EVALSHA`` (INCR, EXPIRE, a
three-value reply, like the quota script) through redis.asyncio on uvloop, in interleaved blocks
so a noisy machine drifts on both parsers alike. Prints the median per-call wall time of each and
their ratio.

    .venv/bin/python bench/redis_parser.py [--calls 2000] [--blocks 4]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

import redis.asyncio as aioredis
import uvloop
from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser

SCRIPT = "local v = redis.call('INCR', KEYS[1]) redis.call('EXPIRE', KEYS[1], 100) return {v, 5, 7}"
PARSERS = {"hiredis": _AsyncHiredisParser, "python": _AsyncRESP2Parser}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def block(port: int, parser: type, calls: int) -> float:
    """Median seconds per EVALSHA over ``calls`` calls on one pooled connection."""
    client = aioredis.Redis(
        connection_pool=aioredis.ConnectionPool(host="127.0.0.1", port=port, parser_class=parser)
    )
    sha = await client.script_load(SCRIPT)
    for _ in range(200):
        await client.evalsha(sha, 1, "bench:quota")
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        await client.evalsha(sha, 1, "bench:quota")
        times.append(time.perf_counter() - t)
    await client.aclose()
    return statistics.median(times)


async def run(port: int, calls: int, blocks: int) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {name: [] for name in PARSERS}
    for _ in range(blocks):
        for name, parser in PARSERS.items():
            found[name].append(await block(port, parser, calls))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--blocks", type=int, default=4)
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
            found = uvloop.run(run(port, args.calls, args.blocks))
        finally:
            proc.terminate()
            proc.wait(10)
    medians = {name: statistics.median(v) * 1e6 for name, v in found.items()}
    for name, values in found.items():
        blocks = ", ".join(f"{v * 1e6:.0f}" for v in values)
        print(f"{name:8} median {medians[name]:.0f} us per EVALSHA (blocks: {blocks})")
    print(f"python / hiredis = {medians['python'] / medians['hiredis']:.2f}")


if __name__ == "__main__":
    main()
