"""Several machines starting at once on one empty PostgreSQL: migrations, signing key, admin.

Barriers put both starters inside the same check-then-act window, the interleaving a real race
reaches by chance; each test then checks what a second, later starter would find.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from nluserve.db.migrate import upgrade
from nluserve.db.repo import Repository
from nluserve.tenancy.service import TenancyService
from tests.integration.tenancy.harness import tenancy_settings


def _services(tmp_path: Path, url: str, n: int) -> list[TenancyService]:
    return [
        TenancyService.from_settings(
            tenancy_settings(tmp_path / f"m{i}", database_url=url, key_pepper="shared-pepper")
        )
        for i in range(n)
    ]


def _after(method: Callable[..., Any], barrier: threading.Barrier) -> Callable[..., Any]:
    """``method``, then wait until every starter has done it too."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = method(*args, **kwargs)
        barrier.wait(timeout=10)
        return result

    return wrapped


def _run_together(
    services: list[TenancyService], call: Callable[[TenancyService], Any]
) -> list[Any]:
    with ThreadPoolExecutor(len(services)) as pool:
        return list(pool.map(call, services))


def test_concurrent_migrations_all_reach_head(tmp_path: Path, postgres_url: str) -> None:
    with ThreadPoolExecutor(3) as pool:
        revisions = list(pool.map(upgrade, [postgres_url] * 3))
    assert revisions == ["0003"] * 3


def test_concurrent_first_starts_leave_exactly_one_current_signing_key(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(postgres_url)
    services = _services(tmp_path, postgres_url, 2)
    looked, added = threading.Barrier(2), threading.Barrier(2)
    for svc in services:
        monkeypatch.setattr(svc.repo, "signing_keys", _after(svc.repo.signing_keys, looked))
        monkeypatch.setattr(svc.repo, "add_signing_key", _after(svc.repo.add_signing_key, added))
    try:
        _run_together(services, TenancyService.ensure_signing_key)
        repo = Repository(postgres_url)
        current = [k for k, _, _, is_current in repo.signing_keys(timedelta(0)) if is_current]
        repo.close()
        assert len(current) == 1, current
    finally:
        for svc in services:
            svc.repo.close()


def test_concurrent_first_starts_create_one_admin_without_crashing(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(postgres_url)
    services = _services(tmp_path, postgres_url, 2)
    barrier = threading.Barrier(2)
    for svc in services:
        monkeypatch.setattr(svc.repo, "count_tenants", _after(svc.repo.count_tenants, barrier))
    try:
        keys = _run_together(services, TenancyService.bootstrap_admin)  # raises on the crash
        assert sum(k is not None for k in keys) == 1
        assert [t.name for t in services[0].repo.tenants()] == ["admin"]
    finally:
        for svc in services:
            svc.repo.close()
