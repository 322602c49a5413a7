"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from nluserve.api.deps import InferenceDep
from nluserve.api.schemas import Health
from nluserve.observability import metrics

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    return Health(status="ok")


READY_PROBE_TIMEOUT_S = 5.0


@router.get(
    "/readyz",
    response_model=Health,
    summary="Models loaded and backing stores reachable",
    responses={503: {"model": Health}},
)
async def readyz(request: Request, service: InferenceDep) -> Response:
    checks = {name: "ok" if name in service.batchers else "not started" for name in service.models}
    advisory: set[str] = getattr(request.app.state, "advisory_probes", set())
    failed = [name for name, ok in checks.items() if ok != "ok"]
    for name, probe in getattr(request.app.state, "readiness_probes", {}).items():
        try:
            # Bounded whatever the probe does: a readiness check that hangs is no answer.
            await asyncio.wait_for(probe(), READY_PROBE_TIMEOUT_S)
            checks[name] = "ok"
        except Exception as exc:  # a probe failure is the answer, not an error
            checks[name] = f"unreachable: {type(exc).__name__}"
            if name in advisory:
                checks[name] += " (fail-open: calls are admitted)"
            else:
                failed.append(name)
    ready = bool(checks) and not failed
    body = Health(status="ready" if ready else "not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics (all workers)", include_in_schema=False)
async def prometheus() -> Response:
    # Off the event loop: multi-process mode reads every worker's files from disk.
    body, content_type = await asyncio.to_thread(metrics.render)
    return Response(body, media_type=content_type)
