"""Load benchmark over HTTP: nluserve vs the FastAPI tutorial, a tuned tutorial, LitServe, ceiling.

For each model (an nluserve char model directory and the BERT-base-size graph of bertbase.py)
this measures, in one run on one machine:

- ceiling: the best in-process configuration (bench/raw.py's search) in texts/s, and the
  in-process latency of one text, which the server overhead is measured against;
- nluserve: ``python -m nluserve serve --workers W`` (default W = usable cores);
- tutorial: bench/baselines/tutorial_app.py under gunicorn, 3 uvicorn workers, ONNX Runtime's
  default threads; tuned: the same with ``intra_op_num_threads=1``;
- litserve: bench/baselines/litserve_app.py, LitServe with max_batch_size=8;

then load-tests each server with wrk at fixed concurrencies (requests/s, p50, p99) while
sampling the resident memory (RSS and PSS) of the server's whole process tree. nluserve also
gets a run at about half its peak rate (p99 there vs its single-request latency) and the memory
of 1 vs 4 workers. Bodies are real texts from the CMeEE unlabeled set, cut to one window of
the model (126 characters for BERT, 50 for ``general``) so every server does the same work per
request.

    .venv/bin/python bench/serve.py --quick --model /tmp/smoke_med           # smoke test
    .venv/bin/python bench/serve.py --model general                           # full run
    python3 bench/serve.py --no-char --provider cuda --only ceiling,nluserve,tutorial  # on a GPU

With ``--provider cuda`` the BERT graph runs on onnxruntime-gpu's CUDA provider everywhere: the
ceiling, nluserve (``NLUSERVE_DEVICE=cuda``) and the
tutorial servers (one CUDA session per gunicorn worker, as the tutorial would have it).
nluserve runs one worker unless ``--workers`` says more; with several, the graph runs in one
shared inference process (``NLUSERVE_INFERENCE_PROCESS=auto``; ``=off`` gives each worker its
own CUDA session, as before that process existed).

Needs ``wrk`` (apt-get install wrk). LitServe and matplotlib are optional: they are imported
from the venv or from bench/out/pydeps (see docs/benchmarks.md); without them that row or the
plot is skipped with a note.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import bertbase
import bertbase_modeldir
import numpy as np
import raw
from rich.table import Table

REPO = raw.REPO
BENCH = REPO / "bench"
OUT = BENCH / "out"
WORK = OUT / "serve"
PYDEPS = OUT / "pydeps"  # optional packages installed with --target (litserve, matplotlib)
PYTHON = sys.executable
CORES = raw.CORES
MAX_CHARS = bertbase.MAX_TOKENS - 2  # one BERT window; the char models take at least this
SERVERS = ("ceiling", "nluserve", "tutorial", "tuned", "litserve", "memory")
TUTORIAL_WORKERS = 3
MIN_REQUESTS = 50  # fewer finished requests per run: the percentiles mean little
console = raw.console

# The targets: (model key, metric in the summary, comparison, bound).
TARGETS: tuple[tuple[str, str, str, float], ...] = (
    ("bert", "vs_ceiling", ">=", 0.9),
    ("bert", "vs_tutorial", ">=", 1.5),
    ("bert", "vs_tuned", ">=", 1.0),
    ("bert", "pss_vs_tuned", "<=", 0.5),
    ("bert", "vs_litserve", ">=", 1.5),
    ("bert", "p99_half_load_vs_single", "<=", 3.0),
    ("bert", "pss_4_vs_1_workers", "<=", 1.5),
    ("char", "vs_tuned", ">=", 1.0),
    ("char", "vs_litserve", ">=", 2.0),
    ("char", "overhead_p50_ms", "<", 1.0),
)


# --------------------------------------------------------------------------- process trees


def session_pids(sid: int) -> list[int]:
    """Every live process of the session ``sid`` (servers start in their own session)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as fh:
                stat = fh.read()
        except OSError:
            continue
        # Fields after the parenthesised command: state ppid pgrp session ...
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(entry))
    return pids


def tree_memory(pids: Sequence[int]) -> tuple[float, float]:
    """Summed RSS and PSS (MiB) of the processes; PSS splits shared pages between sharers."""
    rss = pss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:  # gone, or no smaps_rollup (kernel < 4.14): fall back to VmRSS
            with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        kib = int(line.split()[1])
                        rss, pss = rss + kib, pss + kib
    return rss / 1024, pss / 1024


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds the processes have used so far."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_use(sid: int, seconds: float) -> float:
    """Cores the session's processes used over the next ``seconds``."""
    before = cpu_seconds(session_pids(sid))
    time.sleep(seconds)
    return (cpu_seconds(session_pids(sid)) - before) / seconds


