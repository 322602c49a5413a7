"""The inference process's one queue of graph runs, merging batches from different workers.

Every HTTP worker batches its own callers, but a worker only sees its own share of the load:
with four workers, four batches of two wait for the graph where one batch of eight could run.
Here all of them wait in one FIFO, and a free run slot takes the oldest batch plus every later
batch for the same model that fits beside it (same inputs; widths within the padding a worker
allows itself, ``max_padding``; the count and token limits of a worker's batch). It never waits
for more: a slot that is free runs what is queued at once (work-conserving, as Triton and TEI).
With several slots (one per core on a CPU) a run takes at most its share of the queue, the
queued batches divided by the slots: merging two batches into one run while the other core
idles would halve the machine for a transformer-size graph, whose runs gain little from
batching on a CPU. So batches merge there only when every slot has work anyway.

The other way round, on a CPU (``split``): a batch of several rows that arrives while slots
idle and nothing is queued is cut into as many parts as there are idle slots, so a lone call
with several texts runs on every core instead of one, in about half the time on two cores. On
a GPU a batch runs as fast whole as halved, so there it stays whole. A batch is cut only when
its expected run time, from the model's recent runs per row, is at least ``split_min_s``
(``SPREAD_MIN_S``, the batcher's rule for lending idle runners in a worker).

Why not a library: Triton's and TEI's schedulers are servers of their own, and the queue that
matters here sits behind our socket, between our workers and one ONNX Runtime session.

Rows are padded with zeros along axis 1 to the longest batch's width. That is what the workers'
own batches do (the bundled char graphs mask by ``lengths``, BERT-style graphs by
``attention_mask``), and the decoders read each row's output only within its own length, so a
row's answer is its answer alone. If a merged run fails, each batch is run again on its own, so
a bad batch fails only its own caller.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from nluserve.runtime.model import SPREAD_MIN_S, max_padding

# (model, seconds, ok, batches merged into the run) after each graph run.
RunObserver = Callable[[str, float, bool, int], None]


class Graph(Protocol):
    """A loaded graph: ONNX Runtime's session in the process, anything alike in tests."""

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The first output of one padded batch."""
        ...


def _ignore(model: str, seconds: float, ok: bool, batches: int) -> None:
    return None


def width(feeds: Mapping[str, np.ndarray]) -> int:
    """The padded length of a batch: axis 1 of its first input with one (its token ids)."""
    for array in feeds.values():
        if array.ndim >= 2:
            return int(array.shape[1])
    return 0


def _signature(
    feeds: Mapping[str, np.ndarray],
) -> tuple[tuple[str, str, int, tuple[int, ...]], ...]:
    return tuple((k, a.dtype.str, a.ndim, tuple(a.shape[2:])) for k, a in feeds.items())


def merge(batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One batch of every batch's rows in order, each input zero-padded to the widest."""
    merged = {}
    for name in batches[0]:
        arrays = [b[name] for b in batches]
        if arrays[0].ndim >= 2:
            wide = max(a.shape[1] for a in arrays)
            arrays = [
                np.pad(a, [(0, 0), (0, wide - a.shape[1])] + [(0, 0)] * (a.ndim - 2))
                for a in arrays
            ]
        merged[name] = np.concatenate(arrays, axis=0)
    return merged


def _rows(feeds: Mapping[str, np.ndarray]) -> int:
    return int(next(iter(feeds.values())).shape[0]) if feeds else 0


def _cut(feeds: dict[str, np.ndarray], parts: int) -> list[dict[str, np.ndarray]]:
    """``feeds`` as ``parts`` batches of consecutive rows (the rows of a batch are all its
    inputs' first axis)."""
    if parts <= 1:
        return [feeds]
    return [
        dict(zip(feeds, chunk, strict=True))
        for chunk in zip(*(np.array_split(a, parts) for a in feeds.values()), strict=True)
    ]


@dataclass(eq=False)
class _Job:
    model: str
    feeds: dict[str, np.ndarray]
    rows: int
    width: int
    signature: tuple[tuple[str, str, int, tuple[int, ...]], ...]
    # False for the parts of a cut batch: they are put back together by stacking their
    # outputs, which needs the width they were cut at, so none of them joins another run.
    whole: bool = True
    done: threading.Event = field(default_factory=threading.Event)
    output: np.ndarray | None = None
    error: Exception | None = None


