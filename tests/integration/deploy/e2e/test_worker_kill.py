"""SIGKILL of a gunicorn worker under load: the master respawns it, only calls in flight on it
fail (nginx's 502, never a 500), and every call a client saw succeed is in the audit log."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest

from tests.integration.deploy.e2e.load import TEXT, Load
from tests.integration.deploy.e2e.processes import connections, wait_until
from tests.integration.deploy.e2e.stack import WORKERS, Instance, Stack, bearer

pytestmark = pytest.mark.slow

POSTS = 6  # concurrent clients: at most this many calls are in flight when the worker dies
RESPAWN_TIMEOUT_S = 30.0


def _renewed(instance: Instance, old: set[int]) -> set[int] | None:
    workers = instance.full()
    return workers if workers and not workers & old else None


def test_killed_worker_is_respawned_and_no_completed_call_goes_unaudited(stack: Stack) -> None:
    tenant_id, key = stack.tenant("kill-acme")
    target = stack.instances[0]
    master = target.service.pid
    before = target.workers()
    assert len(before) == WORKERS
    victim = 0

    def busiest() -> int | None:
        """The worker holding the most of nginx's connections: the one a kill hurts."""
        held = {pid: connections(pid, target.port) for pid in before}
        pid = max(held, key=lambda p: held[p])
        return pid if held[pid] else None

    async def scenario() -> tuple[Load, float]:
        nonlocal victim
        async with stack.async_client(POSTS) as client:
            load = Load(client, key)
            load.start(posts=POSTS)
            await asyncio.sleep(2.0)
            victim = await asyncio.to_thread(wait_until, "a busy worker", busiest, 10)
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            await asyncio.sleep(3.0)
            await load.stop()
            return load, killed_at

    load, killed_at = asyncio.run(scenario())

    after = wait_until(f"a new worker of {target.service.name}", target.full, RESPAWN_TIMEOUT_S)
    assert target.service.pid == master and target.service.running()  # the master survived
    assert victim not in after and len(after - before) == 1, (before, after)
    # Respawned workers serve: with the other original one killed too (no load now), every
    # worker is new, and calls straight to the instance are all answered.
    for pid in before - {victim}:
        os.kill(pid, signal.SIGKILL)
    renewed = wait_until("the other worker respawned", lambda: _renewed(target, before), 30)
    assert len(renewed) == WORKERS
    with httpx.Client(base_url=target.url, headers=bearer(key), timeout=30) as direct:
        assert {direct.post("/v1/ner", json={"text": TEXT}).status_code for _ in range(8)} == {200}

    ok = load.ok_ids()
    before_kill = [c for c in load.of("POST") if c.ended < killed_at and c.status == 200]
    after_kill = [c for c in load.of("POST") if c.started > killed_at and c.status == 200]
    assert before_kill and after_kill, load.statuses("POST")  # the load ran across the kill
    failed = load.failed("POST")
    assert len(failed) <= POSTS, (load.statuses("POST"), stack.logs())
    # A call that reached the dead worker gets nginx's 502; nothing else fails, nothing 500s.
    assert {c.status for c in failed} <= {502}, failed
    assert all(c.started <= killed_at + 1.0 for c in failed), (killed_at, failed)

    missing = stack.wait_audited(tenant_id, ok)
    assert not missing, f"{len(missing)} of {len(ok)} answered calls were never audited"