def wait_idle(sid: int, idle: float, timeout: float = 120.0) -> float:
    """Wait until the server's tree is back to its idle CPU use (``idle`` cores, + 0.1).

    wrk closes its connections when a run ends, but requests the server already accepted are
    still computed; without this the next run would start behind that backlog. ``idle`` is
    what the server burns with nothing to do (LitServe's polling loops: about 0.2 cores).
    Returns the seconds waited.
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if cpu_use(sid, 0.5) < idle + 0.1:
            return time.monotonic() - start
    console.print(f"[yellow]  server still busy after {timeout:.0f} s; going on")
    return timeout


class MemorySampler:
    """Peak tree RSS/PSS of a session, sampled in a thread while a load test runs."""

    def __init__(self, sid: int, interval: float = 1.0) -> None:
        self.sid = sid
        self.interval = interval
        self.rss = self.pss = 0.0
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> None:
        pids = session_pids(self.sid)
        rss, pss = tree_memory(pids)
        self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)
        self.processes = max(self.processes, len(pids))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> MemorySampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerSpec:
    """How to start one server and how to tell it is ready."""

    name: str
    argv: list[str]
    path: str  # the predict route
    ready_path: str
    env: dict[str, str] = field(default_factory=dict)
    ready_log: tuple[str, int] | None = None  # (text, times) that must appear in its log
    start_timeout: float = 180.0


class Server:
    """A server in its own session; ``stop`` ends the whole process group and checks it is gone."""

    live: ClassVar[list[Server]] = []  # stopped on exit, whatever happens

    def __init__(self, spec: ServerSpec, port: int, log: Path) -> None:
        self.spec = spec
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, **self.spec.env}
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.spec.argv,
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        Server.live.append(self)
        deadline = time.monotonic() + self.spec.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited with {self.proc.returncode}")
            if self._ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"{self.spec.name} not ready after {self.spec.start_timeout:.0f} s")

    def _ready(self) -> bool:
        if self.spec.ready_log is not None:
            text, times = self.spec.ready_log
            if self.log.read_text(errors="replace").count(text) < times:
                return False
        try:
            with urllib.request.urlopen(self.url + self.spec.ready_path, timeout=2) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL after a grace period, then anything left by pid."""
        if self.proc is None:
            return
        sid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=25)
        except subprocess.TimeoutExpired:
            console.print(f"[yellow]{self.spec.name}: no exit 25 s after SIGTERM, killing")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sid, signal.SIGKILL)
        self.proc.wait()
        deadline = time.monotonic() + 10
        while (left := session_pids(sid)) and time.monotonic() < deadline:
            for pid in left:  # children that left the process group but not the session
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        if left:
            console.print(f"[red]{self.spec.name}: processes {left} survived SIGKILL")
        self.proc = None
        if self in Server.live:
            Server.live.remove(self)

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def stop_all(*_: object) -> None:
    for server in list(Server.live):
        server.stop()


# --------------------------------------------------------------------------- load generator

LUA = r"""
local bodies = dofile(%(bodies)s)
local path = %(path)s
local mean_delay = %(delay)f
local headers = {["Content-Type"] = "application/json"}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  i = (tid * 7919) %% #bodies
  math.randomseed(1234 + tid)
end

function request()
  i = i %% #bodies + 1
  return wrk.format("POST", path, headers, bodies[i])
end

if mean_delay > 0 then
  -- exponential think time per connection: arrivals close to a Poisson process
  function delay()
    return -mean_delay * math.log(1 - math.random())
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, "write": %%d, ' ..
    '"status": %%d, "timeout": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "max_us": %%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def lua_string(data: bytes) -> str:
    """A Lua string literal of arbitrary bytes (3-digit decimal escapes outside plain ASCII)."""
    out = []
    for byte in data:
        ch = chr(byte)
        out.append(ch if 32 <= byte < 127 and ch not in '\\"' else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def write_bodies(texts: Sequence[str], path: Path) -> Path:
    """A Lua file returning the JSON bodies (bench/out only: the data is never committed)."""
    lines = ["return {"]
    for text in texts:
        body = json.dumps({"text": text}, ensure_ascii=False).encode("utf-8")
        lines.append(f"  {lua_string(body)},")
    lines.append("}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


@dataclass
class Load:
    """One wrk run."""

    concurrency: int
    duration_s: float
    requests: int
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    target_rps: float | None = None


def run_wrk(
    url: str, path: str, bodies: Path, concurrency: int, duration: float, delay_ms: float = 0.0
) -> Load:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")
    script = WORK / "wrk" / f"{slug}-{delay_ms:.0f}.lua"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(
        LUA
        % {
            "bodies": lua_string(str(bodies).encode()),
            "path": lua_string(path.encode()),
            "delay": delay_ms,
        },
        encoding="ascii",
    )
    argv = [
        "wrk",
        f"-c{concurrency}",
        f"-t{min(concurrency, 2)}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "60s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120)
    match = re.search(r"^WRKJSON (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    res = json.loads(match.group(1))
    seconds = res["duration_us"] / 1e6
    errors = sum(res[k] for k in ("connect", "read", "write", "status", "timeout"))
    return Load(
        concurrency=concurrency,
        duration_s=round(seconds, 2),
        requests=res["requests"],
        requests_per_s=res["requests"] / seconds,
        p50_ms=res["p50_us"] / 1000,
        p90_ms=res["p90_us"] / 1000,
        p99_ms=res["p99_us"] / 1000,
        max_ms=res["max_us"] / 1000,
        errors=errors,
    )


def check_answer(url: str, body: bytes) -> None:
    """One request by hand: the route answers 200 with JSON (wrk only counts statuses)."""
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            json.loads(resp.read())
    except (OSError, ValueError) as exc:  # HTTPError is an OSError
        raise RuntimeError(f"POST {url}: {exc}") from exc


def batch_counts(url: str) -> tuple[float, float, float] | None:
    """nluserve's worker batches so far: (batches, texts, batches of one text); None elsewhere."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    total = {"count": 0.0, "sum": 0.0, "one": 0.0}
    for line in text.splitlines():
        if not line.startswith("nluserve_batch_size_texts_"):
            continue
        name, value = line.rsplit(" ", 1)
        if name.startswith("nluserve_batch_size_texts_count"):
            total["count"] += float(value)
        elif name.startswith("nluserve_batch_size_texts_sum"):
            total["sum"] += float(value)
        elif 'le="1.0"' in name:
            total["one"] += float(value)
    return (total["count"], total["sum"], total["one"]) if total["count"] else None


