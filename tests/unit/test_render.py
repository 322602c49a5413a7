"""The prediction body rendered without pydantic is exactly what ``PredictOut`` describes."""

from __future__ import annotations

import json

from nluserve.api.render import prediction_json
from nluserve.api.schemas import PredictOut
from nluserve.services.inference import Prediction
from tests.support.serving import general, sentiment_fake


def test_ner_body_validates_as_predict_out_and_keeps_its_field_order() -> None:
    model = general()
    texts = ["张三在北京大学读书。", "没有实体", "李四去了上海😀"]
    body = prediction_json(Prediction(model, model.predict(texts), 0.01), "rid-1")
    parsed = PredictOut.model_validate_json(body)
    assert json.loads(body) == json.loads(parsed.model_dump_json())
    assert list(json.loads(body)) == list(PredictOut.model_fields)
    first = json.loads(body)["results"][0]["entities"][0]
    assert list(first) == ["text", "label", "label_name", "start", "end", "score"]
    assert first["label_name"] == "人名"
    assert [len(r.entities) for r in parsed.results] == [2, 0, 2]  # type: ignore[union-attr]


def test_classification_body_validates_as_predict_out() -> None:
    model = sentiment_fake()
    body = prediction_json(Prediction(model, model.predict(["房间干净", "很差"]), 0.01), "r")
    parsed = PredictOut.model_validate_json(body)
    assert json.loads(body) == json.loads(parsed.model_dump_json())
    assert [r.label for r in parsed.results] == ["positive", "negative"]  # type: ignore[union-attr]
    assert json.loads(body)["results"][0]["label_name"] == "正面"
