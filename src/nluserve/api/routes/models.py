"""GET /v1/models and /v1/models/{name}."""

from __future__ import annotations

from fastapi import APIRouter

from nluserve.api.calls import authorize, resolve
from nluserve.api.deps import CallerDep, InferenceDep, SettingsDep
from nluserve.api.problems import responses
from nluserve.api.render import model_out
from nluserve.api.schemas import ModelList, ModelOut

router = APIRouter(prefix="/v1/models", tags=["models"], responses=responses(401, 403, 404, 422))


@router.get("", response_model=ModelList, summary="List served models")
async def list_models(service: InferenceDep, settings: SettingsDep, caller: CallerDep) -> ModelList:
    return ModelList(
        models=[
            model_out(m, settings)
            for m in service.models.values()
            if caller.may_use(m.name, m.task)
        ]
    )


@router.get("/{name}", response_model=ModelOut, summary="One model: labels, limits, metrics")
async def get_model(
    name: str, service: InferenceDep, settings: SettingsDep, caller: CallerDep
) -> ModelOut:
    model = resolve(service, caller, name)
    authorize(caller, model)  # as for its predictions; the list leaves such models out
    return model_out(model, settings)
