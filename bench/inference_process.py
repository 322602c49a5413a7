"""What running the graph in the shared inference process costs against running it in-process.

For one model, the same batches (real CMeEE texts, cut to the model's window) go through
``Model.predict`` twice: with the in-process ONNX Runtime session, and with a ``RemoteBackend``
to an ``InferenceHost`` started here (a socket round trip per batch; tokenising and decoding
stay in the caller, as in a worker). Interleaved blocks, so a noisy machine drifts on both
alike. Prints the median time per call for each batch size, the ratio remote / local and the
added milliseconds.

    .venv/bin/python bench/inference_process.py [--model general] [--batches 1,8,32]
    .venv/bin/python bench/inference_process.py --model bench/out/bertbase/modeldir --calls 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from nluserve import load_model
from nluserve.runtime.model import Model
from nluserve.runtime.remote import InferenceHost, RemoteBackend

DATA = Path(__file__).resolve().parent.parent.parent / "shared/data/cmeee/unlabeled.jsonl"


def texts(path: Path, n: int, width: int) -> list[str]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line)["text"][:width] for line, _ in zip(fh, range(n), strict=False)]


def per_call(model: Model, batches: list[list[str]]) -> list[float]:
    times = []
    for batch in batches:
        started = time.perf_counter()
        model.predict(batch)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="general")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--calls", type=int, default=200, help="calls per block and batch size")
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    local = load_model(args.model, threads=1)
    host = InferenceHost([args.model], "cpu", threads=1).start(export_env=False)
    try:
        remote = Model(
            local.manifest,
            RemoteBackend(local.name, host.address, host.authkey),
            local.encoder,
            path=local.path,
        )
        pool = texts(args.data, 2000, local.manifest.max_length)
        print(
            f"model {local.name} {local.manifest.version}; median ms per call, {args.blocks} "
            f"interleaved blocks of {args.calls} calls"
        )
        print(f"{'batch':>5} {'local':>9} {'remote':>9} {'ratio':>7} {'added':>9}")
        for size in (int(b) for b in args.batches.split(",")):
            batches = [
                [pool[(i * size + j) % len(pool)] for j in range(size)] for i in range(args.calls)
            ]
            assert remote.predict(batches[0]) == local.predict(batches[0])
            timed: dict[str, list[float]] = {"local": [], "remote": []}
            for _ in range(args.blocks):
                timed["local"] += per_call(local, batches)
                timed["remote"] += per_call(remote, batches)
            a, b = (statistics.median(timed[k]) * 1000 for k in ("local", "remote"))
            print(f"{size:>5} {a:>9.3f} {b:>9.3f} {b / a:>7.3f} {b - a:>+9.3f}")
    finally:
        host.stop()


if __name__ == "__main__":
    main()
