"""The inference process's run queue merges different workers' batches into one graph run.

Real bundled graphs (ONNX Runtime sessions) throughout. The first run of each test is held at
a gate, so the batches sent after it are queued behind it when the slot frees, as they are
when several workers' batches arrive during a run.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from nluserve import load_model
from nluserve.runtime.model import Model
from nluserve.runtime.runqueue import RunQueue, _Job, _signature, merge, width
from tests.support.overlap import OverlapGraph


class _Gated:
    """A real graph that records each run's rows; its first ``hold`` runs wait for ``gate``."""

    def __init__(
        self, graph: Any, poison: int | None = None, hold: int = 1, delay_s: float = 0.0
    ) -> None:
        self.graph = graph
        self.delay_s = delay_s  # a slower graph, as a transformer-size one is
        self.input_names = graph.input_names
        self.gate = threading.Event()
        self.runs: list[int] = []
        self.hold = hold
        self.poison = poison  # a text of this length makes a run fail, as a bad input would
        self._lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        with self._lock:
            self.runs.append(int(feeds["lengths"].shape[0]))
            held = len(self.runs) <= self.hold
        if held:
            assert self.gate.wait(30)
        time.sleep(self.delay_s)
        if self.poison is not None and (feeds["lengths"] == self.poison).any():
            raise ValueError("a poisoned batch")
        return np.asarray(self.graph.run(feeds))


@pytest.fixture(scope="module")
def general() -> Model:
    return load_model("general", threads=1)


@pytest.fixture(scope="module")
def sentiment() -> Model:
    return load_model("sentiment", threads=1)


def _queue_behind_a_run(
    runs: RunQueue, batches: list[tuple[str, dict[str, np.ndarray]]], graphs: list[_Gated]
) -> list[np.ndarray | Exception]:
    """Run the first ``hold`` batches, queue the others while they run, then let them finish."""
    hold = graphs[0].hold
    answers: list[np.ndarray | Exception] = [ValueError("no answer")] * len(batches)

    def call(k: int) -> None:
        try:
            answers[k] = runs.run(*batches[k])
        except Exception as exc:
            answers[k] = exc

    threads = [threading.Thread(target=call, args=(k,)) for k in range(len(batches))]
    for thread in threads[:hold]:
        thread.start()
    deadline = time.monotonic() + 30
    while sum(len(g.runs) for g in graphs) < hold and time.monotonic() < deadline:
        time.sleep(0.005)
    for thread in threads[hold:]:
        thread.start()
    while runs.depth < len(batches) - hold and time.monotonic() < deadline:
        time.sleep(0.005)
    assert runs.depth == len(batches) - hold
    for g in graphs:
        g.gate.set()
    for thread in threads:
        thread.join(30)
    return answers


TEXTS = [
    ["张三在北京大学读书。"],
    ["李四去了上海浦东新区。", "王五在深圳。"],
    ["赵六在广州的华为公司上班。"],
    ["小明喜欢看三体这本书。"],
]


def test_merged_batches_get_exactly_their_own_answers(general: Model) -> None:
    graph = _Gated(general.backend)
    runs = RunQueue({"general": graph}, slots=1)
    batches = [("general", general.encoder(t)) for t in TEXTS]
    answers = _queue_behind_a_run(runs, batches, [graph])

    assert graph.runs == [1, 4]  # the three queued batches ran as one
    for (_, feeds), got in zip(batches, answers, strict=True):
        assert isinstance(got, np.ndarray)
        alone = general.backend.run(feeds)
        assert got.shape[0] == alone.shape[0]
        w = width(feeds)
        # Span logits (labels, L, L): the merged run is padded wider; within a batch's own
        # width every logit is the one its own run gives.
        np.testing.assert_allclose(got[:, :, :w, :w], alone, atol=1e-4)