# --------------------------------------------------------------------------- measurements


@dataclass
class ServerResult:
    """One server on one model: a wrk run per concurrency plus the tree's peak memory."""

    model: str
    server: str
    loads: list[Load]
    rss_mib: float
    pss_mib: float
    processes: int
    idle_cores: float = 0.0  # CPU the server burns with no requests

    def peak(self) -> float:
        return max((x.requests_per_s for x in self.loads), default=float("nan"))

    def at(self, concurrency: int) -> Load | None:
        return next((x for x in self.loads if x.concurrency == concurrency), None)


@dataclass
class ModelSpec:
    """A model as each server is pointed at it."""

    key: str  # "char" or "bert"
    label: str
    model_dir: Path  # nluserve model directory
    route: str  # its manifest name
    baseline_env: dict[str, str]  # for bench/baselines/*
    ceiling: Callable[[], raw.Target]
    # Bodies are cut to one window of the model, so every server runs exactly one window per
    # request: the baselines cut longer texts where nluserve would split them.
    window: int = 0


def nluserve_spec(
    model: ModelSpec, workers: int, extra_env: dict[str, str], name: str = "nluserve"
) -> ServerSpec:
    data = WORK / "data" / name
    return ServerSpec(
        name=f"{model.key}-{name}",
        argv=[
            *(PYTHON, "-m", "nluserve", "serve", "--workers", str(workers)),
            *("--port", "{port}", "--models", str(model.model_dir)),
        ],
        path=f"/v1/models/{model.route}/predict",
        ready_path="/readyz",
        env={
            "NLUSERVE_DATA_DIR": str(data),
            "NLUSERVE_DEFAULT_NER_MODEL": model.route,
            # The engine is what is compared: the baselines have no API keys, quotas or audit.
            "NLUSERVE_AUTH": "false",
            **extra_env,
        },
    )


def tutorial_spec(model: ModelSpec, tuned: bool) -> ServerSpec:
    env = dict(model.baseline_env)
    if tuned:
        env["BENCH_ORT_THREADS"] = "1"
    name = "tuned" if tuned else "tutorial"
    return ServerSpec(
        name=f"{model.key}-{name}",
        argv=[
            *(PYTHON, "-m", "gunicorn", "-w", str(TUTORIAL_WORKERS)),
            *("-k", "uvicorn_worker.UvicornWorker", "--chdir", str(BENCH / "baselines")),
            *("--bind", "127.0.0.1:{port}", "tutorial_app:app"),
        ],
        path="/predict",
        ready_path="/health",
        env=env,
        # Each worker loads its own session after the fork; wait until all of them did.
        ready_log=("Application startup complete", TUTORIAL_WORKERS),
    )


def litserve_spec(model: ModelSpec) -> ServerSpec:
    return ServerSpec(
        name=f"{model.key}-litserve",
        argv=[PYTHON, str(BENCH / "baselines" / "litserve_app.py"), "--port", "{port}"],
        path="/predict",
        ready_path="/health",
        env={**model.baseline_env, **pythonpath_env()},
    )


