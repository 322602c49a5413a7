"""How the BERT-base-size graph uses the cores: the served setup against the alternatives.

nluserve runs each graph with one intra-op thread and as many runs at once as cores. Two
alternatives promise a lone text on every core without a second copy of the weights, and one
promises faster runs; each is measured here against the served setup in the same run:

- ``two-threads``: one session with an intra-op thread per core (the tutorial's default);
- ``global-pool``: ONNX Runtime's process-wide intra-op pool
  (``set_global_thread_pool_sizes`` + ``use_per_session_threads = False``), which concurrent
  runs share instead of each bringing its own threads;
- ``fused``: the graph rewritten by ``onnxruntime.transformers.optimizer`` (fused Attention,
  SkipLayerNormalization, EmbedLayerNormalization), which ONNX Runtime's own session-time
  optimisations do not produce for this export.

Each variant runs in its own process (the global pool is process-wide): 1 caller, then one
caller per core, batch 1, texts of ``cmeee/unlabeled.jsonl`` cut to 128 characters.

    .venv/bin/python bench/bertbase.py      # the graph, once
    .venv/bin/python bench/ort_threads.py --texts 96
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import bertbase
import numpy as np
import onnxruntime as ort
import raw
from rich.console import Console
from rich.table import Table

VARIANTS = ("served", "two-threads", "global-pool", "fused")
console = Console(width=None if sys.stdout.isatty() else 120)


def fused_graph(path: Path) -> Path:
    """The transformer optimizer's rewrite of ``path``, made once beside it."""
    out = path.with_name("model.fused.onnx")
    if not out.exists():
        from onnxruntime.transformers import optimizer

        # opt_level 0: only the transformer fusions; the session applies its own on top.
        model = optimizer.optimize_model(
            str(path), model_type="bert", num_heads=12, hidden_size=768, opt_level=0
        )
        console.print(f"  fused: {model.get_fused_operator_statistics()}")
        model.save_model_to_file(str(out))
    return out


def session(variant: str, path: Path) -> ort.InferenceSession:
    if variant == "served":
        return raw.bert_session(path, 1, "cpu")
    if variant == "two-threads":
        return raw.bert_session(path, raw.CORES, "cpu")
    if variant == "fused":
        return raw.bert_session(fused_graph(path), 1, "cpu")
    # Must run before the first session creates the process's environment.
    ort.capi._pybind_state.set_global_thread_pool_sizes(raw.CORES, 1)
    opts = ort.SessionOptions()
    opts.use_per_session_threads = False
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def measure_variant(variant: str, path: Path, data: Path, n: int) -> dict[str, float]:
    """Lone-text p50 and texts/s with 1 caller and with one caller per core."""
    sess = session(variant, path)
    texts = [t[: bertbase.MAX_TOKENS - 2] for t in raw.load_texts(data, n)]

    def run(batch: Sequence[str]) -> object:
        return sess.run(["output"], bertbase.encode(batch))[0]

    found: dict[str, float] = {}
    for callers in (1, raw.CORES):
        wall, lat = raw.measure(run, texts, raw.Config(1, 1, callers, False))
        found[f"k{callers}_texts_per_s"] = len(texts) / wall
        if callers == 1:
            found["lone_p50_ms"] = float(np.percentile(np.array(lat) * 1000, 50))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=bertbase.DEFAULT_DIR / "model.onnx")
    parser.add_argument("--data", type=Path, default=raw.DEFAULT_DATA)
    parser.add_argument("--texts", type=int, default=96, help="texts per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; best kept")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.variant:  # the child process: one variant, one JSON line
        print(json.dumps(measure_variant(args.variant, args.model, args.data, args.texts)))
        return
    if not args.model.exists():
        raise SystemExit(f"{args.model} is missing: run bench/bertbase.py first")
    fused_graph(args.model)  # outside the clock of the variant that uses it
    # Rounds alternate the variants so a slow minute of a noisy machine hits them all; each
    # figure is its best round.
    results: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            argv = [sys.executable, __file__, "--variant", variant, "--model", str(args.model)]
            argv += ["--data", str(args.data), "--texts", str(args.texts)]
            line = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
            got = json.loads(line.strip().splitlines()[-1])
            console.print(f"  {variant}: " + ", ".join(f"{k} {v:.1f}" for k, v in got.items()))
            best = results.setdefault(variant, got)
            for key, value in got.items():
                pick = min if key.endswith("_ms") else max
                best[key] = pick(best[key], value)
    base = results["served"]
    many = f"k{raw.CORES}_texts_per_s"
    table = Table(title=f"BERT-base size on {raw.CORES} cores, batch 1 (ratios: over served)")
    for col in (
        "variant",
        "lone p50 ms",
        "x",
        "1 caller texts/s",
        f"{raw.CORES} callers texts/s",
        "x",
    ):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for variant, r in results.items():
        table.add_row(
            variant,
            f"{r['lone_p50_ms']:.1f}",
            f"{base['lone_p50_ms'] / r['lone_p50_ms']:.2f}",
            f"{r['k1_texts_per_s']:.2f}",
            f"{r[many]:.2f}",
            f"{r[many] / base[many]:.2f}",
        )
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps({"machine": raw.machine(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