def test_classification_batches_with_different_ngram_counts_merge(sentiment: Model) -> None:
    graph = _Gated(sentiment.backend)
    runs = RunQueue({"sentiment": graph}, slots=1)
    reviews = [["房间很干净。"], ["服务态度很差，不会再来。"], ["早餐一般", "位置很好，交通方便。"]]
    batches = [("sentiment", sentiment.encoder(r)) for r in reviews]
    assert len({b["ngrams"].shape[1] for _, b in batches}) == 3
    answers = _queue_behind_a_run(runs, batches, [graph])

    assert graph.runs == [1, 3]
    for (_, feeds), got in zip(batches, answers, strict=True):
        np.testing.assert_allclose(got, sentiment.backend.run(feeds), atol=1e-4)


def test_a_batch_too_long_to_pad_to_runs_on_its_own(general: Model) -> None:
    graph = _Gated(general.backend)
    runs = RunQueue({"general": graph}, slots=1)
    texts = [["短句一。"], ["短句二在这里。"], ["长" * 48], ["短句三在那里。"]]
    batches = [("general", general.encoder(t)) for t in texts]
    answers = _queue_behind_a_run(runs, batches, [graph])

    # The oldest queued batch goes first with what fits beside it; the 48-character batch
    # would pad the short ones fourfold, so it waits for the next run.
    assert graph.runs == [1, 2, 1]
    assert all(isinstance(a, np.ndarray) for a in answers)


def test_batches_of_different_models_never_share_a_run(general: Model) -> None:
    first, second = _Gated(general.backend), _Gated(general.backend)
    runs = RunQueue({"a": first, "b": second}, slots=1)
    batches = [("a", general.encoder(TEXTS[0]))]
    batches += [(name, general.encoder(t)) for name, t in zip("bab", TEXTS[1:], strict=True)]
    _queue_behind_a_run(runs, batches, [first, second])

    assert first.runs == [1, 1]  # batch 0, then batch 2: the other model's batches sit between
    assert second.runs == [3]  # batches 1 and 3 (model b) together


def test_the_worker_batch_limits_bound_a_merged_run(general: Model) -> None:
    graph = _Gated(general.backend)
    runs = RunQueue({"general": graph}, slots=1, max_rows=3)
    batches = [("general", general.encoder([f"第{k}句话在这里。"])) for k in range(6)]
    _queue_behind_a_run(runs, batches, [graph])
    assert graph.runs == [1, 3, 2]

    graph = _Gated(general.backend)
    w = width(batches[0][1])
    runs = RunQueue({"general": graph}, slots=1, batch_tokens=2 * w)
    _queue_behind_a_run(runs, batches, [graph])
    assert graph.runs == [1, 2, 2, 1]


def test_without_merging_every_batch_runs_on_its_own(general: Model) -> None:
    graph = _Gated(general.backend)
    runs = RunQueue({"general": graph}, slots=1, merge=False)
    batches = [("general", general.encoder(t)) for t in TEXTS]
    _queue_behind_a_run(runs, batches, [graph])
    assert graph.runs == [1, 2, 1, 1]


def test_a_failing_batch_fails_only_its_own_caller(general: Model) -> None:
    poisoned = "毒" * 7
    graph = _Gated(general.backend, poison=len(poisoned))
    runs = RunQueue({"general": graph}, slots=1)
    texts = [TEXTS[0], TEXTS[2], [poisoned], TEXTS[3]]
    batches = [("general", general.encoder(t)) for t in texts]
    answers = _queue_behind_a_run(runs, batches, [graph])

    assert graph.runs == [1, 3, 1, 1, 1]  # the merged run failed; each batch ran again alone
    assert isinstance(answers[2], ValueError)
    for k in (0, 1, 3):
        got = answers[k]
        assert isinstance(got, np.ndarray)
        np.testing.assert_allclose(got, general.backend.run(batches[k][1]), atol=1e-4)


