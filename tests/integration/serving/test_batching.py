"""Concurrent calls share inference batches, yet every caller gets exactly its own results."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx

from tests.support.catalog_models import sentiment_fake
from tests.support.serving import build_app, general, medical, metric, serving
from tests.support.slow import SlowBackend, slow_model

Span = tuple[int, int, str, str]  # start, end, label, text

NAMES = ["张三", "李四", "王五", "谷爱凌"]
PLACES = ["北京", "上海", "杭州"]
SYMPTOMS = ["发热", "咳嗽"]
DISEASES = ["肺炎", "糖尿病"]


def _ner_text(i: int, j: int) -> tuple[str, list[Span]]:
    """A unique text whose entities (and their offsets) differ from call to call."""
    pad = "x" * ((i * 7 + j * 3) % 23)
    name, place = NAMES[(i + j) % len(NAMES)], PLACES[(i * 3 + j) % len(PLACES)]
    text = f"{pad}{name}在{place}#{i}-{j}"
    s = len(pad)
    p = s + len(name) + 1
    return text, [(s, s + len(name), "name", name), (p, p + len(place), "address", place)]


def _medical_text(i: int, j: int) -> tuple[str, list[Span]]:
    pad = "y" * ((i * 5 + j) % 17)
    sym, dis = SYMPTOMS[(i + j) % 2], DISEASES[(i + 2 * j) % 2]
    text = f"{pad}患者{sym}伴{dis}#{i}-{j}"
    s = len(pad) + 2
    d = s + len(sym) + 1
    return text, [(s, s + len(sym), "sym", sym), (d, d + len(dis), "dis", dis)]


def _plan(i: int) -> tuple[str, dict[str, Any], list[Any]]:
    """Call ``i``: its route, its body and what each of its results must be."""
    n = 1 + i % 4
    kind = i % 5
    if kind == 0:
        text, spans = _ner_text(i, 0)
        return "/v1/ner", {"text": text}, [spans]
    if kind == 1:
        pairs = [_ner_text(i, j) for j in range(n)]
        return "/v1/ner", {"texts": [t for t, _ in pairs]}, [s for _, s in pairs]
    if kind == 2:
        pairs = [_ner_text(i, j) for j in range(n)]
        names_only = [[sp for sp in s if sp[2] == "name"] for _, s in pairs]
        return "/v1/ner", {"texts": [t for t, _ in pairs], "labels": ["人物"]}, names_only
    if kind == 3:
        pairs = [_medical_text(i, j) for j in range(n)]
        return "/v1/models/medical/predict", {"texts": [t for t, _ in pairs]}, [s for _, s in pairs]
    texts = [f"房间{'干净' if (i + j) % 2 else '很脏'}#{i}-{j}" for j in range(n)]
    moods = ["positive" if (i + j) % 2 else "negative" for j in range(n)]
    return "/v1/sentiment", {"texts": texts}, moods


def _check_ner(texts: list[str], results: list[dict[str, Any]], expected: list[Any]) -> None:
    assert len(results) == len(texts) == len(expected)
    for text, result, spans in zip(texts, results, expected, strict=True):
        got = [(e["start"], e["end"], e["label"], e["text"]) for e in result["entities"]]
        assert got == spans, (text, got)
        assert all(text[e["start"] : e["end"]] == e["text"] for e in result["entities"])


def test_fifty_concurrent_calls_each_get_their_own_results_in_order() -> None:
    backends: dict[str, SlowBackend] = {}
    models = []
    for model in (general(), medical(), sentiment_fake()):
        # A little inference time lets calls queue up behind a running batch and share the next.
        wrapped, backends[model.name] = slow_model(model, delay=0.02)
        models.append(wrapped)
    app = build_app(models)
    plans = [_plan(i) for i in range(50)]

    async def scenario() -> tuple[list[httpx.Response], str, str]:
        async with serving(app) as client:
            before = (await client.get("/metrics")).text
            responses = await asyncio.gather(
                *(
                    client.post(route, json=body, headers={"X-Request-ID": f"call-{i}"})
                    for i, (route, body, _) in enumerate(plans)
                )
            )
            after = (await client.get("/metrics")).text
        return list(responses), before, after

    responses, before, after = asyncio.run(scenario())

    for i, ((route, body, expected), response) in enumerate(zip(plans, responses, strict=True)):
        assert response.status_code == 200, response.text
        out = response.json()
        assert out["request_id"] == response.headers["x-request-id"] == f"call-{i}"
        texts = [body["text"]] if "text" in body else body["texts"]
        if route == "/v1/sentiment":
            assert out["model"] == "sentiment"
            assert [r["label"] for r in out["results"]] == expected
            assert [r["label_name"] for r in out["results"]] == [
                "正面" if m == "positive" else "负面" for m in expected
            ]
        else:
            assert out["model"] == ("medical" if "medical" in route else "general")
            _check_ner(texts, out["results"], expected)

    # Every text ran exactly once, and calls really shared batches.
    for name, backend in backends.items():
        sent = [
            t
            for route, body, _ in plans
            if _model_of(route) == name
            for t in ([body["text"]] if "text" in body else body["texts"])
        ]
        assert sorted(backend.texts()) == sorted(sent), name
    assert max(backends["general"].batch_sizes()) > 1
    shared = metric(after, "nluserve_batch_size_texts_count", {"model": "general"}) - metric(
        after, "nluserve_batch_size_texts_bucket", {"model": "general", "le": "1.0"}
    )
    shared_before = metric(
        before, "nluserve_batch_size_texts_count", {"model": "general"}
    ) - metric(before, "nluserve_batch_size_texts_bucket", {"model": "general", "le": "1.0"})
    assert shared > shared_before, "no inference batch held more than one text"


def _model_of(route: str) -> str:
    if route == "/v1/sentiment":
        return "sentiment"
    return "medical" if "medical" in route else "general"


UNIT = "张三在北京大学读书。"


def _long_spans(repeats: int, unit: str) -> list[Span]:
    spans: list[Span] = []
    for r in range(repeats):
        s = r * len(unit)
        spans += [(s, s + 2, "name", "张三"), (s + 3, s + 7, "organization", "北京大学")]
    return spans


def test_an_over_long_text_among_short_ones_is_windowed_and_everyone_is_answered() -> None:
    long_text = UNIT * 900  # 9,000 characters: about 280 windows of a 64-character model
    app = build_app([general(max_length=64)])
    shorts = [_ner_text(i, 0) for i in range(10)]

    async def scenario() -> list[httpx.Response]:
        async with serving(app) as client:
            calls = [client.post("/v1/ner", json={"text": long_text})]
            calls += [client.post("/v1/ner", json={"text": t}) for t, _ in shorts]
            return list(await asyncio.gather(*calls))

    long_response, *short_responses = asyncio.run(scenario())
    assert long_response.status_code == 200, long_response.text
    _check_ner([long_text], long_response.json()["results"], [_long_spans(900, UNIT)])
    for (text, spans), response in zip(shorts, short_responses, strict=True):
        assert response.status_code == 200, response.text
        _check_ner([text], response.json()["results"], [spans])


def test_short_calls_finish_while_an_over_long_one_is_still_running() -> None:
    unit = "张三在北京大学读书长。"
    long_text = unit * 818  # 8,998 characters; only its batches carry the mark 长
    gate = threading.Event()
    model, backend = slow_model(general(max_length=64), gate=gate, only="长")
    app = build_app([model], inference_threads=2)
    shorts = [_ner_text(i, 0) for i in range(10)]

    async def scenario() -> tuple[httpx.Response, list[httpx.Response], bool]:
        async with serving(app) as client:
            long_call = asyncio.ensure_future(client.post("/v1/ner", json={"text": long_text}))
            try:
                assert await asyncio.to_thread(backend.holding.wait, 10)
                short_calls = [client.post("/v1/ner", json={"text": t}) for t, _ in shorts]
                answered = await asyncio.wait_for(asyncio.gather(*short_calls), timeout=20)
                long_still_running = not long_call.done()
            finally:
                gate.set()
            return await long_call, list(answered), long_still_running

    long_response, short_responses, long_still_running = asyncio.run(scenario())
    assert long_still_running
    for (text, spans), response in zip(shorts, short_responses, strict=True):
        assert response.status_code == 200, response.text
        _check_ner([text], response.json()["results"], [spans])
    assert long_response.status_code == 200, long_response.text
    _check_ner([long_text], long_response.json()["results"], [_long_spans(818, unit)])
