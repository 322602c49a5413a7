"""The compatibility routes answer in exactly the shapes of the services they replace."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.support.serving import assert_problem, build_app, serving


def _post(path: str, body: Any, **limits: Any) -> httpx.Response:
    app = build_app(**limits)

    async def scenario() -> httpx.Response:
        async with serving(app) as client:
            return await client.post(path, json=body)

    return asyncio.run(scenario())


def test_predict_ner_answers_in_the_tutorial_shape() -> None:
    text = "张三在北京大学读书，后来去了上海。"
    response = _post("/predict/ner", {"text": text})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body.keys() == {"code", "message", "data"}
    assert body["code"] == 0 and body["message"] == "成功"
    assert body["data"].keys() == {"text", "entities"}
    assert body["data"]["text"] == text
    for entity in body["data"]["entities"]:
        assert entity.keys() == {"text", "type", "start", "end"}
        assert isinstance(entity["start"], int) and isinstance(entity["end"], int)
        assert text[entity["start"] : entity["end"]] == entity["text"]
    got = [(e["text"], e["type"], e["start"], e["end"]) for e in body["data"]["entities"]]
    assert got == [
        ("张三", "name", 0, 2),
        ("北京大学", "organization", 3, 7),
        ("上海", "address", 14, 16),
    ]


@pytest.mark.parametrize("text", ["", "   ", "\u0000", "\u200b\ufeff"])
def test_predict_ner_with_empty_text_is_the_tutorials_400(text: str) -> None:
    response = _post("/predict/ner", {"text": text})
    assert response.status_code == 400
    body = response.json()
    assert body.keys() == {"code", "message", "data"}
    assert body["code"] == 400 and body["data"] is None
    assert isinstance(body["message"], str) and body["message"]


def test_predict_ner_still_obeys_the_limits() -> None:
    body = assert_problem(_post("/predict/ner", {"text": "张" * 60}, max_text_chars=50), 422)
    assert body["type"].endswith("/text-too-long")


def test_uninlu_extracts_the_schema_keys_by_catalog_alias() -> None:
    text = "谷爱凌在北京冬奥会获得金牌"
    response = _post("/api/predict", {"text": text, "schema": {"人物": None, "地理位置": None}})
    assert response.status_code == 200, response.text
    assert response.json() == {"text": text, "result": {"人物": ["谷爱凌"], "地理位置": ["北京"]}}


def test_uninlu_routes_each_key_to_the_model_that_knows_it() -> None:
    text = "张三发热咳嗽，确诊肺炎"
    schema = {"人物": None, "症状": None, "疾病": None, "情感分类": None}
    response = _post("/api/predict", {"text": text, "schema": schema})
    assert response.status_code == 200, response.text
    assert response.json()["result"] == {
        "人物": ["张三"],
        "症状": ["发热", "咳嗽"],
        "疾病": ["肺炎"],
        "情感分类": ["负面"],
    }


@pytest.mark.parametrize(("text", "mood"), [("房间干净，服务周到", "正面"), ("房间很脏", "负面")])
def test_uninlu_sentiment_key_asks_the_sentiment_model(text: str, mood: str) -> None:
    response = _post("/api/predict", {"text": text, "schema": {"情感分类": None}})
    assert response.status_code == 200, response.text
    assert response.json() == {"text": text, "result": {"情感分类": [mood]}}


@pytest.mark.parametrize(
    "schema", [{"情感分类": None}, {"人物": None, "情感分类": None}], ids=["alone", "with-ner"]
)
def test_uninlu_sentiment_model_set_to_an_ner_model_is_the_wrong_task(
    schema: dict[str, None],
) -> None:
    # NLUSERVE_SENTIMENT_MODEL=general: a 422 as on /v1/sentiment, never a 500.
    response = _post("/api/predict", {"text": "张三", "schema": schema}, sentiment_model="general")
    body = assert_problem(response, 422)
    assert body["type"].endswith("/wrong-task")
    assert "'general' is a ner model" in body["detail"]


def test_uninlu_unknown_key_is_422_listing_valid_keys() -> None:
    body = assert_problem(
        _post("/api/predict", {"text": "张三", "schema": {"人物": None, "外星人": None}}), 422
    )
    assert "外星人" in body["detail"]
    assert {"人名", "地址", "疾病", "情感分类"} <= set(body["valid_labels"])


@pytest.mark.parametrize(
    "payload",
    [
        {"text": "张三", "schema": {}},
        {"text": "", "schema": {"人物": None}},
        {"text": "张三"},
        {"text": 5, "schema": {"人物": None}},
    ],
)
def test_uninlu_invalid_calls_are_422(payload: dict[str, Any]) -> None:
    assert_problem(_post("/api/predict", payload), 422)
