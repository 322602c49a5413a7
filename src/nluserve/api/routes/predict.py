"""POST /v1/models/{name}/predict and the /v1/ner, /v1/sentiment shortcuts."""

from __future__ import annotations

from fastapi import APIRouter, Request

from nluserve.api.calls import authorize, check_limits, resolve, run_prediction
from nluserve.api.deps import CallerDep, InferenceDep, RequestIdDep, SettingsDep
from nluserve.api.problems import responses
from nluserve.api.render import prediction_out
from nluserve.api.schemas import NerIn, PredictIn, PredictOut

router = APIRouter(
    prefix="/v1", tags=["predict"], responses=responses(400, 401, 403, 404, 413, 422, 429, 503, 504)
)


@router.post("/models/{name}/predict", response_model=PredictOut, summary="Predict with a model")
async def predict(
    name: str,
    body: PredictIn,
    request: Request,
    service: InferenceDep,
    settings: SettingsDep,
    caller: CallerDep,
    request_id: RequestIdDep,
) -> PredictOut:
    model = resolve(service, name)
    authorize(caller, model)
    texts = body.all_texts()
    check_limits(texts, settings, "text" if body.text is not None else "texts")
    pred = await run_prediction(request, service, caller, model, texts, body.labels, request_id)
    return prediction_out(pred, request_id)


@router.post("/ner", response_model=PredictOut, summary="Named entities (default model: general)")
async def ner(
    body: NerIn,
    request: Request,
    service: InferenceDep,
    settings: SettingsDep,
    caller: CallerDep,
    request_id: RequestIdDep,
) -> PredictOut:
    model = resolve(service, body.model or settings.default_ner_model, "ner")
    authorize(caller, model)
    texts = body.all_texts()
    check_limits(texts, settings, "text" if body.text is not None else "texts")
    pred = await run_prediction(request, service, caller, model, texts, body.labels, request_id)
    return prediction_out(pred, request_id)


@router.post("/sentiment", response_model=PredictOut, summary="Sentiment of reviews")
async def sentiment(
    body: PredictIn,
    request: Request,
    service: InferenceDep,
    settings: SettingsDep,
    caller: CallerDep,
    request_id: RequestIdDep,
) -> PredictOut:
    model = resolve(service, settings.sentiment_model, "classification")
    authorize(caller, model)
    texts = body.all_texts()
    check_limits(texts, settings, "text" if body.text is not None else "texts")
    pred = await run_prediction(request, service, caller, model, texts, None, request_id)
    return prediction_out(pred, request_id)
