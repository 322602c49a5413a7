"""POST /v1/models/{name}/predict and the /v1/ner, /v1/sentiment shortcuts."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from nluserve.api.calls import authorize, check_limits, resolve, run_prediction
from nluserve.api.deps import Call, CallDep
from nluserve.api.problems import responses
from nluserve.api.render import prediction_json
from nluserve.api.schemas import NerIn, PredictIn, PredictOut
from nluserve.runtime.model import Model

router = APIRouter(
    prefix="/v1",
    tags=["predict"],
    responses=responses(400, 401, 403, 404, 413, 415, 422, 429, 503, 504),
)


async def _predict(request: Request, call: Call, model: Model, body: PredictIn) -> Response:
    """Scope, limits, then the batched call: the order that keeps refused calls free.

    The answer is a ready ``Response``: FastAPI then skips validating it against
    ``response_model``, which stays on the routes for the OpenAPI schema.
    """
    authorize(call.caller, model)
    texts = body.all_texts()
    check_limits(texts, call.settings, "text" if body.text is not None else "texts")
    # A classification model checks labels too (an unknown one is a 422) and scores every class.
    body_bytes = await run_prediction(
        request,
        call.service,
        call.caller,
        model,
        texts,
        body.labels,
        call.request_id,
        lambda pred: prediction_json(pred, call.request_id),
    )
    return Response(body_bytes, media_type="application/json")


@router.post("/models/{name}/predict", response_model=PredictOut, summary="Predict with a model")
async def predict(name: str, body: PredictIn, request: Request, call: CallDep) -> Response:
    model = resolve(call.service, call.caller, name)
    return await _predict(request, call, model, body)


@router.post("/ner", response_model=PredictOut, summary="Named entities (default model: general)")
async def ner(body: NerIn, request: Request, call: CallDep) -> Response:
    model = resolve(call.service, call.caller, body.model or call.settings.default_ner_model, "ner")
    return await _predict(request, call, model, body)


@router.post("/sentiment", response_model=PredictOut, summary="Sentiment of reviews")
async def sentiment(body: PredictIn, request: Request, call: CallDep) -> Response:
    model = resolve(call.service, call.caller, call.settings.sentiment_model, "classification")
    return await _predict(request, call, model, body)