def test_with_two_slots_a_run_takes_only_its_share_of_the_queue(general: Model) -> None:
    # Both slots are busy while four batches queue: each slot then takes two, never all four
    # while the other core waits with nothing to run.
    graph = _Gated(general.backend, hold=2)
    runs = RunQueue({"general": graph}, slots=2)
    batches = [("general", general.encoder([f"第{k}句话在这里。"])) for k in range(6)]
    _queue_behind_a_run(runs, batches, [graph])
    assert sorted(graph.runs[:2]) == [1, 1]
    assert 2 in graph.runs[2:] and max(graph.runs) == 2 and sum(graph.runs) == 6

    # Two queued batches for two slots: one each, no merge.
    graph = _Gated(general.backend, hold=2)
    runs = RunQueue({"general": graph}, slots=2)
    _queue_behind_a_run(runs, batches[:4], [graph])
    assert graph.runs == [1, 1, 1, 1]


def test_an_unknown_model_fails_before_it_is_queued(general: Model) -> None:
    runs = RunQueue({"general": general.backend}, slots=1)
    with pytest.raises(KeyError):
        runs.run("nope", general.encoder(TEXTS[0]))
    assert runs.depth == 0


def test_merge_pads_every_input_along_its_length_with_zeros() -> None:
    a = {"ids": np.array([[1, 2]]), "lex": np.ones((1, 2, 3)), "n": np.array([2])}
    b = {"ids": np.array([[3, 4, 5], [6, 0, 0]]), "lex": np.ones((2, 3, 3)), "n": np.array([3, 1])}
    merged = merge([a, b])
    assert merged["ids"].tolist() == [[1, 2, 0], [3, 4, 5], [6, 0, 0]]
    assert merged["lex"].shape == (3, 3, 3) and merged["lex"][0, 2].sum() == 0
    assert merged["n"].tolist() == [2, 3, 1]


def test_a_lone_batch_is_cut_over_the_idle_slots_and_answers_as_one(general: Model) -> None:
    texts = [
        "张三在北京大学读书。",
        "李四去了上海。",
        "王五在深圳的华为公司。",
        "赵六来自广州。",
        "小明",
    ]
    feeds = general.encoder(texts)
    whole = general.backend.run(feeds)
    graph = _Gated(general.backend, hold=0)
    runs = RunQueue({"general": graph}, slots=2, split=True, split_min_s=0.0)
    _wait_idle(runs, 2)
    got = runs.run("general", feeds)
    assert sorted(graph.runs) == [2, 3]  # both cores, one part each
    np.testing.assert_allclose(got, whole, atol=1e-4)

    graph = _Gated(general.backend, hold=0)
    runs = RunQueue({"general": graph}, slots=2, split=False)
    _wait_idle(runs, 2)
    np.testing.assert_allclose(runs.run("general", feeds), whole, atol=1e-4)
    assert graph.runs == [5]


@pytest.mark.parametrize(("split_min_s", "expected"), [(0.015, [2, 1, 1, 1, 1]), (0.1, [2, 2, 2])])
def test_a_batch_is_cut_only_when_its_expected_run_is_long_enough(
    general: Model, split_min_s: float, expected: list[int]
) -> None:
    feeds = general.encoder(["张三在北京大学读书。", "李四去了上海。"])
    graph = _Gated(general.backend, hold=0, delay_s=0.02)  # about 10 ms a row
    runs = RunQueue({"general": graph}, slots=2, split=True, split_min_s=split_min_s)
    for _ in range(3):  # the first run has no estimate yet, so it runs whole
        _wait_idle(runs, 2)
        runs.run("general", feeds)
    assert graph.runs == expected


