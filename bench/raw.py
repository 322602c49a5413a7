"""In-process throughput and per-call latency: nluserve models vs a BERT-base-size graph.

Searches the serving knobs on one machine: batch size, intra-op threads per session, K threads
sharing one session, and length bucketing vs arrival order. Every row is compared with a
baseline measured in the same run (batch 1, one caller, threads = cores, arrival order) so
numbers from a noisy machine still compare within a run.

    .venv/bin/python bench/raw.py --quick
    .venv/bin/python bench/raw.py --model general --int8 --json bench/out/raw.json
    .venv/bin/python bench/raw.py --only bert --provider cuda   # needs onnxruntime-gpu

onnxruntime is used directly here (not through nluserve.runtime.session) so the BERT graph
gets exactly the options listed in ``bert_session``; nluserve models go through load_model.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from threading import Lock

import bertbase
import numpy as np
import onnxruntime as ort
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cmeee" / "unlabeled.jsonl"
CORES = len(os.sched_getaffinity(0))

Runner = Callable[[Sequence[str]], object]
# Piped output would otherwise wrap the table at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 120)


@dataclass(frozen=True)
class Config:
    """One point of the search: how texts are batched and run."""

    batch: int
    threads: int
    workers: int
    bucketed: bool

    def label(self) -> str:
        order = "bucketed" if self.bucketed else "arrival"
        # threads x callers above the cores: the configuration the serving issue warns about
        flag = " !" if self.threads * self.workers > CORES else ""
        return f"b{self.batch} t{self.threads} K{self.workers} {order}{flag}"


BASELINE = Config(batch=1, threads=CORES, workers=1, bucketed=False)


@dataclass(frozen=True)
class Target:
    """Something to benchmark: ``open(threads)`` loads it and returns a batch runner."""

    name: str
    open: Callable[[int], Runner]
    threads_grid: tuple[int, ...] | None = None  # None: the configs' own thread counts


@dataclass(frozen=True)
class Row:
    """One measured configuration of one target."""

    target: str
    config: str
    batch: int
    threads: int
    workers: int
    bucketed: bool
    texts: int
    calls: int
    texts_per_s: float
    p50_ms: float
    p99_ms: float
    rss_mib: float
    speedup: float = 1.0  # texts/s over the target's baseline
    p99_ratio: float = 1.0  # p99 over the baseline's p99


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    model = platform.processor() or "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "usable_cores": CORES,
        "cpu_count": os.cpu_count(),
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "python": platform.python_version(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def proc_status(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    with open("/proc/self/status", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def load_texts(path: Path, n: int) -> list[str]:
    """The first ``n`` non-empty texts of a jsonl file of ``{"text": ...}`` lines."""
    texts: list[str] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line)["text"] if line.strip() else ""
            if text:
                texts.append(text)
            if len(texts) == n:
                break
    return texts


def measure(run: Runner, texts: Sequence[str], cfg: Config) -> tuple[float, list[float]]:
    """Wall seconds for all texts and per-call latencies, K callers pulling shared batches."""
    order = sorted(texts, key=len) if cfg.bucketed else list(texts)
    batches = [order[i : i + cfg.batch] for i in range(0, len(order), cfg.batch)]
    # Warm up on the widest batch first, so arenas are grown before the clock starts.
    run(max(batches, key=lambda b: max(map(len, b))))
    run(batches[0])
    cursor: Iterator[list[str]] = iter(batches)
    lock = Lock()
    latencies: list[float] = []

    def caller() -> None:
        own: list[float] = []
        while True:
            with lock:
                batch = next(cursor, None)
            if batch is None:
                break
            start = time.perf_counter()
            run(batch)
            own.append(time.perf_counter() - start)
        with lock:
            latencies.extend(own)

    with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        start = time.perf_counter()
        futures = [pool.submit(caller) for _ in range(cfg.workers)]
        for f in futures:
            f.result()  # re-raises a caller's exception here
        wall = time.perf_counter() - start
    return wall, latencies


def sweep(target: Target, texts: Sequence[str], configs: Sequence[Config]) -> list[Row]:
    """Measure every config, opening one session per thread count and reusing it."""
    if target.threads_grid is not None:
        allowed = set(target.threads_grid)
        configs = [c for c in configs if c.threads in allowed]
    configs = [BASELINE, *(c for c in configs if c != BASELINE)]
    rows: dict[Config, Row] = {}
    for threads in dict.fromkeys(c.threads for c in configs):
        run = target.open(threads)
        for cfg in (c for c in configs if c.threads == threads):
            wall, lat = measure(run, texts, cfg)
            p50, p99 = np.percentile(np.array(lat) * 1000, [50, 99])
            rows[cfg] = Row(
                target=target.name,
                config=cfg.label(),
                texts=len(texts),
                calls=len(lat),
                texts_per_s=len(texts) / wall,
                p50_ms=float(p50),
                p99_ms=float(p99),
                rss_mib=proc_status("VmRSS"),
                **asdict(cfg),
            )
            console.print(f"  {target.name}: {cfg.label()}: {rows[cfg].texts_per_s:.1f} texts/s")
        del run
        gc.collect()
    base = rows[BASELINE]
    ordered = sorted(
        configs, key=lambda c: (c != BASELINE, c.batch, c.threads, c.workers, c.bucketed)
    )
    return [
        replace(
            rows[c],
            speedup=rows[c].texts_per_s / base.texts_per_s,
            p99_ratio=rows[c].p99_ms / base.p99_ms,
        )
        for c in ordered
    ]


def bert_session(path: Path, threads: int, provider: str) -> ort.InferenceSession:
    """A session with the serving options: fixed intra-op threads, no spinning, full opts."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if provider == "cuda" else None
    session = ort.InferenceSession(str(path), opts, providers=providers or ["CPUExecutionProvider"])
    if provider == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        # ORT falls back to CPU silently when the CUDA libraries fail to load.
        raise SystemExit(f"CUDA provider did not load (session has {session.get_providers()})")
    return session


