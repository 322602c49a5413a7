"""The edge as deployed: HTTP only redirects (and answers ACME), HTTPS carries the security
headers, hides /metrics, and takes a new tenant from creation to a prediction."""

from __future__ import annotations

import httpx
import pytest

from nluserve.console import SECURITY_HEADERS as CONSOLE_HEADERS
from tests.integration.deploy.e2e.stack import DOMAIN, Stack, bearer
from tests.integration.deploy.e2e.tls import TestCa

pytestmark = pytest.mark.slow

SECURITY_HEADERS = {
    "strict-transport-security": "max-age=63072000; includeSubDomains",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}


def test_port_80_redirects_to_https_but_serves_acme_challenges(stack: Stack) -> None:
    http = f"http://127.0.0.1:{stack.nginx.http_port}"
    host = {"Host": DOMAIN}
    r = httpx.get(f"{http}/v1/models?limit=1", headers=host, follow_redirects=False)
    assert r.status_code == 301
    assert r.headers["location"] == f"https://{DOMAIN}/v1/models?limit=1"
    # A forged Host is not echoed into the redirect.
    r = httpx.get(f"{http}/x", headers={"Host": "evil.example"}, follow_redirects=False)
    assert r.status_code == 301 and r.headers["location"] == f"https://{DOMAIN}/x"
    assert "nginx/" not in r.headers.get("server", "")  # server_tokens off

    challenge = stack.base / "acme-webroot" / ".well-known" / "acme-challenge" / "e2e-token"
    challenge.parent.mkdir(parents=True, exist_ok=True)
    challenge.write_text("e2e-token.thumbprint")
    r = httpx.get(f"{http}/.well-known/acme-challenge/e2e-token", headers=host)
    assert (r.status_code, r.text) == (200, "e2e-token.thumbprint")
    r = httpx.get(f"{http}/.well-known/acme-challenge/absent", headers=host)
    assert r.status_code == 404


def test_https_answers_carry_the_security_headers_even_on_errors(stack: Stack) -> None:
    with stack.client() as client:
        ok = client.get("/healthz")
        unauthorised = client.get("/v1/models")
    assert ok.status_code == 200
    assert unauthorised.status_code == 401
    for r in (ok, unauthorised):
        for name, value in SECURITY_HEADERS.items():
            assert r.headers.get(name) == value, (r.request.url, name, r.headers)
        assert "nginx/" not in r.headers.get("server", "")


def test_what_nginx_refuses_itself_is_problem_json(stack: Stack) -> None:
    with stack.client() as client:
        r = client.post(
            "/v1/ner",
            content=b'{"text": "' + b"x" * (2 * 1024 * 1024) + b'"}',
            headers={"Content-Type": "application/json", "X-Request-ID": "edge-413"},
        )
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == 413 and body["type"].endswith("/payload-too-large")
    assert body["request_id"] == "edge-413"
    for name, value in SECURITY_HEADERS.items():
        assert r.headers.get(name) == value, name


def test_the_web_console_gets_its_own_csp_and_no_second_one(stack: Stack) -> None:
    # A browser enforces every policy it is sent: nginx's default-src 'none' next to the
    # console's would block its scripts, styles and calls.
    with stack.client() as client:
        answers = [client.get(path) for path in ("/console", "/console/", "/console/assets/app.js")]
    for r in answers:
        assert r.status_code in (200, 308), (r.request.url, r.status_code)
        assert r.headers.get_list("content-security-policy") == [
            CONSOLE_HEADERS["Content-Security-Policy"]
        ], r.request.url


def test_a_malformed_request_id_is_replaced_alike_in_nginx_and_nluserve(stack: Stack) -> None:
    offset = stack.nginx.access_offset()
    with stack.client() as client:
        r = client.get("/healthz", headers={"X-Request-ID": "not <well> formed"})
    assert r.status_code == 200
    given = r.headers["x-request-id"]
    assert given != "not <well> formed"
    (logged,) = [e for e in stack.nginx.access(offset) if e["uri"] == "/healthz"]
    assert logged["request_id"] == given  # nginx's own id, which nluserve kept


def test_https_is_verified_against_the_ca_and_hides_metrics(stack: Stack) -> None:
    with (
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
        stack.client(ca_pem=TestCa("another CA").pem) as stranger,
    ):
        stranger.get("/healthz")
    with stack.client() as client:
        assert client.get("/metrics").status_code == 404
    for instance in stack.instances:  # Prometheus scrapes each instance on loopback instead
        direct = httpx.get(instance.url + "/metrics", timeout=10)
        assert direct.status_code == 200
        assert "nluserve_http_requests_total" in direct.text


def test_admin_creates_a_tenant_whose_token_predicts_over_https(stack: Stack) -> None:
    tenant_id, api_key = stack.tenant("edge-acme")
    with stack.client() as client:
        refused = client.post("/admin/tenants", json={"name": "x"}, headers=bearer(api_key))
        assert refused.status_code == 403  # a tenant's key is not an admin key

        r = client.post("/v1/auth/token", headers=bearer(api_key))
        assert r.status_code == 200, r.text
        token = r.json()
        assert token["token_type"] == "Bearer" and token["expires_in"] > 0

        request_id = "e2e-edge-predict-1"
        r = client.post(
            "/v1/ner",
            json={"text": "张三在北京大学读书。"},
            headers={**bearer(token["access_token"]), "X-Request-ID": request_id},
        )
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == request_id  # passed through nginx and echoed
    body = r.json()
    assert body["request_id"] == request_id
    entities = {
        (e["text"], e["label"], e["start"], e["end"]) for e in body["results"][0]["entities"]
    }
    assert ("张三", "name", 0, 2) in entities
    assert stack.wait_audited(tenant_id, {request_id}) == set()
