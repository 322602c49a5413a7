"""RFC 9457 problem details: every error leaves the service as application/problem+json."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from nluserve.db.errors import UNREACHABLE
from nluserve.errors import InferenceUnavailableError, ModelNotFoundError, UnknownLabelError
from nluserve.runtime.batcher import DeadlineExceeded, Overloaded, ShuttingDown
from nluserve.services.inference import WrongTaskError

log = logging.getLogger("nluserve.api")

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://nluserve.dev/problems/"


class Problem(BaseModel):
    """The problem+json body (RFC 9457) with nluserve's extension members."""

    type: str = Field(examples=[TYPE_BASE + "unknown-label"])
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = Field(None, description="field-level validation errors")
    valid_labels: list[str] | None = None
    policy: str | None = Field(None, description="the rate-limit policy a 429 violated")


class ClientGone(Exception):
    """The client disconnected before its results were ready; nobody reads the answer."""


class ProblemError(Exception):
    """Raised by routes and dependencies; rendered by the handler below."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.headers = headers or {}
        self.extra = extra


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for problem+json answers (validation errors included)."""
    return {code: {"model": Problem, "content": {MEDIA_TYPE: {}}} for code in codes}


def problem_response(request: Request, err: ProblemError) -> JSONResponse:
    """Render a ProblemError with the request id and the path as ``instance``."""
    body = Problem(
        type=TYPE_BASE + err.slug,
        title=err.title,
        status=err.status,
        detail=err.detail,
        # a path the client made huge is not echoed back whole (instance is optional)
        instance=request.url.path if len(request.url.path) <= 2048 else None,
        request_id=getattr(request.state, "request_id", None),
        **err.extra,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=err.status,
        media_type=MEDIA_TYPE,
        headers=err.headers,
    )


def from_service_error(exc: Exception) -> ProblemError:
    """Map service-layer errors (which know nothing of HTTP) to problems."""
    if isinstance(exc, ModelNotFoundError):
        return ProblemError(404, "unknown-model", "Unknown model", str(exc))
    if isinstance(exc, UnknownLabelError):
        return ProblemError(
            422, "unknown-label", "Unknown entity type", str(exc), valid_labels=exc.valid
        )
    if isinstance(exc, WrongTaskError):
        return ProblemError(422, "wrong-task", "Model of the wrong task", str(exc))
    if isinstance(exc, Overloaded):
        return ProblemError(
            503,
            "overloaded",
            "Server overloaded",
            str(exc),
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, ShuttingDown):
        return ProblemError(
            503,
            "shutting-down",
            "Server shutting down",
            str(exc),
            headers={"Retry-After": "1", "Connection": "close"},
        )
    if isinstance(exc, InferenceUnavailableError):
        return ProblemError(
            503,
            "inference-unavailable",
            "Inference process unavailable",
            str(exc),
            headers={"Retry-After": "1"},
        )
    if isinstance(exc, DeadlineExceeded):
        return ProblemError(504, "deadline-exceeded", "Request timed out in the queue", str(exc))
    raise exc


MAX_ERRORS = 20  # field errors listed in one 422

_STATUS_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    408: "request-timeout",
    413: "payload-too-large",
    415: "unsupported-media-type",
}


def install(app: FastAPI) -> None:
    """Register handlers so no error escapes as HTML or a bare 500."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": _field(e.get("loc", ())),
                "message": e.get("msg", ""),
                "type": e.get("type", ""),
            }
            for e in exc.errors()
        ]
        total = len(errors)
        if any(e["type"] == "json_invalid" for e in errors):
            err = ProblemError(
                400, "malformed-json", "Malformed JSON body", "the body is not valid UTF-8 JSON"
            )
        else:
            errors = errors[:MAX_ERRORS]  # an answer must not grow with the request (80k fields)
            fields = ", ".join(sorted({e["field"] for e in errors}))
            more = f" and {total - len(errors)} more" if total > len(errors) else ""
            err = ProblemError(
                422,
                "validation-error",
                "Invalid request",
                f"invalid field(s): {fields}{more}",
                errors=errors,
            )
        return problem_response(request, err)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            # FastAPI's answer to a body it cannot decode (invalid UTF-8): say so as for JSON
            return problem_response(
                request,
                ProblemError(
                    400, "malformed-json", "Malformed JSON body", "the body is not valid UTF-8 JSON"
                ),
            )
        slug = _STATUS_SLUGS.get(exc.status_code, "error")
        title = slug.replace("-", " ").capitalize()
        headers = dict(exc.headers or {})
        allow = [m.strip() for m in headers.get("Allow", "").split(",") if m.strip()]
        if exc.status_code == 405 and "GET" in allow and "HEAD" not in allow:
            # HEAD is answered wherever GET is (RequestContext), but FastAPI's routes name GET
            # alone.
            headers["Allow"] = ", ".join([*allow, "HEAD"])
        return problem_response(
            request, ProblemError(exc.status_code, slug, title, str(exc.detail), headers=headers)
        )

    async def _store_away(request: Request, exc: Exception) -> JSONResponse:
        # The admin, usage and token routes read the database directly: while it is away they
        # answer as authentication does when no cached credential can stand in.
        log.warning("database unreachable: %s", type(exc).__name__)
        return problem_response(
            request,
            ProblemError(
                503,
                "store-unavailable",
                "Database unavailable",
                "the database is unreachable; try again shortly",
                headers={"Retry-After": "2"},
            ),
        )

    for kind in UNREACHABLE:
        app.add_exception_handler(kind, _store_away)

    @app.exception_handler(ClientGone)
    async def _gone(request: Request, exc: ClientGone) -> Response:
        return Response(status_code=499)  # nginx's "client closed request"

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(
            request,
            ProblemError(
                500, "internal", "Internal server error", "an unexpected error; it has been logged"
            ),
        )


def _field(loc: Sequence[int | str]) -> str:
    """``texts[1]``, ``schema.人物``: the path to a bad field, spelled as check_limits does.

    Printable even when the client's key is not Unicode (a lone surrogate): the body must
    still encode as UTF-8."""
    path = ""
    for part in loc:
        if part == "body" and not path:
            continue
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path.encode("utf-8", "backslashreplace").decode("utf-8") or "body"
