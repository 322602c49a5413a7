"""Compatibility routes for users migrating from the two common tutorial services.

Shapes follow those services exactly (see docs/migration.md); they obey the same auth, scope,
limits and batching as /v1.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from nluserve.api.calls import (
    authorize,
    check_limits,
    has_content,
    resolve,
    run_prediction,
    run_predictions,
)
from nluserve.api.deps import (
    JSON_BODY,
    Caller,
    CallerDep,
    InferenceDep,
    RequestIdDep,
    SettingsDep,
)
from nluserve.api.problems import ProblemError, responses
from nluserve.api.schemas import (
    CompatEntity,
    CompatNerData,
    CompatNerIn,
    CompatNerOut,
    UniNluIn,
    UniNluOut,
)
from nluserve.errors import shown
from nluserve.runtime.model import Model
from nluserve.runtime.results import ClassResult, NerResult
from nluserve.services.inference import Prediction

router = APIRouter(
    tags=["compatibility"],
    responses=responses(400, 401, 403, 404, 413, 415, 422, 429, 503, 504),
    dependencies=[JSON_BODY],
)

SENTIMENT_KEYS = {"情感分类", "情感", "sentiment"}


@router.post(
    "/predict/ner",
    response_model=CompatNerOut,
    summary="Tutorial-style NER (FastAPI tutorial)",
    responses={
        400: {
            "description": "empty text (tutorial shape) or malformed JSON (problem+json)",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/CompatNerOut"}},
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}},
            },
        }
    },
)
async def predict_ner(
    body: CompatNerIn,
    request: Request,
    service: InferenceDep,
    settings: SettingsDep,
    caller: CallerDep,
    request_id: RequestIdDep,
) -> JSONResponse:
    if not has_content(body.text):  # blank to the model as to /v1: the tutorial's empty answer
        out = CompatNerOut(code=400, message="文本不能为空", data=None)
        return JSONResponse(out.model_dump(), status_code=400)
    model = resolve(service, caller, settings.default_ner_model, "ner")
    authorize(caller, model)
    check_limits([body.text], settings, "text")

    def render(pred: Prediction) -> JSONResponse:
        [res] = pred.results
        assert isinstance(res, NerResult)
        ents = [
            CompatEntity(text=e.text, type=e.label, start=e.start, end=e.end) for e in res.entities
        ]
        return JSONResponse(
            CompatNerOut(data=CompatNerData(text=body.text, entities=ents)).model_dump()
        )

    return await run_prediction(
        request, service, caller, model, [body.text], None, request_id, render
    )


@router.post(
    "/api/predict", response_model=UniNluOut, summary="SiameseUniNLU-style schema extraction"
)
async def uninlu(
    body: UniNluIn,
    request: Request,
    service: InferenceDep,
    settings: SettingsDep,
    caller: CallerDep,
    request_id: RequestIdDep,
) -> JSONResponse:
    check_limits([body.text], settings, "text")
    if not body.schema_:
        raise ProblemError(
            422,
            "validation-error",
            "Invalid request",
            "`schema` is empty",
            errors=[{"field": "schema", "message": "name at least one entity type"}],
        )
    plan = _plan(service.models.values(), list(body.schema_), settings.sentiment_model, caller)
    result: dict[str, list[str]] = {key: [] for key in body.schema_}
    # Every model the schema needs is checked before any is run: a refused call costs nothing.
    sentiment = settings.sentiment_model
    chosen = {
        name: resolve(
            service,
            caller,
            name,
            # NLUSERVE_SENTIMENT_MODEL naming an NER model is a 422, as on /v1/sentiment
            "classification" if name == sentiment and SENTIMENT_KEYS & set(keys) else None,
        )
        for name, keys in plan.items()
    }
    for model in chosen.values():
        authorize(caller, model)
    jobs = [(chosen[name], [body.text], None) for name in plan]

    def render(preds: list[Prediction]) -> JSONResponse:
        for (model_name, keys), pred in zip(plan.items(), preds, strict=True):
            model = chosen[model_name]
            [res] = pred.results
            if isinstance(res, ClassResult):
                names = {lab.code: lab.zh for lab in model.labels}
                for key in keys:
                    result[key] = [names[res.label]]
            elif isinstance(res, NerResult):
                for key in keys:
                    codes = model.resolve_labels([key])
                    result[key] = [e.text for e in res.entities if e.label in codes]
        return JSONResponse(UniNluOut(text=body.text, result=result).model_dump())

    return await run_predictions(request, service, caller, jobs, request_id, render)


def _plan(
    models: object, keys: list[str], sentiment_model: str, caller: Caller
) -> dict[str, list[str]]:
    """Which served model answers each schema key: the first NER model that knows the name,
    those the caller may call first (a key that only an out-of-scope model knows is then
    refused with 403 when the plan is authorised)."""
    plan: dict[str, list[str]] = {}
    unknown = []
    ner_models = sorted(
        (m for m in models if isinstance(m, Model) and m.task == "ner"),  # type: ignore[attr-defined]
        key=lambda m: not caller.may_use(m.name, m.task),
    )
    for key in keys:
        if key in SENTIMENT_KEYS:
            plan.setdefault(sentiment_model, []).append(key)
            continue
        owner = next((m for m in ner_models if _knows(m, key)), None)
        if owner is None:
            unknown.append(key)
        else:
            plan.setdefault(owner.name, []).append(key)
    if unknown:
        mine = [m for m in ner_models if caller.may_use(m.name, m.task)]
        valid = sorted({lab.zh for m in mine for lab in m.labels} | {"情感分类"})
        raise ProblemError(
            422,
            "unknown-label",
            "Unknown schema key",
            f"no served model recognises {shown(unknown)}",
            valid_labels=valid,
        )
    return plan


def _knows(model: Model, key: str) -> bool:
    try:
        model.resolve_labels([key])
        return True
    except Exception:
        return False
