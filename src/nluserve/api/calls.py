"""What every prediction route shares: limits, scope, disconnect handling, error mapping."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from fastapi import Request

from nluserve.api.deps import Caller
from nluserve.api.problems import ProblemError, from_service_error
from nluserve.errors import NluserveError
from nluserve.observability import metrics
from nluserve.runtime.model import Model
from nluserve.services.inference import InferenceService, Prediction
from nluserve.settings import Settings


class ClientGone(Exception):
    """The client disconnected before its results were ready."""


def check_limits(texts: Sequence[str], settings: Settings, field: str) -> None:
    """422 naming the offending field for count, size and empty texts."""
    if not texts:
        raise ProblemError(
            422,
            "validation-error",
            "Invalid request",
            f"`{field}` is empty",
            errors=[{"field": field, "message": "at least one text is required"}],
        )
    if len(texts) > settings.max_texts:
        raise ProblemError(
            422,
            "too-many-texts",
            "Too many texts",
            f"{len(texts)} texts; at most {settings.max_texts} per call",
            errors=[{"field": field, "message": f"at most {settings.max_texts} items"}],
        )
    total = 0
    for i, text in enumerate(texts):
        where = field if len(texts) == 1 and field == "text" else f"{field}[{i}]"
        if not text.strip():
            raise ProblemError(
                422,
                "empty-text",
                "Empty text",
                f"`{where}` is empty or whitespace",
                errors=[{"field": where, "message": "empty or whitespace-only"}],
            )
        if len(text) > settings.max_text_chars:
            raise ProblemError(
                422,
                "text-too-long",
                "Text too long",
                f"`{where}` has {len(text)} characters; at most {settings.max_text_chars}",
                errors=[
                    {"field": where, "message": f"at most {settings.max_text_chars} characters"}
                ],
            )
        total += len(text)
    if total > settings.max_total_chars:
        raise ProblemError(
            422,
            "call-too-long",
            "Too many characters in one call",
            f"{total} characters; at most {settings.max_total_chars} per call",
            errors=[
                {"field": field, "message": f"at most {settings.max_total_chars} characters in all"}
            ],
        )


def authorize(caller: Caller, model: Model) -> None:
    """403 when the caller's scope does not include this model or its task."""
    if not caller.may_use(model.name, model.task):
        raise ProblemError(
            403, "out-of-scope", "Model not in scope", f"this key may not call model {model.name!r}"
        )


def resolve(service: InferenceService, name: str, task: str | None = None) -> Model:
    try:
        return service.get(name, task)
    except NluserveError as exc:
        raise from_service_error(exc) from exc


async def run_prediction(
    request: Request,
    service: InferenceService,
    model: Model,
    texts: Sequence[str],
    labels: Sequence[str] | None,
    request_id: str,
) -> Prediction:
    """Queue the call; drop it if the client disconnects first; map service errors to problems."""
    task = asyncio.ensure_future(service.predict(model, texts, labels, request_id))
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task not in done:
        task.cancel()
        metrics.REJECTED.labels("disconnected").inc()
        raise ClientGone
    try:
        return task.result()
    except NluserveError as exc:
        problem = from_service_error(exc)
        metrics.REJECTED.labels(problem.slug).inc()
        raise problem from exc


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