def pythonpath_env() -> dict[str, str]:
    """PYTHONPATH with bench/out/pydeps appended, when that directory exists."""
    if not PYDEPS.is_dir():
        return {}
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {"PYTHONPATH": os.pathsep.join([*parts, str(PYDEPS)])}


def litserve_missing() -> str | None:
    """Why LitServe cannot run here, or None."""
    env = {**os.environ, **pythonpath_env()}
    done = subprocess.run(
        [PYTHON, "-c", "import litserve"], env=env, capture_output=True, text=True
    )
    if done.returncode == 0:
        return None
    return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "import failed"


def measure_server(
    spec: ServerSpec,
    model: ModelSpec,
    server_name: str,
    bodies: Path,
    first_body: bytes,
    args: argparse.Namespace,
    half_load: bool = False,
) -> tuple[ServerResult, Load | None]:
    """Start, warm up, run wrk per concurrency while sampling memory, stop."""
    port = free_port()
    spec.argv = [a.replace("{port}", str(port)) for a in spec.argv]
    server = Server(spec, port, WORK / "logs" / f"{spec.name}.log")
    console.print(f"[bold]{model.label}: {server_name}[/] ({' '.join(spec.argv[1:6])} …)")
    half: Load | None = None
    try:
        started = time.perf_counter()
        server.start()
        console.print(f"  ready in {time.perf_counter() - started:.1f} s")
        check_answer(server.url + spec.path, first_body)
        sid = server.proc.pid if server.proc else 0
        idle = cpu_use(sid, 2.0)
        console.print(f"  idle CPU use: {idle:.2f} cores")
        top = max(args.concurrency)
        run_wrk(server.url, spec.path, bodies, top, args.warmup)
        loads = []
        with MemorySampler(sid) as mem:
            for c in args.concurrency:
                wait_idle(sid, idle)
                load = run_wrk(server.url, spec.path, bodies, c, args.duration)
                loads.append(load)
                if load.requests < MIN_REQUESTS:
                    console.print(
                        f"[yellow]  only {load.requests} requests finished at c={c}: "
                        "raise --duration for this model on this machine"
                    )
                console.print(
                    f"  c={c}: {load.requests_per_s:.1f} req/s, p50 {load.p50_ms:.2f} ms, "
                    f"p99 {load.p99_ms:.2f} ms, errors {load.errors}"
                )
            if half_load and loads:
                wait_idle(sid, idle)
                before = batch_counts(server.url)
                try:
                    half = half_load_run(server, spec.path, bodies, loads, args)
                except RuntimeError as exc:
                    console.print(f"[yellow]  {exc}")
                after = batch_counts(server.url)
                if before and after and after[0] > before[0]:
                    # How often a worker ran several calls' texts as one batch at half load.
                    batches, texts, ones = (a - b for a, b in zip(after, before, strict=True))
                    console.print(
                        f"  half load: {batches:.0f} worker batches, {texts / batches:.2f} texts "
                        f"each, {100 * (1 - ones / batches):.1f} % with more than one"
                    )
        return (
            ServerResult(
                model.key,
                server_name,
                loads,
                round(mem.rss),
                round(mem.pss),
                mem.processes,
                round(idle, 2),
            ),
            half,
        )
    except RuntimeError:
        console.print(f"[red]{spec.name} failed; last lines of {server.log}:\n{server.tail()}")
        raise
    finally:
        server.stop()


HALF_LOAD_REQUESTS = 500


def half_load_run(
    server: Server, path: str, bodies: Path, loads: list[Load], args: argparse.Namespace
) -> Load:
    """About half the peak rate: C connections with exponential think time (wrk's delay())."""
    peak = max(x.requests_per_s for x in loads)
    target = peak / 2
    if not target > 0:
        raise RuntimeError("no request finished in the concurrency runs: no half-load run")
    conns = min(8, max(args.concurrency))
    single = min(x.p50_ms for x in loads)
    delay_ms = max(0.0, conns * 1000 / target - single)
    # Long enough for about HALF_LOAD_REQUESTS answers: at BERT size on 2 cores, 20 s gave
    # about 150, so its p99 was the second-slowest request and moved 2.8-4.1x between runs.
    duration = max(args.duration, HALF_LOAD_REQUESTS / target)
    load = run_wrk(server.url, path, bodies, conns, duration, delay_ms)
    load.target_rps = round(target, 1)
    console.print(
        f"  half load (target {target:.1f}/s): {load.requests_per_s:.1f} req/s, "
        f"p50 {load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms"
    )
    return load