class RunQueue:
    """``slots`` runner threads serve one queue of every connection's batches."""

    def __init__(
        self,
        graphs: Mapping[str, Graph],
        slots: int = 1,
        merge: bool = True,
        split: bool = False,
        split_min_s: float = SPREAD_MIN_S,
        max_rows: int = 32,
        batch_tokens: int = 4096,
        observe: RunObserver = _ignore,
    ) -> None:
        self.graphs = graphs
        self.slots = max(1, slots)
        self.merge = merge
        self.split = split
        self.split_min_s = split_min_s
        self._row_s: dict[str, float] = {}  # recent run seconds per row, by model
        self.max_rows = max_rows
        self.batch_tokens = batch_tokens
        self.observe = observe
        self._queue: deque[_Job] = deque()
        self._idle = 0  # runner threads waiting for work
        self._ready = threading.Condition()
        for k in range(self.slots):
            threading.Thread(target=self._serve, daemon=True, name=f"run-{k}").start()

    @property
    def idle(self) -> int:
        """Runner threads waiting for work."""
        with self._ready:
            return self._idle

    @property
    def depth(self) -> int:
        """Batches waiting for a run slot."""
        with self._ready:
            return len(self._queue)

    def run(self, model: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """This batch's output rows, in order; blocks until its run is done."""
        return self.run_many(model, [feeds])[0]

    def run_many(self, model: str, batches: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """The outputs of one call's batches (its texts cut into runs of similar length).

        They are queued together, so idle slots take them at once instead of one after the
        other; a lone batch is cut over the idle slots when that pays (see above).
        """
        graph = self.graphs[model]  # KeyError: an unknown model fails this call only
        names = getattr(graph, "input_names", None)
        if names is not None:  # the worker's extra arrays (token offsets) never reach the graph
            batches = [{k: feeds[k] for k in names} for feeds in batches]
        with self._ready:
            parts = 1
            if self.split and len(batches) == 1 and not self._queue:
                rows = _rows(batches[0])
                free = self._idle  # nothing is queued, so no batch has claimed one yet
                if self._row_s.get(model, 0.0) * rows >= self.split_min_s:
                    parts = min(rows, free)
            jobs = [
                [
                    _Job(model, part, _rows(part), width(part), _signature(part), parts == 1)
                    for part in cut
                ]
                for cut in (_cut(feeds, max(1, parts)) for feeds in batches)
            ]
            for pieces in jobs:
                self._queue.extend(pieces)
            self._ready.notify(sum(len(pieces) for pieces in jobs))
        for pieces in jobs:
            for job in pieces:
                job.done.wait()
        outputs = []
        for pieces in jobs:
            for job in pieces:
                if job.error is not None:
                    raise job.error
            arrays = [job.output for job in pieces if job.output is not None]
            outputs.append(arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0))
        return outputs

    def _serve(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    self._idle += 1
                    self._ready.wait()
                    self._idle -= 1
                jobs = self._take()
            self._execute(jobs)

    def _take(self) -> list[_Job]:
        """The oldest batch and the later ones that may share its run (the lock is held)."""
        share = -(-len(self._queue) // self.slots)
        head = self._queue.popleft()
        jobs = [head]
        if not self.merge or share == 1 or not head.whole:
            return jobs
        rows, low, high = head.rows, head.width, head.width
        kept: deque[_Job] = deque()
        for job in self._queue:
            if len(jobs) == share:
                kept.append(job)
                continue
            lo, hi = min(low, job.width), max(high, job.width)
            fits = (
                job.whole
                and job.model == head.model
                and job.signature == head.signature
                and hi <= max_padding(lo)
                and rows + job.rows <= self.max_rows
                and (rows + job.rows) * hi <= self.batch_tokens
            )
            if fits:
                jobs.append(job)
                rows, low, high = rows + job.rows, lo, hi
            else:
                kept.append(job)
        self._queue = kept
        return jobs

    def _execute(self, jobs: list[_Job]) -> None:
        model = jobs[0].model
        graph = self.graphs[model]
        started = time.perf_counter()
        try:  # merging inside: a runner thread that raised would leave its callers waiting
            feeds = jobs[0].feeds if len(jobs) == 1 else merge([j.feeds for j in jobs])
            output = np.asarray(graph.run(feeds))
            rows = sum(j.rows for j in jobs)
            if output.ndim == 0 or output.shape[0] != rows:  # each caller's rows must be its own
                raise ValueError(f"the graph answered {output.shape} for {rows} rows")
        except Exception as exc:
            self.observe(model, time.perf_counter() - started, False, len(jobs))
            if len(jobs) == 1:
                jobs[0].error = exc
                jobs[0].done.set()
            else:  # find the batch that failed: the others still get their answers
                for job in jobs:
                    self._execute([job])
            return
        elapsed = time.perf_counter() - started
        self.observe(model, elapsed, True, len(jobs))
        row_s = elapsed / max(1, sum(j.rows for j in jobs))
        with self._ready:
            self._row_s[model] = 0.8 * self._row_s.get(model, row_s) + 0.2 * row_s
        offset = 0
        for job in jobs:
            job.output = output[offset : offset + job.rows]
            offset += job.rows
            job.done.set()
