"""A real Prometheus with the rendered prometheus.yml and alert rules scrapes both instances.

Only the intervals change (15 s to 1 s, so that the test waits seconds, not minutes); the
targets, labels and rule file are the rendered ones.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.deploy.e2e.processes import Service, tool, wait_until
from tests.integration.deploy.e2e.stack import ALERTS, DOMAIN, PROMETHEUS, Stack
from tests.support.services import free_port

pytestmark = pytest.mark.slow

ALERT_NAMES = {
    "NluserveInstanceDown",
    "NluserveHighErrorRate",
    "NluserveHighP99Latency",
    "NluserveQuotaStoreErrors",
    "NluserveRejectingCalls",
    "NluserveInferenceProcessRestarting",
}
TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def prometheus(stack: Stack) -> Iterator[str]:
    binary = tool("prometheus")
    home = stack.base / "prometheus"
    home.mkdir()
    config = stack.files[PROMETHEUS]
    for name in ("scrape_interval", "evaluation_interval"):
        assert f"{name}: 15s" in config, f"the rendered {PROMETHEUS} changed: {name}"
        config = config.replace(f"{name}: 15s", f"{name}: 1s")
    (home / "prometheus.yml").write_text(config, encoding="utf-8")
    (home / "nluserve-alerts.yml").write_text(stack.files[ALERTS], encoding="utf-8")
    port = free_port()
    service = Service(
        "prometheus",
        [
            binary,
            f"--config.file={home / 'prometheus.yml'}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        home / "prometheus.log",
    )
    stack.services.append(service)
    service.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until("prometheus /-/ready", lambda: _ready(url, service), TIMEOUT_S, 0.25)
        yield url
    finally:
        service.stop()
        stack.services.remove(service)


def _ready(url: str, service: Service) -> bool:
    assert service.running(), service.tail()
    try:
        return httpx.get(url + "/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _api(url: str, path: str, **params: str) -> Any:
    r = httpx.get(f"{url}/api/v1/{path}", params=params, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]


def test_both_instances_are_scraped_with_the_rendered_targets(
    stack: Stack, prometheus: str
) -> None:
    wanted = {f"http://{i.upstream}/metrics" for i in stack.instances}

    def all_up() -> list[dict[str, Any]] | None:
        targets = _api(prometheus, "targets", state="active")["activeTargets"]
        ours = [t for t in targets if t["labels"].get("job") == "nluserve"]
        healthy = {t["scrapeUrl"] for t in ours if t["health"] == "up"}
        return ours if healthy == wanted and len(ours) == len(wanted) else None

    targets = wait_until("both nluserve targets up", all_up, TIMEOUT_S, 0.5)
    assert {t["labels"]["domain"] for t in targets} == {DOMAIN}

    up = _api(prometheus, "query", query='up{job="nluserve"}')["result"]
    assert {(r["metric"]["instance"], r["value"][1]) for r in up} == {
        (i.upstream, "1") for i in stack.instances
    }

    # Calls through nginx show up in the scraped counters of the multi-worker instances.
    _, key = stack.tenant("prometheus-acme")
    with stack.client() as client:
        for _ in range(6):
            r = client.post(
                "/v1/ner", json={"text": "张三在北京"}, headers={"Authorization": f"Bearer {key}"}
            )
            assert r.status_code == 200, r.text
    query = 'sum(nluserve_http_requests_total{job="nluserve",route="/v1/ner",status="200"})'

    def counted() -> bool:
        result = _api(prometheus, "query", query=query)["result"]
        return bool(result) and float(result[0]["value"][1]) >= 6

    wait_until("the scraped request counter", counted, TIMEOUT_S, 0.5)


def test_rendered_alert_rules_are_loaded_and_fire_for_an_unresponsive_instance(
    stack: Stack, prometheus: str
) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        groups = _api(prometheus, "rules", type="alert")["groups"]
        rules = [r for g in groups if g["name"] == "nluserve" for r in g["rules"]]
        return rules if rules and all(r["health"] == "ok" for r in rules) else None

    rules = wait_until("the alert rules evaluated", evaluated, TIMEOUT_S, 0.5)
    assert {r["name"] for r in rules} == ALERT_NAMES
    assert all(r["type"] == "alerting" and r["state"] == "inactive" for r in rules), rules

    # The rule's expression matches what is really scraped: an instance that stops answering
    # (frozen with SIGSTOP: hung, as far as a scrape can tell) makes its alert pending (the
    # rule's `for: 2m` keeps it from firing within the test). Frozen rather than stopped, so
    # that nginx, which this test sends nothing, never counts it as failed.
    instance = stack.instances[1]
    instance.service.send(signal.SIGSTOP)
    try:

        def pending() -> bool:
            alerts = _api(prometheus, "alerts")["alerts"]
            return any(
                a["labels"]["alertname"] == "NluserveInstanceDown"
                and a["labels"]["instance"] == instance.upstream
                and a["state"] == "pending"
                for a in alerts
            )

        wait_until("NluserveInstanceDown pending", pending, TIMEOUT_S, 0.5)
    finally:
        instance.service.send(signal.SIGCONT)

    def resolved() -> bool:
        alerts = _api(prometheus, "alerts")["alerts"]
        return not any(a["labels"]["instance"] == instance.upstream for a in alerts)

    wait_until("the alert resolved once the instance answers again", resolved, TIMEOUT_S, 0.5)
