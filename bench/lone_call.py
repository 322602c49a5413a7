"""A lone call with several texts: one run on one core, or cut over the idle run slots.

The inference process runs one graph per core (one intra-op thread each). A call with several
texts that arrives while the machine is idle is one worker batch; whole, it runs on one core
while the others idle. ``RunQueue(split=True)`` (what the process does on a CPU) cuts it into
one part per idle slot. This times ``RunQueue.run`` on the same ONNX Runtime session both ways,
in interleaved blocks (a noisy machine drifts on both alike), for calls of N texts from
``cmeee/unlabeled.jsonl`` cut to the model's window, and prints the median per call and the
ratio whole / cut.

    .venv/bin/python bench/lone_call.py --model bench/out/bertbase/modeldir --texts 2,4,8
    .venv/bin/python bench/lone_call.py --model general --texts 2,8,32
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from nluserve import load_model
from nluserve.runtime.runqueue import RunQueue
from nluserve.settings import usable_cores

DATA = Path(__file__).resolve().parent.parent.parent / "shared/data/cmeee/unlabeled.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="general")
    parser.add_argument("--texts", default="2,4,8", help="texts per call")
    parser.add_argument("--calls", type=int, default=12, help="calls per block")
    parser.add_argument("--blocks", type=int, default=4, help="blocks per setting, interleaved")
    parser.add_argument("--slots", type=int, default=usable_cores())
    args = parser.parse_args()

    model = load_model(args.model, threads=1)
    window = model.manifest.max_length
    with DATA.open(encoding="utf-8") as fh:
        pool = [json.loads(line)["text"][:window] for line, _ in zip(fh, range(2000), strict=False)]
    whole = RunQueue({model.name: model.backend}, slots=args.slots, split=False)
    # Always cut here, to time the cut itself; the server cuts only batches whose expected run
    # is at least RunQueue's split_min_s (5 ms), which this table is what chose.
    cut = RunQueue({model.name: model.backend}, slots=args.slots, split=True, split_min_s=0.0)
    print(f"{model.name}: {args.slots} slots of one thread; median ms per call")
    for n in (int(x) for x in args.texts.split(",")):
        calls = [model.encoder(pool[k * n : (k + 1) * n]) for k in range(args.calls)]
        times: dict[str, list[float]] = {"whole": [], "cut": []}
        for _ in range(args.blocks):
            for name, runs in (("whole", whole), ("cut", cut)):
                for feeds in calls:
                    time.sleep(0.01)  # let the runner threads go back to waiting: an idle machine
                    started = time.perf_counter()
                    runs.run(model.name, feeds)
                    times[name].append(time.perf_counter() - started)
        w, c = (statistics.median(times[k]) * 1000 for k in ("whole", "cut"))
        print(f"  {n:>3} texts: whole {w:8.1f} ms   cut {c:8.1f} ms   whole / cut {w / c:.2f}x")


if __name__ == "__main__":
    main()