def bert_target(name: str, path: Path, provider: str) -> Target:
    """The BERT-base graph at ``path`` as a benchmark target."""

    def open_(threads: int) -> Runner:
        session = bert_session(path, threads, provider)
        return lambda batch: session.run(["output"], bertbase.encode(batch))[0]

    # Intra-op threads only drive the few CPU-side ops under CUDA: one setting is enough.
    return Target(name, open_, (CORES,) if provider == "cuda" else None)


def nluserve_target(name_or_path: str | None) -> Target | None:
    """An nluserve model through load_model (default ``general``).

    An untrained default is skipped with a note so the BERT rows still run; a model the
    caller named explicitly must load.
    """
    from nluserve import load_model
    from nluserve.errors import ModelNotFoundError

    source = name_or_path or "general"
    try:
        name = load_model(source, threads=1).name
    except ModelNotFoundError as exc:
        if name_or_path is not None:
            raise SystemExit(f"--model {name_or_path}: {exc}") from exc
        console.print(f"[yellow]skipping nluserve model: {exc}. Pass --model PATH to a model dir.")
        return None
    return Target(f"nluserve:{name} cpu", lambda t: load_model(source, threads=t).predict)


def int8_agreement(fp32: Path, int8: Path, texts: Sequence[str], provider: str) -> dict[str, float]:
    """How often int8 argmax tags equal fp32's, over real tokens ([CLS]/[SEP] excluded)."""
    sessions = [bert_session(p, CORES, provider) for p in (fp32, int8)]
    ordered = sorted(texts, key=len)
    same = total = same_texts = 0
    for i in range(0, len(ordered), 32):
        feeds = bertbase.encode(ordered[i : i + 32])
        tags = [s.run(["output"], feeds)[0].argmax(-1) for s in sessions]
        for row, n in enumerate(feeds["attention_mask"].sum(1)):
            a, b = tags[0][row, 1 : n - 1], tags[1][row, 1 : n - 1]
            same += int((a == b).sum())
            total += len(a)
            same_texts += bool((a == b).all())
    return {"token_agreement": same / max(1, total), "text_agreement": same_texts / len(ordered)}


def render(rows: Sequence[Row]) -> Table:
    """The results as a rich table, one section per target."""
    table = Table(
        title="ratios are to each target's baseline row; RSS is the whole process",
        caption="b batch, t intra-op threads, K callers sharing one session, ! threads x K > cores",
    )
    table.add_column("target")
    table.add_column("config")
    for col in ("calls", "texts/s", "p50 ms", "p99 ms", "x texts/s", "x p99", "RSS MiB"):
        table.add_column(col, justify="right")
    for i, r in enumerate(rows):
        if i and r.target != rows[i - 1].target:
            table.add_section()
        numbers = (r.texts_per_s, r.p50_ms, r.p99_ms, r.speedup, r.p99_ratio, r.rss_mib)
        formats = (".1f", ".1f", ".1f", ".2f", ".2f", ".0f")
        table.add_row(r.target, r.config, str(r.calls), *map(format, numbers, formats))
    return table


