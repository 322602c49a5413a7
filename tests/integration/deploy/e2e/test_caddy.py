"""The rendered Caddyfile (``--proxy caddy``) in front of the same two instances as nginx.

Only what a test machine forces is changed, each change asserted to apply: the site address
gets a loopback port, the certificate is the test CA's instead of an ACME one, and Caddy keeps
its state in the suite's directory with no admin endpoint and no port-80 redirect listener.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nluserve.console import SECURITY_HEADERS as CONSOLE_HEADERS
from nluserve.deploy.render import render_files
from tests.integration.deploy.conftest import options
from tests.integration.deploy.e2e.processes import Service, run, tool, wait_until
from tests.integration.deploy.e2e.stack import DOMAIN, Stack
from tests.integration.deploy.e2e.tls import Loopback, trusting
from tests.support.services import free_port

pytestmark = pytest.mark.slow

CADDYFILE = "etc/caddy/Caddyfile"
PROXY_CSP = "default-src 'none'; frame-ancestors 'none'"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, f"the rendered Caddyfile no longer contains {old!r}"
    return text.replace(old, new, 1)


@pytest.fixture(scope="module")
def caddy(stack: Stack) -> Iterator[str]:
    """Caddy with the rendered Caddyfile for the stack's instances; its HTTPS origin."""
    binary = tool("caddy")
    home = stack.base / "caddy"
    home.mkdir()
    rendered = _render(stack.base, stack.instances[0].port)
    cert, key = home / "cert.pem", home / "key.pem"
    stack.ca.issue([DOMAIN]).write(cert, key)
    port = free_port()
    text = _replace(rendered, "{\n\temail ", "{\n\tadmin off\n\tauto_https off\n\temail ")
    text = _replace(text, f"\n{DOMAIN} {{\n", f"\nhttps://{DOMAIN}:{port} {{\n")
    text = _replace(text, "\ttls {\n", f"\ttls {cert} {key} {{\n")
    config = home / "Caddyfile"
    config.write_text(text, encoding="utf-8")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
    }
    argv = [binary, "run", "--config", str(config), "--adapter", "caddyfile"]
    run([binary, "validate", *argv[2:]], timeout=60, env=env)
    service = Service("caddy", argv, home / "caddy.log", env)
    origin = f"https://{DOMAIN}:{port}"
    service.start()
    try:
        wait_until("caddy", lambda: _ready(origin, stack, service), 30, every=0.25)
        yield origin
    finally:
        service.stop()


def _render(base: Path, first_port: int) -> str:
    """The Caddyfile of the stack's set (same instances and ports) with ``--proxy caddy``."""
    opts = options(
        domain=DOMAIN,
        proxy="caddy",
        backends=2,
        workers=2,
        port=first_port,
        data_dir=str(base / "data"),
        log_dir=str(base / "logs"),
    )
    (text,) = [f.text for f in render_files(opts) if str(f.path) == CADDYFILE]
    return text


def _client(origin: str, stack: Stack) -> httpx.Client:
    return httpx.Client(
        transport=Loopback(DOMAIN, trusting(stack.ca.pem)), base_url=origin, timeout=30
    )


def _ready(origin: str, stack: Stack, service: Service) -> bool:
    assert service.running(), service.tail()
    try:
        with _client(origin, stack) as client:
            return client.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def test_caddy_leaves_the_web_console_to_its_own_csp(caddy: str, stack: Stack) -> None:
    with _client(caddy, stack) as client:
        console = [client.get(p) for p in ("/console", "/console/", "/console/assets/app.js")]
        api = [client.get("/healthz"), client.get("/v1/models")]
    for r in console:
        assert r.status_code in (200, 308), (r.request.url, r.status_code)
        assert r.headers.get_list("content-security-policy") == [
            CONSOLE_HEADERS["Content-Security-Policy"]
        ], r.request.url
    assert [r.status_code for r in api] == [200, 401]
    for r in api:
        assert r.headers.get_list("content-security-policy") == [PROXY_CSP], r.request.url


def test_caddy_forwards_only_a_well_formed_request_id(caddy: str, stack: Stack) -> None:
    with _client(caddy, stack) as client:
        kept = client.get("/healthz", headers={"X-Request-ID": "caddy-e2e:1"})
        replaced = client.get("/healthz", headers={"X-Request-ID": "not <well> formed"})
    assert kept.headers["x-request-id"] == "caddy-e2e:1"
    # Caddy's own id (nluserve's would be 32 hex digits without dashes): both logs agree.
    assert _UUID.match(replaced.headers["x-request-id"]), replaced.headers["x-request-id"]
