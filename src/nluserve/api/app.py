"""create_app(settings): the one factory every entry point uses (CLI, gunicorn, tests)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

from fastapi import FastAPI

from nluserve import __version__
from nluserve.api import problems
from nluserve.api.middleware import BodyGuard, KeepAliveLimit, RequestContext
from nluserve.api.routes import auth, compat, health, models, predict, usage
from nluserve.api.routes import console as console_routes
from nluserve.audit.recorder import AuditRecorder
from nluserve.observability import metrics
from nluserve.quota.base import QuotaStore
from nluserve.quota.sqlite import SqliteQuotaStore
from nluserve.services.inference import InferenceService
from nluserve.settings import Settings
from nluserve.tenancy.auth import Authenticator
from nluserve.tenancy.gate import Gate
from nluserve.tenancy.service import TenancyService

log = logging.getLogger("nluserve")

DESCRIPTION = """
中文命名实体识别与情感分析服务 · Chinese NER and sentiment over ONNX Runtime.

Every error is `application/problem+json` (RFC 9457). Offsets are Python string indices,
`end` exclusive: `text[start:end] == entity.text`.
"""


# Left of the graceful timeout when the batchers stop waiting for queued calls and answer them
# 503: the server cancels what is still running once the timeout is over (gunicorn's master
# kills the worker a little later, server/gunicorn_conf.py), and those answers must be out.
DRAIN_MARGIN_S = 1.0


_CUT_OFFS: set[asyncio.Task[None]] = set()  # referenced until done (the loop holds weak refs)


def _cut_off(service: InferenceService) -> None:
    """The graceful timeout is nearly over: answer what is still queued with 503 now."""
    task = asyncio.ensure_future(service.stop(0))
    _CUT_OFFS.add(task)
    task.add_done_callback(_CUT_OFFS.discard)


def _drain_on_signal(service: InferenceService, settings: Settings) -> None:
    """Time the drain from the moment the server is told to stop.

    uvicorn handles SIGTERM/SIGINT by waiting up to the graceful timeout for the calls in
    flight and only then runs the lifespan's shutdown; calls queued behind a long backlog were
    cut off with a plain 500 (or a dropped connection under gunicorn) before any batcher could
    answer them. Calls keep being served meanwhile (a proxy's kept-alive connections still
    bring some); a second before the timeout ends, the batchers answer what is queued with
    503. This handler chains uvicorn's (installed with signal.signal while it serves).
    """
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers live in the main thread (an app served from a test thread)
    loop = asyncio.get_running_loop()
    drain_s = max(0.5, settings.graceful_timeout_s - DRAIN_MARGIN_S)
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if getattr(previous, "__name__", "") != "handle_exit" or not callable(previous):
            continue  # not served by uvicorn (tests, embedding): nothing to chain

        def handler(
            signum: int, frame: FrameType | None, previous: Callable[..., Any] = previous
        ) -> None:
            previous(signum, frame)
            if not service.draining:
                service.draining = True
                with contextlib.suppress(RuntimeError):  # the loop has already closed
                    loop.call_soon_threadsafe(loop.call_later, drain_s, _cut_off, service)

        signal.signal(sig, handler)


def create_app(
    settings: Settings | None = None,
    inference: InferenceService | None = None,
    tenancy: TenancyService | None = None,
) -> FastAPI:
    """Build the ASGI app. Models load here (before any fork); threads and connections start
    in the lifespan, i.e. in each worker after the fork."""
    settings = settings or Settings()
    service = inference or InferenceService.load(settings)
    if tenancy is None and settings.auth:
        tenancy = TenancyService.from_settings(settings)
    if tenancy is not None:
        tenancy.served_models = frozenset(service.models)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start(metrics.MetricsObserver())
        _drain_on_signal(service, settings)
        app.state.readiness_probes.update(service.probes())
        for model in service.models.values():
            metrics.MODEL_INFO.labels(model.name, model.manifest.version, model.task).set(1)
        gate = await _start_tenancy(app, settings, tenancy) if tenancy else None
        log.info(
            "ready",
            extra={
                "fields": {
                    "models": list(service.models),
                    "auth": gate is not None,
                    "threads": settings.threads_per_process(),
                    "inference_process": settings.use_inference_process(),
                }
            },
        )
        yield
        await service.stop(settings.graceful_timeout_s)
        if gate is not None:
            await _stop_tenancy(app, gate)
        log.info("stopped")

    # No trailing-slash redirects: Starlette builds their Location from the Host header, which
    # the client chooses. "/v1/ner/" is a 404 problem instead.
    app = FastAPI(
        title="nluserve",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
        docs_url="/docs" if settings.api_docs else None,
        redoc_url="/redoc" if settings.api_docs else None,
        openapi_url="/openapi.json" if settings.api_docs else None,
    )
    app.state.settings = settings
    app.state.inference = service
    app.state.readiness_probes = {}
    app.state.advisory_probes = set()
    app.state.gate = None
    app.state.tenancy = tenancy
    problems.install(app)
    for module in (predict, models, compat, health, auth, usage):
        app.include_router(module.router)
    app.include_router(usage.admin)
    app.include_router(console_routes.router)
    app.add_middleware(
        BodyGuard, max_bytes=settings.max_body_bytes, read_timeout_s=settings.client_timeout_s
    )
    app.add_middleware(RequestContext)
    app.add_middleware(KeepAliveLimit, limit=settings.keepalive_requests)
    return app


async def _start_tenancy(app: FastAPI, settings: Settings, tenancy: TenancyService) -> Gate:
    tenancy.repo.after_fork()
    quota: QuotaStore
    if settings.redis_url:
        from nluserve.quota.redis import RedisQuotaStore

        quota = RedisQuotaStore(settings.redis_url.get_secret_value(), settings.quota_fail_open)
    else:
        quota = SqliteQuotaStore(settings.data_dir / "quota.db")
    authenticator = Authenticator(
        tenancy.repo, tenancy.pepper, tenancy.codec, settings.auth_cache_s
    )
    await authenticator.refresh_signing_keys(force=True)
    audit = AuditRecorder(tenancy.repo, settings.data_dir / "spool")
    audit.start()
    gate = Gate(authenticator, quota, audit, settings.audit_text)
    app.state.gate = gate
    app.state.readiness_probes.update(
        {"database": lambda: asyncio.to_thread(tenancy.repo.ping), "quota": quota.ping}
    )
    if settings.quota_fail_open:
        # Calls are admitted while the quota store is away, so the instance stays ready: a Redis
        # blip must not take every instance out of the load balancer at once. /readyz still
        # names the store's state.
        app.state.advisory_probes = {"quota"}
    app.state.touch_task = asyncio.get_running_loop().create_task(_touch_keys(gate, tenancy))
    return gate


async def _touch_keys(gate: Gate, tenancy: TenancyService) -> None:
    """Write keys' last-used times every few seconds instead of on every call."""
    while True:
        await asyncio.sleep(5)
        used = gate.auth.take_used()
        if used:
            try:
                await asyncio.to_thread(tenancy.repo.touch_keys, used)
            except Exception:
                log.warning("could not record key use; will retry")
                gate.auth.return_used(used)


async def _stop_tenancy(app: FastAPI, gate: Gate) -> None:
    app.state.touch_task.cancel()
    await gate.audit.stop()
    await gate.quota.close()