def memory_by_workers(
    model: ModelSpec, bodies: Path, first_body: bytes, args: argparse.Namespace
) -> dict[int, dict[str, float]]:
    """nluserve's tree memory with 1 and 4 workers after a short load at concurrency 8."""
    found: dict[int, dict[str, float]] = {}
    for workers in (1, 4):
        spec = nluserve_spec(model, workers, args.nluserve_env, name=f"nluserve-w{workers}")
        port = free_port()
        spec.argv = [a.replace("{port}", str(port)) for a in spec.argv]
        server = Server(spec, port, WORK / "logs" / f"{spec.name}.log")
        try:
            server.start()
            check_answer(server.url + spec.path, first_body)
            sid = server.proc.pid if server.proc else 0
            idle = cpu_use(sid, 1.0)
            with MemorySampler(sid) as mem:
                run_wrk(server.url, spec.path, bodies, 8, max(args.warmup, 2.0))
                wait_idle(sid, idle)
            found[workers] = {
                "rss_mib": round(mem.rss),
                "pss_mib": round(mem.pss),
                "processes": mem.processes,
            }
            console.print(
                f"  {model.label}: nluserve {workers} worker(s): PSS {mem.pss:.0f} MiB, "
                f"RSS {mem.rss:.0f} MiB, {mem.processes} processes"
            )
        except RuntimeError:
            console.print(f"[red]{spec.name} failed:\n{server.tail()}")
            raise
        finally:
            server.stop()
    return found


def ceiling_configs(
    quick: bool, threads_per_worker: int, provider: str = "cpu"
) -> list[raw.Config]:
    """The in-process search grid, always holding the single-text config nluserve's workers use."""
    single = raw.Config(1, threads_per_worker, 1, False)
    if provider == "cuda":  # CPU threads barely matter (raw.bert_target fixes them); batches do
        return list(
            dict.fromkeys(
                [
                    *(raw.Config(b, CORES, k, b > 1) for b in (1, 8, 32, 64) for k in (1, 2, 4)),
                    single,
                ]
            )
        )
    if quick:
        grid = [
            raw.BASELINE,
            raw.Config(8, CORES, 1, True),
            raw.Config(8, 1, CORES, True),
        ]
    else:
        grid = [
            raw.Config(b, t, k, b > 1)
            for b in (1, 8, 32)
            for t in dict.fromkeys((1, CORES))
            for k in dict.fromkeys((1, CORES))
            if t * k <= CORES
        ]
    return list(dict.fromkeys([*grid, single]))