def parse_ints(text: str) -> tuple[int, ...]:
    """``"1,8,32"`` -> (1, 8, 32)."""
    return tuple(int(x) for x in text.split(",") if x.strip())


def configs_for(args: argparse.Namespace) -> list[Config]:
    """The search grid; bucketing is meaningless for batch 1."""
    if args.quick:
        single, pair = Config(8, CORES, 1, False), Config(8, 1, 2, True)
        return [BASELINE, single, replace(single, bucketed=True), pair]
    return [
        Config(b, t, k, bucketed)
        for b in args.batches
        for t in args.threads
        for k in args.workers
        for bucketed in ((False, True) if b > 1 else (False,))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="nluserve model name or directory (default: general)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="jsonl of {'text': ...}")
    parser.add_argument("--n", type=int, default=None, help="texts to run (512; 32 with --quick)")
    parser.add_argument("--int8", action="store_true", help="also run the dynamic-int8 BERT")
    parser.add_argument("--provider", choices=("cpu", "cuda"), default="cpu", help="for BERT")
    parser.add_argument("--only", choices=("nluserve", "bert"), help="run one kind of target")
    parser.add_argument("--batches", type=parse_ints, default=(1, 8, 32))
    parser.add_argument("--threads", type=parse_ints, default=(1, 2), help="intra-op threads")
    parser.add_argument("--workers", type=parse_ints, default=(1, 2), help="K callers, 1 session")
    parser.add_argument("--bert-dir", type=Path, default=bertbase.DEFAULT_DIR)
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 32 texts, 4 fixed configs"
    )
    parser.add_argument("--json", type=Path, help="write machine info and rows here")
    args = parser.parse_args()
    if args.provider == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        parser.error(
            "--provider cuda needs onnxruntime-gpu with CUDAExecutionProvider; this onnxruntime "
            f"{ort.__version__} offers {ort.get_available_providers()}"
        )
    n = args.n or (32 if args.quick else 512)
    texts = load_texts(args.data.resolve(), n)

    info = machine()
    console.print(
        f"[bold]{info['cpu']}[/]: {CORES} usable cores (cpu_count {info['cpu_count']}), "
        f"onnxruntime {info['onnxruntime']} {info['providers']}, python {info['python']}, "
        f"load avg {info['loadavg_start']}"
    )
    lengths = np.array([len(t) for t in texts])
    console.print(
        f"{len(texts)} texts from {args.data}: mean {lengths.mean():.0f} chars, "
        f"p50 {np.median(lengths):.0f}, max {lengths.max()}"
    )

    targets: list[Target] = []
    if args.only != "bert":
        found = nluserve_target(args.model)
        if found is not None:
            targets.append(found)
    fp32 = int8 = None
    if args.only != "nluserve":
        fp32 = bertbase.build(args.bert_dir)
        targets.append(bert_target(f"bert fp32 {args.provider}", fp32, args.provider))
        if args.int8:
            int8 = bertbase.build_int8(args.bert_dir)
            targets.append(bert_target(f"bert int8 {args.provider}", int8, args.provider))

    if not targets:
        raise SystemExit("nothing to run")
    configs = configs_for(args)
    rows = [row for target in targets for row in sweep(target, texts, configs)]
    console.print(render(rows))
    agreement = None
    if fp32 is not None and int8 is not None:
        agreement = int8_agreement(fp32, int8, texts, args.provider)
        console.print(
            f"int8 vs fp32 argmax tags: {agreement['token_agreement']:.2%} of tokens, "
            f"{agreement['text_agreement']:.2%} of texts identical"
        )
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    info["peak_rss_mib"] = round(proc_status("VmHWM"))
    console.print(f"peak RSS {info['peak_rss_mib']} MiB, load avg at end {info['loadavg_end']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "machine": info,
            "texts": len(texts),
            "data": str(args.data),
            "rows": [asdict(r) for r in rows],
            "int8_agreement": agreement,
        }
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