def test_a_batch_is_not_cut_while_the_other_slot_is_busy(general: Model) -> None:
    graph = _Gated(general.backend, hold=1)
    runs = RunQueue({"general": graph}, slots=2, split=True, split_min_s=0.0)
    _wait_idle(runs, 2)
    busy = threading.Thread(target=runs.run, args=("general", general.encoder(TEXTS[0])))
    busy.start()
    while not graph.runs:
        time.sleep(0.005)
    feeds = general.encoder(["李四去了上海。", "王五在深圳。", "赵六来自广州。"])
    np.testing.assert_allclose(runs.run("general", feeds), general.backend.run(feeds), atol=1e-4)
    graph.gate.set()
    busy.join(30)
    assert graph.runs == [1, 3]


def _wait_idle(runs: RunQueue, slots: int) -> None:
    deadline = time.monotonic() + 10
    while runs.idle < slots and time.monotonic() < deadline:
        time.sleep(0.005)
    assert runs.idle == slots


def test_one_calls_batches_run_side_by_side_on_idle_slots(general: Model) -> None:
    # A call's texts cut into runs of similar length: queued together, both slots take one.
    short, long = (
        general.encoder(["张三。", "李四。"]),
        general.encoder(["王五在深圳的华为公司上班。"]),
    )
    graph = OverlapGraph(general.backend, delay_s=0.05)
    runs = RunQueue({"general": graph}, slots=2, split=True)
    _wait_idle(runs, 2)
    got = runs.run_many("general", [short, long])
    assert graph.most == 2
    for feeds, out in zip([short, long], got, strict=True):
        np.testing.assert_allclose(out, general.backend.run(feeds), atol=1e-4)


def test_the_parts_of_a_cut_batch_never_join_another_run(general: Model) -> None:
    # Parts are stacked back together at the width they were cut at, so none may be padded
    # wider by a merge. The queue is filled and taken under its lock: the runner waits.
    runs = RunQueue({"general": general.backend}, slots=1)

    def job(text: str, whole: bool) -> _Job:
        feeds = general.encoder([text])
        return _Job("general", feeds, 1, width(feeds), _signature(feeds), whole)

    with runs._ready:
        runs._queue.extend([job("张三在北京。", False), job("李四在上海。", True)])
        taken = [len(runs._take()), len(runs._take())]
        runs._queue.extend([job("张三在北京。", True), job("李四在上海。", False)])
        taken += [len(runs._take()), len(runs._take())]
        runs._queue.extend([job("张三在北京。", True), job("李四在上海。", True)])
        taken += [len(runs._take())]
    assert taken == [1, 1, 1, 1, 2]  # two whole batches do merge


class _QueueBackend:
    """What a worker's model sees of the inference process, without the socket."""

    def __init__(self, runs: RunQueue, model: str) -> None:
        self.runs, self.model, self.calls = runs, model, 0

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.runs.run(self.model, feeds)

    def run_many(self, batches: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        self.calls += 1
        return self.runs.run_many(self.model, batches)


def test_a_model_sends_all_of_a_calls_batches_at_once_and_answers_as_in_process(
    general: Model,
) -> None:
    texts = ["张三。", "李四在北京大学读书。", "长" * 30 + "王五在深圳的华为公司上班。", "赵六"]
    local = general.predict(texts)
    backend = _QueueBackend(RunQueue({"general": general.backend}, slots=2, split=True), "general")
    remote = Model(general.manifest, backend, general.encoder, path=general.path)
    assert remote.predict(texts) == local
    assert backend.calls == 1  # several batches (lengths 2 to 43), one message


class _Truncating:
    """A graph that answers one row whatever it is given, as a broken export might."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.input_names = graph.input_names

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.graph.run(feeds))[:1]


def test_a_graph_answering_the_wrong_rows_fails_the_call_and_the_queue_keeps_serving(
    general: Model,
) -> None:
    runs = RunQueue({"general": _Truncating(general.backend)}, slots=1)
    with pytest.raises(ValueError, match="for 2 rows"):
        runs.run("general", general.encoder(["张三。", "李四在北京。"]))
    one = general.encoder(["张三在北京大学读书。"])
    np.testing.assert_allclose(runs.run("general", one), general.backend.run(one), atol=1e-4)
