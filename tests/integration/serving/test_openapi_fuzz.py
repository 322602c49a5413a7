"""Schemathesis over the app's own OpenAPI schema: never a 5xx, responses as documented.

The schema is loaded from the real app (auth off, deterministic models). Hypothesis runs
derandomized so a failure reproduces on every run instead of once in a while.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.serving import build_app, serving

schema = schemathesis.openapi.from_asgi("/openapi.json", build_app())

# Conformance is pinned for the serving layer's operations; the tenancy routes (auth, usage,
# admin) are fuzzed for 5xx only, since with auth off they answer 403/404 by design.
SERVING_TAGS = {"predict", "models", "compatibility", "operations"}
CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]

# Operations whose documented answers are known not to match (none at present).
KNOWN_GAPS: dict[str, set[Any]] = {}


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_5xx_and_serving_responses_match_the_schema(
    case: schemathesis.Case[Any],
) -> None:
    checks: list[Any] = [not_a_server_error]
    if SERVING_TAGS & set(case.operation.tags or []):
        known = KNOWN_GAPS.get(case.operation.label, set())
        checks += [check for check in CONFORMANCE if check not in known]
    case.call_and_validate(checks=checks)


def _validate(method: str, path: str, request: dict[str, Any], **case: Any) -> None:
    """Send ``request`` to a fresh app and check its answer against the documented one."""
    app = build_app()

    async def scenario() -> httpx.Response:
        async with serving(app) as client:
            return await client.request(method, **request)

    response = asyncio.run(scenario())
    operation = schema[path][method]
    operation.Case(**case).validate_response(response, checks=CONFORMANCE)


def test_an_unknown_model_404_is_documented() -> None:
    _validate(
        "GET", "/v1/models/{name}", {"url": "/v1/models/nope"}, path_parameters={"name": "nope"}
    )


def test_predict_ner_422_is_documented() -> None:
    _validate("POST", "/predict/ner", {"url": "/predict/ner", "json": {}}, body={})


def test_uninlu_422_is_documented() -> None:
    _validate("POST", "/api/predict", {"url": "/api/predict", "json": {}}, body={})


def test_uninlu_malformed_json_400_is_documented() -> None:
    request = {
        "url": "/api/predict",
        "content": b"\x00",
        "headers": {"content-type": "application/json"},
    }
    _validate("POST", "/api/predict", request, media_type="application/json")
