"""create_app(settings): the one factory every entry point uses (CLI, gunicorn, tests)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from nluserve import __version__
from nluserve.api import problems
from nluserve.api.middleware import BodyLimit, RequestContext
from nluserve.api.routes import compat, health, models, predict
from nluserve.observability import metrics
from nluserve.services.inference import InferenceService
from nluserve.settings import Settings

log = logging.getLogger("nluserve")

DESCRIPTION = """
中文命名实体识别与情感分析服务 · Chinese NER and sentiment over ONNX Runtime.

Every error is `application/problem+json` (RFC 9457). Offsets are Python string indices,
`end` exclusive: `text[start:end] == entity.text`.
"""


def create_app(
    settings: Settings | None = None, inference: InferenceService | None = None
) -> FastAPI:
    """Build the ASGI app. Models load here (before any fork); threads start in the lifespan."""
    settings = settings or Settings()
    service = inference or InferenceService.load(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start(metrics.MetricsObserver())
        for model in service.models.values():
            metrics.MODEL_INFO.labels(model.name, model.manifest.version, model.task).set(1)
        log.info(
            "ready",
            extra={
                "fields": {
                    "models": list(service.models),
                    "threads": settings.threads_per_process(),
                }
            },
        )
        yield
        await service.stop(settings.graceful_timeout_s)
        log.info("stopped")

    app = FastAPI(title="nluserve", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.inference = service
    app.state.readiness_probes = {}
    problems.install(app)
    for module in (predict, models, compat, health):
        app.include_router(module.router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContext)
    return app
