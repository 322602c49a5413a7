"""Dependencies declared once; routes take these annotated types and never build Depends inline.

Every dependency is ``async def``, even the ones that never await: FastAPI runs a plain ``def``
dependency in its thread pool, a thread hop per dependency per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response

from nluserve.api.problems import ProblemError
from nluserve.errors import StoreUnavailableError
from nluserve.observability import metrics
from nluserve.quota.base import Policy, QuotaUnavailable
from nluserve.services.inference import InferenceService
from nluserve.settings import Settings
from nluserve.tenancy.auth import AuthError, Principal, TenantDisabled
from nluserve.tenancy.gate import Gate, QuotaExceeded, policy_of, ratelimit_headers
from nluserve.tenancy.service import TenancyService


@dataclass(frozen=True)
class Caller:
    """Who is calling: anonymous when auth is off, else the authenticated principal."""

    tenant: str | None = None
    key_id: str | None = None
    scopes: frozenset[str] | None = None  # None: every model
    admin: bool = False
    principal: Principal | None = None

    def may_use(self, model: str, task: str) -> bool:
        """Scope check by model name or task."""
        return self.scopes is None or model in self.scopes or task in self.scopes


ANONYMOUS = Caller()


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_inference(request: Request) -> InferenceService:
    service: InferenceService = request.app.state.inference
    return service


async def _authenticate(request: Request, gate: Gate) -> Principal:
    """The caller's principal, or the 401/403/503 problem that refuses it."""
    sent = request.headers.getlist("authorization")
    if len(sent) > 1:
        # Which one would count is for the server to guess, and a proxy may have added one.
        raise ProblemError(
            400, "bad-request", "Bad request", "send one Authorization header, not several"
        )
    given = sent[0] if sent else None
    try:
        principal = await gate.auth.authenticate(given)
    except AuthError as exc:
        # RFC 6750 3.1: an error code only when a credential was sent and refused.
        challenge = 'Bearer realm="nluserve"' + (', error="invalid_token"' if given else "")
        raise ProblemError(
            401,
            "unauthorized",
            "Authentication required",
            str(exc),
            headers={"WWW-Authenticate": challenge},
        ) from exc
    except TenantDisabled as exc:
        raise ProblemError(403, "tenant-disabled", "Tenant disabled", str(exc)) from exc
    except StoreUnavailableError as exc:
        raise ProblemError(
            503,
            "store-unavailable",
            "Credential store unavailable",
            str(exc),
            headers={"Retry-After": "2"},
        ) from exc
    request.state.tenant_name = principal.tenant.name
    request.scope.setdefault("state", {})["tenant_name"] = principal.tenant.name
    return principal


def _caller(principal: Principal) -> Caller:
    t = principal.tenant
    return Caller(t.name, principal.key_id, principal.scopes(), t.admin, principal)


def quota_exceeded(request: Request, policy: Policy, exc: QuotaExceeded) -> ProblemError:
    """The 429 for an exhausted policy, with Retry-After and the RateLimit headers."""
    headers = {
        **ratelimit_headers(policy, exc.decision),
        "Retry-After": str(exc.decision.retry_after),
    }
    request.scope["state"]["ratelimit_headers"] = headers
    metrics.REJECTED.labels(f"quota-{exc.decision.violated}").inc()
    return ProblemError(
        429,
        "quota-exceeded",
        "Too many requests",
        str(exc),
        headers=headers,
        policy=exc.decision.violated,
    )


def quota_unavailable(exc: QuotaUnavailable) -> ProblemError:
    """The 503 for a quota store that cannot answer, the caller being told when to retry."""
    metrics.QUOTA_STORE_ERRORS.labels(exc.backend).inc()
    return ProblemError(
        503,
        "quota-store-unavailable",
        "Quota store unavailable",
        str(exc),
        headers={"Retry-After": "1"},
    )


async def get_caller(request: Request) -> Caller:
    """Authenticate once per request (401/403 as problem+json); sets the RateLimit headers."""
    gate: Gate | None = request.app.state.gate
    if gate is None:
        return ANONYMOUS
    principal = await _authenticate(request, gate)
    policy = policy_of(principal)
    decision = None
    if request.method == "GET":
        try:
            decision = await gate.quota.peek(principal.tenant.id, policy)
        except QuotaUnavailable:
            decision = None
    request.scope["state"]["ratelimit_headers"] = ratelimit_headers(policy, decision)
    return _caller(principal)


