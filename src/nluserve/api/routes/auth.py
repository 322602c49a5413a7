"""POST /v1/auth/token: exchange an API key for a short-lived JWT (OAuth-style answer)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from pydantic import BaseModel

from nluserve.api.deps import NO_STORE, KeyHolderDep, TenancyDep
from nluserve.api.problems import ProblemError, responses
from nluserve.errors import NluserveError

router = APIRouter(
    prefix="/v1/auth", tags=["auth"], responses=responses(401, 403, 404, 422, 429, 503)
)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    scope: str


# A signature and a database read: each takes a burst token (no daily unit).
@router.post(
    "/token",
    response_model=TokenOut,
    summary="Exchange an API key for a JWT",
    dependencies=[NO_STORE],
)
async def token(caller: KeyHolderDep, tenancy: TenancyDep) -> TokenOut:
    if caller.principal is None or caller.principal.key_id is None:
        # Only with NLUSERVE_AUTH=false: there are no keys, so no tokens.
        raise ProblemError(
            404, "not-found", "Not found", "tenancy is disabled (NLUSERVE_AUTH=false)"
        )
    try:
        # A database read (the current signing key): off the event loop.
        access, expires_in = await asyncio.to_thread(
            tenancy.issue_token, caller.principal.tenant, caller.principal.key_id
        )
    except NluserveError as exc:
        raise ProblemError(503, "no-signing-key", "Token signing unavailable", str(exc)) from exc
    return TokenOut(
        access_token=access,
        expires_in=expires_in,
        scope=" ".join(caller.principal.tenant.scopes or ("*",)),
    )
