"""Added latency of auth + quota + audit per call: auth off vs SQLite vs Redis, in one run.

Three nluserve servers (``--models general --workers 1``) run side by side:

- off: ``NLUSERVE_AUTH=false``, the engine alone;
- sqlite: auth on, a fresh data directory (``nluserve migrate``, one tenant whose quota and
  rate limit are far above what the run sends), quotas in SQLite;
- redis: the same with quotas in a redis-server this script starts on a free loopback port.

wrk sends every server the same short body with the tenant's API key, one configuration at a
time, interleaved (off, sqlite, redis, then redis, sqlite, off, ...) so slow drift of a busy
machine falls on every configuration alike. Latencies are pooled over the rounds from wrk's
full histogram, and each auth configuration's p50 and p99 are compared with auth off. Every
response must be 2xx; afterwards the quota counters and the audit log are checked to have
counted the calls, so "auth on" really did the work.

An in-process microbenchmark times the pieces of the request path alone (verify_api_key with
a warm cache, SqliteQuotaStore.acquire, RedisQuotaStore.acquire, the audit append, and the
audit flush that runs in the background) for a per-call cost without HTTP noise.

    .venv/bin/python bench/auth_overhead.py --quick                      # smoke test, ~1 min
    .venv/bin/python bench/auth_overhead.py --json bench/out/auth_overhead.json

Needs ``wrk`` and ``redis-server`` (apt-get install -y wrk redis-server). Runs from bench/
like bench/serve.py, whose server, wrk and process-tree helpers it reuses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import raw
import serve
from rich.table import Table

REPO = serve.REPO
WORK = serve.OUT / "auth_overhead"
PYTHON = serve.PYTHON
REDIS_BIN = Path(os.environ.get("NLUSERVE_TEST_REDIS", "/usr/bin/redis-server"))
CONFIGS = ("off", "sqlite", "redis")
MODEL = "general"
PATH = f"/v1/models/{MODEL}/predict"
BODY = json.dumps({"text": "张三在北京大学读书。"}, ensure_ascii=False)
# Far above anything a run sends: no call may be refused (429) by the limits themselves.
LIMITS = ("--quota-daily", str(10**9), "--rate", "1000000", "--burst", "1000000")
GOAL_P50_MS = 0.5  # the issue's target: added p50 per call
FLUSH_BATCH = 100
console = serve.console


# --------------------------------------------------------------------------- redis


class Redis:
    """A throw-away redis-server on a free loopback port (as tests/support/services.py)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = serve.free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [
            *(str(REDIS_BIN), "--port", str(self.port), "--bind", "127.0.0.1"),
            *("--dir", str(self.directory), "--save", "", "--appendonly", "no"),
            *("--logfile", str(self.directory / "redis.log")),
        ]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server not listening on {self.port} after 30 s")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


# --------------------------------------------------------------------------- setup


