"""Turning service results into response bodies."""

from __future__ import annotations

from typing import Any

import orjson

from nluserve.api.schemas import LabelOut, ModelLimits, ModelOut
from nluserve.runtime.model import Model
from nluserve.runtime.results import ClassResult, NerResult
from nluserve.services.inference import Prediction
from nluserve.settings import Settings


def model_out(model: Model, settings: Settings) -> ModelOut:
    m = model.manifest
    return ModelOut(
        name=m.name,
        version=m.version,
        task=m.task,
        description=m.description,
        nested=m.nested,
        labels=[
            LabelOut(code=lab.code, name_zh=lab.zh, name_en=lab.en, aliases=lab.aliases)
            for lab in m.labels
        ],
        limits=ModelLimits(
            max_length=m.max_length,
            max_text_chars=settings.max_text_chars,
            max_total_chars=settings.max_total_chars,
            max_texts=settings.max_texts,
        ),
        metrics=m.metrics,
    )


def prediction_json(pred: Prediction, request_id: str) -> bytes:
    """The ``PredictOut`` body as JSON bytes, built from plain dicts.

    The hottest response of the service skips pydantic: building the models and FastAPI's
    validation and serialisation of ``response_model`` cost more than the rest of the route. The
    fields and their order are ``PredictOut``'s (a unit test checks the bytes validate).
    """
    names = {lab.code: lab.zh for lab in pred.model.labels}
    results: list[dict[str, Any]] = []
    for res in pred.results:
        if isinstance(res, NerResult):
            results.append(
                {
                    "entities": [
                        {
                            "text": e.text,
                            "label": e.label,
                            "label_name": names[e.label],
                            "start": e.start,
                            "end": e.end,
                            "score": e.score,
                        }
                        for e in res.entities
                    ]
                }
            )
        elif isinstance(res, ClassResult):
            results.append(
                {
                    "label": res.label,
                    "label_name": names[res.label],
                    "score": res.score,
                    "scores": res.scores,
                }
            )
    body = {
        "model": pred.model.name,
        "version": pred.model.manifest.version,
        "request_id": request_id,
        "results": results,
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