def measure_ceiling(
    model: ModelSpec, texts: Sequence[str], args: argparse.Namespace
) -> dict[str, Any]:
    """Best in-process texts/s and the p50 of one text on the threads one nluserve worker has."""
    tpw = max(1, CORES // args.workers)
    if args.provider == "cuda":
        tpw = CORES  # raw.bert_target's one session size on the GPU
    console.print(f"[bold]{model.label}: ceiling[/] (in-process, {len(texts)} texts)")
    rows = raw.sweep(model.ceiling(), texts, ceiling_configs(args.quick, tpw, args.provider))
    best = max(rows, key=lambda r: r.texts_per_s)
    single = next(r for r in rows if (r.batch, r.threads, r.workers) == (1, tpw, 1))
    console.print(
        f"  best {best.config}: {best.texts_per_s:.1f} texts/s; one text on {tpw} thread(s): "
        f"p50 {single.p50_ms:.2f} ms"
    )
    return {
        "texts_per_s": best.texts_per_s,
        "best_config": best.config,
        "single_text_p50_ms": single.p50_ms,
        "single_text_threads": tpw,
        "rows": [asdict(r) for r in rows],
    }


# --------------------------------------------------------------------------- summary


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None where either is missing or b is not positive (a run with no answers)."""
    if a is None or b is None or not b > 0 or a != a:
        return None
    return a / b


def summarize(
    model: ModelSpec,
    results: dict[str, ServerResult],
    ceiling: dict[str, Any] | None,
    half: Load | None,
    by_workers: dict[int, dict[str, float]],
) -> dict[str, Any]:
    """Ratios of nluserve to each other row, per concurrency and at each server's peak."""
    summary: dict[str, Any] = {}
    ours = results.get("nluserve")
    if ours is None:
        return summary
    one = ours.at(1)
    if one is not None and one.requests == 0:
        one = None  # its percentiles are zeros, not latencies
    for other in ("tutorial", "tuned", "litserve"):
        theirs = results.get(other)
        if theirs is None or not theirs.loads:
            continue
        summary[f"vs_{other}"] = ratio(ours.peak(), theirs.peak())
        summary[f"vs_{other}_by_concurrency"] = {
            str(x.concurrency): ratio(x.requests_per_s, y.requests_per_s)
            for x in ours.loads
            if (y := theirs.at(x.concurrency)) is not None
        }
        summary[f"pss_vs_{other}"] = ratio(ours.pss_mib, theirs.pss_mib)
    if ceiling is not None:
        summary["vs_ceiling"] = ratio(ours.peak(), ceiling["texts_per_s"])
        if one is not None:
            summary["overhead_p50_ms"] = one.p50_ms - ceiling["single_text_p50_ms"]
    if half is not None and half.requests and one is not None:
        summary["p99_half_load_vs_single"] = ratio(half.p99_ms, one.p50_ms)
    if 1 in by_workers and 4 in by_workers:
        summary["pss_4_vs_1_workers"] = ratio(by_workers[4]["pss_mib"], by_workers[1]["pss_mib"])
    checks = []
    for key, metric, op, bound in TARGETS:
        if key != model.key or summary.get(metric) is None:
            continue
        value = float(summary[metric])
        ok = value >= bound if op == ">=" else value <= bound if op == "<=" else value < bound
        checks.append({"metric": metric, "value": value, "target": f"{op} {bound}", "met": ok})
    summary["targets"] = checks
    return summary


def render(results: Sequence[ServerResult], ceilings: dict[str, dict[str, Any]]) -> Table:
    table = Table(
        title="x columns: nluserve req/s over that server's at the same concurrency",
        caption="memory: peak over the runs, whole process tree; PSS counts shared pages once. "
        "ceiling: best in-process texts/s; its p50 is one text in-process on one nluserve "
        "worker's threads",
    )
    for col in ("model", "server", "conc", "n", "req/s", "p50 ms", "p99 ms", "errors"):
        table.add_column(col, justify="left" if col in ("model", "server") else "right")
    for col in ("RSS MiB", "PSS MiB", "x tutorial", "x tuned", "x litserve"):
        table.add_column(col, justify="right")
    by_model: dict[str, dict[str, ServerResult]] = {}
    for r in results:
        by_model.setdefault(r.model, {})[r.server] = r
    first = True
    for key, rows in by_model.items():
        if not first:
            table.add_section()
        first = False
        ceiling = ceilings.get(key)
        if ceiling is not None:
            table.add_row(
                key,
                "ceiling",
                "-",
                "",
                f"{ceiling['texts_per_s']:.1f}",
                f"{ceiling['single_text_p50_ms']:.2f}",
                *([""] * 7),
            )
        ours = rows.get("nluserve")
        for r in rows.values():
            for load in r.loads:
                ratios = []
                for other in ("tutorial", "tuned", "litserve"):
                    theirs = rows.get(other)
                    y = theirs.at(load.concurrency) if theirs else None
                    x = ours.at(load.concurrency) if ours else None
                    value = ratio(x.requests_per_s, y.requests_per_s) if x and y else None
                    shown = r.server == "nluserve" and value is not None
                    ratios.append(f"{value:.2f}" if shown else "")
                table.add_row(
                    key,
                    r.server,
                    str(load.concurrency),
                    str(load.requests),
                    f"{load.requests_per_s:.1f}",
                    f"{load.p50_ms:.2f}",
                    f"{load.p99_ms:.2f}",
                    str(load.errors),
                    f"{r.rss_mib:.0f}",
                    f"{r.pss_mib:.0f}",
                    *ratios,
                )
    return table


def plot(report: dict[str, Any], path: Path) -> bool:
    """Requests/s and p99 by concurrency, and memory, per model; False without matplotlib."""
    if PYDEPS.is_dir() and str(PYDEPS) not in sys.path:
        sys.path.append(str(PYDEPS))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    models = report["models"]
    fig, axes = plt.subplots(len(models), 3, figsize=(15, 4 * len(models)), squeeze=False)
    for row, (key, entry) in enumerate(models.items()):
        rps, p99, mem = axes[row]
        names, pss = [], []
        for name, result in entry["servers"].items():
            conc = [x["concurrency"] for x in result["loads"]]
            rps.plot(conc, [x["requests_per_s"] for x in result["loads"]], "o-", label=name)
            p99.plot(conc, [x["p99_ms"] for x in result["loads"]], "o-", label=name)
            names.append(name)
            pss.append(result["pss_mib"])
        for workers, m in entry.get("nluserve_memory_by_workers", {}).items():
            names.append(f"nluserve w{workers}")
            pss.append(m["pss_mib"])
        if entry.get("ceiling"):
            rps.axhline(entry["ceiling"]["texts_per_s"], color="k", ls="--", label="ceiling")
        rps.set(title=f"{key}: requests/s", xlabel="concurrency", xscale="log", ylim=(0, None))
        p99.set(title=f"{key}: p99 latency (ms)", xlabel="concurrency", xscale="log", yscale="log")
        concurrency = report["args"]["concurrency"]
        for ax in (rps, p99):
            ax.set_xticks(concurrency, [str(c) for c in concurrency])
            ax.minorticks_off()
        mem.barh(names, pss)
        mem.set(title=f"{key}: server tree PSS (MiB)")
        rps.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------- main


def char_target(path: Path) -> raw.Target:
    target = raw.nluserve_target(str(path))
    if target is None:
        raise SystemExit(f"{path}: cannot load")
    return target


def model_specs(args: argparse.Namespace) -> list[ModelSpec]:
    specs: list[ModelSpec] = []
    if args.char:
        from nluserve.errors import ModelNotFoundError
        from nluserve.models import store

        source = args.model or "general"
        try:
            path = store.resolve(source).resolve()
            manifest = store.read_manifest(path)
            name = manifest.name
        except ModelNotFoundError as exc:
            if args.model is not None:
                raise SystemExit(f"--model {args.model}: {exc}") from exc
            console.print(f"[yellow]skipping the char model: {exc}. Pass --model PATH.")
        else:
            specs.append(
                ModelSpec(
                    "char",
                    f"char model {name}",
                    path,
                    name,
                    {"BENCH_MODEL_DIR": str(path)},
                    lambda: char_target(path),
                    min(MAX_CHARS, manifest.max_length),
                )
            )
    if args.bert:
        graph = bertbase.build()
        model_dir = bertbase_modeldir.build(graph=graph).resolve()
        specs.append(
            ModelSpec(
                "bert",
                "BERT-base fp32",
                model_dir,
                bertbase_modeldir.NAME,
                {"BENCH_BERT_ONNX": str(graph.resolve()), "BENCH_ORT_PROVIDER": args.provider},
                lambda: raw.bert_target(f"bert fp32 {args.provider}", graph, args.provider),
                MAX_CHARS,
            )
        )
    return specs


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="nluserve char model name or directory (default general)")
    parser.add_argument(
        "--bert",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also benchmark the BERT-base-size model (default: on, off with --quick)",
    )
    parser.add_argument(
        "--char",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="benchmark the nluserve char model (--model); --no-char for BERT alone",
    )
    parser.add_argument(
        "--only",
        type=lambda s: tuple(x.strip() for x in s.split(",") if x.strip()),
        default=SERVERS,
        help=f"comma-separated subset of {','.join(SERVERS)}",
    )
    parser.add_argument("--workers", type=int, default=CORES, help="nluserve workers (cores)")
    parser.add_argument(
        "--provider",
        choices=("cpu", "cuda"),
        default="cpu",
        help="BERT on the CPU or on onnxruntime-gpu's CUDA provider (nluserve --device cuda)",
    )
    parser.add_argument("--duration", type=float, help="seconds per wrk run (20; 3 with --quick)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up load (5; 1 with --quick)")
    parser.add_argument(
        "--concurrency", type=raw.parse_ints, help="connections per run (1,8,32; 1,8 with --quick)"
    )
    parser.add_argument(
        "--nluserve-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the nluserve servers (NLUSERVE_LOG_LEVEL=warning, ...)",
    )
    parser.add_argument("--data", type=Path, default=raw.DEFAULT_DATA, help="jsonl of {'text'}")
    parser.add_argument("--bodies", type=int, default=500, help="distinct request bodies")
    parser.add_argument("--ceiling-texts", type=int, help="texts per ceiling config (256; 32)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 3 s runs, concurrency 1,8, 32 ceiling texts, no BERT",
    )
    parser.add_argument("--json", type=Path, default=OUT / "serve.json", help="results file")
    parser.add_argument("--plot", type=Path, default=OUT / "serve.png", help="needs matplotlib")
    args = parser.parse_args()
    unknown = set(args.only) - set(SERVERS)
    if unknown:
        parser.error(f"--only: unknown {sorted(unknown)}; choose from {', '.join(SERVERS)}")
    try:
        args.nluserve_env = dict(item.split("=", 1) for item in args.nluserve_env)
    except ValueError:
        parser.error("--nluserve-env takes KEY=VALUE")
    if args.bert is None:
        args.bert = not args.quick
    if args.provider == "cuda":
        if args.char:
            parser.error("--provider cuda measures the BERT model: add --no-char")
        if args.workers == CORES:  # not given: one CUDA context; its batcher feeds the GPU
            args.workers = 1
        args.nluserve_env.setdefault("NLUSERVE_DEVICE", "cuda")
        # "memory" stays: with several workers the inference process holds the one CUDA
        # context (NLUSERVE_INFERENCE_PROCESS=auto), so 1 vs 4 workers is a fair question.
        args.only = tuple(x for x in args.only if x != "litserve")
    args.duration = args.duration or (3.0 if args.quick else 20.0)
    args.warmup = args.warmup or (1.0 if args.quick else 5.0)
    args.concurrency = args.concurrency or ((1, 8) if args.quick else (1, 8, 32))
    args.ceiling_texts = args.ceiling_texts or (32 if args.quick else 256)
    return args


