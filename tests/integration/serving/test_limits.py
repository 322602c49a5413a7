"""Limits and malformed calls: always a problem+json naming what is wrong, never a 500."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.support.serving import assert_problem, build_app, serving

LIMITS: dict[str, Any] = {
    "max_body_bytes": 4096,
    "max_texts": 3,
    "max_text_chars": 50,
    "max_total_chars": 120,
}

Call = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


def _answer(call: Call, **limits: Any) -> httpx.Response:
    app = build_app(**{**LIMITS, **limits})

    async def scenario() -> httpx.Response:
        async with serving(app) as client:
            return await call(client)

    return asyncio.run(scenario())


def _post(path: str, body: Any = None, **kwargs: Any) -> Call:
    async def call(client: httpx.AsyncClient) -> httpx.Response:
        if body is not None:
            kwargs["json"] = body
        return await client.post(path, **kwargs)

    return call


def _fields(body: dict[str, Any]) -> set[str]:
    return {e["field"] for e in body.get("errors", [])}


def test_a_body_over_the_limit_is_413() -> None:
    response = _answer(_post("/v1/ner", {"text": "张" * 40, "labels": ["人物"] * 500}))
    body = assert_problem(response, 413)
    assert body["type"].endswith("/payload-too-large")
    assert body["request_id"] == response.headers["x-request-id"]


def test_a_streamed_body_over_the_limit_without_content_length_is_413() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"text": "'
        for _ in range(100):
            yield b"a" * 100
        yield b'"}'

    response = _answer(
        _post("/v1/ner", content=chunks(), headers={"content-type": "application/json"})
    )
    assert_problem(response, 413)


def test_too_many_texts_is_422_naming_texts() -> None:
    body = assert_problem(_answer(_post("/v1/ner", {"texts": ["张三"] * 4})), 422)
    assert body["type"].endswith("/too-many-texts")
    assert _fields(body) == {"texts"}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"text": "张" * 51}, "text"),
        ({"texts": ["张三", "李" * 51]}, "texts[1]"),
        ({"texts": ["李" * 51]}, "texts[0]"),
    ],
)
def test_a_text_over_the_limit_is_422_naming_it(payload: dict[str, Any], field: str) -> None:
    body = assert_problem(_answer(_post("/v1/ner", payload)), 422)
    assert body["type"].endswith("/text-too-long")
    assert _fields(body) == {field}
    assert f"`{field}`" in body["detail"]


def test_a_call_over_the_character_budget_is_422() -> None:
    body = assert_problem(_answer(_post("/v1/ner", {"texts": ["张" * 50] * 3})), 422)
    assert body["type"].endswith("/call-too-long")
    assert _fields(body) == {"texts"}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"text": ""}, "text"),
        ({"text": " \t\n　"}, "text"),
        ({"texts": ["张三", "  "]}, "texts[1]"),
        ({"texts": []}, "texts"),
        # Control and invisible format characters are blanks to the models too.
        ({"text": "\u0000"}, "text"),
        ({"text": "\u0001\u200b\ufeff "}, "text"),
    ],
)
def test_empty_or_blank_texts_are_422(payload: dict[str, Any], field: str) -> None:
    body = assert_problem(_answer(_post("/v1/ner", payload)), 422)
    assert _fields(body) == {field}


def test_invalid_utf8_is_400() -> None:
    raw = b'{"text": "\xff\xfe\xe5\xbc"}'
    response = _answer(_post("/v1/ner", content=raw, headers={"content-type": "application/json"}))
    assert assert_problem(response, 400)["type"].endswith("/malformed-json")


@pytest.mark.parametrize(
    "raw",
    [
        # UTF-16, which the stdlib json module would decode by guessing
        '{"text": "张三"}'.encode("utf-16"),
        '{"text": "张三"}'.encode("utf-16-le"),
        # a surrogate encoded as UTF-8 bytes (not the JSON escape, which is a 422 below)
        b'{"text": "\xed\xa0\x80\xe5\xbc\xa0"}',
        b'{"text": "\x00"}',
    ],
    ids=["utf-16", "utf-16-le", "surrogate-bytes", "raw-nul"],
)
def test_bytes_that_are_not_utf8_json_are_400(raw: bytes) -> None:
    response = _answer(_post("/v1/ner", content=raw, headers={"content-type": "application/json"}))
    assert assert_problem(response, 400)["type"].endswith("/malformed-json")


def test_a_surrogate_split_across_two_body_parts_is_still_found() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"text": "\xed'
        yield b'\xa0\x80"}'

    call = _post("/v1/ner", content=chunks(), headers={"content-type": "application/json"})
    assert assert_problem(_answer(call), 400)["type"].endswith("/malformed-json")


@pytest.mark.parametrize("coding", ["gzip", "br", "deflate, gzip"])
def test_a_content_coding_is_415_asking_for_identity(coding: str) -> None:
    headers = {"content-type": "application/json", "content-encoding": coding}
    response = _answer(_post("/v1/ner", content=b'{"text": "\\u5f20\\u4e09"}', headers=headers))
    assert assert_problem(response, 415)["type"].endswith("/unsupported-media-type")
    assert response.headers["accept-encoding"] == "identity"
    headers["content-encoding"] = "identity"
    ok = _answer(_post("/v1/ner", content=b'{"text": "\\u5f20\\u4e09"}', headers=headers))
    assert ok.status_code == 200, ok.text


def test_an_empty_model_name_is_422_not_the_default_model() -> None:
    body = assert_problem(_answer(_post("/v1/ner", {"text": "张三", "model": ""})), 422)
    assert _fields(body) == {"model"}


def test_a_422_lists_at_most_twenty_errors_however_many_fields_were_wrong() -> None:
    payload = {"text": "张三", **{f"f{i}": 1 for i in range(300)}}
    response = _answer(_post("/v1/ner", payload), max_body_bytes=100_000)
    body = assert_problem(response, 422)
    assert len(body["errors"]) == 20
    assert body["detail"].endswith("and 280 more")
    assert len(response.content) < 5000


def test_unknown_labels_are_quoted_back_only_in_part() -> None:
    labels = [f"x{i}" for i in range(500)]
    response = _answer(_post("/v1/ner", {"text": "张三", "labels": labels}), max_body_bytes=100_000)
    body = assert_problem(response, 422)
    assert "and 490 more" in body["detail"] and "x499" not in body["detail"]


def test_malformed_json_is_400() -> None:
    response = _answer(
        _post("/v1/ner", content=b'{"text": "abc"', headers={"content-type": "application/json"})
    )
    body = assert_problem(response, 400)
    assert body["type"].endswith("/malformed-json")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"text": 123}, "text"),
        ({"texts": "张三"}, "texts"),
        ({"texts": ["张三", 5]}, "texts[1]"),
        ({"text": "张三", "labels": 5}, "labels"),
        ({"text": "张三", "labels": []}, "labels"),
        ({"text": "张三", "colour": "red"}, "colour"),
    ],
)
def test_wrong_json_types_are_422_naming_the_field(payload: dict[str, Any], field: str) -> None:
    body = assert_problem(_answer(_post("/v1/ner", payload)), 422)
    assert body["type"].endswith("/validation-error")
    assert field in _fields(body)
    assert field in body["detail"]


@pytest.mark.parametrize("payload", [{"text": "张三", "texts": ["李四"]}, {}, [], "张三"])
def test_not_exactly_one_of_text_or_texts_is_422(payload: Any) -> None:
    body = assert_problem(_answer(_post("/v1/ner", payload)), 422)
    assert body["errors"]


@pytest.mark.parametrize(
    "call",
    [
        _post("/v1/models/nope/predict", {"text": "张三"}),
        _post("/v1/ner", {"text": "张三", "model": "nope"}),
    ],
)
def test_an_unknown_model_is_404(call: Call) -> None:
    body = assert_problem(_answer(call), 404)
    assert body["type"].endswith("/unknown-model")
    assert "general" in body["detail"]


def test_get_of_an_unknown_model_is_404() -> None:
    async def call(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get("/v1/models/nope")

    assert_problem(_answer(call), 404)


def test_a_shortcut_pointed_at_the_wrong_task_is_422() -> None:
    body = assert_problem(_answer(_post("/v1/ner", {"text": "张三", "model": "sentiment"})), 422)
    assert body["type"].endswith("/wrong-task")


def test_an_unknown_label_is_422_listing_the_valid_ones() -> None:
    response = _answer(_post("/v1/ner", {"text": "张三", "labels": ["人物", "外星人"]}))
    body = assert_problem(response, 422)
    assert body["type"].endswith("/unknown-label")
    assert "外星人" in body["detail"]
    assert {"name", "人名", "address", "地址"} <= set(body["valid_labels"])


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/v1/nothing-here", 404), ("GET", "/v1/ner", 405), ("DELETE", "/v1/models", 405)],
)
def test_routing_errors_are_problems_too(method: str, path: str, status: int) -> None:
    async def call(client: httpx.AsyncClient) -> httpx.Response:
        return await client.request(method, path)

    assert_problem(_answer(call), status)


def test_a_well_formed_request_id_is_echoed_in_the_header_body_and_problems() -> None:
    async def call(client: httpx.AsyncClient) -> httpx.Response:
        ok = await client.post("/v1/ner", json={"text": "张三"}, headers={"X-Request-ID": "abc-1"})
        assert ok.headers["x-request-id"] == "abc-1" == ok.json()["request_id"]
        return await client.post("/v1/ner", json={"text": ""}, headers={"X-Request-ID": "abc-2"})

    response = _answer(call)
    assert response.headers["x-request-id"] == "abc-2"
    assert assert_problem(response, 422)["request_id"] == "abc-2"


@pytest.mark.parametrize("given", [None, "has spaces", "x" * 200, "换行"])
def test_a_missing_or_malformed_request_id_is_replaced_by_a_fresh_one(given: str | None) -> None:
    async def call(client: httpx.AsyncClient) -> httpx.Response:
        headers = [(b"x-request-id", given.encode())] if given else []
        return await client.post("/v1/ner", json={"text": "张三"}, headers=headers)

    response = _answer(call)
    rid = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    assert response.json()["request_id"] == rid


def test_health_and_readiness_once_started() -> None:
    async def call(client: httpx.AsyncClient) -> httpx.Response:
        health = await client.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        return await client.get("/readyz")

    ready = _answer(call)
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"general": "ok", "medical": "ok", "sentiment": "ok"},
    }


def test_not_ready_before_the_lifespan_has_started() -> None:
    app = build_app()

    async def scenario() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.get("/readyz")

    response = asyncio.run(scenario())
    assert response.status_code == 503
    assert response.json()["status"] == "not ready"


@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [
        ("/v1/ner", '{"text": "张三\\ud800在北京"}', "text"),
        ("/v1/ner", '{"texts": ["张三", "\\udc00"]}', "texts[1]"),
        ("/v1/ner", '{"text": "张三", "labels": ["\\ud800"]}', "labels[0]"),
        ("/predict/ner", '{"text": "\\ud800"}', "text"),
        ("/api/predict", '{"text": "张三\\ud800", "schema": {"人物": null}}', "text"),
    ],
)
def test_a_lone_surrogate_is_422_naming_the_field(path: str, raw: str, field: str) -> None:
    # valid JSON, but no Unicode text: it could never be encoded in the answer
    response = _answer(
        _post(path, content=raw.encode(), headers={"content-type": "application/json"})
    )
    body = assert_problem(response, 422)
    assert field in _fields(body)


def test_a_surrogate_pair_is_one_character_and_answered() -> None:
    raw = '{"text": "\\ud83d\\ude00张三在北京"}'.encode()
    response = _answer(_post("/v1/ner", content=raw, headers={"content-type": "application/json"}))
    assert response.status_code == 200, response.text
    text = "\U0001f600张三在北京"
    entities = response.json()["results"][0]["entities"]
    assert entities and all(text[e["start"] : e["end"]] == e["text"] for e in entities)


def test_a_nested_schema_is_422() -> None:
    payload = {"text": "张三在北京", "schema": {"人物": {"获奖": None}}}
    body = assert_problem(_answer(_post("/api/predict", payload)), 422)
    assert _fields(body) == {"schema.人物"}


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        (
            {"content-type": "application/x-www-form-urlencoded"},
            "application/x-www-form-urlencoded",
        ),
        ({"content-type": "text/plain"}, "text/plain"),
        ({}, "empty"),
    ],
)
def test_a_body_that_is_not_declared_json_is_415(headers: dict[str, str], named: str) -> None:
    for path in ("/v1/ner", "/predict/ner"):
        call = _post(path, content='{"text": "张三"}'.encode(), headers=headers)
        body = assert_problem(_answer(call), 415)
        assert body["type"].endswith("/unsupported-media-type")
        assert named in body["detail"]


def test_json_with_a_charset_is_read_as_json() -> None:
    headers = {"content-type": "application/json; charset=utf-8"}
    call = _post("/v1/ner", content='{"text": "张三"}'.encode(), headers=headers)
    assert _answer(call).status_code == 200


def test_labels_on_a_classification_model_are_checked_too() -> None:
    bad = _answer(_post("/v1/sentiment", {"text": "很好", "labels": ["外星人"]}))
    assert assert_problem(bad, 422)["type"].endswith("/unknown-label")
    good = _answer(_post("/v1/sentiment", {"text": "很好", "labels": ["positive"]}))
    assert good.status_code == 200 and set(good.json()["results"][0]["scores"]) == {
        "positive",
        "negative",
    }


def test_head_is_answered_wherever_get_is_without_a_body() -> None:
    async def call(client: httpx.AsyncClient) -> httpx.Response:
        for path in ("/readyz", "/healthz", "/v1/models", "/v1/models/general"):
            got = await client.get(path)
            head = await client.head(path)
            assert head.status_code == got.status_code == 200, (path, head.status_code)
            assert head.content == b"", path
            assert head.headers["content-length"] == str(len(got.content)), path
        # A route without GET does not take HEAD either, and says what it takes.
        return await client.head("/v1/ner")

    refused = _answer(call)
    assert refused.status_code == 405 and refused.headers["allow"] == "POST"


@pytest.mark.parametrize(("path", "allow"), [("/healthz", "GET, HEAD"), ("/v1/ner", "POST")])
def test_a_405_names_every_method_the_path_takes(path: str, allow: str) -> None:
    async def call(client: httpx.AsyncClient) -> httpx.Response:
        return await client.request("PUT", path)

    response = _answer(call)
    assert_problem(response, 405)
    assert response.headers["allow"] == allow


def test_an_unexpected_error_is_a_500_problem_with_the_request_id_in_header_and_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from nluserve.observability.logging import request_id_var

    app = build_app(**LIMITS)

    async def broken() -> None:
        raise RuntimeError("a bug, not the client's mistake")

    app.add_api_route("/boom", broken, methods=["GET"])
    seen: list[str | None] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name == "nluserve.http":
                seen.append(request_id_var.get())

    handler = Capture()
    logging.getLogger("nluserve.http").addHandler(handler)
    try:

        async def scenario() -> httpx.Response:
            async with serving(app) as client:
                return await client.get("/boom", headers={"X-Request-ID": "bug-7"})

        response = asyncio.run(scenario())
    finally:
        logging.getLogger("nluserve.http").removeHandler(handler)
    body = assert_problem(response, 500)
    assert response.headers["x-request-id"] == "bug-7" == body["request_id"]
    assert seen == ["bug-7"]


def test_a_trailing_slash_is_a_404_not_a_redirect_built_from_the_host_header() -> None:
    call = _post("/v1/ner/", {"text": "张三"}, headers={"host": "evil.example"})
    response = _answer(call)
    assert_problem(response, 404)
    assert "location" not in response.headers


def test_an_unknown_model_name_is_echoed_only_in_part() -> None:
    response = _answer(_post("/v1/models/" + "x" * 20_000 + "/predict", {"text": "张三"}))
    body = assert_problem(response, 404)
    assert len(body["detail"]) < 300 and "models you may call: general" in body["detail"]
    assert len(response.content) < 1000


def test_the_api_docs_can_be_switched_off() -> None:
    async def call(client: httpx.AsyncClient) -> httpx.Response:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert_problem(await client.get(path), 404)
        return await client.post("/v1/ner", json={"text": "张三"})

    assert _answer(call, api_docs=False).status_code == 200
    assert _answer(lambda c: c.get("/openapi.json")).status_code == 200
