"""In-process, a lone call's runs go side by side on the batcher's idle runners.

The bundled ``general`` session throughout, wrapped to take 20 ms a run (as a larger graph
would) and to record how many runs overlap: never more than the batcher's runners.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from nluserve import load_model
from nluserve.runtime.batcher import Batcher
from nluserve.runtime.model import Model
from nluserve.runtime.results import Result
from tests.support.overlap import OverlapGraph

TEXTS = [
    "张三在北京大学读书。",
    "李四去了上海。",
    "王五在深圳的华为公司上班，" * 3,
    "赵六",
    "小明喜欢看三体。",
    "长" * 120,  # three 50-character windows
]


@pytest.fixture(scope="module")
def general() -> Model:
    return load_model("general", threads=1)


def _slow(general: Model) -> tuple[Model, OverlapGraph]:
    counting = OverlapGraph(general.backend)
    return Model(general.manifest, counting, general.encoder, path=general.path), counting


def test_a_calls_runs_side_by_side_answer_as_one_after_the_other(general: Model) -> None:
    model, counting = _slow(general)
    expected = general.predict(TEXTS)
    with ThreadPoolExecutor(1) as pool:
        assert model.predict(TEXTS, pool=pool, ways=2) == expected
    assert counting.most == 2
    single, counting = _slow(general)
    assert single.predict(TEXTS[:1] * 4, pool=None, ways=2) == general.predict(TEXTS[:1] * 4)
    assert counting.most == 1  # without a pool, one after the other


def _serve(batcher: Batcher, calls: list[list[str]], gap_s: float = 0.0) -> list[list[Result]]:
    async def scenario() -> list[list[Result]]:
        tasks = []
        for texts in calls:
            deadline = time.monotonic() + 30
            tasks.append(asyncio.ensure_future(batcher.submit(texts, deadline, "r")))
            await asyncio.sleep(gap_s)
        answers = await asyncio.gather(*tasks)
        await batcher.close(5)
        return list(answers)

    return asyncio.run(scenario())


def test_an_idle_batcher_lends_its_runners_to_a_lone_call(general: Model) -> None:
    model, counting = _slow(general)
    batcher = Batcher(model, 2, 32, 4096, 100_000)
    answers = _serve(batcher, [TEXTS[:1], TEXTS, TEXTS], gap_s=0.3)
    # The first call teaches the batcher what a run costs; the later ones, alone, borrow.
    assert counting.most == 2
    assert answers[1] == answers[2] == general.predict(TEXTS)


def test_runs_never_exceed_the_runners_while_calls_overlap(general: Model) -> None:
    model, counting = _slow(general)
    batcher = Batcher(model, 2, 4, 4096, 100_000)
    calls = [TEXTS[:1]] + [TEXTS[k : k + 3] for k in range(4)] * 3
    answers = _serve(batcher, calls, gap_s=0.005)
    assert counting.most == 2
    for texts, got in zip(calls, answers, strict=True):
        assert got == general.predict(texts)


def _record_ways(model: Model) -> list[int]:
    seen: list[int] = []
    predict = model.predict

    def recording(
        texts: list[str], labels: Any = None, pool: Any = None, ways: int = 1, **lent: Any
    ) -> list[Result]:
        seen.append(ways)
        return predict(texts, labels, pool, ways, **lent)

    model.predict = recording  # type: ignore[method-assign]
    return seen


def test_only_calls_whose_runs_take_long_enough_are_spread(general: Model) -> None:
    slow, _ = _slow(general)  # 20 ms a window
    ways = _record_ways(slow)
    _serve(Batcher(slow, 2, 32, 4096, 100_000), [TEXTS[:2]] * 3, gap_s=0.2)
    assert ways == [1, 2, 2]  # the first call has no estimate yet

    fast = Model(general.manifest, general.backend, general.encoder, path=general.path)
    ways = _record_ways(fast)  # about 1 ms a window on this session
    _serve(Batcher(fast, 2, 32, 4096, 100_000), [TEXTS[:2]] * 3, gap_s=0.2)
    assert ways == [1, 1, 1]


class _OnGpu:
    provider = "CUDAExecutionProvider"

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.backend.run(feeds))


def test_nothing_is_lent_on_a_gpu_or_to_the_inference_process(general: Model) -> None:
    on_cpu = Batcher(general, 2, 32, 4096, 100_000)
    gpu = Model(general.manifest, _OnGpu(general.backend), general.encoder, path=general.path)
    on_gpu = Batcher(gpu, 2, 32, 4096, 100_000)
    backend = OverlapGraph(general.backend)
    backend.run_many = lambda batches: [backend.run(b) for b in batches]  # type: ignore[attr-defined]
    remote = Model(general.manifest, backend, general.encoder, path=general.path)
    via_process = Batcher(remote, 2, 32, 4096, 100_000)
    assert on_cpu._helpers is not None
    assert on_gpu._helpers is None and via_process._helpers is None
