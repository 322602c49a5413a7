"""Does a model give the same answers on onnxruntime-gpu's CUDA provider as on the CPU?

Loads one model directory twice through nluserve's own loader (``device="cpu"`` and
``device="cuda"``), predicts the same texts with both, and prints how often the answers agree
(NER: identical entity lists; classification: the same label) and the largest score gap.
Exits 1 when fewer than ``--min-agreement`` of the texts agree.

    python3 bench/cuda_check.py MODEL_DIR [MODEL_DIR ...] [--n 300]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import raw

from nluserve.runtime.model import load_model
from nluserve.runtime.results import NerResult, Result


def answer(result: Result) -> tuple[object, ...]:
    if isinstance(result, NerResult):
        return tuple((e.start, e.end, e.label) for e in result.entities)
    return (result.label,)


def scores(result: Result) -> list[float]:
    if isinstance(result, NerResult):
        return [e.score for e in result.entities]
    return [result.score]


def check(path: str, texts: list[str], batch: int) -> float:
    cpu = load_model(path, threads=raw.CORES)
    gpu = load_model(path, threads=1, device="cuda")
    gpu.predict(texts[:batch])  # CUDA kernels are chosen on the first run
    same = 0
    gap = 0.0
    timings = {"cpu": 0.0, "cuda": 0.0}
    for i in range(0, len(texts), batch):
        chunk = texts[i : i + batch]
        t0 = time.perf_counter()
        a = cpu.predict(chunk)
        t1 = time.perf_counter()
        b = gpu.predict(chunk)
        t2 = time.perf_counter()
        timings["cpu"] += t1 - t0
        timings["cuda"] += t2 - t1
        for x, y in zip(a, b, strict=True):
            if answer(x) == answer(y):
                same += 1
                gap = max([gap, *(abs(p - q) for p, q in zip(scores(x), scores(y), strict=True))])
    share = same / len(texts)
    print(
        f"{cpu.name} {cpu.manifest.version}: {same}/{len(texts)} texts agree ({share:.1%}), "
        f"largest score gap where they agree {gap:.2e}; batch {batch}: "
        f"cpu {len(texts) / timings['cpu']:.0f} texts/s on {raw.CORES} threads, "
        f"cuda {len(texts) / timings['cuda']:.0f} texts/s ({gpu.backend.provider})"
    )
    return share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--data", type=Path, default=raw.DEFAULT_DATA)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--min-agreement", type=float, default=0.99)
    args = parser.parse_args()
    texts = raw.load_texts(args.data, args.n)
    worst = min(check(m, texts, args.batch) for m in args.models)
    sys.exit(0 if worst >= args.min_agreement else 1)


if __name__ == "__main__":
    main()