async def get_metered_caller(request: Request) -> Caller:
    """``get_caller`` for routes that run no model but cost a database read or a signature
    (usage reports, tokens): each call takes a burst token, never a daily unit. An empty bucket
    is a 429 as for a prediction, and a quota store that cannot answer a 503 (unless the
    operator chose to fail open)."""
    gate: Gate | None = request.app.state.gate
    if gate is None:
        return ANONYMOUS
    return await _metered(request, gate, await _authenticate(request, gate))


async def get_key_holder(request: Request) -> Caller:
    """``get_metered_caller`` for ``POST /v1/auth/token``, which takes an API key only: a token
    sent there is refused as a credential (401 with its challenge) before it costs anything."""
    gate: Gate | None = request.app.state.gate
    if gate is None:
        return ANONYMOUS
    principal = await _authenticate(request, gate)
    if principal.key_id is None or principal.token_scopes is not None:
        raise ProblemError(
            401,
            "unauthorized",
            "API key required",
            "send the API key (not a token) as the Bearer credential",
            headers={
                "WWW-Authenticate": 'Bearer realm="nluserve", error="invalid_token", '
                'error_description="an API key is required here, not a token"'
            },
        )
    return await _metered(request, gate, principal)


async def _metered(request: Request, gate: Gate, principal: Principal) -> Caller:
    policy = policy_of(principal)
    try:
        decision = await gate.meter(principal)
    except QuotaExceeded as exc:
        raise quota_exceeded(request, policy, exc) from exc
    except QuotaUnavailable as exc:
        raise quota_unavailable(exc) from exc
    request.scope["state"]["ratelimit_headers"] = ratelimit_headers(policy, decision)
    return _caller(principal)


def _admin_only(caller: Caller) -> Caller:
    if not caller.admin:
        raise ProblemError(403, "forbidden", "Admin only", "this key is not an admin key")
    return caller


async def get_admin(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
    return _admin_only(caller)


async def get_metered_admin(caller: Annotated[Caller, Depends(get_metered_caller)]) -> Caller:
    return _admin_only(caller)


async def get_tenancy(request: Request) -> TenancyService:
    service: TenancyService | None = request.app.state.tenancy
    if service is None:
        raise ProblemError(
            404, "not-found", "Not found", "tenancy is disabled (NLUSERVE_AUTH=false)"
        )
    return service


async def get_request_id(request: Request) -> str:
    rid: str = request.state.request_id
    return rid


@dataclass(frozen=True)
class Call:
    """What a prediction route needs, resolved as one dependency instead of four."""

    service: InferenceService
    settings: Settings
    caller: Caller
    request_id: str


async def require_json(request: Request) -> None:
    """415 for a body not declared as JSON (``curl -d`` sends a form) or not declared at all.

    FastAPI reads only a declared JSON body as JSON, so the route would otherwise answer a
    misleading 422 ("Input should be a valid dictionary"). An empty body needs no type."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    declared = request.headers.get("content-type")
    if declared is None:
        if not await request.body():  # read already: FastAPI parsed the body before this
            return
        declared = ""
    media = declared.partition(";")[0].strip().lower()
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return
    raise ProblemError(
        415,
        "unsupported-media-type",
        "Unsupported media type",
        f"the body must be JSON (Content-Type: application/json), not {media or 'empty'!r}",
        headers={"Accept-Post": "application/json"},
    )


async def get_call(request: Request) -> Call:
    """Service, settings, the authenticated caller and the request id of a prediction call."""
    await require_json(request)  # here, not as one more dependency: this runs on every call
    state = request.app.state
    return Call(
        state.inference, state.settings, await get_caller(request), request.state.request_id
    )


async def no_store(response: Response) -> None:
    """For answers that carry a secret (a new API key, an access token): no browser cache or
    proxy may keep a copy (RFC 6749 5.1 asks it of token responses)."""
    response.headers["Cache-Control"] = "no-store"


SettingsDep = Annotated[Settings, Depends(get_settings)]
InferenceDep = Annotated[InferenceService, Depends(get_inference)]
CallerDep = Annotated[Caller, Depends(get_caller)]
MeteredCallerDep = Annotated[Caller, Depends(get_metered_caller)]
KeyHolderDep = Annotated[Caller, Depends(get_key_holder)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
AdminDep = Annotated[Caller, Depends(get_admin)]
MeteredAdminDep = Annotated[Caller, Depends(get_metered_admin)]
TenancyDep = Annotated[TenancyService, Depends(get_tenancy)]
CallDep = Annotated[Call, Depends(get_call)]
# For routers whose routes take a JSON body (the prediction routes check it in get_call).
JSON_BODY = Depends(require_json)
NO_STORE = Depends(no_store)
