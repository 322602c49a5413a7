"""What every prediction route shares: limits, scope, disconnect handling, error mapping."""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from fastapi import Request

from nluserve.api.deps import Caller, quota_exceeded, quota_unavailable
from nluserve.api.problems import ClientGone, ProblemError, from_service_error
from nluserve.errors import NluserveError
from nluserve.observability import metrics
from nluserve.quota.base import QuotaUnavailable
from nluserve.runtime.batcher import ShuttingDown
from nluserve.runtime.model import Model
from nluserve.services.inference import InferenceService, Prediction
from nluserve.settings import Settings
from nluserve.tenancy.gate import Gate, QuotaExceeded, Ticket, policy_of, ratelimit_headers

log = logging.getLogger("nluserve.api")


def has_content(text: str) -> bool:
    """Whether any character is more than whitespace, a control (NUL) or an invisible format
    character (zero-width space, BOM): the models read all of those as one blank, so a text of
    nothing else has nothing to answer. Stops at the first such character, nearly always the
    first."""
    return any(not (c.isspace() or unicodedata.category(c) in ("Cc", "Cf")) for c in text)


def _limit(slug: str, title: str, detail: str, field: str, message: str) -> ProblemError:
    """A 422 that names the offending field."""
    return ProblemError(422, slug, title, detail, errors=[{"field": field, "message": message}])


def check_limits(texts: Sequence[str], settings: Settings, field: str) -> None:
    """422 naming the offending field for count, size and empty texts."""
    if not texts:
        raise _limit(
            "validation-error",
            "Invalid request",
            f"`{field}` is empty",
            field,
            "at least one text is required",
        )
    if len(texts) > settings.max_texts:
        raise _limit(
            "too-many-texts",
            "Too many texts",
            f"{len(texts)} texts; at most {settings.max_texts} per call",
            field,
            f"at most {settings.max_texts} items",
        )
    total = 0
    for i, text in enumerate(texts):
        where = field if len(texts) == 1 and field == "text" else f"{field}[{i}]"
        if not has_content(text):
            raise _limit(
                "empty-text",
                "Empty text",
                f"`{where}` is empty or only whitespace, control or invisible format characters",
                where,
                "empty or whitespace-only",
            )
        if len(text) > settings.max_text_chars:
            raise _limit(
                "text-too-long",
                "Text too long",
                f"`{where}` has {len(text)} characters; at most {settings.max_text_chars}",
                where,
                f"at most {settings.max_text_chars} characters",
            )
        total += len(text)
    if total > settings.max_total_chars:
        raise _limit(
            "call-too-long",
            "Too many characters in one call",
            f"{total} characters; at most {settings.max_total_chars} per call",
            field,
            f"at most {settings.max_total_chars} characters in all",
        )


def authorize(caller: Caller, model: Model) -> None:
    """403 when the caller's scope does not include this model or its task."""
    if not caller.may_use(model.name, model.task):
        raise ProblemError(
            403, "out-of-scope", "Model not in scope", f"this key may not call model {model.name!r}"
        )


def resolve(service: InferenceService, caller: Caller, name: str, task: str | None = None) -> Model:
    try:
        return service.get(name, task, lambda m: caller.may_use(m.name, m.task))
    except NluserveError as exc:
        raise from_service_error(exc) from exc


Job = tuple[Model, Sequence[str], Sequence[str] | None]  # model, texts, labels
R = TypeVar("R")


async def run_prediction(
    request: Request,
    service: InferenceService,
    caller: Caller,
    model: Model,
    texts: Sequence[str],
    labels: Sequence[str] | None,
    request_id: str,
    render: Callable[[Prediction], R],
) -> R:
    """Take quota, queue the call, give the quota back if it did not run, audit it.

    ``render`` builds the answer inside the audited span, so an answer that fails to build
    is audited as the 500 the client gets, not as a success."""
    jobs = [(model, texts, labels)]
    return await run_predictions(
        request, service, caller, jobs, request_id, lambda preds: render(preds[0])
    )


