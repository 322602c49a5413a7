"""What the runtime audit found in the batcher: every model's batcher had the process's whole
share of the cores (three models, three times the runs), a long call was priced as one window
and so shared a batch with the short calls behind it, a lone long call kept the runners it
borrowed until it ended, a call already running was answered 504 "not run", and a shutdown
left queued calls waiting for their deadline."""

from __future__ import annotations

import asyncio
import time

import pytest

from nluserve import load_model
from nluserve.runtime.batcher import (
    Batcher,
    BatchObserver,
    DeadlineExceeded,
    ShuttingDown,
    Slots,
)
from nluserve.runtime.model import Model
from tests.support.overlap import OverlapGraph

SHORT = ["张三在北京大学读书。"]
LONG = ["李四去了上海市浦东新区，" * 40] * 3  # 480 characters: ten 50-character windows each


@pytest.fixture(scope="module")
def general() -> Model:
    return load_model("general", threads=1)


def _slowed(general: Model, graph: OverlapGraph) -> Model:
    return Model(general.manifest, graph, general.encoder, path=general.path)


async def _timed(batcher: Batcher, texts: list[str], deadline_s: float = 30) -> float:
    await batcher.submit(texts, time.monotonic() + deadline_s, "r")
    return time.monotonic()


def test_every_model_shares_the_process_runs(general: Model) -> None:
    graph = OverlapGraph(general.backend, delay_s=0.03)
    model = _slowed(general, graph)
    slots = Slots(2)
    batchers = [Batcher(model, 2, 32, 4096, 100_000, slots=slots) for _ in range(3)]

    async def scenario() -> None:
        calls = [
            b.submit(SHORT * 2, time.monotonic() + 30, "r") for b in batchers for _ in range(8)
        ]
        answers = await asyncio.gather(*calls)
        assert all(a == general.predict(SHORT * 2) for a in answers)
        for b in batchers:
            await b.close(5)

    asyncio.run(scenario())
    assert graph.most == 2  # three models, still two runs at once on two slots
    assert slots.idle == 2


def test_a_long_call_runs_alone_and_the_short_call_behind_it_takes_the_next_runner(
    general: Model,
) -> None:
    graph = OverlapGraph(general.backend, delay_s=0.15)
    batcher = Batcher(_slowed(general, graph), 2, 32, 4096, 100_000)

    async def scenario() -> tuple[float, float]:
        busy = [asyncio.ensure_future(_timed(batcher, SHORT)) for _ in range(2)]
        await asyncio.sleep(0.02)  # both runners busy: the next two calls queue
        long = asyncio.ensure_future(_timed(batcher, LONG * 4))  # 120 windows, > 4096 tokens
        short = asyncio.ensure_future(_timed(batcher, SHORT))
        await asyncio.gather(*busy)
        done = await long, await short
        await batcher.close(5)
        return done

    long_done, short_done = asyncio.run(scenario())
    # Priced by its windows the long call fills the budget alone; the short one does not wait
    # for it in the same batch.
    assert short_done < long_done - 0.1


def test_a_lone_long_call_gives_borrowed_runners_back_when_a_call_arrives(
    general: Model,
) -> None:
    graph = OverlapGraph(general.backend, delay_s=0.15)
    batcher = Batcher(_slowed(general, graph), 2, 32, 100_000, 100_000)

    async def scenario() -> tuple[float, float]:
        await _timed(batcher, LONG[:1])  # teaches the batcher what a window costs
        # Alone, 120 windows in four runs: it borrows the idle runner.
        long = asyncio.ensure_future(_timed(batcher, LONG * 4))
        await asyncio.sleep(0.05)
        short = asyncio.ensure_future(_timed(batcher, SHORT))
        done = await long, await short
        await batcher.close(5)
        return done

    long_done, short_done = asyncio.run(scenario())
    assert graph.most == 2  # the long call did run on both
    assert short_done < long_done - 0.1  # and handed one back instead of finishing first


def test_a_call_that_started_is_answered_even_past_its_deadline(general: Model) -> None:
    graph = OverlapGraph(general.backend, delay_s=0.3)
    batcher = Batcher(_slowed(general, graph), 1, 32, 4096, 100_000)

    async def scenario() -> None:
        started = batcher.submit(SHORT, time.monotonic() + 0.1, "r")
        queued = batcher.submit(SHORT, time.monotonic() + 0.1, "r")
        first, second = await asyncio.gather(started, queued, return_exceptions=True)
        assert first == general.predict(SHORT)  # it ran: its answer, not a 504
        assert isinstance(second, DeadlineExceeded)  # never ran
        await batcher.close(5)

    asyncio.run(scenario())
    assert graph.runs == 1


def test_a_shutdown_answers_what_it_leaves_queued(general: Model) -> None:
    graph = OverlapGraph(general.backend, delay_s=0.3)
    batcher = Batcher(_slowed(general, graph), 1, 1, 4096, 100_000)

    async def scenario() -> None:
        calls = [asyncio.ensure_future(_timed(batcher, SHORT)) for _ in range(3)]
        await asyncio.sleep(0.05)
        began = time.monotonic()
        await batcher.close(0.1)
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert sum(isinstance(o, ShuttingDown) for o in outcomes) == 2, outcomes
        assert time.monotonic() - began < 2  # not left to wait for their 30 s deadline

    asyncio.run(scenario())


class _Depths(BatchObserver):
    def __init__(self) -> None:
        self.seen: list[int] = []

    def queue(self, model: str, depth: int) -> None:
        self.seen.append(depth)


def test_the_queue_depth_is_reported_whenever_it_changes(general: Model) -> None:
    # Reported by the worker whose queue changed: set only when /metrics was scraped, a
    # worker that no scrape reached kept its last busy value in the sum for good.
    graph = OverlapGraph(general.backend, delay_s=0.05)
    depths = _Depths()
    batcher = Batcher(_slowed(general, graph), 1, 1, 4096, 100_000, observer=depths)

    async def scenario() -> None:
        await asyncio.gather(*(_timed(batcher, SHORT) for _ in range(4)))
        await batcher.close(5)

    asyncio.run(scenario())
    assert max(depths.seen) >= 2  # calls did wait
    assert depths.seen[-1] == 0  # and the last word is an empty queue


def test_a_call_whose_client_left_leaves_the_queue_counts_at_once(general: Model) -> None:
    graph = OverlapGraph(general.backend, delay_s=0.3)
    batcher = Batcher(_slowed(general, graph), 1, 1, 4096, 1_000)

    async def scenario() -> None:
        running = asyncio.ensure_future(_timed(batcher, SHORT))
        await asyncio.sleep(0.05)
        waiting = [asyncio.ensure_future(_timed(batcher, SHORT)) for _ in range(3)]
        await asyncio.sleep(0.01)
        assert batcher.depth == 3
        for task in waiting:
            task.cancel()
        await asyncio.sleep(0)
        assert batcher.depth == 0 and batcher._queued_chars == 0  # before the runner frees
        await running
        await batcher.close(5)

    asyncio.run(scenario())
    assert graph.runs == 1