def nluserve_env(data_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    return {"NLUSERVE_DATA_DIR": str(data_dir), **extra}


def cli(args: Sequence[str], env: dict[str, str]) -> Any:
    """``python -m nluserve ARGS --json`` with ``env`` added; returns the parsed JSON."""
    done = subprocess.run(
        [PYTHON, "-m", "nluserve", *args, "--json"],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"nluserve {' '.join(args)} failed: {done.stdout}{done.stderr}")
    return json.loads(done.stdout)


@dataclass
class Tenant:
    data_dir: Path
    tenant_id: str
    api_key: str


def make_tenant(data_dir: Path, env: dict[str, str]) -> Tenant:
    """A fresh data directory, migrated, with one tenant that no limit will stop."""
    shutil.rmtree(data_dir, ignore_errors=True)
    cli(["migrate"], env)
    out = cli(["tenant", "create", "bench", *LIMITS], env)
    return Tenant(data_dir, out["tenant"]["id"], out["api_key"])


def server_spec(name: str, env: dict[str, str], port: int) -> serve.ServerSpec:
    return serve.ServerSpec(
        name=f"auth-{name}",
        argv=[
            *(PYTHON, "-m", "nluserve", "serve", "--workers", "1"),
            *("--port", str(port), "--models", MODEL),
        ],
        path=PATH,
        ready_path="/readyz",
        env={"NLUSERVE_DEFAULT_NER_MODEL": MODEL, **env},
    )


def post(url: str, key: str | None) -> int:
    """One request by hand; returns the status (the body must be JSON when it is 200)."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, BODY.encode(), headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            json.loads(resp.read())
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


# --------------------------------------------------------------------------- load generator

LUA = r"""
wrk.method = "POST"
wrk.body = @BODY@
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = @AUTH@

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
  -- the whole histogram (microseconds:count), so the rounds can be pooled exactly
  local parts = {}
  for i = 1, #latency do
    local us, n = latency(i)
    parts[#parts + 1] = string.format("%d:%d", us, n)
  end
  io.write("WRKHIST " .. table.concat(parts, ",") .. "\n")
end
"""


@dataclass
class Run:
    """One wrk run against one configuration."""

    config: str
    round: int
    concurrency: int
    requests: int
    duration_s: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    hist: dict[int, int] = field(default_factory=dict, repr=False)


def write_script(config: str, api_key: str) -> Path:
    script = WORK / "wrk" / f"{config}.lua"
    script.parent.mkdir(parents=True, exist_ok=True)
    text = LUA.replace("@BODY@", serve.lua_string(BODY.encode()))
    text = text.replace("@AUTH@", serve.lua_string(f"Bearer {api_key}".encode()))
    script.write_text(text, encoding="ascii")
    return script


def run_wrk(
    url: str, script: Path, config: str, rnd: int, concurrency: int, duration: float
) -> Run:
    argv = [
        *("wrk", f"-c{concurrency}", f"-t{min(concurrency, 2)}", f"-d{max(1, round(duration))}s"),
        *("--timeout", "60s", "-s", str(script), url),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120)
    summary = re.search(r"^WRKJSON (\{.*\})$", done.stdout, re.MULTILINE)
    hist_line = re.search(r"^WRKHIST ?(.*)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or summary is None or hist_line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    res = json.loads(summary.group(1))
    hist = {int(us): int(n) for us, n in (p.split(":") for p in hist_line.group(1).split(",") if p)}
    seconds = res["duration_us"] / 1e6
    return Run(
        config=config,
        round=rnd,
        concurrency=concurrency,
        requests=res["requests"],
        duration_s=round(seconds, 2),
        requests_per_s=res["requests"] / seconds,
        p50_ms=res["p50_us"] / 1000,
        p99_ms=res["p99_us"] / 1000,
        max_ms=res["max_us"] / 1000,
        non_2xx=res["status"],
        socket_errors=sum(res[k] for k in ("connect", "read", "write", "timeout")),
        hist=hist,
    )


def percentile(hist: dict[int, int], q: float) -> float:
    """Nearest-rank percentile (ms) of a microsecond histogram; NaN when it is empty."""
    total = sum(hist.values())
    if not total:
        return float("nan")
    rank, seen = max(1, -(-total * q // 100)), 0
    for us in sorted(hist):
        seen += hist[us]
        if seen >= rank:
            return us / 1000
    return max(hist) / 1000


# --------------------------------------------------------------------------- microbenchmark


async def time_op(fn: Callable[[int], Awaitable[object]], n: int) -> dict[str, float]:
    """p50/p99/mean in microseconds of ``await fn(i)`` over ``n`` calls after a warm-up."""
    for i in range(min(100, n)):
        await fn(-1 - i)
    samples = []
    for i in range(n):
        start = time.perf_counter_ns()
        await fn(i)
        samples.append(time.perf_counter_ns() - start)
    samples.sort()
    return {
        "n": n,
        "p50_us": samples[n // 2] / 1000,
        "p99_us": samples[min(n - 1, int(n * 0.99))] / 1000,
        "mean_us": sum(samples) / n / 1000,
    }


async def microbench(work: Path, redis_url: str, n: int) -> dict[str, dict[str, float]]:
    """The request path's tenancy pieces in-process, on their own tenant and databases."""
    from nluserve.audit.recorder import AuditRecorder
    from nluserve.db.migrate import upgrade
    from nluserve.quota.redis import RedisQuotaStore
    from nluserve.quota.sqlite import SqliteQuotaStore
    from nluserve.settings import Settings, ensure_data_dir
    from nluserve.tenancy.auth import Authenticator
    from nluserve.tenancy.gate import Gate, policy_of
    from nluserve.tenancy.service import TenancyService, database_url

    shutil.rmtree(work, ignore_errors=True)
    settings = Settings(data_dir=work, auth=True)
    ensure_data_dir(settings)
    upgrade(database_url(settings))
    svc = TenancyService.from_settings(settings)
    svc.ensure_signing_key()
    tenant, new_key = svc.create_tenant("bench-micro", 10**9, 1e6, 10**6)
    key, header = new_key.api_key, f"Bearer {new_key.api_key}"
    auth = Authenticator(svc.repo, svc.pepper, svc.codec, settings.auth_cache_s)
    principal = await auth.verify_api_key(key)  # fills the key and tenant caches
    sqlite_store = SqliteQuotaStore(work / "quota.db")
    redis_store = RedisQuotaStore(redis_url)
    audit = AuditRecorder(svc.repo, work / "spool")  # not started: flushed by hand below
    gate = Gate(auth, sqlite_store, audit, settings.audit_text)
    policy = policy_of(principal)
    ticket = await gate.admit(principal)
    texts = [json.loads(BODY)["text"]]

    async def record(i: int) -> None:
        gate.record(ticket, f"micro-{i}", PATH, MODEL, "ner", texts, 200)

    results: dict[str, dict[str, float]] = {}
    try:
        ops: list[tuple[str, Callable[[int], Awaitable[object]]]] = [
            ("verify_api_key (warm cache)", lambda i: auth.verify_api_key(key)),
            ("authenticate (header + verify)", lambda i: auth.authenticate(header)),
            ("SqliteQuotaStore.acquire", lambda i: sqlite_store.acquire(tenant.id, policy)),
            ("RedisQuotaStore.acquire", lambda i: redis_store.acquire(tenant.id, policy)),
            ("audit record_call (append)", record),
        ]
        for name, fn in ops:
            results[name] = await time_op(fn, n)
        # The background task writes the buffer every 0.5 s: about 100 records at 200 calls/s.
        # Flushes of 100 records each, the first untimed (it compiles the INSERT).
        await audit.flush()
        flushes = []
        for j in range(6):
            for i in range(FLUSH_BATCH):
                await record(n + j * FLUSH_BATCH + i)
            start = time.perf_counter_ns()
            await audit.flush()
            flushes.append((time.perf_counter_ns() - start) / 1000 / FLUSH_BATCH)
        flushes = sorted(flushes[1:])
        results[f"audit flush (background, per call, batches of {FLUSH_BATCH})"] = {
            "n": len(flushes) * FLUSH_BATCH,
            "p50_us": flushes[len(flushes) // 2],
            "p99_us": flushes[-1],
            "mean_us": sum(flushes) / len(flushes),
        }
        if svc.repo.audit_count(tenant.id) != n + min(100, n) + 6 * FLUSH_BATCH:
            raise RuntimeError("microbenchmark: the audit flush lost records")
    finally:
        await redis_store.close()
        await sqlite_store.close()
        svc.repo.close()
    return results


# --------------------------------------------------------------------------- checks


def quota_counted(tenant: Tenant, redis_url: str | None) -> int:
    """Calls the tenant's quota store counted today (all days summed for SQLite)."""
    if redis_url is None:
        with contextlib.closing(sqlite3.connect(tenant.data_dir / "quota.db")) as conn:
            row = conn.execute(
                "SELECT COALESCE(SUM(used), 0) FROM daily WHERE tenant=?", (tenant.tenant_id,)
            ).fetchone()
            return int(row[0])
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return sum(
            int(client.get(k) or 0) for k in client.scan_iter(f"nluserve:q:{tenant.tenant_id}:*")
        )
    finally:
        client.close()


def audited(tenant: Tenant) -> int:
    from nluserve.db.repo import Repository

    repo = Repository(f"sqlite:///{(tenant.data_dir / 'nluserve.db').resolve()}")
    try:
        return repo.audit_count(tenant.tenant_id)
    finally:
        repo.close()


# --------------------------------------------------------------------------- report


def summarize(runs: Sequence[Run], concurrency: Sequence[int]) -> dict[str, Any]:
    """Pooled percentiles per configuration and concurrency, and the differences to auth off."""
    out: dict[str, Any] = {}
    for c in concurrency:
        rows: dict[str, Any] = {}
        for config in CONFIGS:
            mine = [r for r in runs if r.config == config and r.concurrency == c]
            if not mine:
                continue
            pooled: dict[int, int] = {}
            for r in mine:
                for us, n in r.hist.items():
                    pooled[us] = pooled.get(us, 0) + n
            rows[config] = {
                "rounds": len(mine),
                "requests": sum(r.requests for r in mine),
                "requests_per_s": sum(r.requests_per_s for r in mine) / len(mine),
                "p50_ms": percentile(pooled, 50),
                "p90_ms": percentile(pooled, 90),
                "p99_ms": percentile(pooled, 99),
                "max_ms": max(r.max_ms for r in mine),
                "non_2xx": sum(r.non_2xx for r in mine),
                "socket_errors": sum(r.socket_errors for r in mine),
                "round_p50_ms": [round(r.p50_ms, 3) for r in mine],
            }
        off = rows.get("off")
        for config, row in rows.items():
            if config == "off" or off is None:
                continue
            for q in ("p50", "p99"):
                row[f"added_{q}_ms"] = row[f"{q}_ms"] - off[f"{q}_ms"]
                row[f"{q}_ratio"] = row[f"{q}_ms"] / off[f"{q}_ms"]
            # the same difference per round (each round has every configuration once)
            row["round_added_p50_ms"] = [
                round(a - b, 3)
                for a, b in zip(row["round_p50_ms"], off["round_p50_ms"], strict=True)
            ]
        out[str(c)] = rows
    return out


def render(summary: dict[str, Any]) -> Table:
    table = Table(
        title="auth + quota + audit vs auth off (latencies pooled over the rounds)",
        caption="added = this row minus auth off at the same concurrency; "
        "ratio = this row over auth off",
    )
    cols = ("conc", "config", "n", "req/s", "p50 ms", "p99 ms", "non-2xx")
    for col in (*cols, "+p50 ms", "+p99 ms", "p50 x", "p99 x"):
        table.add_column(col, justify="left" if col == "config" else "right")
    for i, (c, rows) in enumerate(summary.items()):
        if i:
            table.add_section()
        for config, row in rows.items():
            extra = (
                [
                    f"{row['added_p50_ms']:+.2f}",
                    f"{row['added_p99_ms']:+.2f}",
                    f"{row['p50_ratio']:.2f}",
                    f"{row['p99_ratio']:.2f}",
                ]
                if "added_p50_ms" in row
                else ["", "", "", ""]
            )
            table.add_row(
                c,
                config,
                str(row["requests"]),
                f"{row['requests_per_s']:.1f}",
                f"{row['p50_ms']:.2f}",
                f"{row['p99_ms']:.2f}",
                str(row["non_2xx"] + row["socket_errors"]),
                *extra,
            )
    return table


def render_micro(micro: dict[str, dict[str, float]]) -> Table:
    table = Table(title="in-process, per call (asyncio, warm caches)")
    for col in ("piece", "n", "p50 us", "p99 us", "mean us"):
        table.add_column(col, justify="left" if col == "piece" else "right")
    for name, row in micro.items():
        table.add_row(
            name,
            str(row["n"]),
            f"{row['p50_us']:.1f}",
            f"{row['p99_us']:.1f}",
            f"{row['mean_us']:.1f}",
        )
    return table


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, help="seconds per wrk run (10; 4 with --quick)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (2)")
    parser.add_argument(
        "--concurrency", type=raw.parse_ints, help="connections per run (1,8; 1 with --quick)"
    )
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per server (3; 1)")
    parser.add_argument(
        "--micro", type=int, help="in-process iterations per piece (2000; 0: skip it)"
    )
    parser.add_argument("--quick", action="store_true", help="4 s runs at concurrency 1 only")
    parser.add_argument(
        "--nluserve-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for every server (NLUSERVE_LOG_LEVEL=warning, ...)",
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    try:
        args.nluserve_env = dict(item.split("=", 1) for item in args.nluserve_env)
    except ValueError:
        parser.error("--nluserve-env takes KEY=VALUE")
    args.duration = args.duration or (4.0 if args.quick else 10.0)
    args.concurrency = args.concurrency or ((1,) if args.quick else (1, 8))
    args.warmup = args.warmup or (1.0 if args.quick else 3.0)
    if args.micro is None:
        args.micro = 2000
    return args


def main() -> None:
    args = parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    if not REDIS_BIN.exists():
        raise SystemExit(f"{REDIS_BIN} not found: apt-get install -y redis-server")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # runs the finally blocks
    # Every configuration is set here; inherited NLUSERVE_* must not change one of them.
    for name in [k for k in os.environ if k.startswith("NLUSERVE_")]:
        del os.environ[name]
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    info = raw.machine()
    console.print(
        f"[bold]{info['cpu']}[/]: {raw.CORES} usable cores, load avg {info['loadavg_start']}; "
        f"model {MODEL}, 1 worker, concurrency {list(args.concurrency)}, {args.rounds} rounds "
        f"x {args.duration:.0f} s per configuration"
    )
    report: dict[str, Any] = {"machine": info, "body": json.loads(BODY), "checks": {}}
    report["args"] = {
        k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
    }
    redis_server = Redis(WORK / "redis")
    servers: dict[str, serve.Server] = {}
    runs: list[Run] = []
    try:
        redis_server.start()
        console.print(f"redis-server on port {redis_server.port}")
        extra = dict(args.nluserve_env)
        envs = {
            "off": nluserve_env(WORK / "data-off", {**extra, "NLUSERVE_AUTH": "false"}),
            "sqlite": nluserve_env(WORK / "data-sqlite", {**extra, "NLUSERVE_AUTH": "true"}),
            "redis": nluserve_env(
                WORK / "data-redis",
                {**extra, "NLUSERVE_AUTH": "true", "NLUSERVE_REDIS_URL": redis_server.url},
            ),
        }
        started = time.perf_counter()
        tenants = {c: make_tenant(WORK / f"data-{c}", envs[c]) for c in ("sqlite", "redis")}
        console.print(f"migrated and created tenants in {time.perf_counter() - started:.1f} s")

        if args.micro:
            console.print(f"in-process microbenchmark, {args.micro} calls per piece")
            micro = asyncio.run(microbench(WORK / "micro", redis_server.url, args.micro))
            report["micro_us"] = micro
            console.print(render_micro(micro))

        for config in CONFIGS:
            port = serve.free_port()
            server = serve.Server(
                server_spec(config, envs[config], port), port, WORK / "logs" / f"{config}.log"
            )
            servers[config] = server
            started = time.perf_counter()
            try:
                server.start()
            except RuntimeError:
                console.print(f"[red]{config} failed to start:\n{server.tail()}")
                raise
            key = tenants["sqlite" if config == "off" else config].api_key
            ok, anonymous = post(server.url + PATH, key), post(server.url + PATH, None)
            console.print(
                f"{config}: ready in {time.perf_counter() - started:.1f} s; "
                f"with key {ok}, without key {anonymous}"
            )
            if ok != 200 or anonymous != (200 if config == "off" else 401):
                raise RuntimeError(f"{config}: unexpected statuses {ok} / {anonymous}")
        scripts = {
            c: write_script(c, tenants["sqlite" if c == "off" else c].api_key) for c in CONFIGS
        }
        sids = {c: s.proc.pid if s.proc else 0 for c, s in servers.items()}
        idle = {c: serve.cpu_use(sid, 1.0) for c, sid in sids.items()}
        console.print("idle CPU use (cores): " + ", ".join(f"{c} {v:.2f}" for c, v in idle.items()))
        for config in CONFIGS:  # warm-up: not measured
            run_wrk(
                servers[config].url + PATH,
                scripts[config],
                config,
                -1,
                max(args.concurrency),
                args.warmup,
            )

        for c in args.concurrency:
            for rnd in range(args.rounds):
                order = CONFIGS if rnd % 2 == 0 else tuple(reversed(CONFIGS))
                for config in order:
                    serve.wait_idle(sids[config], idle[config])
                    run = run_wrk(
                        servers[config].url + PATH, scripts[config], config, rnd, c, args.duration
                    )
                    runs.append(run)
                    console.print(
                        f"  c={c} round {rnd} {config:6}: {run.requests_per_s:7.1f} req/s, "
                        f"p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms, "
                        f"non-2xx {run.non_2xx}, socket errors {run.socket_errors}"
                    )
        for server in servers.values():  # SIGTERM: the audit buffer is flushed on the way out
            server.stop()
        for config, tenant in tenants.items():
            # measured calls; the warm-up and the check calls come on top
            sent = sum(r.requests for r in runs if r.config == config)
            counted = quota_counted(tenant, redis_server.url if config == "redis" else None)
            logged = audited(tenant)
            report["checks"][config] = {
                "measured_calls": sent,
                "quota_counted": counted,
                "audit_rows": logged,
            }
            console.print(
                f"{config}: {sent} measured calls; quota store counted {counted}, "
                f"audit log holds {logged} (both include warm-up and check calls)"
            )
            if counted < sent or logged < sent:
                report.setdefault("notes", []).append(
                    f"{config}: fewer calls counted/audited than measured"
                )
    finally:
        for server in servers.values():
            server.stop()
        redis_server.stop()

    summary = summarize(runs, args.concurrency)
    report["summary"] = summary
    report["runs"] = [{k: v for k, v in asdict(r).items() if k != "hist"} for r in runs]
    console.print(render(summary))
    for c, rows in summary.items():
        for config in ("sqlite", "redis"):
            row = rows.get(config)
            if row is None or "added_p50_ms" not in row:
                continue
            console.print(
                f"c={c} {config}: added p50 {row['added_p50_ms']:+.3f} ms "
                f"(per round {row['round_added_p50_ms']}), added p99 {row['added_p99_ms']:+.3f} ms"
            )
    goal = []
    for config in ("sqlite", "redis"):
        row = summary.get("1", {}).get(config)
        valid = all(
            not r.non_2xx and not r.socket_errors for r in runs if r.config in ("off", config)
        )
        if row is not None and "added_p50_ms" in row and valid:
            met = row["added_p50_ms"] < GOAL_P50_MS
            goal.append({"config": config, "added_p50_ms": row["added_p50_ms"], "met": met})
            mark = "[green]met" if met else "[red]NOT met"
            console.print(
                f"goal: added p50 at c=1 < {GOAL_P50_MS} ms, {config}: "
                f"{row['added_p50_ms']:+.3f} ms {mark}"
            )
    report["goal"] = goal
    bad = sum(r.non_2xx + r.socket_errors for r in runs)
    if bad:
        console.print(f"[red]{bad} responses were not 2xx or failed: the numbers are not valid")
    for note in report.get("notes", []):
        console.print(f"[yellow]note: {note}")
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    console.print(f"load avg at end {info['loadavg_end']}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        console.print(f"wrote {args.json}")
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