async def run_predictions(
    request: Request,
    service: InferenceService,
    caller: Caller,
    jobs: Sequence[Job],
    request_id: str,
    render: Callable[[list[Prediction]], R],
) -> R:
    """One call that needs several models (``/api/predict``): one quota unit per model, taken
    all or none before any runs; if one cannot run, every unit is given back."""
    gate: Gate | None = request.app.state.gate
    if gate is None or caller.principal is None:
        return render([await _queue(request, service, m, t, lab, request_id) for m, t, lab in jobs])
    for model, _, labels in jobs:
        if labels:
            # a schema error is a validation error: it costs nothing
            try:
                model.resolve_labels(labels)
            except NluserveError as exc:
                raise from_service_error(exc) from exc
    policy = policy_of(caller.principal)
    tickets: list[Ticket] = []
    try:
        for _ in jobs:
            tickets.append(await gate.admit(caller.principal))
    except BaseException as exc:  # a 429/503, but also a store error or a cancel: units go back
        await _give_back(gate, tickets)
        if isinstance(exc, QuotaExceeded):
            # The 429's RateLimit header says what is left once the units are back.
            given = replace(exc.decision, daily_used=exc.decision.daily_used - len(tickets))
            refused = QuotaExceeded(given, units=len(jobs))
            raise quota_exceeded(request, policy, refused) from exc
        if isinstance(exc, QuotaUnavailable):
            raise quota_unavailable(exc) from exc
        raise
    request.scope["state"]["ratelimit_headers"] = ratelimit_headers(policy, tickets[-1].decision)
    matched = request.scope.get("route")
    route = matched.path if matched is not None else request.scope["path"]  # no URL object
    status = 500
    try:
        preds = [await _queue(request, service, m, t, lab, request_id) for m, t, lab in jobs]
        answer = render(preds)
        status = 200
        return answer
    except ProblemError as exc:
        status = exc.status
        if exc.status in (503, 504):
            await _give_back(gate, tickets)  # it did not run: it costs the tenant nothing
        raise
    except ClientGone:
        status = 499
        await _give_back(gate, tickets)
        raise
    finally:
        for ticket, (model, texts, _) in zip(tickets, jobs, strict=True):
            gate.record(ticket, request_id, route, model.name, model.task, list(texts), status)


async def _give_back(gate: Gate, tickets: list[Ticket]) -> None:
    """Give every ticket back, each on its own: one that fails neither stops the others nor
    replaces the error the client is answered with."""
    for ticket in tickets:
        try:
            await gate.give_back(ticket)
        except Exception:
            log.exception(
                "quota unit not given back",
                extra={"fields": {"tenant": ticket.principal.tenant.id}},
            )


async def _queue(
    request: Request,
    service: InferenceService,
    model: Model,
    texts: Sequence[str],
    labels: Sequence[str] | None,
    request_id: str,
) -> Prediction:
    """Queue the call; drop it if the client disconnects first; map service errors to problems.

    The call runs in this task; a watcher task cancels it if the client hangs up. That is one
    task and no ``asyncio.wait`` per call instead of two tasks raced against each other.
    """
    current = asyncio.current_task()
    assert current is not None  # a route always runs in a task
    answered = gone = False

    def hang_up(watcher: asyncio.Task[None]) -> None:
        nonlocal gone
        if watcher.cancelled() or answered:
            return
        watcher.exception()  # a receive() that failed means the client is gone too
        gone = True
        current.cancel()

    watcher = asyncio.ensure_future(_disconnected(request))
    watcher.add_done_callback(hang_up)
    try:
        return await service.predict(model, texts, labels, request_id)
    except asyncio.CancelledError:
        if not gone:
            if not service.draining:
                raise
            # The server's graceful timeout ran out while this call waited: say so, as
            # problem+json, rather than the bare 500 the server would send for a cancel.
            current.uncancel()
            problem = from_service_error(ShuttingDown("the server is shutting down"))
            metrics.REJECTED.labels(problem.slug).inc()
            raise problem from None
        current.uncancel()
        metrics.REJECTED.labels("disconnected").inc()
        raise ClientGone from None
    except NluserveError as exc:
        problem = from_service_error(exc)
        metrics.REJECTED.labels(problem.slug).inc()
        raise problem from exc
    finally:
        answered = True
        watcher.cancel()


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
