"""A rolling restart under load, as docs/deploy.md describes it: one instance at a time, the next
once the restarted one answers /readyz and nginx's fail_timeout has passed.

Clients do not retry. nginx passes a call to the other instance when one cannot be reached
(`proxy_next_upstream error timeout`), so no GET fails; a POST is never sent twice, so the few
that had reached a stopping instance's socket but not a worker may fail with 502 (or 503
`shutting-down` from a worker that had just begun draining), and only those: calls in flight
while an instance stopped.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.integration.deploy.e2e.load import Load
from tests.integration.deploy.e2e.stack import TIMEOUT_STOP_S, Stack

pytestmark = pytest.mark.slow

POSTS = 3
GETS = 3
PAUSE_S = 0.05  # the machine has 2 cores: leave some to the restarting instance


def test_rolling_restart_fails_no_get_and_only_in_flight_posts(stack: Stack) -> None:
    tenant_id, key = stack.tenant("rolling-acme")
    stops: list[tuple[float, float]] = []  # (SIGTERM sent, master exited)
    down: list[tuple[float, float]] = []  # (master exited, started again)
    rejoined: list[int] = []  # access log offsets once each instance's restart step is done

    async def scenario() -> Load:
        async with stack.async_client(POSTS + GETS) as client:
            load = Load(client, key, pause=PAUSE_S)
            load.start(posts=POSTS, gets=GETS)
            await asyncio.sleep(1.0)
            for instance in stack.instances:
                began = time.monotonic()
                code = await asyncio.to_thread(instance.stop_gracefully, TIMEOUT_STOP_S)
                stopped = time.monotonic()
                stops.append((began, stopped))
                assert code == 0, instance.service.tail()  # drained within the graceful timeout
                await asyncio.sleep(1.0)  # a moment with only the other instance up
                down.append((stopped, time.monotonic()))
                await asyncio.to_thread(stack.restart, instance)
                rejoined.append(stack.nginx.access_offset())
            await asyncio.sleep(1.0)
            await load.stop()
            return load

    load = asyncio.run(scenario())

    gets, posts = load.statuses("GET"), load.statuses("POST")
    assert load.of("GET") and load.of("POST")
    assert load.failed("GET") == [], gets
    failed = load.failed("POST")
    assert len(failed) <= POSTS * len(stops), posts
    logged = {e["request_id"]: e for e in stack.nginx.access()}
    assert {c.status for c in failed} <= {502, 503}, [(c, logged.get(c.request_id)) for c in failed]
    for call in failed:  # each one was in flight while an instance was stopping
        assert any(call.started <= end and call.ended >= begin for begin, end in stops), call
    for begin, end in down:  # nginx routed around the stopped instance
        assert any(begin <= c.started and c.ended <= end and c.status == 200 for c in load.calls)
    for instance, offset in zip(stack.instances, rejoined, strict=True):  # and back to it
        served = {e["upstream"] for e in stack.nginx.access(offset) if e["status"] == 200}
        assert instance.upstream in served, (instance.upstream, served)
    # Calls drained by a stopping instance were audited before it exited.
    assert stack.wait_audited(tenant_id, load.ok_ids()) == set()