def main() -> None:
    args = parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # runs the finally blocks
    WORK.mkdir(parents=True, exist_ok=True)
    info = raw.machine()
    console.print(
        f"[bold]{info['cpu']}[/]: {CORES} usable cores, load avg {info['loadavg_start']}; "
        f"nluserve workers {args.workers}, concurrency {args.concurrency}, "
        f"{args.duration:.0f} s per run"
    )
    all_texts = raw.load_texts(args.data.resolve(), args.bodies)
    lit_missing = litserve_missing() if "litserve" in args.only else None
    if lit_missing:
        console.print(f"[yellow]LitServe rows skipped: {lit_missing} (see docs/benchmarks.md)")

    report: dict[str, Any] = {"machine": info, "args": {}, "models": {}, "notes": []}
    report["args"] = {
        k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
    }
    if lit_missing:
        report["notes"].append(f"litserve skipped: {lit_missing}")
    all_results: list[ServerResult] = []
    ceilings: dict[str, dict[str, Any]] = {}
    try:
        for model in model_specs(args):
            texts = [t[: model.window] for t in all_texts]
            bodies = write_bodies(texts, WORK / f"bodies-{model.key}.lua")
            first_body = json.dumps({"text": texts[0]}, ensure_ascii=False).encode()
            lengths = np.array([len(t) for t in texts])
            console.print(
                f"{model.label}: {len(texts)} bodies from {args.data} cut to its "
                f"{model.window}-character window: mean {lengths.mean():.0f}, "
                f"p50 {np.median(lengths):.0f}"
            )
            results: dict[str, ServerResult] = {}
            ceiling = half = None
            by_workers: dict[int, dict[str, float]] = {}
            if "ceiling" in args.only:
                ceiling = measure_ceiling(model, texts[: args.ceiling_texts], args)
                ceilings[model.key] = ceiling
            plans: list[tuple[str, ServerSpec]] = [
                ("nluserve", nluserve_spec(model, args.workers, args.nluserve_env)),
                ("tutorial", tutorial_spec(model, tuned=False)),
                ("tuned", tutorial_spec(model, tuned=True)),
            ]
            if not lit_missing:
                plans.append(("litserve", litserve_spec(model)))
            for name, spec in plans:
                if name not in args.only:
                    continue
                try:
                    result, got_half = measure_server(
                        spec, model, name, bodies, first_body, args, half_load=name == "nluserve"
                    )
                except RuntimeError as exc:  # the log tail is printed; go on with the rest
                    report["notes"].append(f"{model.key} {name} failed: {exc}")
                    continue
                results[name] = result
                half = half or got_half
            if "memory" in args.only:
                console.print(f"[bold]{model.label}: nluserve memory, 1 vs 4 workers")
                try:
                    by_workers = memory_by_workers(model, bodies, first_body, args)
                except RuntimeError as exc:
                    report["notes"].append(f"{model.key} nluserve memory failed: {exc}")
            summary = summarize(model, results, ceiling, half, by_workers)
            all_results.extend(results.values())
            report["models"][model.key] = {
                "label": model.label,
                "model_dir": str(model.model_dir),
                "ceiling": ceiling,
                "servers": {k: asdict(v) for k, v in results.items()},
                "nluserve_half_load": asdict(half) if half else None,
                "nluserve_memory_by_workers": by_workers,
                "summary": summary,
            }
    finally:
        stop_all()
    console.print(render(all_results, ceilings))
    for key, entry in report["models"].items():
        summary = entry["summary"]
        for name in ("vs_ceiling", "vs_tutorial", "vs_tuned", "vs_litserve", "pss_vs_tuned"):
            if summary.get(name) is not None:
                console.print(f"{key}: nluserve {name} = {summary[name]:.2f}")
        if "overhead_p50_ms" in summary:
            console.print(
                f"{key}: server overhead at c=1 (p50) = {summary['overhead_p50_ms']:.2f} ms"
            )
        for check in summary.get("targets", []):
            mark = "[green]met" if check["met"] else "[red]NOT met"
            console.print(
                f"{key}: target {check['metric']} {check['target']}: {check['value']:.2f} {mark}"
            )
    for note in report["notes"]:
        console.print(f"[yellow]note: {note}")
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    console.print(f"wrote {args.json}; load avg at end {info['loadavg_end']}")
    if report["models"]:
        if plot(report, args.plot):
            console.print(f"wrote {args.plot}")
        else:
            console.print("[yellow]no matplotlib (venv or bench/out/pydeps): no plot")


if __name__ == "__main__":
    main()
