"""Dependencies declared once; routes take these annotated types and never build Depends inline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from nluserve.services.inference import InferenceService
from nluserve.settings import Settings


@dataclass(frozen=True)
class Caller:
    """Who is calling. Tenancy replaces ``authenticate`` on app.state; routes do not change."""

    tenant: str | None = None
    key_id: str | None = None
    scopes: frozenset[str] | None = None  # None: every model
    admin: bool = False

    def may_use(self, model: str, task: str) -> bool:
        """Scope check by model name or task."""
        return self.scopes is None or model in self.scopes or task in self.scopes


ANONYMOUS = Caller()


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_inference(request: Request) -> InferenceService:
    service: InferenceService = request.app.state.inference
    return service


async def get_caller(request: Request) -> Caller:
    authenticate = getattr(request.app.state, "authenticate", None)
    if authenticate is None:
        return ANONYMOUS
    caller: Caller = await authenticate(request)
    return caller


def get_request_id(request: Request) -> str:
    rid: str = request.state.request_id
    return rid


SettingsDep = Annotated[Settings, Depends(get_settings)]
InferenceDep = Annotated[InferenceService, Depends(get_inference)]
CallerDep = Annotated[Caller, Depends(get_caller)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
