"""Building the real app around deterministic models, and reading what it answers.

Tests drive ``create_app`` exactly as the CLI does, with the lifespan running, through httpx's
in-process ASGI transport: no sockets, no threads beyond the batchers' own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from nluserve.api.app import create_app
from nluserve.runtime.model import Model
from nluserve.services.inference import InferenceService
from nluserve.settings import Settings
from tests.support.catalog_models import catalog_gazetteer, sentiment_fake

GENERAL_WORDS = {
    "name": ["张三", "李四", "王五", "谷爱凌"],
    "address": ["北京", "上海", "杭州"],
    "organization": ["北京大学", "腾讯公司"],
}
MEDICAL_WORDS = {"dis": ["肺炎", "糖尿病"], "sym": ["发热", "咳嗽"]}
PROBLEM_KEYS = {"type", "title", "status", "detail"}


def general(max_length: int = 64) -> Model:
    """The default NER model: CLUENER-style labels (人物/地理位置 resolve here)."""
    return catalog_gazetteer(GENERAL_WORDS, "general", max_length)


def medical(max_length: int = 64) -> Model:
    """A second NER model with CMeEE-style labels (疾病, 症状)."""
    return catalog_gazetteer(MEDICAL_WORDS, "medical", max_length)


def build_app(models: list[Model] | None = None, **limits: Any) -> FastAPI:
    """The real app serving ``models`` (default: general, medical, sentiment) under ``limits``."""
    if models is None:
        models = [general(), medical(), sentiment_fake()]
    # One runner thread: batch formation must not depend on how many cores the machine has.
    limits.setdefault("inference_threads", 1)
    limits.setdefault("auth", False)  # these tests are about serving, not tenancy
    limits.setdefault("graceful_timeout_s", 5.0)
    settings = Settings(models=[], **limits)
    app: FastAPI = create_app(settings, InferenceService({m.name: m for m in models}, settings))
    return app


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client for ``app`` with its lifespan started (batchers running) and stopped after."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", timeout=30
        ) as client:
            yield client


def metric(exposition: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """The sum of samples called ``name`` whose labels include ``labels`` (0 when none)."""
    want = dict(labels or {})
    total = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in want.items()):
                total += sample.value
    return total


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_KEYS, body
    assert body["status"] == status
    assert body["type"].startswith("https://nluserve.dev/problems/")
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str)
    return body
